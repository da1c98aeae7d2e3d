/* Vectorised exp / sigmoid / tanh on GCC vectors, for one element type and width.
 *
 * Included by kernels.h after isa.h, which defines FG_T (float|double), FG_V (the
 * vector type), FG_VI (the same-size integer vector) and FG_FN (name mangling).
 *
 * Only exp(x) for x <= 0 is needed: sigmoid(x) = 1/(1+e) or e/(1+e) and
 * tanh(|x|) = (1-e)/(1+e) with e = exp(-|x|) resp. exp(-2|x|), so nothing can
 * overflow.  Range reduction x = n ln2 + r with n = round(x / ln2) (the 1.5*2^m
 * "magic number" trick, no float->int conversion instructions needed), then the
 * Cephes polynomials (float: degree 6, ~1 ulp; double: Pade 3/3, ~1 ulp).  Below
 * the smallest normal result exp is flushed to exactly 0, so the gates saturate
 * to exactly 0 and 1.  NaN in gives NaN out: every clamp is written so that a
 * comparison with NaN keeps the NaN.
 */

static inline __attribute__((always_inline)) FG_V FG_FN(vsel)(FG_VI mask, FG_V a, FG_V b)
{   /* mask ? a : b, lane-wise (C has no vector ?:) */
    return (FG_V)((mask & (FG_VI)a) | (~mask & (FG_VI)b));
}

static inline __attribute__((always_inline)) FG_V FG_FN(vabs)(FG_V x)
{
    return (FG_V)(~FG_SIGNMASK & (FG_VI)x);
}

#if FG_IS_F32
/* exp(x), x <= 0 (or NaN). */
static inline __attribute__((always_inline)) FG_V FG_FN(vexp_neg)(FG_V x)
{
    const FG_T lo = -87.33654f;                 /* below: result is not a normal float */
    const FG_T magic = 12582912.0f;             /* 1.5 * 2^23 */
    FG_VI under = x < lo;
    x = FG_FN(vsel)(under, (FG_V){0} + lo, x);
    FG_V t = x * 1.44269504088896341f + magic;  /* round(x / ln2) in the low mantissa bits */
    FG_V n = t - magic;
    FG_VI ni = (FG_VI)t - (FG_VI)((FG_V){0} + magic);
    FG_V r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    FG_V z = r * r;
    FG_V p = FG_SPLAT(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * z + r + 1.0f;
    FG_V scale = (FG_V)((ni + 127) << 23);
    return FG_FN(vsel)(under, (FG_V){0}, p * scale);
}

static inline __attribute__((always_inline)) FG_V FG_FN(vtanh)(FG_V x)
{
    FG_V ax = FG_FN(vabs)(x);
    /* small |x|: odd polynomial (Cephes tanhf), no cancellation */
    FG_V z = x * x;
    FG_V p = FG_SPLAT(-5.70498872745E-3f);
    p = p * z + 2.06390887954E-2f;
    p = p * z - 5.37397155531E-2f;
    p = p * z + 1.33314422036E-1f;
    p = p * z - 3.33332819422E-1f;
    FG_V small = p * z * x + x;
    /* large |x|: (1-e)/(1+e), e = exp(-2|x|) <= 0.29 */
    FG_V e = FG_FN(vexp_neg)(-2.0f * ax);
    FG_V big = (1.0f - e) / (1.0f + e);
    big = (FG_V)((FG_SIGNMASK & (FG_VI)x) | (FG_VI)big);   /* copysign */
    return FG_FN(vsel)(ax < 0.625f, small, big);
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
    FG_V small = x + x * z * (p / q);
    FG_V e = FG_FN(vexp_neg)(-2.0 * ax);
    FG_V big = (1.0 - e) / (1.0 + e);
    big = (FG_V)((FG_SIGNMASK & (FG_VI)x) | (FG_VI)big);   /* copysign */
    return FG_FN(vsel)(ax < 0.625, small, big);
}
#endif

static inline __attribute__((always_inline)) FG_V FG_FN(vsigmoid)(FG_V x)
{
    FG_V e = FG_FN(vexp_neg)(-FG_FN(vabs)(x));  /* in (0, 1], no overflow */
    FG_V s = (FG_T)1 / ((FG_T)1 + e);
    return FG_FN(vsel)(x < (FG_T)0, e * s, s);
}

static inline __attribute__((always_inline)) FG_V FG_FN(vrelu)(FG_V x)
{   /* NaN stays NaN (the comparison is false) */
    return FG_FN(vsel)(x < (FG_T)0, (FG_V){0}, x);
}
