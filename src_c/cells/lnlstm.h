/* The LayerNorm LSTM (G = 4, gates i, f, g, o; haste's formulation, PyTorch's two biases):
 *   a   = gamma_ih * LN(x_t W_ih^T) + b_ih + gamma_hh * LN(h_{t-1} W_hh^T) + b_hh
 *         (each LN over the 4H entries of a row)
 *   i, f, o = sigma(a_i, a_f, a_o),  g = tanh(a_g)
 *   c_t = f * c_{t-1} + i * g              (the state carries c_t itself)
 *   h_t = o * tanh(gamma_c * LN(c_t) + beta_c)    (LN over the H entries)
 * LN and its shared-row reductions: layernorm.h.  The loop (loop.h, the LayerNorm phases)
 * runs a step as: phase 1 the product and the partials of both projections (ln_fwd1; pre
 * holds x_t W_ih^T without biases), barrier, phase 2 below, barrier, phase 3 below.
 * Training keeps the gates, xhat (xn), hhat (hn), chat (cn), tanh of the normalised cell
 * state (tc) and the rows' 1/sqrt(var + eps) (rstd: x, h, c).
 *
 * Backward (y_c = gamma_c chat + beta_c, t_c = tanh(y_c), dh = dL/dh_t):
 *   dy_c = dh o (1 - t_c^2);  dgamma_c += dy_c chat;  dbeta_c += dy_c;  dchat = dy_c gamma_c
 *   dc   = dc_t + rstd_c (dchat - mean(dchat) - chat mean(dchat chat))      (phase B0, B1)
 *   da_i = dc g i(1-i);  da_f = dc c_{t-1} f(1-f);  da_g = dc i (1-g^2);  da_o = dh t_c o(1-o)
 *   dc_{t-1} = dc f;  db_hh += da (= db_ih);  dgamma_ih += da xhat;  dgamma_hh += da hhat
 *   dG, dax = LN backward of gamma_hh da, gamma_ih da over the 4H entries (phase B2,
 *   ln_bwd2);  dh_{t-1} = dG W_hh.
 */

/* Phase 2: both rows' statistics are complete, st = (mean_x, rstd_x, mean_h, rstd_h). */
FG_AI void FG_FN(lnlstm_fwd2)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *st)
{
    const int H = s->H;
    FG_T *pr = s->pre + b * s->GH + j;
    const size_t o = b * H + j;
    FG_V a[4];
    for (int g = 0; g < 4; g++) {
        const size_t c = (size_t)g * H;
        a[g] = FG_FN(ln_in)(s, b, c, j, m, st) + FG_FN(ln_rec)(s, b, c, j, m, st);
    }
    const FG_V i = FG_FN(vsigmoid)(a[0]), f = FG_FN(vsigmoid)(a[1]);
    const FG_V g = FG_FN(vtanh)(a[2]), og = FG_FN(vsigmoid)(a[3]);
    const FG_V c = f * FG_FN(ldn)(s->cp + o, m) + i * g;
    if (s->keep) {
        FG_FN(stn)(pr, m, i);
        FG_FN(stn)(pr + H, m, f);
        FG_FN(stn)(pr + 2 * H, m, g);
    }
    FG_FN(stn)(pr + 3 * H, m, og);          /* phase 3 needs o (pre is scratch in inference) */
    FG_FN(stn)(s->c + o, m, c);
    FG_FN(ln_part)(&c, 1, m, s->part_c + (b * s->nb + (size_t)(j / FG_VL)) * 2);
}

/* Phase 3: LN(c_t)'s statistics are complete. */
FG_AI void FG_FN(lnlstm_fwd3)(const FG_FN(fstep) *s, size_t b, int j, int m, FG_T mean, FG_T rstd)
{
    const size_t o = b * s->H + j;
    const FG_V ch = (FG_FN(ldn)(s->c + o, m) - mean) * rstd;
    if (s->cn)
        FG_FN(stn)(s->cn + o, m, ch);
    const FG_V tc = FG_FN(vtanh)(FG_FN(ldn)(s->ln_c + j, m) * ch + FG_FN(ldn)(s->ln_cb + j, m));
    if (s->tc)
        FG_FN(stn)(s->tc + o, m, tc);
    FG_FN(stn)(s->h + o, m, FG_FN(ldn)(s->pre + b * s->GH + 3 * (size_t)s->H + j, m) * tc);
}

/* dL/dh_t (with dy), dy_c and dchat of units j .. j+m-1 of row b. */
FG_AI void FG_FN(lnlstm_dyc)(const FG_FN(bstep) *s, size_t b, int j, int m, FG_V *dh, FG_V *dyc,
                             FG_V *dch)
{
    const size_t o = b * s->H + j;
    FG_V d = FG_FN(ldn)(s->dh + o, m);
    if (s->dy)
        d += FG_FN(ldn)(s->dy + o, m);
    const FG_V og = FG_FN(ldn)(s->g + b * s->GH + 3 * (size_t)s->H + j, m);
    const FG_V tc = FG_FN(ldn)(s->tc + o, m);
    *dh = d;
    *dyc = d * og * ((FG_T)1 - tc * tc);
    *dch = *dyc * FG_FN(ldn)(s->ln_c + j, m);
}

/* Phase B0 for units j .. j+m-1 of rows [0, Bt): gamma_c's and beta_c's gradients (summed
 * in registers, row by row in order), the partials of LN(c_t)'s backward. */
FG_AI void FG_FN(lnlstm_bwd0)(const FG_FN(bstep) *s, int Bt, int j, int m)
{
    FG_V sg = FG_FN(ldn)(s->dln_c + j, m), sb = FG_FN(ldn)(s->dln_cb + j, m);
    for (int b = 0; b < Bt; b++) {
        FG_V dh, dyc, dch;
        FG_FN(lnlstm_dyc)(s, (size_t)b, j, m, &dh, &dyc, &dch);
        const FG_V ch = FG_FN(ldn)(s->cn + (size_t)b * s->H + j, m);
        sg += dyc * ch;
        sb += dyc;
        FG_T *pc = s->part_c + ((size_t)b * s->nb + (size_t)(j / FG_VL)) * 2;
        pc[0] = FG_FN(ln_hsum)(dch);
        pc[1] = FG_FN(ln_hsum)(dch * ch);
    }
    FG_FN(stn)(s->dln_c + j, m, sg);
    FG_FN(stn)(s->dln_cb + j, m, sb);
}

/* Phase B1 for units j .. j+m-1 of rows [b0, b1), once the means of dchat and dchat*chat
 * over each row are complete: st[3*(b-b0) ..] = (m1, m2, rstd_c).  The parameter sums run
 * in registers, row by row in order (the same additions as one row at a time). */
FG_AI void FG_FN(lnlstm_bwd1)(const FG_FN(bstep) *s, int b0, int b1, int j, int m, const FG_T *st)
{
    const int H = s->H;
    FG_V sdb[4], sdi[4], sdh[4], gih[4], ghh[4];
    FG_FN(ln_gate_vecs)(sdb, s->db_hh, H, j, m, 4);
    FG_FN(ln_gate_vecs)(sdi, s->dln_ih, H, j, m, 4);
    FG_FN(ln_gate_vecs)(sdh, s->dln_hh, H, j, m, 4);
    FG_FN(ln_gate_vecs)(gih, s->ln_ih, H, j, m, 4);
    FG_FN(ln_gate_vecs)(ghh, s->ln_hh, H, j, m, 4);
    for (int b = b0; b < b1; b++, st += 3) {
        const size_t o = (size_t)b * H + j, r = (size_t)b * s->GH + j;
        FG_V dh, dyc, dch;
        FG_FN(lnlstm_dyc)(s, (size_t)b, j, m, &dh, &dyc, &dch);
        const FG_V ch = FG_FN(ldn)(s->cn + o, m);
        const FG_V dc = FG_FN(ldn)(s->dc + o, m) + st[2] * (dch - st[0] - ch * st[1]);
        const FG_T *gr = s->g + r;
        const FG_V i = FG_FN(ldn)(gr, m), f = FG_FN(ldn)(gr + H, m);
        const FG_V g = FG_FN(ldn)(gr + 2 * H, m), og = FG_FN(ldn)(gr + 3 * H, m);
        const FG_V tc = FG_FN(ldn)(s->tc + o, m);
        FG_V da[4];
        da[0] = dc * g * (i * ((FG_T)1 - i));
        da[1] = dc * FG_FN(ldn)(s->cp + o, m) * (f * ((FG_T)1 - f));
        da[2] = dc * i * ((FG_T)1 - g * g);
        da[3] = dh * tc * (og * ((FG_T)1 - og));
        for (int k = 0; k < 4; k++)
            sdb[k] += da[k];                             /* = db_ih (the caller copies it) */
        FG_FN(stn)(s->dc + o, m, dc * f);
        FG_FN(ln_b1_row)(s, (size_t)b, j, m, da, da, gih, ghh, sdi, sdh, 4);
    }
    FG_FN(ln_gate_store)(s->db_hh, sdb, H, j, m, 4);
    FG_FN(ln_gate_store)(s->dln_ih, sdi, H, j, m, 4);
    FG_FN(ln_gate_store)(s->dln_hh, sdh, H, j, m, 4);
}

/* The registry's forward hook (cells/registry.h): phase 1, the partials of both projections. */
FG_AI void FG_FN(lnlstm_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    FG_FN(ln_fwd1)(s, b, j, m, acc, an, 4);
}
