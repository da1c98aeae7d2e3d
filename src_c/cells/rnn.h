/* The Elman RNN (G = 1):   h_t = phi(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),
 * phi = tanh or relu.
 *
 * Gate math over one vector of units: lanes j .. j+m-1 of batch row b.  acc holds the
 * row's recurrent product h_{t-1} W_hh^T for these units (gate g at acc + g*an).
 * Backward differentiates through the output: tanh' = 1 - h_t^2, relu' = [h_t > 0].
 */

FG_AI void FG_FN(rnn_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc,
                          int an, const int relu)
{
    (void)an;
    const FG_V a = FG_FN(ldn)(s->pre + b * s->GH + j, m) + FG_FN(ld)(acc);
    FG_FN(stn)(s->h + b * s->H + j, m, relu ? FG_FN(vrelu)(a) : FG_FN(vtanh)(a));
}

FG_AI void FG_FN(rnn_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m, const int relu)
{
    const size_t o = b * s->H + j;
    FG_V dh = FG_FN(ldn)(s->dh + o, m);
    if (s->dy)
        dh += FG_FN(ldn)(s->dy + o, m);
    const FG_V h = FG_FN(ldn)(s->hc + o, m);
    const FG_V da = relu ? FG_FN(vsel)(h > (FG_T)0, dh, (FG_V){0}) : dh * ((FG_T)1 - h * h);
    FG_FN(stn)(s->dG + b * s->GH + j, m, da);
}

/* The registry's hooks (cells/registry.h). */
FG_AI void FG_FN(rnn_tanh_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    FG_FN(rnn_fwd)(s, b, j, m, acc, an, 0);
}

FG_AI void FG_FN(rnn_relu_fwd)(const FG_FN(fstep) *s, size_t b, int j, int m, const FG_T *acc, int an)
{
    FG_FN(rnn_fwd)(s, b, j, m, acc, an, 1);
}

FG_AI void FG_FN(rnn_tanh_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m)
{
    FG_FN(rnn_bwd)(s, b, j, m, 0);
}

FG_AI void FG_FN(rnn_relu_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m)
{
    FG_FN(rnn_bwd)(s, b, j, m, 1);
}
