/* Register-tiled products: the recurrent product of every step, dh = dG W_hh in BPTT
 * and the weight-gradient product dW_hh^T = [h_{t-1}]^T dG.
 *
 * Included by kernels.h after isa.h (FG_T, FG_V, FG_VL, FG_NREG, FG_FN defined).
 *
 * tile:  C[r][v*VL + l] = sum_{k<K} A[r*lda + k] * P[k*pk + v*pv + l]     r < mr, v < nv
 *   A  [mr, K]  rows of the left operand (row stride lda), read one element at a time
 *   P  K rows of nv vectors (k stride pk, vector stride pv): a packed panel
 *   C  [mr, nv*VL] scratch, overwritten
 * optionally after a first segment X Q of KX terms (X [mr, KX], row stride ldx; Q KX rows,
 * k stride qk, vector stride pv) summed in order into the same accumulators: the LSTM's
 * input projection x_t W_ih^T fused into its recurrent product (loop.h's fuses_x).
 * The mr*nv accumulators stay in registers for the whole k loop, beside a panel row
 * or the mr broadcasts (FG_TILE_TERM's register plans: 6 x 4 tiles with AVX-512's 32
 * registers, 3 x 4 with 16).  Few
 * accumulators cannot hide the FMA latency, so with small tiles the k sum is split
 * into S interleaved partial sums (S*mr*nv independent chains), added pairwise at the
 * end.  S depends only on (mr, nv): every element is summed in the same order for any
 * thread count, which keeps the results bit-identical across thread counts.
 */

#define FG_MRMAX 8
#define FG_NVMAX 4

/* Rows per tile for nv vectors per row: the accumulators and one of FG_TILE_TERM's
 * register plans fit the register file. */
FG_AI int FG_FN(mr_for)(int nv)
{
#if FG_NREG >= 32
    return nv >= 4 ? 6 : 8;
#else
    return nv >= 4 ? 3 : nv == 3 ? 4 : nv == 2 ? 6 : 8;
#endif
}

/* One term of a tile's sum into partial sum s: acc[s][r][v] += Ak[r*lda] * Pk[v*pv] (Ak: A's
 * column k, Pk: the panel's row k), in one of two register plans, whichever fits beside
 * the S*mr*nv accumulators (S: tile()'s partial sums): the panel row in nv registers and
 * one broadcast at a time (every tile with 32 registers; with 16 the 4 x 3, 6 x 2 and 8 x 1
 * tiles), or the mr broadcasts in registers and each panel vector used at once (the 3 x 4
 * tile with 16: 12 + 3 + 1).  A plan that does not fit spills an accumulator, and its FMA
 * chain then runs through memory every k (GCC 12, AVX2: the 4 x 3 GRU tile took twice its
 * time).  S, mr and nv are constants in every specialised tile, so the choice folds away;
 * both plans add the same products in the same order. */
#define FG_TILE_BCAST_FITS(S, mr, nv) (FG_NREG < 32 && (S) * (mr) * (nv) + (mr) + 1 <= FG_NREG)
#define FG_TILE_TERM(s, Ak, lda, Pk)                                                        \
    do {                                                                                    \
        if (FG_TILE_BCAST_FITS(S, mr, nv)) {                                                \
            FG_V a_[FG_MRMAX];                                                              \
            for (int r = 0; r < mr; r++)                                                    \
                a_[r] = FG_SPLAT((Ak)[(size_t)r * (lda)]);                                  \
            for (int v = 0; v < nv; v++) {                                                  \
                const FG_V p_ = FG_FN(ld)((Pk) + (size_t)v * pv);                           \
                for (int r = 0; r < mr; r++)                                                \
                    acc[s][r][v] += a_[r] * p_;                                             \
            }                                                                               \
        } else {                                                                            \
            FG_V p_[FG_NVMAX];                                                              \
            for (int v = 0; v < nv; v++)                                                    \
                p_[v] = FG_FN(ld)((Pk) + (size_t)v * pv);                                   \
            for (int r = 0; r < mr; r++) {                                                  \
                const FG_V a_ = FG_SPLAT((Ak)[(size_t)r * (lda)]);                          \
                for (int v = 0; v < nv; v++)                                                \
                    acc[s][r][v] += a_ * p_[v];                                             \
            }                                                                               \
        }                                                                                   \
    } while (0)

FG_AI void FG_FN(tile)(const int mr, const int nv, const int one, const FG_T *X, size_t ldx,
                       const FG_T *Q, size_t qk, int KX, const FG_T *A, size_t lda,
                       const FG_T *P, size_t pk, size_t pv, int K, FG_T *C)
{
    enum { SM = 4 };
    const int S = one || mr * nv >= 8 ? 1 : mr * nv >= 4 ? 2 : 4;
    FG_V acc[SM][FG_MRMAX][FG_NVMAX];
    for (int s = 0; s < S; s++)
        for (int r = 0; r < mr; r++)
            for (int v = 0; v < nv; v++)
                acc[s][r][v] = (FG_V){0};
    /* the first segment (the fused input projection): X [mr, KX] times Q, in order, into
     * the first partial sum */
    for (int k = 0; k < KX; k++)
        FG_TILE_TERM(0, X + k, ldx, Q + (size_t)k * qk);
    int k = 0;
    for (; k + S <= K; k += S)
        for (int s = 0; s < S; s++)
            FG_TILE_TERM(s, A + k + s, lda, P + (size_t)(k + s) * pk);
    for (; k < K; k++)     /* the last K % S terms go to the first partial sum */
        FG_TILE_TERM(0, A + k, lda, P + (size_t)k * pk);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            FG_V c = acc[0][r][v];
            if (S == 4)
                c = (c + acc[1][r][v]) + (acc[2][r][v] + acc[3][r][v]);
            else if (S == 2)
                c += acc[1][r][v];
            FG_FN(st)(C + (size_t)r * nv * FG_VL + (size_t)v * FG_VL, c);
        }
}
#undef FG_TILE_TERM
#undef FG_TILE_BCAST_FITS

/* tile() for a run-time mr (1..mr_for(NV)) and a compile-time NV: each (mr, nv) pair is
 * its own fully unrolled kernel; ONE = 1 never splits the k sum (see FG_FN(project)).  SEG
 * names the first segment's parameters, the arguments that pass them on (FWD) and those tile()
 * takes (ARGS): FG_NOX (none) or FG_X (X, Q, KX). */
#define FG_NOX_PARAMS
#define FG_NOX_FWD
#define FG_NOX_ARGS NULL, 0, NULL, 0, 0,
#define FG_X_PARAMS const FG_T *X, size_t ldx, const FG_T *Q, size_t qk, int KX,
#define FG_X_FWD X, ldx, Q, qk, KX,
#define FG_X_ARGS FG_X_FWD
#define FG_TILE_MR(MR, NV, ONE, SEG)                                                        \
    if ((MR) <= FG_FN(mr_for)(NV))                                                          \
        FG_FN(tile)(MR, NV, ONE, SEG##_ARGS A, lda, P, pk, pv, K, C)
#define FG_TILES(NAME, NV, ONE, SEG)                                                        \
static void FG_FN(NAME##NV)(int mr, SEG##_PARAMS const FG_T *A, size_t lda, const FG_T *P,  \
                            size_t pk, size_t pv, int K, FG_T *C)                           \
{                                                                                           \
    switch (mr) {                                                                           \
    case 1: FG_TILE_MR(1, NV, ONE, SEG); break;                                             \
    case 2: FG_TILE_MR(2, NV, ONE, SEG); break;                                             \
    case 3: FG_TILE_MR(3, NV, ONE, SEG); break;                                             \
    case 4: FG_TILE_MR(4, NV, ONE, SEG); break;                                             \
    case 5: FG_TILE_MR(5, NV, ONE, SEG); break;                                             \
    case 6: FG_TILE_MR(6, NV, ONE, SEG); break;                                             \
    case 7: FG_TILE_MR(7, NV, ONE, SEG); break;                                             \
    default: FG_TILE_MR(8, NV, ONE, SEG); break;                                            \
    }                                                                                       \
}
#define FG_TILES_NV(NAME, ONE, SEG)                                                         \
    FG_TILES(NAME, 1, ONE, SEG) FG_TILES(NAME, 2, ONE, SEG)                                 \
    FG_TILES(NAME, 3, ONE, SEG) FG_TILES(NAME, 4, ONE, SEG)
FG_TILES_NV(tile_nv, 0, FG_NOX)
FG_TILES_NV(tile1_nv, 1, FG_NOX)
FG_TILES_NV(tilex_nv, 0, FG_X)
#undef FG_TILES_NV
#undef FG_TILES
#undef FG_TILE_MR

/* C = tile product of mr <= mr_for(nv) rows with nv (1..4) vectors per row; tiles1: the
 * same with the k sum never split (one summation order for any number of rows); tilesx:
 * after the KX terms of X Q (the fused input projection). */
#define FG_TILES_OF(NAME, KERNEL, SEG)                                                      \
static inline void FG_FN(NAME)(int nv, int mr, SEG##_PARAMS const FG_T *A, size_t lda,      \
                               const FG_T *P, size_t pk, size_t pv, int K, FG_T *C)         \
{                                                                                           \
    switch (nv) {                                                                           \
    case 1: FG_FN(KERNEL##1)(mr, SEG##_FWD A, lda, P, pk, pv, K, C); break;                 \
    case 2: FG_FN(KERNEL##2)(mr, SEG##_FWD A, lda, P, pk, pv, K, C); break;                 \
    case 3: FG_FN(KERNEL##3)(mr, SEG##_FWD A, lda, P, pk, pv, K, C); break;                 \
    default: FG_FN(KERNEL##4)(mr, SEG##_FWD A, lda, P, pk, pv, K, C); break;                \
    }                                                                                       \
}
FG_TILES_OF(tiles, tile_nv, FG_NOX)
FG_TILES_OF(tiles1, tile1_nv, FG_NOX)
FG_TILES_OF(tilesx, tilex_nv, FG_X)
#undef FG_TILES_OF
#undef FG_NOX_PARAMS
#undef FG_NOX_FWD
#undef FG_NOX_ARGS
#undef FG_X_PARAMS
#undef FG_X_FWD
#undef FG_X_ARGS

/* out[r, j0 + i] (+)= C[r][i] for i < n (the valid columns of a tile): the epilogue of
 * the products whose result is a plain row-major array. */
FG_AI void FG_FN(tile_out)(int mr, int nv, const FG_T *C, FG_T *out, size_t ldo, int n, int beta)
{
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv && v * FG_VL < n; v++) {
            const int m = n - v * FG_VL < FG_VL ? n - v * FG_VL : FG_VL;
            FG_T *o = out + (size_t)r * ldo + (size_t)v * FG_VL;
            FG_V c = FG_FN(ld)(C + (size_t)r * nv * FG_VL + (size_t)v * FG_VL);
            FG_FN(stn)(o, m, beta ? FG_FN(ldn)(o, m) + c : c);
        }
}

/* out[c*ldo + r] (+)= C[r][c] for r < mr, c < n: the epilogue of a product whose result
 * is wanted transposed (a few scalar stores per column, next to K*mr*nv FMAs). */
FG_AI void FG_FN(tile_out_t)(int mr, int nv, const FG_T *C, FG_T *out, size_t ldo, int n, int beta)
{
    for (int c = 0; c < n; c++)
        for (int r = 0; r < mr; r++) {
            const FG_T v = C[(size_t)r * nv * FG_VL + c];
            out[(size_t)c * ldo + r] = beta ? out[(size_t)c * ldo + r] + v : v;
        }
}

/* r[i][l] <- r[l][i]: a VL x VL transpose in registers, by log2(VL) rounds of two-input
 * shuffles (round s swaps the off-diagonal s x s blocks of every 2s x 2s block). */
#if !defined(__clang__)
FG_AI void FG_FN(transpose_tile)(FG_V r[FG_VL])
{
    /* the shuffle indices of round s = VL >> (q + 1): lo[l] = l & s ? VL + l - s : l,
     * hi[l] = l & s ? VL + l : l + s (lanes past VL unused) */
#define FG_LO(s, l) (((l) & (s)) ? FG_VL + (l) - (s) : (l))
#define FG_HI(s, l) (((l) & (s)) ? FG_VL + (l) : (l) + (s))
#define FG_ROW(F, s) {F(s, 0), F(s, 1), F(s, 2), F(s, 3), F(s, 4), F(s, 5), F(s, 6), F(s, 7),  \
                      F(s, 8), F(s, 9), F(s, 10), F(s, 11), F(s, 12), F(s, 13), F(s, 14), F(s, 15)}
#define FG_TAB(F) {FG_ROW(F, FG_VL >> 1), FG_ROW(F, FG_VL >> 2), FG_ROW(F, FG_VL >> 3),      \
                   FG_ROW(F, FG_VL >> 4)}
    typedef __typeof__(((FG_VI){0})[0]) lane_t;
    static const lane_t lo_tab[4][16] = FG_TAB(FG_LO), hi_tab[4][16] = FG_TAB(FG_HI);
#undef FG_TAB
#undef FG_ROW
#undef FG_HI
#undef FG_LO
#pragma GCC unroll 4
    for (int q = 0, s = FG_VL / 2; s >= 1; q++, s /= 2) {
        FG_VI lo, hi;
        memcpy(&lo, lo_tab[q], sizeof lo);
        memcpy(&hi, hi_tab[q], sizeof hi);
#pragma GCC unroll 16
        for (int i = 0; i < FG_VL; i++)
            if (!(i & s) && i + s < FG_VL) {
                const FG_V a = r[i], b = r[i + s];
                r[i] = __builtin_shuffle(a, b, lo);
                r[i + s] = __builtin_shuffle(a, b, hi);
            }
    }
}
#endif

#if FG_VBYTES == 64 && FG_IS_F32
/* One cross-lane round: dst[a + j] = the even 128-bit lanes of src[a + j] and src[b + j],
 * dst[b + j] = their odd lanes (j < 4). */
FG_AI void FG_FN(lanes_pair)(__m512 *dst, const __m512 *src, int a, int b)
{
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        dst[a + j] = _mm512_shuffle_f32x4(src[a + j], src[b + j], 0x88);
        dst[b + j] = _mm512_shuffle_f32x4(src[a + j], src[b + j], 0xdd);
    }
}

/* AVX-512 float: a 16 x 16 transpose in 64 in-register shuffles, four rounds: within
 * 128-bit lanes (unpack, then shuffle_ps: r[4i+j] lane L = column 4L+j of rows 4i..4i+3),
 * then across lanes twice (shuffle_f32x4).  The generic transpose_tile compiles to
 * two-input permutes through the stack here: 15 % of the tiny RNN's training-step
 * profile, and tiny training steps 1-2 % faster with this one.  (AVX2's 8 x 8 written
 * the same way measured no gain on Zen 4: it keeps the generic tile.) */
FG_AI void FG_FN(transpose16)(__m512 r[16])
{
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    FG_FN(lanes_pair)(t, r, 0, 4);
    FG_FN(lanes_pair)(t, r, 8, 12);
    FG_FN(lanes_pair)(r, t, 0, 8);
    FG_FN(lanes_pair)(r, t, 4, 12);
}
#endif

/* dst[k*ldd + r] = rows[r][k] for r < rn <= VL, k < K: one band of up to VL rows, each
 * from its own pointer (the compact tail block of a pack gathers its rows from every
 * gate), in VL x VL tiles transposed in registers: whole-vector loads and stores. */
static void FG_FN(transpose_rows)(FG_T *dst, size_t ldd, const FG_T *const *rows, int rn, int K)
{
#if FG_VBYTES == 64 && FG_IS_F32
    const __mmask16 rmask = (__mmask16)((1u << rn) - 1);
    for (int k0 = 0; k0 < K; k0 += 16) {
        const int kn = K - k0 < 16 ? K - k0 : 16;
        const __mmask16 kmask = (__mmask16)((1u << kn) - 1);
        __m512 t[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            /* rows past rn: an all-off mask (and a row that exists) */
            t[i] = _mm512_maskz_loadu_ps(i < rn ? kmask : 0, rows[i < rn ? i : 0] + k0);
        FG_FN(transpose16)(t);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            if (i < kn)
                _mm512_mask_storeu_ps(dst + (size_t)(k0 + i) * ldd, rmask, t[i]);
    }
#elif FG_VBYTES == 32 && FG_IS_F32 && !defined(__clang__)
    /* whole 8 x 8 tiles: rows r and r + 4 paired in one register by a 128-bit load and an
     * insert from memory, then two rounds within 128-bit lanes (unpack, shuffle_ps): 16
     * shuffles, no spills.  The generic tile (loads through the stack, then cross-lane
     * permutes) took 40 % of a T = 1 LSTM call here (Zen 3); tails take the generic tile. */
    FG_V t[FG_VL];
    for (int k0 = 0; k0 < K; k0 += FG_VL) {
        const int kn = K - k0 < FG_VL ? K - k0 : FG_VL;
        if (rn == 8 && kn == 8) {
            __m256 q[8];
#pragma GCC unroll 4
            for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++)     /* q[4h + i] = rows i, i + 4 at k0 + 4h */
                    q[4 * h + i] = _mm256_insertf128_ps(
                        _mm256_castps128_ps256(_mm_loadu_ps(rows[i] + k0 + 4 * h)),
                        _mm_loadu_ps(rows[i + 4] + k0 + 4 * h), 1);
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256 u0 = _mm256_unpacklo_ps(q[4 * h], q[4 * h + 1]);
                const __m256 u1 = _mm256_unpackhi_ps(q[4 * h], q[4 * h + 1]);
                const __m256 u2 = _mm256_unpacklo_ps(q[4 * h + 2], q[4 * h + 3]);
                const __m256 u3 = _mm256_unpackhi_ps(q[4 * h + 2], q[4 * h + 3]);
                FG_T *d = dst + (size_t)(k0 + 4 * h) * ldd;
                _mm256_storeu_ps(d, _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(1, 0, 1, 0)));
                _mm256_storeu_ps(d + ldd, _mm256_shuffle_ps(u0, u2, _MM_SHUFFLE(3, 2, 3, 2)));
                _mm256_storeu_ps(d + 2 * ldd, _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(1, 0, 1, 0)));
                _mm256_storeu_ps(d + 3 * ldd, _mm256_shuffle_ps(u1, u3, _MM_SHUFFLE(3, 2, 3, 2)));
            }
            continue;
        }
        for (int i = 0; i < FG_VL; i++)
            t[i] = i < rn ? FG_FN(ldn)(rows[i] + k0, kn) : (FG_V){0};
        FG_FN(transpose_tile)(t);
        for (int i = 0; i < kn; i++)
            FG_FN(stn)(dst + (size_t)(k0 + i) * ldd, rn, t[i]);
    }
#elif defined(__clang__)   /* no two-input shuffle with computed indices: blocks of scalars */
    for (int k0 = 0; k0 < K; k0 += FG_VL) {
        const int kn = K - k0 < FG_VL ? K - k0 : FG_VL;
        for (int r = 0; r < rn; r++)
            for (int kk = 0; kk < kn; kk++)
                dst[(size_t)(k0 + kk) * ldd + r] = rows[r][k0 + kk];
    }
#else
    FG_V t[FG_VL];
    for (int k0 = 0; k0 < K; k0 += FG_VL) {
        const int kn = K - k0 < FG_VL ? K - k0 : FG_VL;
        for (int i = 0; i < FG_VL; i++)
            t[i] = i < rn ? FG_FN(ldn)(rows[i] + k0, kn) : (FG_V){0};
        FG_FN(transpose_tile)(t);
        for (int i = 0; i < kn; i++)
            FG_FN(stn)(dst + (size_t)(k0 + i) * ldd, rn, t[i]);
    }
#endif
}

/* dst[k*ldd + r] = src[r*lds + k] for r < n, k < K (the packing's transposing copy): bands
 * of VL rows through transpose_rows. */
static void FG_FN(transpose_into)(FG_T *dst, size_t ldd, const FG_T *src, size_t lds, int n, int K)
{
    const FG_T *rows[FG_VL];
    for (int r0 = 0; r0 < n; r0 += FG_VL) {
        const int rn = n - r0 < FG_VL ? n - r0 : FG_VL;
        for (int i = 0; i < rn; i++)
            rows[i] = src + (size_t)(r0 + i) * lds;
        FG_FN(transpose_rows)(dst + r0, ldd, rows, rn, K);
    }
}

/* Pt[r][0 .. nv*VL) <- columns [j0, j0 + n) of rows k0 + r (r < kc) of B, or from column N1
 * on of B2 (its column j - N1), zero past n: a packed panel of gemm_tn (B2 NULL: all B). */
FG_AI void FG_FN(pack_panel)(FG_T *Pt, int nv, int j0, int n, int k0, int kc, const FG_T *B,
                             size_t ldb, const FG_T *B2, size_t ldb2, int N1)
{
    const int nb = !B2 || N1 >= j0 + n ? n : N1 > j0 ? N1 - j0 : 0;   /* columns from B */
    for (int r = 0; r < kc; r++) {
        FG_T *dst = Pt + (size_t)r * nv * FG_VL;
        if (nb > 0)
            memcpy(dst, B + (size_t)(k0 + r) * ldb + j0, (size_t)nb * sizeof(FG_T));
        if (nb < n)
            memcpy(dst + nb, B2 + (size_t)(k0 + r) * ldb2 + (j0 + nb - N1),
                   (size_t)(n - nb) * sizeof(FG_T));
        if (n < nv * FG_VL)
            memset(dst + n, 0, (size_t)(nv * FG_VL - n) * sizeof(FG_T));
    }
}

/* C[i, j] = sum_{r<K} A[r, i] B[r, j]   (C = A^T B, overwritten; trans: C^T, i.e. the
 * result is stored as C[j, i] with row stride ldc)
 * A [K, lda] (columns i < M)   B [K, ldb] (columns j < N)   C [M, ldc] (trans: [N, ldc])
 * and with M2 > 0 the same for a second left operand: C2 = A2^T B' (A2 [K, lda2], C2 [M2,
 * ldc2], trans: [N, ldc2]; B' = B, or B2's columns from N1 on: fg_gemm_tn_args)
 * (the input and the recurrent weight gradients from one pass over dG: B is packed once
 * for the M + M2 rows, and B2's columns once more for A2's rows).
 * At scratch [M + M2, K]   Pt this thread's scratch [KC, 4*VL], twice when B2 is read
 * (KC = FG_GEMM_TN_KC, kernels_table.h: dispatch.c allocates the scratch)
 * Phase 1 transposes A and A2 (each thread its rows of At); phase 2 walks the column
 * panels (up to 4 vectors wide) of this thread, packing KC rows of B at a time and
 * running the tiles over all rows (never a tile across the two operands); chunks after
 * the first add to C.  Threads own column panels and each element is summed in one
 * fixed order: the result does not depend on nth. */
static void FG_FN(gemm_tn_thread)(const fg_gemm_tn_args *g, FG_T *At, FG_T *Pt, int tid, int nth)
{
    const int M = g->M, M2 = g->M2, N = g->N, K = g->K, Mt = M + M2, N1 = g->N1;
    const FG_T *A = (const FG_T *)g->A, *A2 = (const FG_T *)g->A2, *B = (const FG_T *)g->B;
    const FG_T *B2 = M2 && N1 < N ? (const FG_T *)g->B2 : NULL;
    int i0, i1, p0, p1;
    fg_range(Mt, tid, nth, &i0, &i1);
    /* At[i*K + r] = A[r*lda + i] (rows i < M), A2[r*lda2 + i - M] (the rest) */
    if (i0 < M)
        FG_FN(transpose_into)(At + (size_t)i0 * K, (size_t)K, A + i0, g->lda, K,
                              (i1 < M ? i1 : M) - i0);
    if (i1 > M) {
        const int j0 = i0 > M ? i0 : M;
        FG_FN(transpose_into)(At + (size_t)j0 * K, (size_t)K, A2 + (j0 - M), g->lda2, K, i1 - j0);
    }
    FG_BARRIER();
    const int PW = 4 * FG_VL;                      /* panel width */
    const int np = (N + PW - 1) / PW;
    fg_range(np, tid, nth, &p0, &p1);
    FG_T acc[FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    FG_T *Pt2 = Pt + (size_t)FG_GEMM_TN_KC * PW;
    for (int p = p0; p < p1; p++) {
        const int j0 = p * PW, n = N - j0 < PW ? N - j0 : PW;
        const int nv = (n + FG_VL - 1) / FG_VL, mrmax = FG_FN(mr_for)(nv);
        const int mixed = B2 && j0 + n > N1;       /* A2's panel differs from A's */
        /* equal chunks of at most KC rows: no short last chunk of small-K tiles */
        const int nk = (K + FG_GEMM_TN_KC - 1) / FG_GEMM_TN_KC, KCe = (K + nk - 1) / nk;
        for (int k0 = 0; k0 < K; k0 += KCe) {
            const int kc = K - k0 < KCe ? K - k0 : KCe;
            if (M > 0 || !mixed)
                FG_FN(pack_panel)(Pt, nv, j0, n, k0, kc, B, g->ldb, NULL, 0, 0);
            if (mixed)
                FG_FN(pack_panel)(Pt2, nv, j0, n, k0, kc, B, g->ldb, B2, g->ldb2, N1);
            for (int op = 0; op < 2; op++) {
                const int ia = op ? M : 0, ib = op ? Mt : M;     /* rows of At */
                FG_T *Co = op ? (FG_T *)g->C2 : (FG_T *)g->C;
                const FG_T *Pp = op && mixed ? Pt2 : Pt;
                const size_t lc = op ? g->ldc2 : g->ldc;
                for (int i = ia; i < ib; i += mrmax) {
                    const int mr = ib - i < mrmax ? ib - i : mrmax;
                    const size_t io = (size_t)(i - ia);               /* row of Co */
                    FG_FN(tiles)(nv, mr, At + (size_t)i * K + k0, (size_t)K, Pp,
                                 (size_t)nv * FG_VL, FG_VL, kc, acc);
                    if (g->trans)
                        FG_FN(tile_out_t)(mr, nv, acc, Co + (size_t)j0 * lc + io, lc, n, k0 > 0);
                    else
                        FG_FN(tile_out)(mr, nv, acc, Co + io * lc + j0, lc, n, k0 > 0);
                }
            }
        }
    }
}
