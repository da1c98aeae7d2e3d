/* The vector type of one instruction-set level and one element type.
 *
 * Included by kernels.h with FG_T (float | double), FG_IS_F32, FG_FN(name) (name
 * mangling with level and type) and the level's FG_VBYTES (16 generic, 32 avx2, 64
 * avx512) and FG_NREG (vector registers: 16, or 32 with AVX-512) defined.
 *
 * The kernels are written once over FG_V, a GCC vector of FG_VL lanes, and compiled
 * once per level; the compiler emits SSE2, AVX2+FMA or AVX-512 code for the same
 * source.  Partial vectors (the last units of a row when H is not a multiple of the
 * width) go through ldn/stn: AVX-512's masked loads and stores, elsewhere a small
 * copy through the stack.  Nothing here depends on the thread count.
 */

#define FG_VL (FG_VBYTES / (int)sizeof(FG_T))
#if FG_IS_F32
typedef float FG_FN(v) __attribute__((vector_size(FG_VBYTES)));
typedef int FG_FN(vi) __attribute__((vector_size(FG_VBYTES)));
#define FG_SIGNMASK ((FG_VI){0} + (int)0x80000000u)
#else
typedef double FG_FN(v) __attribute__((vector_size(FG_VBYTES)));
typedef long long FG_FN(vi) __attribute__((vector_size(FG_VBYTES)));
#define FG_SIGNMASK ((FG_VI){0} + (long long)0x8000000000000000ull)
#endif
#define FG_V FG_FN(v)
#define FG_VI FG_FN(vi)
#define FG_SPLAT(c) ((FG_T)(c) - (FG_V){0})   /* x - 0 == x for every x: a plain broadcast */
#define FG_AI static inline __attribute__((always_inline))

FG_AI FG_V FG_FN(ld)(const FG_T *p) { FG_V v; memcpy(&v, p, sizeof v); return v; }
FG_AI void FG_FN(st)(FG_T *p, FG_V v) { memcpy(p, &v, sizeof v); }

#if FG_VBYTES == 32
/* AVX2: the lanes of a partial vector by vmaskmov (no fault past the mask), its mask the
 * window [VL - m, 2 VL - m) of VL ones then VL zeros.  The copy through the stack it
 * replaces costs a variable-length memcpy and a store-forwarding stall per tail: the last
 * vector of every row at H = 100. */
FG_AI FG_VI FG_FN(tail_mask)(int m)
{
    static const long long ones[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
    FG_VI k;
    memcpy(&k, (const char *)ones + 32 - (size_t)m * sizeof(FG_T), sizeof k);
    return k;
}
#if FG_IS_F32
FG_AI FG_V FG_FN(vmaskload)(const FG_T *p, FG_VI k)
{
    return (FG_V)_mm256_maskload_ps(p, (__m256i)k);
}
FG_AI void FG_FN(vmaskstore)(FG_T *p, FG_VI k, FG_V v)
{
    _mm256_maskstore_ps(p, (__m256i)k, (__m256)v);
}
#else
FG_AI FG_V FG_FN(vmaskload)(const FG_T *p, FG_VI k)
{
    return (FG_V)_mm256_maskload_pd(p, (__m256i)k);
}
FG_AI void FG_FN(vmaskstore)(FG_T *p, FG_VI k, FG_V v)
{
    _mm256_maskstore_pd(p, (__m256i)k, (__m256d)v);
}
#endif
#endif

/* The first m lanes (0 < m <= VL) of p; the other lanes are zero. */
FG_AI FG_V FG_FN(ldn)(const FG_T *p, int m)
{
    if (m >= FG_VL)
        return FG_FN(ld)(p);
#if FG_VBYTES == 64 && FG_IS_F32
    return (FG_V)_mm512_maskz_loadu_ps((__mmask16)((1u << m) - 1), p);
#elif FG_VBYTES == 64
    return (FG_V)_mm512_maskz_loadu_pd((__mmask8)((1u << m) - 1), p);
#elif FG_VBYTES == 32
    return FG_FN(vmaskload)(p, FG_FN(tail_mask)(m));
#else
    FG_T t[FG_VL] = {0};
    memcpy(t, p, (size_t)m * sizeof(FG_T));
    return FG_FN(ld)(t);
#endif
}

/* Store the first m lanes (0 < m <= VL) of v to p. */
FG_AI void FG_FN(stn)(FG_T *p, int m, FG_V v)
{
    if (m >= FG_VL) {
        FG_FN(st)(p, v);
        return;
    }
#if FG_VBYTES == 64 && FG_IS_F32
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << m) - 1), (__m512)v);
#elif FG_VBYTES == 64
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << m) - 1), (__m512d)v);
#elif FG_VBYTES == 32
    FG_FN(vmaskstore)(p, FG_FN(tail_mask)(m), v);
#else
    FG_T t[FG_VL];
    FG_FN(st)(t, v);
    memcpy(p, t, (size_t)m * sizeof(FG_T));
#endif
}

/* Lanes added in one fixed order (so every thread count gives the same sum). */
FG_AI FG_T FG_FN(hsum)(FG_V v)
{
    FG_T lanes[FG_VL], r = 0;
    FG_FN(st)(lanes, v);
    for (int i = 0; i < FG_VL; i++)
        r += lanes[i];
    return r;
}
