/* Per-thread time loops for one element type and one instruction set.
 *
 * Included by kernels_isa.h with FG_T, FG_V, FG_VI, FG_VL, FG_NR, FG_IS_F32 and FG_FN
 * defined.  The functions run inside the caller's OpenMP parallel region (the
 * barriers below are orphaned directives binding to it); thread `tid` of `nth`
 * owns hidden-unit blocks [u0, u1).
 *
 * Notation: rows b < B, units j < H, block u covers units j0 = u*NR .. j0+n-1
 * (n = NR except in the last block).  Packed weights (see recurrence.c):
 *   forward  P[((u*G + g)*H + k)*NR + jj] = w_hh[g*H + j0 + jj, k]   (w_hh^T, per gate)
 *   backward P[(u*G*H + k)*NR + jj]       = w_hh[k, j0 + jj]          (w_hh,  all gates)
 * zero-padded past H, so the product kernel always computes NR columns.
 */

#include "vecmath.h"

#define FG_AI static inline __attribute__((always_inline))
#define FG_MR 4

FG_AI FG_V FG_FN(ld)(const FG_T *p) { FG_V v; memcpy(&v, p, sizeof v); return v; }
FG_AI void FG_FN(st)(FG_T *p, FG_V v) { memcpy(p, &v, sizeof v); }

/* A block of n <= NR elements as two vectors (zero-padded past n). */
typedef struct { FG_V v0, v1; } FG_FN(blk);

FG_AI FG_FN(blk) FG_FN(ldb)(const FG_T *p, int n)
{
    FG_FN(blk) r;
    if (n == FG_NR) {
        r.v0 = FG_FN(ld)(p);
        r.v1 = FG_FN(ld)(p + FG_VL);
    } else {
        FG_T tmp[FG_NR] = {0};
        memcpy(tmp, p, (size_t)n * sizeof(FG_T));
        r.v0 = FG_FN(ld)(tmp);
        r.v1 = FG_FN(ld)(tmp + FG_VL);
    }
    return r;
}

FG_AI void FG_FN(stb)(FG_T *p, int n, FG_FN(blk) r)
{
    if (n == FG_NR) {
        FG_FN(st)(p, r.v0);
        FG_FN(st)(p + FG_VL, r.v1);
    } else {
        FG_T tmp[FG_NR];
        FG_FN(st)(tmp, r.v0);
        FG_FN(st)(tmp + FG_VL, r.v1);
        memcpy(p, tmp, (size_t)n * sizeof(FG_T));
    }
}

/* Element-wise operations on blocks, so the gate math reads like the equations. */
#define FG_B2(name, expr) \
    FG_AI FG_FN(blk) FG_FN(name)(FG_FN(blk) a, FG_FN(blk) b) \
    { FG_FN(blk) r; { FG_V x = a.v0, y = b.v0; r.v0 = (expr); } \
                    { FG_V x = a.v1, y = b.v1; r.v1 = (expr); } return r; }
#define FG_B1(name, expr) \
    FG_AI FG_FN(blk) FG_FN(name)(FG_FN(blk) a) \
    { FG_FN(blk) r; { FG_V x = a.v0; r.v0 = (expr); } { FG_V x = a.v1; r.v1 = (expr); } return r; }

FG_B2(add, x + y)
FG_B2(sub, x - y)
FG_B2(mul, x * y)
FG_B1(sigm, FG_FN(vsigmoid)(x))
FG_B1(tanh, FG_FN(vtanh)(x))
FG_B1(relu, FG_FN(vrelu)(x))
FG_B1(one_minus, (FG_T)1 - x)
FG_B1(dsigm, x * ((FG_T)1 - x))          /* sigma' through the post-activation */
FG_B1(dtanh, (FG_T)1 - x * x)            /* tanh' through the post-activation  */
FG_B2(drelu, FG_FN(vsel)(y > (FG_T)0, x, (FG_V){0}))   /* x * [y > 0] */
#undef FG_B1
#undef FG_B2

/* C[r, 0:n] = beta*C[r, 0:n] + sum_k A[r*lda + k] * P[k*NR + 0:NR]   for r < mr.
 * A: [mr, K] (row stride lda)   P: [K, NR] packed   C: [mr, n] (row stride ldc)
 * An FMA waits ~4-5 cycles for its accumulator, so fewer than ~8 independent chains
 * leave the FMA units idle: with 1 or 2 rows the k sum is split into S interleaved
 * partial sums (S*mr*2 chains), added pairwise at the end. */
FG_AI void FG_FN(mk)(const int mr, const FG_T *A, size_t lda, const FG_T *P, int K,
                     FG_T *C, size_t ldc, int n, int beta)
{
    enum { S_MAX = 4 };
    const int S = mr == 1 ? 4 : mr == 2 ? 2 : 1;
    FG_V acc0[S_MAX][FG_MR], acc1[S_MAX][FG_MR];
    for (int s = 0; s < S; s++)
        for (int r = 0; r < mr; r++)
            acc0[s][r] = acc1[s][r] = (FG_V){0};
    int k = 0;
    for (; k + S <= K; k += S) {
        for (int s = 0; s < S; s++) {
            FG_V p0 = FG_FN(ld)(P + (size_t)(k + s) * FG_NR);
            FG_V p1 = FG_FN(ld)(P + (size_t)(k + s) * FG_NR + FG_VL);
            for (int r = 0; r < mr; r++) {
                FG_T a = A[r * lda + k + s];
                acc0[s][r] += a * p0;
                acc1[s][r] += a * p1;
            }
        }
    }
    for (; k < K; k++) {   /* the last K % S terms go to the first partial sum */
        FG_V p0 = FG_FN(ld)(P + (size_t)k * FG_NR);
        FG_V p1 = FG_FN(ld)(P + (size_t)k * FG_NR + FG_VL);
        for (int r = 0; r < mr; r++) {
            FG_T a = A[r * lda + k];
            acc0[0][r] += a * p0;
            acc1[0][r] += a * p1;
        }
    }
    for (int r = 0; r < mr; r++) {
        if (S == 4) {
            acc0[0][r] = (acc0[0][r] + acc0[1][r]) + (acc0[2][r] + acc0[3][r]);
            acc1[0][r] = (acc1[0][r] + acc1[1][r]) + (acc1[2][r] + acc1[3][r]);
        } else if (S == 2) {
            acc0[0][r] += acc0[1][r];
            acc1[0][r] += acc1[1][r];
        }
        FG_FN(blk) c = {acc0[0][r], acc1[0][r]};
        if (beta)
            c = FG_FN(add)(FG_FN(ldb)(C + r * ldc, n), c);
        FG_FN(stb)(C + r * ldc, n, c);
    }
}

/* The product for all B rows and one block of n units, MR rows at a time. */
static void FG_FN(gemm_rows)(int B, const FG_T *A, size_t lda, const FG_T *P, int K,
                             FG_T *C, size_t ldc, int n, int beta)
{
    int b = 0;
    for (; b + FG_MR <= B; b += FG_MR)
        FG_FN(mk)(FG_MR, A + b * lda, lda, P, K, C + b * ldc, ldc, n, beta);
    switch (B - b) {
    case 3: FG_FN(mk)(3, A + b * lda, lda, P, K, C + b * ldc, ldc, n, beta); break;
    case 2: FG_FN(mk)(2, A + b * lda, lda, P, K, C + b * ldc, ldc, n, beta); break;
    case 1: FG_FN(mk)(1, A + b * lda, lda, P, K, C + b * ldc, ldc, n, beta); break;
    default: break;
    }
}

static int FG_FN(gates_of)(int cell) { return cell == FG_LSTM ? 4 : (cell == FG_GRU_LBR || cell == FG_GRU_RB) ? 3 : 1; }

static void FG_FN(forward_thread)(const fg_forward_args *a, int tid, int nth)
{
    const int T = a->T, B = a->B, H = a->H, cell = a->cell, G = FG_FN(gates_of)(cell);
    const size_t GH = (size_t)G * H;
    const int nb = (H + FG_NR - 1) / FG_NR;
    const int u0 = (int)((long)nb * tid / nth), u1 = (int)((long)nb * (tid + 1) / nth);
    const FG_T *P = (const FG_T *)a->P;
    FG_T *hout = (FG_T *)a->hout, *cout = (FG_T *)a->cout, *tcs = (FG_T *)a->tc;
    const FG_T *b_hn = (const FG_T *)a->b_hn;
    size_t off = 0, off_prev = 0;   /* first row of steps t and t-1 (packed layout, see recurrence.h) */

    for (int t = 0; t < T; off_prev = off, off += a->batch ? a->batch[t] : B, t++) {
        const int Bt = a->batch ? a->batch[t] : B;                         /* active rows   */
        const FG_T *hp = t ? hout + off_prev * H : (const FG_T *)a->h0;    /* h_{t-1}: [Bt, H] */
        FG_T *h = hout + off * H;                                          /* h_t:     [Bt, H] */
        FG_T *pre = (FG_T *)a->pre + off * GH;                             /* [Bt, G*H] */
        FG_T *ex = (FG_T *)a->extra + (a->extra_step ? off * H : 0);       /* [Bt, H]   */

        for (int u = u0; u < u1; u++) {
            const int j0 = u * FG_NR, n = H - j0 < FG_NR ? H - j0 : FG_NR;
            const FG_T *Pu = P + (size_t)u * G * H * FG_NR;
            for (int g = 0; g < (cell == FG_GRU_RB ? 2 : G); g++) {
                if (cell == FG_GRU_LBR && g == 2)   /* hn = h_{t-1} W_hn^T (+ b_hn below) */
                    FG_FN(gemm_rows)(Bt, hp, H, Pu + (size_t)g * H * FG_NR, H, ex + j0, H, n, 0);
                else                                /* pre += h_{t-1} W_hg^T */
                    FG_FN(gemm_rows)(Bt, hp, H, Pu + (size_t)g * H * FG_NR, H, pre + g * H + j0, GH, n, 1);
            }
            for (int b = 0; b < Bt; b++) {
                FG_T *pr = pre + b * GH + j0;
                const size_t o = b * H + j0;
                switch (cell) {
                case FG_RNN_TANH:
                    FG_FN(stb)(h + o, n, FG_FN(tanh)(FG_FN(ldb)(pr, n)));
                    break;
                case FG_RNN_RELU:
                    FG_FN(stb)(h + o, n, FG_FN(relu)(FG_FN(ldb)(pr, n)));
                    break;
                case FG_LSTM: {
                    /* c = f*c_prev + i*g,  h = o*tanh(c) */
                    /* in place (inference): c_{t-1} and c_t share the (B, H) state */
                    const FG_T *cp = a->c_in_place || !t ? (const FG_T *)a->c0 : cout + off_prev * H;
                    FG_T *cn = a->c_in_place ? cout : cout + off * H;
                    FG_FN(blk) gi = FG_FN(sigm)(FG_FN(ldb)(pr, n));
                    FG_FN(blk) gf = FG_FN(sigm)(FG_FN(ldb)(pr + H, n));
                    FG_FN(blk) gg = FG_FN(tanh)(FG_FN(ldb)(pr + 2 * H, n));
                    FG_FN(blk) go = FG_FN(sigm)(FG_FN(ldb)(pr + 3 * H, n));
                    FG_FN(blk) c = FG_FN(add)(FG_FN(mul)(gf, FG_FN(ldb)(cp + o, n)), FG_FN(mul)(gi, gg));
                    FG_FN(blk) tc = FG_FN(tanh)(c);
                    FG_FN(stb)(pr, n, gi);
                    FG_FN(stb)(pr + H, n, gf);
                    FG_FN(stb)(pr + 2 * H, n, gg);
                    FG_FN(stb)(pr + 3 * H, n, go);
                    FG_FN(stb)(cn + o, n, c);
                    if (tcs)
                        FG_FN(stb)(tcs + off * H + o, n, tc);
                    FG_FN(stb)(h + o, n, FG_FN(mul)(go, tc));
                    break;
                }
                case FG_GRU_LBR: {
                    /* n = tanh(xn + r*(h W_hn^T + b_hn)),  h = n + z*(h_prev - n) */
                    FG_FN(blk) r = FG_FN(sigm)(FG_FN(ldb)(pr, n));
                    FG_FN(blk) z = FG_FN(sigm)(FG_FN(ldb)(pr + H, n));
                    FG_FN(blk) hn = FG_FN(add)(FG_FN(ldb)(ex + o, n), FG_FN(ldb)(b_hn + j0, n));
                    FG_FN(blk) nn = FG_FN(tanh)(FG_FN(add)(FG_FN(ldb)(pr + 2 * H, n), FG_FN(mul)(r, hn)));
                    FG_FN(blk) hv = FG_FN(ldb)(hp + o, n);
                    FG_FN(stb)(pr, n, r);
                    FG_FN(stb)(pr + H, n, z);
                    FG_FN(stb)(pr + 2 * H, n, nn);
                    FG_FN(stb)(ex + o, n, hn);
                    FG_FN(stb)(h + o, n, FG_FN(add)(nn, FG_FN(mul)(z, FG_FN(sub)(hv, nn))));
                    break;
                }
                case FG_GRU_RB: {
                    /* phase 1: r, z and r*h_prev for this thread's units */
                    FG_FN(blk) r = FG_FN(sigm)(FG_FN(ldb)(pr, n));
                    FG_FN(blk) z = FG_FN(sigm)(FG_FN(ldb)(pr + H, n));
                    FG_FN(stb)(pr, n, r);
                    FG_FN(stb)(pr + H, n, z);
                    FG_FN(stb)(ex + o, n, FG_FN(mul)(r, FG_FN(ldb)(hp + o, n)));
                    break;
                }
                }
            }
        }
        if (cell == FG_GRU_RB) {
            /* phase 2 needs r*h_prev of every unit: n = tanh(xn + (r*h) W_hn^T + b_hn) */
#pragma omp barrier
            for (int u = u0; u < u1; u++) {
                const int j0 = u * FG_NR, n = H - j0 < FG_NR ? H - j0 : FG_NR;
                const FG_T *Pn = P + ((size_t)u * G + 2) * H * FG_NR;
                FG_FN(gemm_rows)(Bt, ex, H, Pn, H, pre + 2 * H + j0, GH, n, 1);
                for (int b = 0; b < Bt; b++) {
                    FG_T *pr = pre + b * GH + j0;
                    const size_t o = b * H + j0;
                    FG_FN(blk) nn = FG_FN(tanh)(FG_FN(ldb)(pr + 2 * H, n));
                    FG_FN(blk) z = FG_FN(ldb)(pr + H, n);
                    FG_FN(blk) hv = FG_FN(ldb)(hp + o, n);
                    FG_FN(stb)(pr + 2 * H, n, nn);
                    FG_FN(stb)(h + o, n, FG_FN(add)(nn, FG_FN(mul)(z, FG_FN(sub)(hv, nn))));
                }
            }
        }
#pragma omp barrier
    }
}

static void FG_FN(backward_thread)(const fg_backward_args *a, int tid, int nth)
{
    const int T = a->T, B = a->B, H = a->H, cell = a->cell, G = FG_FN(gates_of)(cell);
    const size_t GH = (size_t)G * H;
    const int nb = (H + FG_NR - 1) / FG_NR;
    const int u0 = (int)((long)nb * tid / nth), u1 = (int)((long)nb * (tid + 1) / nth);
    const FG_T *P = (const FG_T *)a->P;
    const FG_T *hs = (const FG_T *)a->hs, *dy = (const FG_T *)a->dy;
    FG_T *dh = (FG_T *)a->dh, *dc = (FG_T *)a->dc, *drh = (FG_T *)a->scratch;
    size_t off = 0;                                    /* first row of step t (packed layout) */
    for (int t = 0; t < T; t++)
        off += a->batch ? a->batch[t] : B;

    for (int t = T - 1; t >= 0; t--) {
        const int Bt = a->batch ? a->batch[t] : B;     /* active rows */
        off -= Bt;
        /* state rows: h0 (B rows) first, then h_t at B + off_t; cs likewise */
        const size_t sp = t ? B + off - (a->batch ? a->batch[t - 1] : B) : 0;
        const FG_T *hp = hs + sp * H;                  /* h_{t-1} [Bt, H] */
        const FG_T *hc = hs + (B + off) * H;           /* h_t     [Bt, H] */
        const FG_T *gt = a->gates ? (const FG_T *)a->gates + off * GH : NULL;
        FG_T *dG = (FG_T *)a->dG + off * GH;           /* [Bt, G*H] */

        /* phase A: gate gradients of this thread's units (needs dL/dh_t of these units only) */
        for (int u = u0; u < u1; u++) {
            const int j0 = u * FG_NR, n = H - j0 < FG_NR ? H - j0 : FG_NR;
            for (int b = 0; b < Bt; b++) {
                const size_t o = b * H + j0;
                FG_T *dg = dG + b * GH + j0;
                const FG_T *gr = gt ? gt + b * GH + j0 : NULL;
                FG_FN(blk) dhv = FG_FN(ldb)(dh + o, n);
                if (dy)
                    dhv = FG_FN(add)(dhv, FG_FN(ldb)(dy + off * H + o, n));
                switch (cell) {
                case FG_RNN_TANH:
                    FG_FN(stb)(dg, n, FG_FN(mul)(dhv, FG_FN(dtanh)(FG_FN(ldb)(hc + o, n))));
                    break;
                case FG_RNN_RELU:
                    FG_FN(stb)(dg, n, FG_FN(drelu)(dhv, FG_FN(ldb)(hc + o, n)));
                    break;
                case FG_LSTM: {
                    FG_FN(blk) gi = FG_FN(ldb)(gr, n), gf = FG_FN(ldb)(gr + H, n);
                    FG_FN(blk) gg = FG_FN(ldb)(gr + 2 * H, n), go = FG_FN(ldb)(gr + 3 * H, n);
                    FG_FN(blk) tc = FG_FN(ldb)((const FG_T *)a->tc + off * H + o, n);
                    FG_FN(blk) cp = FG_FN(ldb)((const FG_T *)a->cs + sp * H + o, n);
                    /* dc = dc_next + dh*o*(1 - tanh(c)^2) */
                    FG_FN(blk) dcv = FG_FN(add)(FG_FN(ldb)(dc + o, n),
                                                FG_FN(mul)(FG_FN(mul)(dhv, go), FG_FN(dtanh)(tc)));
                    FG_FN(stb)(dg, n, FG_FN(mul)(FG_FN(mul)(dcv, gg), FG_FN(dsigm)(gi)));
                    FG_FN(stb)(dg + H, n, FG_FN(mul)(FG_FN(mul)(dcv, cp), FG_FN(dsigm)(gf)));
                    FG_FN(stb)(dg + 2 * H, n, FG_FN(mul)(FG_FN(mul)(dcv, gi), FG_FN(dtanh)(gg)));
                    FG_FN(stb)(dg + 3 * H, n, FG_FN(mul)(FG_FN(mul)(dhv, tc), FG_FN(dsigm)(go)));
                    FG_FN(stb)(dc + o, n, FG_FN(mul)(dcv, gf));
                    break;
                }
                case FG_GRU_LBR:
                case FG_GRU_RB: {
                    FG_FN(blk) r = FG_FN(ldb)(gr, n), z = FG_FN(ldb)(gr + H, n);
                    FG_FN(blk) nn = FG_FN(ldb)(gr + 2 * H, n), hv = FG_FN(ldb)(hp + o, n);
                    /* dn = dh*(1-z)*(1-n^2),  dz = dh*(h_prev - n)*z*(1-z) */
                    FG_FN(blk) dn = FG_FN(mul)(FG_FN(mul)(dhv, FG_FN(one_minus)(z)), FG_FN(dtanh)(nn));
                    FG_FN(blk) dz = FG_FN(mul)(FG_FN(mul)(dhv, FG_FN(sub)(hv, nn)), FG_FN(dsigm)(z));
                    FG_FN(stb)(dg + H, n, dz);
                    if (cell == FG_GRU_LBR) {
                        FG_FN(blk) hn = FG_FN(ldb)((const FG_T *)a->extra + off * H + o, n);
                        /* dr = dn*hn*r*(1-r); the recurrent n pre-activation gets dn*r */
                        FG_FN(stb)(dg, n, FG_FN(mul)(FG_FN(mul)(dn, hn), FG_FN(dsigm)(r)));
                        FG_FN(stb)(dg + 2 * H, n, FG_FN(mul)(dn, r));
                        FG_FN(stb)((FG_T *)a->dnx + off * H + o, n, dn);
                    } else {
                        FG_FN(stb)(dg + 2 * H, n, dn);   /* dr needs (dn W_hn): phase B1 */
                    }
                    FG_FN(stb)(dh + o, n, FG_FN(mul)(dhv, z));   /* direct path h_prev -> h */
                    break;
                }
                }
            }
        }
#pragma omp barrier
        /* phase B: dL/dh_{t-1} = direct + dG_t W_hh for this thread's units */
        if (cell == FG_GRU_RB) {
            for (int u = u0; u < u1; u++) {
                const int j0 = u * FG_NR, n = H - j0 < FG_NR ? H - j0 : FG_NR;
                const FG_T *Pu = P + (size_t)u * GH * FG_NR;
                /* d(r*h) = dn W_hn */
                FG_FN(gemm_rows)(Bt, dG + 2 * H, GH, Pu + 2 * (size_t)H * FG_NR, H, drh + j0, H, n, 0);
                for (int b = 0; b < Bt; b++) {
                    const size_t o = b * H + j0;
                    FG_FN(blk) d = FG_FN(ldb)(drh + o, n), r = FG_FN(ldb)(gt + b * GH + j0, n);
                    FG_FN(stb)(dG + b * GH + j0, n,
                               FG_FN(mul)(FG_FN(mul)(d, FG_FN(ldb)(hp + o, n)), FG_FN(dsigm)(r)));
                    FG_FN(stb)(dh + o, n, FG_FN(add)(FG_FN(ldb)(dh + o, n), FG_FN(mul)(d, r)));
                }
            }
#pragma omp barrier
            for (int u = u0; u < u1; u++) {
                const int j0 = u * FG_NR, n = H - j0 < FG_NR ? H - j0 : FG_NR;
                FG_FN(gemm_rows)(Bt, dG, GH, P + (size_t)u * GH * FG_NR, 2 * H, dh + j0, H, n, 1);
            }
        } else {
            for (int u = u0; u < u1; u++) {
                const int j0 = u * FG_NR, n = H - j0 < FG_NR ? H - j0 : FG_NR;
                FG_FN(gemm_rows)(Bt, dG, GH, P + (size_t)u * GH * FG_NR, (int)GH, dh + j0, H, n,
                                 cell == FG_GRU_LBR);
            }
        }
        /* No barrier needed here: the next phase A touches only this thread's units of dh
         * and dc and writes another time slice of dG. */
    }
}

/* C[i, j] = sum_r A[r, i] B[r, j]   (C = A^T B, overwritten)
 * A: [K, lda] (columns i < M)   B: [K, ldb] (columns j < N)   C: [M, ldc]
 * At: scratch [M, K]   Pt: this thread's scratch [K, NR]
 * Phase 1 transposes A (each thread its rows of At); phase 2 packs each NR-column block
 * of B and runs the micro-kernel over all M rows.  Threads own column blocks, and each
 * element is summed over r in one fixed order: the result does not depend on nth. */
static void FG_FN(gemm_tn_thread)(int M, int N, int K, const FG_T *A, size_t lda, const FG_T *B,
                                  size_t ldb, FG_T *C, size_t ldc, FG_T *At, FG_T *Pt,
                                  int tid, int nth)
{
    const int i0 = (int)((long)M * tid / nth), i1 = (int)((long)M * (tid + 1) / nth);
    enum { RB = 64 };   /* rows of A per pass: the At rows being written stay in cache */
    for (int r0 = 0; r0 < K; r0 += RB) {
        const int r1 = K - r0 < RB ? K : r0 + RB;
        for (int i = i0; i < i1; i++)
            for (int r = r0; r < r1; r++)
                At[(size_t)i * K + r] = A[(size_t)r * lda + i];
    }
#pragma omp barrier
    const int nb = (N + FG_NR - 1) / FG_NR;
    const int u0 = (int)((long)nb * tid / nth), u1 = (int)((long)nb * (tid + 1) / nth);
    for (int u = u0; u < u1; u++) {
        const int j0 = u * FG_NR, n = N - j0 < FG_NR ? N - j0 : FG_NR;
        for (int r = 0; r < K; r++) {
            memcpy(Pt + (size_t)r * FG_NR, B + (size_t)r * ldb + j0, (size_t)n * sizeof(FG_T));
            if (n < FG_NR)
                memset(Pt + (size_t)r * FG_NR + n, 0, (size_t)(FG_NR - n) * sizeof(FG_T));
        }
        FG_FN(gemm_rows)(M, At, K, Pt, K, C + j0, ldc, n, 0);
    }
}

/* sum_k a[k] b[k], NR-wide partial sums added in a fixed order (no thread dependence). */
static FG_T FG_FN(dot)(const FG_T *a, const FG_T *b, int n)
{
    FG_V s0 = {0}, s1 = {0};
    int k = 0;
    for (; k + FG_NR <= n; k += FG_NR) {
        s0 += FG_FN(ld)(a + k) * FG_FN(ld)(b + k);
        s1 += FG_FN(ld)(a + k + FG_VL) * FG_FN(ld)(b + k + FG_VL);
    }
    FG_T lanes[FG_VL], r = 0;
    FG_FN(st)(lanes, s0 + s1);
    for (int i = 0; i < FG_VL; i++)
        r += lanes[i];
    for (; k < n; k++)
        r += a[k] * b[k];
    return r;
}

static void FG_FN(generate_thread)(const fg_generate_args *a, int tid, int nth)
{
    const int L = a->L, H = a->H, cell = a->cell, G = FG_FN(gates_of)(cell);
    const size_t GH = (size_t)G * H, LH = (size_t)L * H;
    const int nb = (H + FG_NR - 1) / FG_NR;
    const int u0 = (int)((long)nb * tid / nth), u1 = (int)((long)nb * (tid + 1) / nth);
    FG_T *hb = (FG_T *)a->h, *c = (FG_T *)a->c;
    long long tok = a->first;

    for (int s = 0; s < a->max_steps; s++) {
        FG_T *hold = hb + (size_t)(s & 1) * LH, *hnew = hb + (size_t)((s + 1) & 1) * LH;
        for (int k = 0; k < L; k++) {
            const FG_T *w = (const FG_T *)a->w_ih[k], *bias = (const FG_T *)a->bias[k];
            const int D = a->d_in[k];
            const FG_T *x = k ? hnew + (size_t)(k - 1) * H
                              : a->emb ? (const FG_T *)a->emb + (size_t)tok * D : NULL;
            FG_T *pre = (FG_T *)a->pre + k * GH;
            /* this thread's rows of the input projection (the units it steps below) */
            for (int u = u0; u < u1; u++) {
                const int j0 = u * FG_NR, n = H - j0 < FG_NR ? H - j0 : FG_NR;
                for (int g = 0; g < G; g++)
                    for (int j = j0; j < j0 + n; j++) {
                        const size_t row = (size_t)g * H + j;
                        pre[row] = x ? FG_FN(dot)(w + row * D, x, D) + bias[row]
                                     : w[(size_t)tok * GH + row] + bias[row];
                    }
            }
            fg_forward_args f;
            memset(&f, 0, sizeof f);
            f.cell = cell, f.T = 1, f.B = 1, f.H = H;
            f.P = a->P[k], f.pre = pre, f.h0 = hold + (size_t)k * H, f.hout = hnew + (size_t)k * H;
            f.c0 = f.cout = c ? c + (size_t)k * H : NULL;   /* in place: each unit read then written by its owner */
            f.extra = (FG_T *)a->extra + (size_t)k * H, f.extra_step = 0, f.b_hn = a->b_hn[k];
            FG_FN(forward_thread)(&f, tid, nth);            /* ends with a barrier: hnew[k] complete */
        }
        if (tid == 0)
            *a->slot = a->next(a->ctx, s, hnew + (size_t)(L - 1) * H);
#pragma omp barrier
        tok = *(volatile long long *)a->slot;
        if (tok < 0)
            break;
        /* thread 0 writes the slot again only after the next step's barriers */
    }
}

static void FG_FN(activation)(int kind, size_t n, const FG_T *x, FG_T *out)
{
    for (size_t i = 0; i < n; i += FG_NR) {
        int m = n - i < FG_NR ? (int)(n - i) : FG_NR;
        FG_FN(blk) v = FG_FN(ldb)(x + i, m);
        FG_FN(stb)(out + i, m, kind == 0 ? FG_FN(sigm)(v) : FG_FN(tanh)(v));
    }
}

#undef FG_MR
#undef FG_AI
