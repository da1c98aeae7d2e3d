/* The GRU (G = 3, gates r, z, n), both forms:
 *   r = sigma(x W_ir^T + b_ir + h W_hr^T + b_hr),   z = sigma(x W_iz^T + b_iz + h W_hz^T + b_hz)
 *   linear before reset ("lbr", PyTorch, cuDNN):  n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
 *   reset before ("rb", Cho et al. 2014):         n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn)
 *   h_t = n + z * (h_{t-1} - n)
 *
 * lbr is one product and one pass of gate math per step (acc: gates r, z, n at
 * acc + g*an).  rb needs r * h_{t-1} of every unit before its n-gate product: phase 1
 * computes r, z and r*h for this thread's units, then (after a barrier) phase 2 the n
 * gate from acc = (r*h) W_hn^T.  pre enters with x w_ih^T + b_ih + b_hh (lbr: b_hn not
 * in gate n, it acts inside r * (...)) and leaves with the post-activations r, z, n.
 *
 * Backward (the loop adds dG W_hh to the direct part dh * z written here):
 *   dn = dh (1-z)(1-n^2),  dz = dh (h_{t-1} - n) z(1-z)
 *   lbr: dr = dn (h W_hn^T + b_hn) r(1-r); the recurrent n pre-activation gets r*dn
 *   rb:  d(r h) = dn W_hn (phase B1, a product), dr = d(r h) h_{t-1} r(1-r),
 *        dh_{t-1} += d(r h) r
 */

FG_AI void FG_FN(gru_lbr_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    const int H = s->H;
    FG_T *pr = s->pre + b * s->GH + j;
    const size_t o = b * H + j;
    const FG_V r = FG_FN(vsigmoid)(FG_FN(ldn)(pr, m) + FG_FN(ld)(acc));
    const FG_V z = FG_FN(vsigmoid)(FG_FN(ldn)(pr + H, m) + FG_FN(ld)(acc + an));
    const FG_V hn = FG_FN(ld)(acc + 2 * an) + FG_FN(ldn)(s->b_hn + j, m);
    const FG_V n = FG_FN(vtanh)(FG_FN(ldn)(pr + 2 * H, m) + r * hn);
    const FG_V hp = FG_FN(ldn)(s->hp + o, m);
    if (s->keep) {
        FG_FN(stn)(pr, m, r);
        FG_FN(stn)(pr + H, m, z);
        FG_FN(stn)(pr + 2 * H, m, n);
        FG_FN(stn)(s->ex + o, m, hn);
    }
    FG_FN(stn)(s->h + o, m, n + z * (hp - n));
}

/* rb phase 1: r, z (kept in pre: phase 2 needs z) and r * h_{t-1} into ex */
FG_AI void FG_FN(gru_rb_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    const int H = s->H;
    FG_T *pr = s->pre + b * s->GH + j;
    const FG_V r = FG_FN(vsigmoid)(FG_FN(ldn)(pr, m) + FG_FN(ld)(acc));
    const FG_V z = FG_FN(vsigmoid)(FG_FN(ldn)(pr + H, m) + FG_FN(ld)(acc + an));
    FG_FN(stn)(pr, m, r);
    FG_FN(stn)(pr + H, m, z);
    FG_FN(stn)(s->ex + b * H + j, m, r * FG_FN(ldn)(s->hp + b * H + j, m));
}

/* rb phase 2: acc = (r * h_{t-1}) W_hn^T for these units */
FG_AI void FG_FN(gru_rb_fwd2)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc)
{
    const int H = s->H;
    FG_T *pr = s->pre + b * s->GH + j;
    const size_t o = b * H + j;
    const FG_V n = FG_FN(vtanh)(FG_FN(ldn)(pr + 2 * H, m) + FG_FN(ld)(acc));
    const FG_V z = FG_FN(ldn)(pr + H, m);
    const FG_V hp = FG_FN(ldn)(s->hp + o, m);
    if (s->keep)
        FG_FN(stn)(pr + 2 * H, m, n);
    FG_FN(stn)(s->h + o, m, n + z * (hp - n));
}

FG_AI void FG_FN(gru_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m, const int lbr)
{
    const int H = s->H;
    const size_t o = b * H + j;
    const FG_T *gr = s->g + b * s->GH + j;
    FG_T *dg = s->dG + b * s->GH + j;
    FG_V dh = FG_FN(ldn)(s->dh + o, m);
    if (s->dy)
        dh += FG_FN(ldn)(s->dy + o, m);
    const FG_V r = FG_FN(ldn)(gr, m), z = FG_FN(ldn)(gr + H, m), n = FG_FN(ldn)(gr + 2 * H, m);
    const FG_V hp = FG_FN(ldn)(s->hp + o, m);
    const FG_V dn = dh * ((FG_T)1 - z) * ((FG_T)1 - n * n);
    FG_FN(stn)(dg + H, m, dh * (hp - n) * (z * ((FG_T)1 - z)));
    if (lbr) {
        const FG_V hn = FG_FN(ldn)(s->ex + o, m);
        FG_FN(stn)(dg, m, dn * hn * (r * ((FG_T)1 - r)));
        FG_FN(stn)(dg + 2 * H, m, dn * r);
        FG_FN(stn)(s->dnx + o, m, dn);
    } else {
        FG_FN(stn)(dg + 2 * H, m, dn);   /* dr needs d(r h) = dn W_hn: phase B1 */
    }
    FG_FN(stn)(s->dh + o, m, dh * z);    /* the direct path h_{t-1} -> h_t */
}

/* The registry's backward hooks (cells/registry.h). */
FG_AI void FG_FN(gru_lbr_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m)
{
    FG_FN(gru_bwd)(s, b, j, m, 1);
}

FG_AI void FG_FN(gru_rb_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m)
{
    FG_FN(gru_bwd)(s, b, j, m, 0);
}

/* rb phase B1: acc = d(r h) = dn W_hn for these units */
FG_AI void FG_FN(gru_rb_bwd2)(const FG_FN(bstep) *s, size_t b, int j, int m, const FG_T *acc)
{
    const int H = s->H;
    const size_t o = b * H + j;
    const FG_V d = FG_FN(ld)(acc), r = FG_FN(ldn)(s->g + b * s->GH + j, m);
    FG_FN(stn)(s->dG + b * s->GH + j, m, d * FG_FN(ldn)(s->hp + o, m) * (r * ((FG_T)1 - r)));
    FG_FN(stn)(s->dh + o, m, FG_FN(ldn)(s->dh + o, m) + d * r);
}
