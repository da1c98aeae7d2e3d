/* The compiled core of fastgates: its C interface (called by fastgates/_recurrence.pyx).
 *
 * Design.  The kernels are written once and compiled once per instruction-set level
 * (generic, avx2 = AVX2+FMA, avx512 = AVX-512 F/VL/BW/DQ) in the same extension;
 * dispatch.c picks the level once, from CPUID and the OS's XSAVE state, capped by
 * FASTGATES_ISA (see fg_isa_select).  Every entry point below goes through that one
 * dispatch point.  The pieces:
 *   isa.h       the vector type of a level (width, masked tails)
 *   vecmath.h   vector exp / sigmoid / tanh
 *   product.h   register-tiled products over packed panels
 *   cells/<cell>.h   one header per cell: its gate math forward and backward
 *   loop.h      the time loops written once for every cell (forward, BPTT, generation)
 *   kernels.h   instantiates all of it for float and double under one level
 *   dispatch.c  CPU detection, the parallel regions, the public functions below
 *
 * Arrays are row-major and C-contiguous; shapes are given on every field
 * (T steps, B rows, H units, G gates: rnn 1, gru 3 (r, z, n), lstm 4 (i, f, g, o); the
 * LayerNorm cells lnlstm 4, lngru 3).
 * The caller validates everything first (fastgates/_checks.py) and allocates every
 * array; nothing here allocates except fg_gemm_tn's scratch.
 *
 * Variable lengths use PyTorch's packed layout: rows sorted by length (descending),
 * step t has the n_t = batch[t] rows still running (non-increasing in t), and they
 * are the prefix [0, n_t) of the previous step's rows, so h_{t-1} of the active rows
 * is the start of step t-1's block.  Step t's block starts at row off_t = n_0 + ... +
 * n_{t-1} of every per-step array; "(T, B, X)" below then means (N, X) with N = the sum
 * of n_t, and "(T+1, B, H)" means (B + N, H) (the B rows of the initial state first).
 * batch = NULL is the dense case n_t = B, off_t = t*B.  Rows past n_t are neither read
 * nor written at step t, so a finished row's dh/dc in backward keeps dh_n/dc_n until
 * its last step comes.
 */
#ifndef FASTGATES_H
#define FASTGATES_H

#include <stddef.h>

#include "cells/registry.h"

/* The cells (cells/registry.h), FG_RNN_TANH = 0 .. */
#define FG_CELL_ENUM(NAME, code, G, has_c, fwd, bwd) FG_##NAME = code,
enum fg_cell { FG_CELLS(FG_CELL_ENUM) };
#undef FG_CELL_ENUM

/* What a packed weight matrix is for (fg_pack_*).  FG_PACK_HR / FG_PACK_HR_BWD: the LSTM
 * projection w_hr (P, H) for h = m w_hr^T (forward) and dm = dh w_hr (BPTT). */
enum fg_pack { FG_PACK_HH = 0, FG_PACK_IH = 1, FG_PACK_BWD = 2, FG_PACK_HR = 3, FG_PACK_HR_BWD = 4,
               FG_PACK_COPY = 5 };

/* A weight matrix a pass packs itself on entry, inside its own parallel region (what
 * fg_pack_* would do in a region of its own): w (NULL: nothing to pack) into dst, laid
 * out for `which`, with K as in fg_pack_*.  Every thread packs its share, then one
 * barrier, before anything reads dst.  which = FG_PACK_COPY copies the `bytes` bytes at w
 * to dst as they are (a training forward's private copies of its inputs, made by the
 * threads of its region instead of by the caller before it: in parallel, while the
 * sources are being read for packing anyway). */
typedef struct {
    const void *w;
    void *dst;
    int K, which;
    size_t bytes;       /* FG_PACK_COPY only */
} fg_pack_job;
#define FG_PACK_JOBS 6

/* Instruction-set levels, in increasing order. */
enum fg_isa { FG_ISA_GENERIC = 0, FG_ISA_AVX2 = 1, FG_ISA_AVX512 = 2, FG_ISA_COUNT = 3 };

typedef struct {
    int cell, T, B, H;
    int n_threads;
    const void *P;      /* packed w_hh from fg_pack_forward_* (same cell and level)            */
    void *pre;          /* IN  (T, B, G*H): x_t w_ih^T + biases (lbr: without b_hn)            */
                        /* OUT the post-activation gates (rnn: pre is hout itself)             */
    const void *h0;     /* IN  (B, H) state before step 0                                      */
    void *hout;         /* OUT (T, B, H) h_t                                                   */
    const void *c0;     /* IN  (B, H) lstm cell state before step 0                            */
    void *cout;         /* OUT (T, B, H) lstm c_t; or, with c_in_place, cout == c0 is one
                           (B, H) state updated in place (each row stops at its last step)    */
    void *tc;           /* OUT (T, B, H) lstm tanh(c_t), or NULL                               */
    void *extra;        /* OUT gru lbr: h_{t-1} W_hn^T + b_hn; gru rb: r_t * h_{t-1}; (T|1, B, H)  */
    size_t extra_step;  /* nonzero: one extra slice per step (T, B, H); 0: one (B, H) scratch  */
    const void *b_hn;   /* IN  (H,) gru lbr recurrent n-gate bias                              */
    const int *batch;   /* IN  (T,) rows active at each step (packed layout), or NULL: all B   */
    int c_in_place;     /* lstm: c updated in place in cout (== c0), see cout                  */
    int keep;           /* training: pre returns the post-activation gates, extra is kept      */
    /* The input projection, computed by the call when x or tok is given (else pre holds
     * it already): pre = x w_ih^T + bias over the call's rows, or w_ih^T[tok] + bias.    */
    int D;              /* input width                                                         */
    const void *x;      /* IN  (T, B, D) float input, or NULL                                  */
    const long long *tok; /* IN (T, B) token ids, or NULL                                      */
    const void *Pi;     /* packed w_ih (FG_PACK_IH) for x                                      */
    const void *wT;     /* (D, G*H) w_ih^T for tok; or, with wT_direct, w_ih itself (G*H, D)   */
    int wT_direct;      /* tok with few rows: columns of w_ih are read as they are (no transpose) */
    const void *bias;   /* (G*H,) b_ih + b_hh (gru lbr: gate n without b_hn; LayerNorm: b_ih) */
    /* LSTM variants (zero / NULL: the plain LSTM).  Projection, proj = P in (0, H):
     * m_t = o_t * tanh(c_t), h_t = m_t w_hr^T; h0, hout and the recurrent product are then
     * P wide ((B, P), (T, B, P); P packs w_hh (G*H, P)), c stays (B, H).  Peepholes:
     * i, f read peep[0|1] * c_{t-1}, o reads peep[2] * c_t.                               */
    int proj;           /* P, or 0: no projection                                              */
    const void *Pr;     /* w_hr packed FG_PACK_HR                                              */
    void *m;            /* OUT (T|1, B, H) m_t (proj)                                          */
    size_t m_step;      /* nonzero: one m slice per step (T, B, H); 0: one (B, H) scratch      */
    const void *peep;   /* IN  (3, H) peepholes, rows i, f, o, or NULL                         */
    /* The LayerNorm cells (FG_LNLSTM, FG_LNGRU; see src_c/layernorm.h).  The projection
     * leaves x w_ih^T without biases in pre (or pre holds it); each step normalises its
     * rows and adds ln_ih * xhat + bias; the recurrent side adds b_rec after its LN.  With
     * extra_step = 0, hn is one (B, G*H) scratch (inference: xn, cn, rstd NULL).         */
    const void *ln_ih;  /* IN  (G*H,) gamma_ih                                             */
    const void *ln_hh;  /* IN  (G*H,) gamma_hh                                             */
    const void *ln_c;   /* IN  (H,) lnlstm gamma_c                                         */
    const void *ln_cb;  /* IN  (H,) lnlstm beta_c                                          */
    const void *b_rec;  /* IN  (G*H,) b_hh                                                 */
    void *xn;           /* OUT (T, B, G*H) xhat = LN(x_t w_ih^T), or NULL                      */
    void *hn;           /* OUT (T, B, G*H) hhat = LN(h_{t-1} w_hh^T), or (B, G*H) scratch      */
    void *cn;           /* OUT (T, B, H) lnlstm chat = LN(c_t), or (B, H) scratch              */
    void *rstd;         /* OUT (T, B, 3) 1/sqrt(var + eps) of the rows x, h, c, or NULL        */
    void *part;         /* scratch (3, B, H, 2): block partials of the shared rows             */
    fg_pack_job pack[FG_PACK_JOBS];   /* P, Pi, Pr packed on entry (w = NULL: given packed),
                                         then copies (FG_PACK_COPY)                          */
    fg_pack_job post;   /* FG_PACK_COPY after the last step (the training forward's y), or w NULL */
} fg_forward_args;

typedef struct {
    int cell, T, B, H;
    int n_threads;
    const void *P;      /* packed w_hh from fg_pack_backward_*                                 */
    const void *gates;  /* IN  (T, B, G*H) post-activations (NULL for rnn)                     */
    const void *hs;     /* IN  (T+1, B, H) hs[0] = h0                                          */
    const void *cs;     /* IN  (T+1, B, H) lstm cell states                                    */
    const void *tc;     /* IN  (T, B, H) lstm tanh(c_t)                                        */
    const void *extra;  /* IN  (T, B, H) gru: as in fg_forward_args                            */
    const void *dy;     /* IN  (T, B, H) or NULL                                               */
    void *dG;           /* OUT (T, B, G*H) gradient of the recurrent pre-activations           */
    void *dnx;          /* OUT (T, B, H) gru lbr: gradient of the input-side n pre-activation  */
    void *dh;           /* IN  (B, H) dL/dh_T (zeros if none); OUT dL/dh_0                     */
    void *dc;           /* IN  (B, H) lstm dL/dc_T;            OUT dL/dc_0                     */
    void *db;           /* OUT (G*H,) sum of dG over every (step, row) = db_hh                 */
    void *dbn;          /* OUT (H,) gru lbr: sum of dnx (the input-side n bias gradient)       */
    const int *batch;   /* IN  (T,) rows active at each step (packed layout), or NULL: all B   */
    /* LSTM variants (see fg_forward_args).  With proj = P: hs, dy and dh are P wide, P packs
     * w_hh (G*H, P); each step takes dm_t = (dh_t + dy_t) w_hr into the gate gradients and
     * keeps dh_t + dy_t in dhs (the caller forms dW_hr = dhs^T m after the loop).         */
    int proj;           /* P, or 0                                                             */
    const void *Pr;     /* w_hr packed FG_PACK_HR_BWD                                          */
    void *dhs;          /* OUT (T, B, P) dL/dh_t (proj)                                        */
    void *dm;           /* scratch (B, H) (proj)                                               */
    const void *peep;   /* IN  (3, H) peepholes, or NULL                                       */
    void *dpeep;        /* OUT (3, H) their gradient, summed like db (peep)                    */
    /* The LayerNorm cells (see fg_forward_args).  dG is then dL/d(h_{t-1} w_hh^T), before
     * the LN, and db = db_hh; dax leaves as dL/d(x_t w_ih^T), before the input LN.         */
    const void *ln_ih;  /* IN  (G*H,) gamma_ih                                             */
    const void *ln_hh;  /* IN  (G*H,) gamma_hh                                             */
    const void *ln_c;   /* IN  (H,) lnlstm gamma_c                                         */
    const void *xn;     /* IN  (T, B, G*H) as kept by the forward pass                         */
    const void *hn;     /* IN  (T, B, G*H)                                                     */
    const void *cn;     /* IN  (T, B, H) lnlstm                                                */
    const void *rstd;   /* IN  (T, B, 3)                                                       */
    void *dax;          /* OUT (T, B, G*H) dL/d(x_t w_ih^T)                                    */
    void *db_ih;        /* OUT (G*H,) lngru (lnlstm: db_ih = db)                               */
    void *dln_ih;       /* OUT (G*H,) dL/dgamma_ih                                             */
    void *dln_hh;       /* OUT (G*H,) dL/dgamma_hh                                             */
    void *dln_c;        /* OUT (H,) lnlstm dL/dgamma_c                                         */
    void *dln_cb;       /* OUT (H,) lnlstm dL/dbeta_c                                          */
    void *part;         /* scratch (3, B, H, 2)                                                */
    /* dx inside the loop (Pix not NULL; not the LayerNorm cells): each step's dx_t = dG_t
     * w_ih (gru lbr: with dnx_t in the n gate's columns) while dG_t is in cache, instead of
     * one product over every row after the loop.                                           */
    int D;
    const void *Pix;    /* w_ih (G*H, D) packed FG_PACK_BWD (K = D), or NULL                   */
    void *dx;           /* OUT (T, B, D) with Pix (packed rows when ragged, like dG)            */
    fg_pack_job pack[FG_PACK_JOBS];   /* P, Pr, Pix packed on entry (w = NULL: given packed) */
    /* Products after the loop in the same region (npost > 0): a barrier (they read every
     * row of dG), then each thread runs post(post_ctx, i) for the next free item i until
     * *post_next (zeroed by the caller) passes npost -- the BLAS products of the weight
     * gradients, without the start and end of a region of their own. */
    void (*post)(const void *ctx, int item);
    const void *post_ctx;
    int npost;
    int *post_next;
} fg_backward_args;

/* One time step of B rows through L stacked layers (a unidirectional stack, inference):
 * layer k's input is x (or the token ids tok: rows of wT) for k = 0, else layer k-1's new
 * h.  Layer k: pre = input w_ih^T + bias, then one step of the forward loop from state
 * (h0[k], c0[k]) to (h1[k], c1[k]).  Every thread owns the same unit blocks in every
 * layer.  h1 may not alias h0; c1 may equal c0 (updated in place).  The same arithmetic
 * as fg_forward_* on the same rows: T calls equal one call over T steps, bit for bit. */
typedef struct {
    int cell, L, B, H;
    int n_threads;
    const int *d_in;            /* [L] input width of each layer                            */
    const void *const *P;       /* [L] packed w_hh (FG_PACK_HH)                             */
    const void *const *Pi;      /* [L] packed w_ih (FG_PACK_IH); entry 0 unused with tok    */
    const void *wT;             /* (V, G*H) layer 0's w_ih^T for token ids, or NULL         */
    const void *const *bias;    /* [L] (G*H,) b_ih + b_hh (gru lbr: gate n without b_hn)    */
    const void *const *b_hn;    /* [L] (H,) gru lbr, else NULL entries                      */
    const void *x;              /* IN  (B, d_in[0]) or NULL                                 */
    const long long *tok;       /* IN  (B,) token ids in [0, V), or NULL                    */
    const void *h0;             /* IN  (L, B, H)                                            */
    void *h1;                   /* OUT (L, B, H)                                            */
    const void *c0;             /* IN  (L, B, H) lstm                                       */
    void *c1;                   /* OUT (L, B, H) lstm                                       */
    void *pre;                  /* scratch (B, G*H)                                         */
    void *extra;                /* scratch (B, H)                                           */
    /* LSTM variants (see fg_forward_args): with proj = P, h0 and h1 are (L, B, P) and layer
     * k > 0 reads P inputs; Pr / peep: [L] entries, or NULL arrays.                        */
    int proj;
    const void *const *Pr;      /* [L] w_hr packed FG_PACK_HR                               */
    const void *const *peep;    /* [L] (3, H) or NULL                                       */
    void *m;                    /* scratch (B, H) (proj)                                    */
} fg_step_args;

void fg_step_f32(const fg_step_args *a);
void fg_step_f64(const fg_step_args *a);

/* Token-by-token generation for one sequence (B = 1) through L stacked layers.
 * Step s feeds token tok_s: layer k computes pre = bias_k + input (row tok_s of w_ih[0]^T,
 * or w_ih[k] x with x = emb[tok_s] / the new h of layer k-1), then one step of the
 * forward kernel with the packed w_hh[k]; afterwards thread 0 calls next(ctx, s, h_top),
 * which returns tok_{s+1}, or -1 to stop.  Every thread owns the same unit blocks in
 * every layer, so each keeps its share of the packed weights in its own cache.
 * Results are bit-identical for every thread count. */
typedef long long (*fg_next_token)(void *ctx, int step, const void *h_top);

typedef struct {
    int cell, L, H;
    int n_threads;
    int max_steps;              /* upper bound on the steps; next() normally stops earlier */
    long long first;            /* tok_0                                                    */
    const int *d_in;            /* [L] input width of each layer                            */
    const void *const *P;       /* [L] packed w_hh (fg_pack_forward_*)                      */
    const void *const *w_ih;    /* [L] (G*H, d_in[k]); one-hot input: layer 0 holds w_ih^T
                                   (V, G*H) instead, so a token reads one contiguous row    */
    const void *const *bias;    /* [L] (G*H,) b_ih + b_hh (gru lbr: gate n without b_hn)    */
    const void *const *b_hn;    /* [L] (H,) gru lbr, else NULL entries                      */
    const void *emb;            /* (V, d_in[0]) embedding, or NULL: one-hot token input     */
    void *h;                    /* IN/OUT (2, L, H): buffer 0 = initial state; after s steps
                                   the state is in buffer s % 2                             */
    void *c;                    /* IN/OUT (L, H) lstm cell state                            */
    void *pre;                  /* scratch (L, G*H)                                         */
    void *extra;                /* scratch (L, H)                                           */
    fg_next_token next;
    void *ctx;
    long long *slot;            /* shared cell through which thread 0 hands out tok_{s+1}   */
    /* LSTM variants (see fg_forward_args): with proj = P, h is (2, L, P), next() gets P
     * values and layer k > 0 reads P inputs; Pr / peep: [L] entries, or NULL arrays.       */
    int proj;
    const void *const *Pr;      /* [L] w_hr packed FG_PACK_HR                               */
    const void *const *peep;    /* [L] (3, H) or NULL                                       */
    void *m;                    /* scratch (H,) (proj)                                      */
    /* The LayerNorm cells (see fg_forward_args): bias[k] is b_ih, added after the LN of
     * the input projection; per layer [L] the gains and b_hh; NULL entries otherwise.     */
    const void *const *ln_ih;   /* [L] (G*H,)                                               */
    const void *const *ln_hh;   /* [L] (G*H,)                                               */
    const void *const *ln_c;    /* [L] (H,) lnlstm                                          */
    const void *const *ln_cb;   /* [L] (H,) lnlstm                                          */
    const void *const *b_rec;   /* [L] (G*H,) b_hh                                          */
    void *hn;                   /* scratch (G*H)                                            */
    void *part;                 /* scratch (3, H, 2)                                        */
} fg_generate_args;

void fg_generate_f32(const fg_generate_args *a);
void fg_generate_f64(const fg_generate_args *a);

/* C = A^T B for row-major A [K, lda] (M columns used), B [K, ldb] (N columns), C [M, ldc]
 * (trans: C^T stored, [N, ldc]): the weight-gradient products dW = dG^T [inputs] with the
 * kernels' tiles.  With M2 > 0 also C2 = A2^T B' from the same pass over B (A2 [K, lda2],
 * M2 columns; C2 [M2, ldc2], trans: [N, ldc2]), where B' = B, or with B2 set: B's columns
 * j < N1 and B2's columns j - N1 from N1 on (B2 [K, ldb2]; the GRU lbr's input side, whose
 * n-gate gradient dnx is not the recurrent side's).  Pointers are to elements of the
 * call's type (float for _f32, double for _f64).  Bit-identical for every thread count.
 * Returns 0, or -1 when scratch memory is short (nothing was written). */
typedef struct {
    int M, N, K, trans;
    const void *A, *B;
    size_t lda, ldb;
    void *C;
    size_t ldc;
    int M2;
    const void *A2;
    size_t lda2;
    void *C2;
    size_t ldc2;
    const void *B2;     /* NULL: C2 = A2^T B */
    size_t ldb2;
    int N1;
} fg_gemm_tn_args;
int fg_gemm_tn_f32(int n_threads, const fg_gemm_tn_args *a);
int fg_gemm_tn_f64(int n_threads, const fg_gemm_tn_args *a);

/* Elements of a packed (G*H, K) weight of `cell` (which: enum fg_pack; K = H for w_hh, D
 * for w_ih; K = P for the w_hh (G*H, P) of a projected LSTM), or of the projection w_hr
 * (K = P rows, H columns: FG_PACK_HR, FG_PACK_HR_BWD), in the layout of the active level:
 * packed weights are valid only for the level that packed them. */
size_t fg_packed_size(int cell, int H, int K, int which, int f64);
void fg_pack_f32(int cell, const float *w, int H, int K, int which, float *P, int n_threads);
void fg_pack_f64(int cell, const double *w, int H, int K, int which, double *P, int n_threads);

void fg_forward_f32(const fg_forward_args *a);
void fg_forward_f64(const fg_forward_args *a);
void fg_backward_f32(const fg_backward_args *a);
void fg_backward_f64(const fg_backward_args *a);

/* out[i] = sigmoid(x[i]) (kind 0), tanh(x[i]) (kind 1), with the kernels' vector code. */
void fg_activation_f32(int kind, size_t n, const float *x, float *out);
void fg_activation_f64(int kind, size_t n, const double *x, double *out);
/* out[v] = b[v] + sum_k w[v, k] x[k] for v < n, w (n, K) row-major (one thread). */
void fg_dense_f32(int n, int K, const float *w, const float *x, const float *b, float *out);
void fg_dense_f64(int n, int K, const double *w, const double *x, const double *b,
                  double *out);

/* Instruction-set dispatch.  fg_isa_compiled / fg_isa_supported: bit masks (1 << level)
 * of the levels this build contains / this CPU and OS can run.  fg_isa_select(level)
 * makes the best level <= `level` that both allow the active one (call it before any
 * kernel runs, from one thread) and returns it; fg_isa_active() is the level in use. */
int fg_isa_compiled(void);
int fg_isa_supported(void);
int fg_isa_select(int level);
int fg_isa_active(void);
const char *fg_isa_name(int level);

/* The FMA peak of the active level: n_threads threads each run `iters` rounds of
 * independent vector FMAs; returns the flops, *seconds the wall time (0 without OpenMP:
 * the caller then times the call itself).  For the benchmark report. */
double fg_fma_peak(int f64, int n_threads, long iters, double *seconds);

/* OpenMP: the maximum thread count (1 without OpenMP) and whether OpenMP is compiled in. */
int fg_max_threads(void);
int fg_have_openmp(void);

#endif
