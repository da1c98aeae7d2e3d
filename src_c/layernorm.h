/* Layer normalisation over one row, for the LayerNorm cells (cells/lnlstm.h, cells/lngru.h):
 *   LN(v) = (v - mean v) / sqrt(var v + eps),  biased variance, eps = 1e-5 (PyTorch's).
 *
 * Included by kernels.h after isa.h and vecmath.h, before the cell headers.
 *
 * Two kinds of rows:
 *   whole rows   normalised by ONE thread (the input projection W_ih x_t of every row before
 *                the time loop, and its gradient after BPTT): two passes, mean then the sum
 *                of squared deviations, each over the row in one fixed order.
 *   shared rows  the recurrent product h_{t-1} W_hh^T (G*H entries) and the LSTM's c_t (H
 *                entries) inside the time loop, whose units are spread over the threads.
 *                Each block of VL units (fixed by H and the vector width, never by the
 *                thread count) leaves its partial sums in a scratch row; after one barrier
 *                every thread combines the partials of the rows it needs, in block order.
 *                The same blocks, the same partials, the same order of additions for any
 *                number of threads: the statistics, and with them every result, are
 *                bit-identical for every thread count.
 * A block's partial for the forward statistics is (S_u, M2_u): its sum and the sum of
 * squared deviations from its own mean; the row's are then mean = sum S_u / N and
 * M2 = sum (M2_u + (S_u - n_u mean)^2 / n_u) (Chan et al.'s pairwise update, exact in exact
 * arithmetic, no cancellation of E[v^2] - mean^2).  For the gradients the partials are
 * two plain sums.  A row of equal entries has variance 0: rstd = 1/sqrt(eps), finite.
 */

#ifndef FG_LN_EPS
#define FG_LN_EPS 1e-5
#endif

/* The first m lanes set to 1, the rest 0 (multiplying by it keeps exactly the valid lanes). */
FG_AI FG_V FG_FN(ln_lanes)(int m)
{
    static const FG_T one[64] = {
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    return FG_FN(ldn)(one, m);
}

FG_AI FG_T FG_FN(ln_rsqrt)(FG_T var)
{
#if FG_IS_F32
    return 1.0f / __builtin_sqrtf(var + (FG_T)FG_LN_EPS);
#else
    return 1.0 / __builtin_sqrt(var + (FG_T)FG_LN_EPS);
#endif
}

/* The forward partial of one block: k vectors v[0..k) of which the first m lanes are valid
 * (the other lanes are ignored); out = (S, M2). */
FG_AI void FG_FN(ln_part)(const FG_V *v, int k, int m, FG_T *out)
{
    const FG_V mask = FG_FN(ln_lanes)(m);
    FG_V s = v[0] * mask;
    for (int g = 1; g < k; g++)
        s += v[g] * mask;
    const FG_T S = FG_FN(hsum)(s), mu = S / (FG_T)(k * m);
    FG_V q = (FG_V){0};
    for (int g = 0; g < k; g++) {
        const FG_V d = (v[g] - mu) * mask;
        q += d * d;
    }
    out[0] = S;
    out[1] = FG_FN(hsum)(q);
}

/* Mean and 1/sqrt(var + eps) of a shared row from its nb block partials (S_u, M2_u), each
 * block holding n entries but the last, which holds n_last; summed in block order. */
FG_AI void FG_FN(ln_stats)(const FG_T *part, int nb, FG_T n, FG_T n_last, FG_T *mean, FG_T *rstd)
{
    const FG_T N = n * (FG_T)(nb - 1) + n_last, rn = (FG_T)1 / n;
    FG_T S = 0, M2 = 0;
    for (int u = 0; u < nb; u++)
        S += part[2 * u];
    const FG_T mu = S / N;
    for (int u = 0; u < nb - 1; u++) {
        const FG_T d = part[2 * u] - n * mu;
        M2 += part[2 * u + 1] + d * d * rn;
    }
    const FG_T d = part[2 * (nb - 1)] - n_last * mu;
    M2 += part[2 * (nb - 1) + 1] + d * d / n_last;
    *mean = mu;
    *rstd = FG_FN(ln_rsqrt)(M2 / N);
}

/* The two means of a shared row's gradient partials (sum g, sum g*xhat per block), in block
 * order, divided by the row's N entries. */
FG_AI void FG_FN(ln_sums)(const FG_T *part, int nb, FG_T N, FG_T *m1, FG_T *m2)
{
    FG_T a = 0, b = 0;
    for (int u = 0; u < nb; u++) {
        a += part[2 * u];
        b += part[2 * u + 1];
    }
    *m1 = a / N;
    *m2 = b / N;
}

/* sum_k v[k] over one whole row, vector partial sums added in a fixed order. */
FG_AI FG_T FG_FN(ln_rowsum)(const FG_T *v, int n)
{
    FG_V s0 = {0}, s1 = {0};
    int k = 0;
    for (; k + 2 * FG_VL <= n; k += 2 * FG_VL) {
        s0 += FG_FN(ld)(v + k);
        s1 += FG_FN(ld)(v + k + FG_VL);
    }
    for (; k < n; k += FG_VL)
        s0 += FG_FN(ldn)(v + k, n - k < FG_VL ? n - k : FG_VL);   /* zeros past n */
    return FG_FN(hsum)(s0 + s1);
}

/* A whole row in place:  v = gamma * LN(v) + beta  (n entries);  xhat (or NULL) gets LN(v),
 * *rstd (or NULL) 1/sqrt(var + eps).  Two passes: the mean, then the squared deviations. */
FG_AI void FG_FN(ln_row_fwd)(FG_T *v, int n, const FG_T *gamma, const FG_T *beta, FG_T *xhat,
                             FG_T *rstd)
{
    const FG_T mu = FG_FN(ln_rowsum)(v, n) / (FG_T)n;
    FG_V s0 = {0}, s1 = {0};
    int k = 0;
    for (; k + 2 * FG_VL <= n; k += 2 * FG_VL) {
        const FG_V d0 = FG_FN(ld)(v + k) - mu, d1 = FG_FN(ld)(v + k + FG_VL) - mu;
        s0 += d0 * d0;
        s1 += d1 * d1;
    }
    for (; k < n; k += FG_VL) {
        const int m = n - k < FG_VL ? n - k : FG_VL;
        const FG_V d = (FG_FN(ldn)(v + k, m) - mu) * FG_FN(ln_lanes)(m);
        s0 += d * d;
    }
    const FG_T r = FG_FN(ln_rsqrt)(FG_FN(hsum)(s0 + s1) / (FG_T)n);
    if (rstd)
        *rstd = r;
    for (k = 0; k < n; k += FG_VL) {
        const int m = n - k < FG_VL ? n - k : FG_VL;
        const FG_V xh = (FG_FN(ldn)(v + k, m) - mu) * r;
        if (xhat)
            FG_FN(stn)(xhat + k, m, xh);
        FG_FN(stn)(v + k, m, FG_FN(ldn)(gamma + k, m) * xh + FG_FN(ldn)(beta + k, m));
    }
}

/* The gradient through a whole row's LN, in place: d enters as dL/d(gamma * xhat + beta)
 * and leaves as dL/dv = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = gamma * d. */
FG_AI void FG_FN(ln_row_bwd)(FG_T *d, int n, const FG_T *gamma, const FG_T *xhat, FG_T rstd)
{
    FG_V a0 = {0}, b0 = {0};
    for (int k = 0; k < n; k += FG_VL) {
        const int m = n - k < FG_VL ? n - k : FG_VL;
        const FG_V g = FG_FN(ldn)(gamma + k, m) * FG_FN(ldn)(d + k, m);
        a0 += g;
        b0 += g * FG_FN(ldn)(xhat + k, m);
    }
    const FG_T m1 = FG_FN(hsum)(a0) / (FG_T)n, m2 = FG_FN(hsum)(b0) / (FG_T)n;
    for (int k = 0; k < n; k += FG_VL) {
        const int m = n - k < FG_VL ? n - k : FG_VL;
        const FG_V g = FG_FN(ldn)(gamma + k, m) * FG_FN(ldn)(d + k, m);
        FG_FN(stn)(d + k, m, rstd * (g - m1 - FG_FN(ldn)(xhat + k, m) * m2));
    }
}

/* The shared rows' per-vector steps common to both LayerNorm cells (s: the loop's step
 * structs, kernels.h).  Forward phase 1: the raw recurrent product of units j .. j+m-1 of
 * row b (gate g at acc + g*an) into hn, and its block's partial into part_h.  Blocks are
 * single vectors: these cells have one vector of units per block (loop.h, FG_FN(uv)). */
FG_AI void FG_FN(ln_fwd1)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc,
                          int an, const int G)
{
    FG_T *hr = s->hn + b * s->GH + j;
    FG_V v[4];
    for (int g = 0; g < G; g++) {
        v[g] = FG_FN(ld)(acc + (size_t)g * an);
        FG_FN(stn)(hr + (size_t)g * s->H, m, v[g]);
    }
    FG_FN(ln_part)(v, G, m, s->part_h + (b * s->nb + (size_t)(j / FG_VL)) * 2);
}

/* Backward, after the barrier that completes the recurrent row's partials: dG enters as
 * dL/d(gamma_hh * hhat + b_hh) (the cell's step wrote it) and leaves as dL/d(h W_hh^T). */
FG_AI void FG_FN(ln_bwd2)(const FG_FN(bstep) *s, size_t b, int j, int m, const int G, FG_T m1,
                          FG_T m2, FG_T rstd)
{
    for (int g = 0; g < G; g++) {
        const size_t c = b * s->GH + (size_t)g * s->H + j;
        const FG_V gg = FG_FN(ldn)(s->ln_hh + (size_t)g * s->H + j, m) * FG_FN(ldn)(s->dG + c, m);
        FG_FN(stn)(s->dG + c, m, rstd * (gg - m1 - FG_FN(ldn)(s->hn + c, m) * m2));
    }
}

/* *p (m lanes) += v: the owner of a unit sums its parameter gradients in a fixed order
 * (t = T-1 .. 0, then rows), as the loop does for the biases. */
FG_AI void FG_FN(ln_acc)(FG_T *p, int m, FG_V v)
{
    FG_FN(stn)(p, m, FG_FN(ldn)(p, m) + v);
}
