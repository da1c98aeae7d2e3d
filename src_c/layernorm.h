/* Layer normalisation over one row, for the LayerNorm cells (cells/lnlstm.h, cells/lngru.h):
 *   LN(v) = (v - mean v) / sqrt(var v + eps),  biased variance, eps = 1e-5 (PyTorch's).
 *
 * Included by kernels.h after isa.h and vecmath.h, before the cell headers.
 *
 * The rows are spread over the threads: the input projection x_t W_ih^T and the recurrent
 * product h_{t-1} W_hh^T (G*H entries each) and the LSTM's c_t (H entries), whose units
 * belong to different threads.  Each block of VL units (fixed by H and the vector width,
 * never by the thread count) leaves its partial sums in a scratch row; after one barrier
 * every thread combines the partials of the rows it needs, in block order.  The same
 * blocks, the same partials, the same order of additions for any number of threads: the
 * statistics, and with them every result, are bit-identical for every thread count.  The
 * input side rides on the recurrent side's barrier (forward: its partials in phase 1,
 * backward: in phase B1), so it costs no pass and no barrier of its own.
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

/* The lanes of v added pairwise in a fixed tree (log2(VL) levels, not VL dependent adds). */
FG_AI FG_T FG_FN(ln_hsum)(FG_V v)
{
#if FG_VBYTES == 64 && FG_IS_F32
    return _mm512_reduce_add_ps((__m512)v);     /* a fixed tree of shuffles and adds */
#elif FG_VBYTES == 64
    return _mm512_reduce_add_pd((__m512d)v);
#endif
    FG_T l[FG_VL];
    FG_FN(st)(l, v);
    for (int w = FG_VL / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            l[i] += l[i + w];
    return l[0];
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
    FG_V s = v[0];
    for (int g = 1; g < k; g++)
        s += v[g];
    if (m < FG_VL)
        s *= mask;
    const FG_T S = FG_FN(ln_hsum)(s), mu = S / (FG_T)(k * m);
    FG_V q = (FG_V){0};
    for (int g = 0; g < k; g++) {
        const FG_V d = v[g] - mu;
        q += d * d;
    }
    if (m < FG_VL)
        q *= mask;
    out[0] = S;
    out[1] = FG_FN(ln_hsum)(q);
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

/* The shared rows' per-vector steps common to both LayerNorm cells (s: the loop's step
 * structs, kernels.h).  Forward phase 1: the raw recurrent product of units j .. j+m-1 of
 * row b (gate g at acc + g*an) into hn, and the block's partials of it (part_h) and of the
 * raw input projection in pre (part_x).  Blocks are single vectors: these cells have one
 * vector of units per block (loop.h, FG_FN(uv)). */
FG_AI void FG_FN(ln_fwd1)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc,
                          int an, const int G)
{
    FG_T *hr = s->hn + b * s->GH + j;
    const FG_T *pr = s->pre + b * s->GH + j;
    FG_V v[4], x[4];
    for (int g = 0; g < G; g++) {
        v[g] = FG_FN(ld)(acc + (size_t)g * an);
        FG_FN(stn)(hr + (size_t)g * s->H, m, v[g]);
        x[g] = FG_FN(ldn)(pr + (size_t)g * s->H, m);
    }
    const size_t blk = (b * s->nb + (size_t)(j / FG_VL)) * 2;
    FG_FN(ln_part)(v, G, m, s->part_h + blk);
    FG_FN(ln_part)(x, G, m, s->part_x + blk);
}

/* Forward phase 2, the input side of gate row c (= g*H) of units j ..: xhat (kept in xn in
 * training) and gamma_ih * xhat + b_ih.  st = (mean_x, rstd_x, mean_h, rstd_h). */
FG_AI FG_V FG_FN(ln_in)(const FG_FN(fstep) *s, size_t b, size_t c, int j, int m, const FG_T *st)
{
    const size_t at = b * s->GH + c + j;
    const FG_V xh = (FG_FN(ldn)(s->pre + at, m) - st[0]) * st[1];
    if (s->xn)
        FG_FN(stn)(s->xn + at, m, xh);
    return FG_FN(ldn)(s->ln_ih + c + j, m) * xh + FG_FN(ldn)(s->b_ih + c + j, m);
}

/* Forward phase 2, the recurrent side: hhat (kept in hn in training) and
 * gamma_hh * hhat + b_hh. */
FG_AI FG_V FG_FN(ln_rec)(const FG_FN(fstep) *s, size_t b, size_t c, int j, int m, const FG_T *st)
{
    FG_T *hr = s->hn + b * s->GH + c + j;
    const FG_V hh = (FG_FN(ldn)(hr, m) - st[2]) * st[3];
    if (s->keep)
        FG_FN(stn)(hr, m, hh);
    return FG_FN(ldn)(s->ln_hh + c + j, m) * hh + FG_FN(ldn)(s->b_rec + c + j, m);
}

/* Backward phase B2, after the barrier that completes the rows' partials: dG enters as
 * dL/d(gamma_hh * hhat + b_hh) and leaves as dL/d(h W_hh^T), dax enters as
 * dL/d(gamma_ih * xhat + b_ih) and leaves as dL/d(x W_ih^T).
 * st = (mean(g_x), mean(g_x xhat), rstd_x, mean(g_h), mean(g_h hhat), rstd_h). */
FG_AI void FG_FN(ln_bwd2)(const FG_FN(bstep) *s, size_t b, int j, int m, const int G, const FG_T *st)
{
    for (int g = 0; g < G; g++) {
        const size_t c = b * s->GH + (size_t)g * s->H + j, w = (size_t)g * s->H + j;
        const FG_V gh = FG_FN(ldn)(s->ln_hh + w, m) * FG_FN(ldn)(s->dG + c, m);
        FG_FN(stn)(s->dG + c, m, st[5] * (gh - st[3] - FG_FN(ldn)(s->hn + c, m) * st[4]));
        const FG_V gx = FG_FN(ldn)(s->ln_ih + w, m) * FG_FN(ldn)(s->dax + c, m);
        FG_FN(stn)(s->dax + c, m, st[2] * (gx - st[0] - FG_FN(ldn)(s->xn + c, m) * st[1]));
    }
}

/* Backward phase B1's partials of one block: (sum g, sum g*xhat) for g = gamma * d over the
 * gates' vectors (d[g], xhat[g], gamma[g]: the block's lanes of gate g's row). */
FG_AI void FG_FN(ln_bpart)(const FG_V *d, const FG_V *xhat, const FG_V *gamma, const int G,
                           FG_T *out)
{
    FG_V s1 = {0}, s2 = {0};
    for (int g = 0; g < G; g++) {
        const FG_V gg = gamma[g] * d[g];
        s1 += gg;
        s2 += gg * xhat[g];
    }
    out[0] = FG_FN(ln_hsum)(s1);
    out[1] = FG_FN(ln_hsum)(s2);
}

/* G vectors v[g] = lanes j .. j+m-1 of gate row g of a (G*H,) array, and back: phase B1
 * keeps a unit vector's parameter sums (and gains) in registers over the rows. */
FG_AI void FG_FN(ln_gate_vecs)(FG_V *v, const FG_T *p, int H, int j, int m, const int G)
{
    for (int g = 0; g < G; g++)
        v[g] = FG_FN(ldn)(p + (size_t)g * H + j, m);
}

FG_AI void FG_FN(ln_gate_store)(FG_T *p, const FG_V *v, int H, int j, int m, const int G)
{
    for (int g = 0; g < G; g++)
        FG_FN(stn)(p + (size_t)g * H + j, m, v[g]);
}

/* Phase B1's end of one row for units j .. j+m-1 (G gates): dax = du and dG = dv (the
 * gradients before the input and the recurrent LN), the gain sums sdi += du xhat and
 * sdh += dv hhat (gih, ghh: the gains), and the block's partials of both rows. */
FG_AI void FG_FN(ln_b1_row)(const FG_FN(bstep) *s, size_t b, int j, int m, const FG_V *du,
                            const FG_V *dv, const FG_V *gih, const FG_V *ghh, FG_V *sdi,
                            FG_V *sdh, const int G)
{
    const size_t r = b * s->GH + j;
    FG_V xh[4], hh[4];
    for (int g = 0; g < G; g++) {
        const size_t c = r + (size_t)g * s->H;
        xh[g] = FG_FN(ldn)(s->xn + c, m);
        hh[g] = FG_FN(ldn)(s->hn + c, m);
        FG_FN(stn)(s->dax + c, m, du[g]);
        FG_FN(stn)(s->dG + c, m, dv[g]);
        sdi[g] += du[g] * xh[g];
        sdh[g] += dv[g] * hh[g];
    }
    const size_t blk = (b * s->nb + (size_t)(j / FG_VL)) * 2;
    FG_FN(ln_bpart)(dv, hh, ghh, G, s->part_h + blk);
    FG_FN(ln_bpart)(du, xh, gih, G, s->part_x + blk);
}
