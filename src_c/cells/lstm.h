/* The LSTM (G = 4, gates i, f, g, o):
 *   [i, f, g, o] = [sigma, sigma, tanh, sigma](x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
 *   c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
 *
 * Forward over one vector of units (lanes j .. j+m-1 of row b); acc holds the row's
 * recurrent product for these units, gate g at acc + g*an.  In training the
 * post-activations overwrite the input projection in pre (backward differentiates
 * through them: sigma' = s(1-s), tanh' = 1-t^2) and tanh(c_t) is kept.
 *
 * Backward:  dc = dc_{t} + dh o (1 - tanh(c_t)^2);  di = dc g i(1-i);  df = dc c_{t-1} f(1-f);
 *            dg = dc i (1-g^2);  do = dh tanh(c_t) o(1-o);  dc_{t-1} = dc f
 *
 * The variants (issue 13; both may be combined):
 *   peepholes (ONNX):  i = sigma(.. + p_i c_{t-1}),  f = sigma(.. + p_f c_{t-1}),
 *                      o = sigma(.. + p_o c_t);  backward: dc += do p_o first, then
 *                      dc_{t-1} = dc f + di p_i + df p_f  (di, df, do: pre-activation
 *                      gradients; dp_* = sums of them times c, formed by the loop)
 *   projection (PyTorch proj_size): the gate math writes m_t = o tanh(c_t) instead of
 *                      h_t (the loop's projection phase forms h_t = m_t W_hr^T), and
 *                      backward reads dL/dm_t where it reads dh.
 */

FG_AI void FG_FN(lstm_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    const int H = s->H;
    FG_T *pr = s->pre + b * s->GH + j;
    const size_t o = b * H + j;
    /* x w_ih^T + biases (pre), or with the projection in acc (fused) the biases alone */
    FG_V x4[4];
    for (int g = 0; g < 4; g++)
        x4[g] = !s->fused ? FG_FN(ldn)(pr + g * H, m)
                : s->xb ? FG_FN(ldn)(s->xb + g * H + j, m) : (FG_V){0};
    const FG_V cp = FG_FN(ldn)(s->cp + o, m);
    FG_V ai = x4[0] + FG_FN(ld)(acc);
    FG_V af = x4[1] + FG_FN(ld)(acc + an);
    FG_V ao = x4[3] + FG_FN(ld)(acc + 3 * an);
    if (s->peep) {
        ai += FG_FN(ldn)(s->peep + j, m) * cp;
        af += FG_FN(ldn)(s->peep + H + j, m) * cp;
    }
    const FG_V i = FG_FN(vsigmoid)(ai);
    const FG_V f = FG_FN(vsigmoid)(af);
    const FG_V g = FG_FN(vtanh)(x4[2] + FG_FN(ld)(acc + 2 * an));
    const FG_V c = f * cp + i * g;
    if (s->peep)
        ao += FG_FN(ldn)(s->peep + 2 * H + j, m) * c;
    const FG_V og = FG_FN(vsigmoid)(ao);
    const FG_V tc = FG_FN(vtanh)(c);
    if (s->keep) {
        FG_FN(stn)(pr, m, i);
        FG_FN(stn)(pr + H, m, f);
        FG_FN(stn)(pr + 2 * H, m, g);
        FG_FN(stn)(pr + 3 * H, m, og);
    }
    FG_FN(stn)(s->c + o, m, c);
    if (s->tc)
        FG_FN(stn)(s->tc + o, m, tc);
    FG_FN(stn)((s->m ? s->m : s->h) + o, m, og * tc);   /* m_t, or h_t without projection */
}

FG_AI void FG_FN(lstm_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m)
{
    const int H = s->H;
    const size_t o = b * H + j;
    const FG_T *gr = s->g + b * s->GH + j;
    FG_T *dg = s->dG + b * s->GH + j;
    FG_V dh = FG_FN(ldn)(s->dh + o, m);
    if (s->dy)
        dh += FG_FN(ldn)(s->dy + o, m);
    const FG_V i = FG_FN(ldn)(gr, m), f = FG_FN(ldn)(gr + H, m);
    const FG_V g = FG_FN(ldn)(gr + 2 * H, m), og = FG_FN(ldn)(gr + 3 * H, m);
    const FG_V tc = FG_FN(ldn)(s->tc + o, m);
    FG_V dc = FG_FN(ldn)(s->dc + o, m) + dh * og * ((FG_T)1 - tc * tc);
    const FG_V dao = dh * tc * (og * ((FG_T)1 - og));
    if (s->peep)
        dc += dao * FG_FN(ldn)(s->peep + 2 * H + j, m);
    const FG_V dai = dc * g * (i * ((FG_T)1 - i));
    const FG_V daf = dc * FG_FN(ldn)(s->cp + o, m) * (f * ((FG_T)1 - f));
    FG_FN(stn)(dg, m, dai);
    FG_FN(stn)(dg + H, m, daf);
    FG_FN(stn)(dg + 2 * H, m, dc * i * ((FG_T)1 - g * g));
    FG_FN(stn)(dg + 3 * H, m, dao);
    if (s->peep)
        FG_FN(stn)(s->dc + o, m, dc * f + dai * FG_FN(ldn)(s->peep + j, m)
                                        + daf * FG_FN(ldn)(s->peep + H + j, m));
    else
        FG_FN(stn)(s->dc + o, m, dc * f);
}
