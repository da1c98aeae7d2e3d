/* The LayerNorm GRU (G = 3, gates r, z, n; PyTorch's linear-before-reset GRU with
 * normalised projections):
 *   u = gamma_ih * LN(x_t W_ih^T) + b_ih,   v = gamma_hh * LN(h_{t-1} W_hh^T) + b_hh
 *       (each LN over the 3H entries of a row)
 *   r = sigma(u_r + v_r),  z = sigma(u_z + v_z),  n = tanh(u_n + r * v_n)
 *   h_t = z * h_{t-1} + (1 - z) * n
 * LN and its shared-row reductions: layernorm.h.  The loop (loop.h, the LayerNorm phases)
 * runs a step as: phase 1 the product and the partials of both projections (ln_fwd1; pre
 * holds x_t W_ih^T without biases), barrier, phase 2 below.  Training keeps r, z, n (pre),
 * xhat (xn), hhat (hn), v_n (ex) and the rows' 1/sqrt(var + eps) (rstd: x, h).
 *
 * Backward (dh = dL/dh_t):
 *   dn = dh (1-z)(1-n^2),  dz = dh (h_{t-1} - n) z(1-z),  dr = dn v_n r(1-r)
 *   input side  du = (dr, dz, dn):    db_ih += du,  dgamma_ih += du xhat
 *   recurrent   dv = (dr, dz, r dn):  db_hh += dv,  dgamma_hh += dv hhat
 *   dG, dax = LN backward of gamma_hh dv, gamma_ih du over the 3H entries (phase B2,
 *   ln_bwd2);  dh_{t-1} = dh z + dG W_hh.
 */

/* Phase 2: both rows' statistics are complete, st = (mean_x, rstd_x, mean_h, rstd_h). */
FG_AI void FG_FN(lngru_fwd2)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *st)
{
    const int H = s->H;
    FG_T *pr = s->pre + b * s->GH + j;
    const size_t o = b * H + j;
    FG_V u[3], v[3];
    for (int g = 0; g < 3; g++) {
        u[g] = FG_FN(ln_in)(s, b, (size_t)g * H, j, m, st);
        v[g] = FG_FN(ln_rec)(s, b, (size_t)g * H, j, m, st);
    }
    const FG_V r = FG_FN(vsigmoid)(u[0] + v[0]);
    const FG_V z = FG_FN(vsigmoid)(u[1] + v[1]);
    const FG_V n = FG_FN(vtanh)(u[2] + r * v[2]);
    const FG_V hp = FG_FN(ldn)(s->hp + o, m);
    if (s->keep) {
        FG_FN(stn)(pr, m, r);
        FG_FN(stn)(pr + H, m, z);
        FG_FN(stn)(pr + 2 * H, m, n);
        FG_FN(stn)(s->ex + o, m, v[2]);
    }
    FG_FN(stn)(s->h + o, m, n + z * (hp - n));
}

/* Phase B1 for units j .. j+m-1 of rows [0, Bt): the gate gradients, the parameter sums
 * (in registers, row by row in order: the same additions as one row at a time) and both
 * rows' partials. */
FG_AI void FG_FN(lngru_bwd1)(const FG_FN(bstep) *s, int Bt, int j, int m)
{
    const int H = s->H;
    FG_V sbi[3], sbh[3], sdi[3], sdh[3], gih[3], ghh[3];
    FG_FN(ln_gate_vecs)(sbi, s->db_ih, H, j, m, 3);
    FG_FN(ln_gate_vecs)(sbh, s->db_hh, H, j, m, 3);
    FG_FN(ln_gate_vecs)(sdi, s->dln_ih, H, j, m, 3);
    FG_FN(ln_gate_vecs)(sdh, s->dln_hh, H, j, m, 3);
    FG_FN(ln_gate_vecs)(gih, s->ln_ih, H, j, m, 3);
    FG_FN(ln_gate_vecs)(ghh, s->ln_hh, H, j, m, 3);
    for (int b = 0; b < Bt; b++) {
        const size_t o = (size_t)b * H + j, r0 = (size_t)b * s->GH + j;
        FG_V dh = FG_FN(ldn)(s->dh + o, m);
        if (s->dy)
            dh += FG_FN(ldn)(s->dy + o, m);
        const FG_T *gr = s->g + r0;
        const FG_V r = FG_FN(ldn)(gr, m), z = FG_FN(ldn)(gr + H, m), n = FG_FN(ldn)(gr + 2 * H, m);
        const FG_V hp = FG_FN(ldn)(s->hp + o, m), vn = FG_FN(ldn)(s->ex + o, m);
        const FG_V dn = dh * ((FG_T)1 - z) * ((FG_T)1 - n * n);
        const FG_V dz = dh * (hp - n) * (z * ((FG_T)1 - z));
        const FG_V dr = dn * vn * (r * ((FG_T)1 - r));
        const FG_V du[3] = {dr, dz, dn}, dv[3] = {dr, dz, r * dn};
        for (int k = 0; k < 3; k++) {
            sbi[k] += du[k];
            sbh[k] += dv[k];
        }
        FG_FN(stn)(s->dh + o, m, dh * z);    /* the direct path h_{t-1} -> h_t */
        FG_FN(ln_b1_row)(s, (size_t)b, j, m, du, dv, gih, ghh, sdi, sdh, 3);
    }
    FG_FN(ln_gate_store)(s->db_ih, sbi, H, j, m, 3);
    FG_FN(ln_gate_store)(s->db_hh, sbh, H, j, m, 3);
    FG_FN(ln_gate_store)(s->dln_ih, sdi, H, j, m, 3);
    FG_FN(ln_gate_store)(s->dln_hh, sdh, H, j, m, 3);
}

/* The registry's forward hook (cells/registry.h): phase 1, the partials of both projections. */
FG_AI void FG_FN(lngru_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    FG_FN(ln_fwd1)(s, b, j, m, acc, an, 3);
}
