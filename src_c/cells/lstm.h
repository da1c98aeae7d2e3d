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
 */

FG_AI void FG_FN(lstm_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    const int H = s->H;
    FG_T *pr = s->pre + b * s->GH + j;
    const size_t o = b * H + j;
    const FG_V i = FG_FN(vsigmoid)(FG_FN(ldn)(pr, m) + FG_FN(ld)(acc));
    const FG_V f = FG_FN(vsigmoid)(FG_FN(ldn)(pr + H, m) + FG_FN(ld)(acc + an));
    const FG_V g = FG_FN(vtanh)(FG_FN(ldn)(pr + 2 * H, m) + FG_FN(ld)(acc + 2 * an));
    const FG_V og = FG_FN(vsigmoid)(FG_FN(ldn)(pr + 3 * H, m) + FG_FN(ld)(acc + 3 * an));
    const FG_V c = f * FG_FN(ldn)(s->cp + o, m) + i * g;
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
    FG_FN(stn)(s->h + o, m, og * tc);
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
    const FG_V dc = FG_FN(ldn)(s->dc + o, m) + dh * og * ((FG_T)1 - tc * tc);
    FG_FN(stn)(dg, m, dc * g * (i * ((FG_T)1 - i)));
    FG_FN(stn)(dg + H, m, dc * FG_FN(ldn)(s->cp + o, m) * (f * ((FG_T)1 - f)));
    FG_FN(stn)(dg + 2 * H, m, dc * i * ((FG_T)1 - g * g));
    FG_FN(stn)(dg + 3 * H, m, dh * tc * (og * ((FG_T)1 - og)));
    FG_FN(stn)(s->dc + o, m, dc * f);
}
