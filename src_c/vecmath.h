/* Vectorised exp / sigmoid / tanh on GCC vectors, for one element type and width.
 *
 * Included by kernels.h after isa.h, which defines FG_T (float|double), FG_V (the
 * vector type), FG_VI (the same-size integer vector) and FG_FN (name mangling).
 *
 * exp: range reduction x = n ln2 + r with n = round(x / ln2) (the 1.5*2^m "magic
 * number" trick, no float->int conversion instructions needed), then a polynomial
 * (float: expm1 of degree 6, fitted here; double: Cephes' Pade 3/3, ~1 ulp), scaled by
 * 2^n built in the exponent bits.
 *
 * float (one path per function, no branch of the other sign computed and discarded):
 *   sigmoid(x) = 1 / (1 + exp(-x)), exp clamped to [2^-127 -> 0, 2^128 -> inf], so the
 *     gate is exactly 1 above ~88 and exactly 0 below ~-88.4, with full relative
 *     accuracy in between (also in the tiny negative tail);
 *   tanh|x| = -m / (2 + m), m = expm1(-2|x|) in [-1, 0]: no cancellation at small |x|
 *     (m is formed from expm1 of the reduced argument), exactly 1 once exp underflows.
 *   <= 2.5 ulp over every float in [-100, 100] (tools/activation_ulps.py).
 * double: sigmoid(x) = 1/(1+e) or e/(1+e), tanh(|x|) = (1-e)/(1+e) with e = exp(-|x|)
 *   resp. exp(-2|x|) for |x| >= 0.625, a Pade form below; exp is flushed to exactly 0
 *   below the smallest normal result, so the gates saturate to exactly 0 and 1.
 * NaN in gives NaN out: every clamp keeps a NaN.
 */

static inline __attribute__((always_inline)) FG_V FG_FN(vsel)(FG_VI mask, FG_V a, FG_V b)
{   /* mask ? a : b, lane-wise (C has no vector ?:) */
    return (FG_V)((mask & (FG_VI)a) | (~mask & (FG_VI)b));
}

static inline __attribute__((always_inline)) FG_V FG_FN(vabs)(FG_V x)
{
    return (FG_V)(~FG_SIGNMASK & (FG_VI)x);
}

/* |mag| with the sign of sgn (also for zeros: tanh(-0) = -0) */
static inline __attribute__((always_inline)) FG_V FG_FN(vcopysign)(FG_V mag, FG_V sgn)
{
    return (FG_V)((FG_SIGNMASK & (FG_VI)sgn) | (~FG_SIGNMASK & (FG_VI)mag));
}

/* max(lo, x) and min(hi, x) lane-wise; a NaN x stays NaN (the instructions return their
 * second operand when either is NaN; the generic select keeps x when the test is false). */
static inline __attribute__((always_inline)) FG_V FG_FN(vmax_keepnan)(FG_T lo, FG_V x)
{
#if FG_VBYTES == 32 && FG_IS_F32
    return (FG_V)_mm256_max_ps(_mm256_set1_ps(lo), (__m256)x);
#elif FG_VBYTES == 64 && FG_IS_F32
    return (FG_V)_mm512_max_ps(_mm512_set1_ps(lo), (__m512)x);
#else
    return FG_FN(vsel)(x < lo, (FG_V){0} + lo, x);
#endif
}

static inline __attribute__((always_inline)) FG_V FG_FN(vmin_keepnan)(FG_T hi, FG_V x)
{
#if FG_VBYTES == 32 && FG_IS_F32
    return (FG_V)_mm256_min_ps(_mm256_set1_ps(hi), (__m256)x);
#elif FG_VBYTES == 64 && FG_IS_F32
    return (FG_V)_mm512_min_ps(_mm512_set1_ps(hi), (__m512)x);
#else
    return FG_FN(vsel)(x > hi, (FG_V){0} + hi, x);
#endif
}

#if FG_IS_F32
/* Shared by exp and expm1: for x in [-88, 88.5], n = round(x / ln2) and r = x - n ln2;
 * returns r and sets *scale = 2^n (n = -127 gives +0, n = 128 gives +inf).  The magic
 * number carries n + 127 into t's low mantissa bits, so t's bits << 23 are 2^n's. */
static inline __attribute__((always_inline)) FG_V FG_FN(vexp_reduce)(FG_V x, FG_V *scale)
{
    const FG_T magic = 12582912.0f + 127.0f;    /* 1.5 * 2^23 + the exponent bias */
    FG_V t = x * 1.44269504088896341f + magic;
    FG_V n = t - magic;
    *scale = (FG_V)((FG_VI)t << 23);
    FG_V r = x - n * 0.693359375f;
    return r - n * -2.12194440e-4f;
}

/* expm1(r) for |r| <= ln2/2: r + r^2 p(r), p of degree 4 fitted for the least maximum
 * relative error of expm1 (1.7e-8 with these float coefficients), evaluated in Estrin's
 * order (a shorter dependency chain than Horner's: the gate math is latency-bound). */
static inline __attribute__((always_inline)) FG_V FG_FN(vexpm1_reduced)(FG_V r)
{
    FG_V r2 = r * r;
    FG_V lo = r * 1.666654348373413e-1f + 4.999999701976776e-1f;
    FG_V hi = r * 8.366547524929047e-3f + 4.166720062494278e-2f;
    FG_V p = (r2 * 1.3882515486329794e-3f + hi) * r2 + lo;
    return p * r2 + r;
}

static inline __attribute__((always_inline)) FG_V FG_FN(vsigmoid)(FG_V x)
{
    FG_V v = FG_FN(vmax_keepnan)(-88.0f, -x);   /* exp(v) >= 2^-127 = 0: sigmoid 1 */
    v = FG_FN(vmin_keepnan)(88.5f, v);          /* exp(v) <= 2^128 = inf: sigmoid 0 */
    FG_V scale;
    FG_V r = FG_FN(vexp_reduce)(v, &scale);
    FG_V e = scale * (FG_FN(vexpm1_reduced)(r) + 1.0f);   /* not fma(scale, .., scale): inf - inf */
    return 1.0f / (1.0f + e);
}

static inline __attribute__((always_inline)) FG_V FG_FN(vtanh)(FG_V x)
{
    FG_V u = FG_FN(vmax_keepnan)(-88.0f, -2.0f * FG_FN(vabs)(x));
    FG_V scale;
    FG_V r = FG_FN(vexp_reduce)(u, &scale);
    FG_V m = scale * FG_FN(vexpm1_reduced)(r) + (scale - 1.0f);   /* expm1(u), exact 2^n - 1 */
    return FG_FN(vcopysign)(m / (-2.0f - m), x);  /* tanh|x| (-0 at x = 0), x's sign */
}
#else
static inline __attribute__((always_inline)) FG_V FG_FN(vexp_neg)(FG_V x)
{
    const FG_T lo = -708.3964185322641;         /* below: result is not a normal double */
    const FG_T magic = 6755399441055744.0;      /* 1.5 * 2^52 */
    FG_VI under = x < lo;
    x = FG_FN(vsel)(under, (FG_V){0} + lo, x);
    FG_V t = x * 1.4426950408889634073599 + magic;
    FG_V n = t - magic;
    FG_VI ni = (FG_VI)t - (FG_VI)((FG_V){0} + magic);
    FG_V r = x - n * 6.93145751953125E-1;
    r = r - n * 1.42860682030941723212E-6;
    FG_V rr = r * r;
    FG_V px = FG_SPLAT(1.26177193074810590878E-4);
    px = px * rr + 3.02994407707441961300E-2;
    px = px * rr + 9.99999999999999999910E-1;
    px = px * r;
    FG_V qx = FG_SPLAT(3.00198505138664455042E-6);
    qx = qx * rr + 2.52448340349684104192E-3;
    qx = qx * rr + 2.27265548208155028766E-1;
    qx = qx * rr + 2.00000000000000000009E0;
    FG_V y = px / (qx - px);
    y = 1.0 + 2.0 * y;
    FG_V scale = (FG_V)((ni + 1023) << 52);
    return FG_FN(vsel)(under, (FG_V){0}, y * scale);
}

static inline __attribute__((always_inline)) FG_V FG_FN(vtanh)(FG_V x)
{
    FG_V ax = FG_FN(vabs)(x);
    FG_V z = x * x;
    FG_V p = FG_SPLAT(-9.64399179425052238628E-1);
    p = p * z - 9.92877231001918586564E1;
    p = p * z - 1.61468768441708447952E3;
    FG_V q = z + 1.12811678491632931402E2;
    q = q * z + 2.23548839060100448583E3;
    q = q * z + 4.84406305325125486048E3;
    FG_V small = ax + ax * z * (p / q);
    FG_V e = FG_FN(vexp_neg)(-2.0 * ax);
    FG_V big = (1.0 - e) / (1.0 + e);
    return FG_FN(vcopysign)(FG_FN(vsel)(ax < 0.625, small, big), x);
}

static inline __attribute__((always_inline)) FG_V FG_FN(vsigmoid)(FG_V x)
{
    FG_V e = FG_FN(vexp_neg)(-FG_FN(vabs)(x));  /* in (0, 1], no overflow */
    FG_V s = (FG_T)1 / ((FG_T)1 + e);
    return FG_FN(vsel)(x < (FG_T)0, e * s, s);
}
#endif

static inline __attribute__((always_inline)) FG_V FG_FN(vrelu)(FG_V x)
{   /* NaN stays NaN (the comparison is false) */
    return FG_FN(vsel)(x < (FG_T)0, (FG_V){0}, x);
}
