/* The time loops, written once for every cell: forward, BPTT, one step of a stack
 * (generation), and the packing of the recurrent weights they read.
 *
 * Included by kernels.h for one element type and one instruction set, after the cell
 * headers.  The functions run inside the caller's OpenMP parallel region (their
 * barriers, FG_BARRIER of barrier.h, are the region's); thread tid of nth starts every step
 * on a fixed range of hidden units, so its slice of the packed weights stays in its own
 * cache, and in big steps takes what other threads have left of theirs (deal.h).
 *
 * A forward step, over blocks of NU = UV*VL units (all gates of a unit together): the
 * register-tiled product h_{t-1} W_hh^T of a few batch rows at a time (product.h), then
 * the cell's gate math on those rows while the tile is in L1 (the LSTM with B >= a row
 * tile sums x_t W_ih^T in the same tile first, fuses_x); the reset-before GRU takes
 * a second product after a barrier (it needs r*h of every unit).  One barrier ends the
 * step: the next one needs all of h_t.  The backward step is the cell's gate gradients
 * for this thread's units, a barrier, then dL/dh_{t-1} = direct part + dG W_hh over
 * panels of dh's columns; when those are dealt, a barrier follows (the next gate
 * gradients read this thread's units of dh, which another thread may have written).
 * With B >= RIDE_DX_ROWS (_recurrence.pyx) the step then forms dx_t = dG_t W_ih over
 * panels of dx's columns while dG_t is still in cache (phase C; the GRU lbr's n columns
 * from dnx_t), where one BLAS product over all rows after the loop re-read dG from memory.
 *
 * Every output element is computed by the same code in the same order whatever the
 * thread count: results are bit-identical for any n_threads.
 *
 * The LSTM variants (issue 13) are optional phases of the same loop, off when their
 * arguments are zero / NULL.  Peepholes live in the gate math (cells/lstm.h) and add
 * their gradient sums next to the bias sums.  A projection (h = m W_hr^T, P outputs)
 * adds a phase to the forward step: the gate math writes m_t for this thread's units,
 * a barrier, then h_t for this thread's panels of the P outputs (proj_phase), and the
 * recurrent product runs over K = P.  BPTT with a projection starts each step with
 * dh_t + dy_t for this thread's panels of P (kept in dhs), a barrier, then dm_t =
 * dh_t W_hr for this thread's units feeding the gate gradients; dh_{t-1} = dG W_hh is
 * formed for this thread's panels of P.
 *
 * Packed weights (zero-padded past H):
 *   forward   block u (units j0 = u*NU ..), product group 1 then group 2 (gru rb):
 *             P[u][k][(g*UV + v)*VL + l] = w_hh[g*H + j0 + v*VL + l, k]
 *             group 1: every gate (gru rb: r, z), group 2: gate n (gru rb only);
 *             the last block of n < NU units, where it saves vectors (grp_nv), compact:
 *             P[u][k][g*n + j] = w_hh[g*H + j0 + j, k], j < n (g counted in its group)
 *   backward  panel q (units j0 = q*4*VL ..):  P[q][k][l] = w_hh[k, j0 + l],  l < 4*VL, k < G*H
 *             (phase C's w_ih likewise: panels of its D columns)
 * Layout of the per-step arrays (dense or packed/ragged): see fastgates.h.
 */

/* The cells' hooks, from the registry (cells/registry.h).  `cell` is a constant in every
 * specialised loop (the entry points at the end), so these switches fold away. */

FG_AI int FG_FN(gates)(const int cell)
{
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: return G;
    switch (cell) { FG_CELLS(FG_X) }
#undef FG_X
    return 1;
}

/* Cells that carry a cell state c. */
FG_AI int FG_FN(has_c)(const int cell)
{
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: return has_c;
    switch (cell) { FG_CELLS(FG_X) }
#undef FG_X
    return 0;
}

/* The LayerNorm cells: their steps run the optional LayerNorm phases (below). */
FG_AI int FG_FN(is_ln)(const int cell) { return cell == FG_LNLSTM || cell == FG_LNGRU; }

FG_AI int FG_FN(uv)(const int cell) { return FG_FN(gates)(cell) == 1 ? 4 : 1; }

/* Gates in the first product group (the rest, if any, come after a barrier). */
FG_AI int FG_FN(group1)(const int cell) { return cell == FG_GRU_RB ? 2 : FG_FN(gates)(cell); }

FG_AI void FG_FN(fwd_vec)(const int cell, const FG_FN(fstep) *s, size_t b, int j, int m,
                          const FG_T *acc, int an)
{
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: FG_FN(fwd)(s, b, j, m, acc, an); break;
    switch (cell) { FG_CELLS(FG_X) }
#undef FG_X
}

FG_AI void FG_FN(fwd_vec2)(const int cell, const FG_FN(fstep) *s, size_t b, int j, int m,
                           const FG_T *acc)
{
    if (cell == FG_GRU_RB)
        FG_FN(gru_rb_fwd2)(s, b, j, m, acc);
}

/* The registry's bwd hook of cells whose gate gradients run in phases of their own. */
FG_AI void FG_FN(no_bwd)(const FG_FN(bstep) *s, size_t b, int j, int m)
{
    (void)s, (void)b, (void)j, (void)m;
}

FG_AI void FG_FN(bwd_vec)(const int cell, const FG_FN(bstep) *s, size_t b, int j, int m)
{
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: FG_FN(bwd)(s, b, j, m); break;
    switch (cell) { FG_CELLS(FG_X) }
#undef FG_X
}

FG_AI void FG_FN(bwd_vec2)(const int cell, const FG_FN(bstep) *s, size_t b, int j, int m,
                           const FG_T *acc)
{
    if (cell == FG_GRU_RB)
        FG_FN(gru_rb_bwd2)(s, b, j, m, acc);
}

/* bias[c .. c+m-1], or zeros without a bias (the LayerNorm cells add theirs after the LN). */
FG_AI FG_V FG_FN(ldb)(const FG_T *bias, size_t c, int m)
{
    return bias ? FG_FN(ldn)(bias + c, m) : (FG_V){0};
}

/* Vectors per k row of a product group of ng gates in a unit block of n valid units
 * (packed weights, FG_PACK_HH / FG_PACK_IH): ng*UV in a full block; the last block of
 * H % NU units packs its units of every gate back to back -- lane g*n + j for the group's
 * gate g, unit j -- in fewer vectors where that saves any (the "compact tail": at H = 100
 * an LSTM's last block is one vector instead of four, so the product streams 7 % fewer
 * weights and its thread's share of a B = 1 step is 3.25 blocks instead of 4). */
FG_AI int FG_FN(grp_nv)(int ng, int UV, int n)
{
    const int full = ng * UV, c = (ng * n + FG_VL - 1) / FG_VL;
    return n < UV * FG_VL && c < full ? c : full;
}

/* Where a block's product group 2 (gru rb: gate n) starts in it: after group 1's K rows. */
FG_AI size_t FG_FN(group2_at)(int K, int g1, int UV, int n)
{
    return (size_t)K * FG_FN(grp_nv)(g1, UV, n) * FG_VL;
}

/* A compact tail block's tile C (mr rows of nvc vectors, lane g*n + j) spread to the layout
 * of a full block's tile in out (mr rows of ng*UV vectors, gate g's unit j at lane
 * g*UV*VL + j, zero past n): what the gate math and the projection's epilogue read. */
FG_AI void FG_FN(spread_tail)(int mr, int nvc, int ng, int UV, int n, const FG_T *C, FG_T *out)
{
    for (int r = 0; r < mr; r++)
        for (int g = 0; g < ng; g++)
            for (int v = 0; v < UV; v++) {
                const int m = n - v * FG_VL < FG_VL ? n - v * FG_VL : FG_VL;
                const FG_T *c = C + (size_t)r * nvc * FG_VL + (size_t)g * n + (size_t)v * FG_VL;
                FG_FN(st)(out + ((size_t)r * ng * UV + (size_t)g * UV + v) * FG_VL,
                          m > 0 ? FG_FN(ldn)(c, m) : (FG_V){0});
            }
}

/* The input projection of R rows for this thread's blocks:
 *   pre[r, g*H + j] = sum_d x[r, d] w_ih[g*H + j, d] + bias[g*H + j]     (x: [R, D])
 *   pre[r, :] = w_ih^T[tok[r], :] + bias                                  (token ids)
 * with the packed w_ih (FG_PACK_IH).  The sum over d runs in one order (no split into
 * partial sums), whatever the number of rows: a step of B rows (fg_step) computes
 * exactly what the sequence forward computes for the same rows.  bias may be NULL.
 * Token ids read wT = w_ih^T (D, G*H), or with wdir w_ih (G*H, D) itself, column by
 * column (a call with fewer rows than D reads less than transposing w_ih would). */
FG_AI void FG_FN(project)(const int cell, int R, int D, int H, const FG_T *x, const long long *tok,
                          const FG_T *Pi, const FG_T *wT, int wdir, const FG_T *bias, FG_T *pre,
                          int u0, int u1)
{
    const int G = FG_FN(gates)(cell), UV = FG_FN(uv)(cell), NU = UV * FG_VL, nv = G * UV;
    const size_t GH = (size_t)G * H, blk = (size_t)D * G * NU;
    const int MR = FG_FN(mr_for)(nv);
    FG_T acc[FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    FG_T tail[FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    for (int u = u0; u < u1; u++) {
        const int j0 = u * NU, n = H - j0 < NU ? H - j0 : NU;
        if (tok && wdir) {
            /* a block's 16 rows of w_ih stay in L1 while every token reads its column */
            FG_T col[FG_VL] __attribute__((aligned(64)));
            for (int g = 0; g < G; g++)
                for (int v = 0; v < UV && v * FG_VL < n; v++) {
                    const int m = n - v * FG_VL < FG_VL ? n - v * FG_VL : FG_VL;
                    const size_t c = (size_t)g * H + j0 + (size_t)v * FG_VL;
                    const FG_V b = FG_FN(ldb)(bias, c, m);
                    for (int r = 0; r < R; r++) {
                        for (int k = 0; k < m; k++)
                            col[k] = wT[(c + k) * D + tok[r]];
                        FG_FN(stn)(pre + (size_t)r * GH + c, m, FG_FN(ldn)(col, m) + b);
                    }
                }
            continue;
        }
        if (tok) {
            for (int r = 0; r < R; r++)
                for (int g = 0; g < G; g++)
                    for (int v = 0; v < UV && v * FG_VL < n; v++) {
                        const int m = n - v * FG_VL < FG_VL ? n - v * FG_VL : FG_VL;
                        const size_t c = (size_t)g * H + j0 + (size_t)v * FG_VL;
                        FG_FN(stn)(pre + (size_t)r * GH + c, m, FG_FN(ldn)(wT + (size_t)tok[r] * GH + c, m)
                                                                  + FG_FN(ldb)(bias, c, m));
                    }
            continue;
        }
        const FG_T *Pu = Pi + (size_t)u * blk;
        const int nvu = FG_FN(grp_nv)(G, UV, n);        /* nv, or fewer: the compact tail */
        const FG_T *ac = nvu < nv ? tail : acc;
        for (int b0 = 0; b0 < R; b0 += MR) {
            const int mr = R - b0 < MR ? R - b0 : MR;
            FG_FN(tiles1)(nvu, mr, x + (size_t)b0 * D, (size_t)D, Pu, (size_t)nvu * FG_VL, FG_VL, D, acc);
            if (nvu < nv)
                FG_FN(spread_tail)(mr, nvu, G, UV, n, acc, tail);
            for (int r = 0; r < mr; r++)
                for (int g = 0; g < G; g++)
                    for (int v = 0; v < UV && v * FG_VL < n; v++) {
                        const int m = n - v * FG_VL < FG_VL ? n - v * FG_VL : FG_VL;
                        const size_t c = (size_t)g * H + j0 + (size_t)v * FG_VL;
                        const FG_V sum = FG_FN(ld)(ac + (size_t)r * nv * FG_VL + (size_t)(g * UV + v) * FG_VL);
                        FG_FN(stn)(pre + (size_t)(b0 + r) * GH + c, m, sum + FG_FN(ldb)(bias, c, m));
                    }
        }
    }
}

/* A step's input projection inside the time loop (see forward_cell): this step's rows of
 * x (or token ids) and the weights of FG_FN(project). */
typedef struct {
    int D;
    const FG_T *x;              /* (Bt, D) or NULL */
    const long long *tok;       /* (Bt,) or NULL */
    const FG_T *Pi, *wT, *bias;
    int wdir;                   /* wT is w_ih itself (see FG_FN(project)) */
} FG_FN(xin);

/* Whether a step of B rows sums its input projection inside the recurrent tiles, x_t
 * W_ih^T then h_{t-1} W_hh^T into the same accumulators (the biases added by the gate
 * math): the plain and variant LSTM with float input rows, B >= a row tile (fewer rows
 * project all steps up front, where row tiles span steps).  Nothing is stored to pre
 * and read back, and the short-K projection tiles go (8 % of a d2l LSTM forward's perf
 * samples; the fused forward measured 2-3 % faster there, no change at D = 256). */
FG_AI int FG_FN(fuses_x)(const int cell, int B, const FG_T *x)
{
    return cell == FG_LSTM && x
           && B >= FG_FN(mr_for)(FG_FN(gates)(cell) * FG_FN(uv)(cell));
}

/* Row groups per unit block in a dealt phase: whole row tiles of MR rows (so the tiles,
 * and the order of every sum, are those of the undivided block), about 4 items per
 * thread in all. */
FG_AI int FG_FN(row_groups)(int items, int Bt, int MR, int nth)
{
    const int tiles = (Bt + MR - 1) / MR;
    const int ng = (4 * nth + items - 1) / items;
    return ng < 1 ? 1 : ng < tiles ? ng : tiles > 0 ? tiles : 1;
}

/* Item `it` of a BPTT panel phase (ng row groups per panel): panel it / ng of up to 4
 * vectors of the ncols output columns -- columns [j0, j0 + n), nv vectors, row tiles of MR
 * rows -- times row group it % ng, rows [r0, r1) in whole tiles.  0: a row group past the
 * last tile (a narrower panel's taller tiles leave it empty groups at the end). */
FG_AI int FG_FN(panel_item)(int it, int ng, int ncols, int Bt, int *j0, int *n, int *nv, int *MR,
                            int *r0, int *r1)
{
    const int NP = 4 * FG_VL;
    *j0 = it / ng * NP;
    *n = ncols - *j0 < NP ? ncols - *j0 : NP;
    *nv = (*n + FG_VL - 1) / FG_VL;
    *MR = FG_FN(mr_for)(*nv);
    const int span = ((Bt + *MR - 1) / *MR + ng - 1) / ng * *MR;
    *r0 = it % ng * span;
    *r1 = Bt - *r0 < span ? Bt : *r0 + span;
    return *r0 < *r1;
}

/* Vectors of the columns [p0 * NP, p1 * NP) (clipped to N) of thread tid's panels. */
FG_AI int FG_FN(range_vecs)(int np, int NP, int N, int tid, int nth)
{
    int p0, p1;
    fg_range(np, tid, nth, &p0, &p1);
    const int c1 = p1 * NP < N ? p1 * NP : N, cols = c1 - p0 * NP;
    return cols > 0 ? (cols + FG_VL - 1) / FG_VL : 0;
}

/* Ask for rows [r0, r1) of a product's left operand A (row stride lda, K used) before
 * the tiles read it: with few rows, A (a step's h_{t-1}) was just written, partly by the
 * other threads, and the tiles would take its lines from their cores one at a time, in k
 * order, each miss a stall (B = 1 forward: 0.97-0.98x the time with it, side by side;
 * BPTT's dG_t gained nothing).  More rows: the tiles' own loads overlap enough. */
FG_AI void FG_FN(prefetch_rows)(const FG_T *A, size_t lda, int r0, int r1, int K)
{
    if (r1 - r0 > 8)
        return;
    for (int r = r0; r < r1; r++)
        for (int k = 0; k < K; k += 64 / (int)sizeof(FG_T))
            __builtin_prefetch(A + (size_t)r * lda + k);
}

/* The gate math of one tile: rows [b0, b0 + mr) of block u's n units (j0 = u * NU) from
 * its accumulators ac ([mr][nv] vectors, a compact tail already spread out).  Out of line,
 * one copy per cell (GCC clones it for the constant cell): inlined into the thread's
 * whole loop, its values and the sigmoid/tanh constants lived in stack slots (with the
 * one-path activations, LSTM forward d2l 0.88x, mid 0.94x the time of the inlined old
 * ones, side by side; the activations alone 0.95x, 0.97x). */
static __attribute__((noinline)) void FG_FN(fwd_gates)(const int cell, const int second,
                                                      const FG_FN(fstep) *s, int b0, int mr,
                                                      int j0, int n, int nv, const FG_T *ac)
{
    const int UV = FG_FN(uv)(cell), NU = UV * FG_VL;
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < UV && v * FG_VL < n; v++) {
            const int m = n - v * FG_VL < FG_VL ? n - v * FG_VL : FG_VL;
            const FG_T *ar = ac + (size_t)r * nv * FG_VL + (size_t)v * FG_VL;
            if (second)
                FG_FN(fwd_vec2)(cell, s, (size_t)(b0 + r), j0 + v * FG_VL, m, ar);
            else
                FG_FN(fwd_vec)(cell, s, (size_t)(b0 + r), j0 + v * FG_VL, m, ar, NU);
        }
}

/* The product of one tile of a forward group: rows [b0, b0 + mr) of block u (n units from
 * j0; nvu of the group's nv vectors, fewer in the compact tail) into acc, spread into tail
 * when compact; returns the accumulators its gate math reads.  Asks first for the tile's
 * rows of pre, which the gate math reads (out of L1 by now unless just projected). */
FG_AI const FG_T *FG_FN(fwd_tile)(const int cell, const FG_FN(fstep) *s, const FG_FN(xin) *xin,
                                  int fuse, int u, int b0, int mr, int j0, int n, int ng, int nv,
                                  int nvu, const FG_T *A, int K, const FG_T *Pu, FG_T *acc,
                                  FG_T *tail)
{
    const int G = FG_FN(gates)(cell), UV = FG_FN(uv)(cell), NU = UV * FG_VL, H = s->H;
    if (!xin)
        for (int r = 0; r < mr; r++)
            for (int g = 0; g < G; g++)
                for (int c = 0; c < n; c += 64 / (int)sizeof(FG_T))
                    __builtin_prefetch(s->pre + (size_t)(b0 + r) * s->GH + (size_t)g * H + j0 + c);
    if (fuse)       /* after the block's panel of the packed w_ih (FG_FN(project)'s layout) */
        FG_FN(tilesx)(nvu, mr, xin->x + (size_t)b0 * xin->D, (size_t)xin->D,
                      xin->Pi + (size_t)u * xin->D * G * NU, (size_t)nvu * FG_VL, xin->D,
                      A + (size_t)b0 * K, (size_t)K, Pu, (size_t)nvu * FG_VL, FG_VL, K, acc);
    else
        FG_FN(tiles)(nvu, mr, A + (size_t)b0 * K, (size_t)K, Pu, (size_t)nvu * FG_VL, FG_VL, K, acc);
    if (nvu == nv)
        return acc;
    FG_FN(spread_tail)(mr, nvu, ng, UV, n, acc, tail);
    return tail;
}

/* One product group over Bt rows, dealt as items (unit block u, row group) -- the static
 * range of blocks without stealing -- each tile followed by its gate math.  A: [Bt, K] (row
 * stride K; K = the width of h, or H for gru rb's second group), group offset goff inside
 * each block.  xin (group 1, the projection in the loop): the item's rows of pre are
 * projected first, for the item's units only. */
FG_AI void FG_FN(fwd_group)(const int cell, const int second, const FG_FN(fstep) *s, int Bt,
                            const FG_T *A, const FG_T *P, const FG_FN(xin) *xin,
                            const fg_deal *deal, unsigned *phase, int tid, int nth)
{
    const int H = s->H, UV = FG_FN(uv)(cell), NU = UV * FG_VL, nb = (H + NU - 1) / NU;
    const int K = second || !s->R ? H : s->R;
    const int G = FG_FN(gates)(cell), g1 = FG_FN(group1)(cell);
    const int ng = second ? G - g1 : g1, nv = ng * UV;
    const int MR = FG_FN(mr_for)(nv);
    const size_t blk = (size_t)K * G * NU;
    const int nrg = deal ? FG_FN(row_groups)(nb, Bt, MR, nth) : 1;
    const int span = ((Bt + MR - 1) / MR + nrg - 1) / nrg * MR;     /* rows per group */
    FG_T acc[FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    FG_T tail[FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    const int fuse = xin && s->fused;       /* x w_ih^T inside the tiles (lstm) */
    fg_dealer d;
    fg_deal_begin(&d, deal, (*phase)++, nb * nrg, tid, nth);
    fg_deal_reverse(&d, s->rev);
    for (int it; (it = fg_deal_next(&d)) >= 0;) {
        const int u = it / nrg, r0 = it % nrg * span, r1 = Bt - r0 < span ? Bt : r0 + span;
        if (r0 >= r1)           /* a row group past the last tile */
            continue;
        const int j0 = u * NU, n = H - j0 < NU ? H - j0 : NU;
        /* this block's vectors (the compact tail: fewer) and where its group starts */
        const int nvu = FG_FN(grp_nv)(ng, UV, n);
        const FG_T *Pu = P + (size_t)u * blk + (second ? FG_FN(group2_at)(K, g1, UV, n) : 0);
        FG_FN(prefetch_rows)(A, (size_t)K, r0, r1, K);
        if (xin && !fuse)
            FG_FN(project)(cell, r1 - r0, xin->D, H, xin->x ? xin->x + (size_t)r0 * xin->D : NULL,
                           xin->tok ? xin->tok + r0 : NULL, xin->Pi, xin->wT, xin->wdir, xin->bias,
                           s->pre + (size_t)r0 * s->GH, u, u + 1);
        for (int b0 = r0; b0 < r1; b0 += MR) {
            const int mr = r1 - b0 < MR ? r1 - b0 : MR;
            const FG_T *ac = FG_FN(fwd_tile)(cell, s, xin, fuse, u, b0, mr, j0, n, ng, nv, nvu, A,
                                             K, Pu, acc, tail);
            FG_FN(fwd_gates)(cell, second, s, b0, mr, j0, n, nv, ac);
        }
    }
}


/* Items whose gate math a small step runs together (fwd_group_small). */
#define FG_DEFER 4

/* fwd_group's first group for a small sequence step (static ranges, Bt <= MR: one row tile
 * per block -- fwd_step checks; B = 1 in character models): the products of up to FG_DEFER
 * blocks first, then their gate math.  The gate math of one tile is a short chain of
 * dependent operations (sigmoid, tanh, c, tanh(c)) that cannot overlap the next block's
 * product, hundreds of instructions long; back to back, the blocks' chains overlap (B = 1,
 * T = 25, H = 100 LSTM: a block took ~800 cycles for its product and ~380 more for its gate
 * math).  The same operations on the same values as fwd_group: the results do not change. */
FG_AI void FG_FN(fwd_group_small)(const int cell, const FG_FN(fstep) *s, int Bt, const FG_T *A,
                                  const FG_T *P, const FG_FN(xin) *xin, unsigned *phase, int tid,
                                  int nth)
{
    const int H = s->H, UV = FG_FN(uv)(cell), NU = UV * FG_VL, nb = (H + NU - 1) / NU;
    const int K = s->R ? s->R : H, G = FG_FN(gates)(cell), ng = FG_FN(group1)(cell), nv = ng * UV;
    FG_T acc[FG_DEFER][FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    FG_T tail[FG_DEFER][FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    const FG_T *due[FG_DEFER];          /* accumulators of the blocks whose gate math is to come */
    int due_u[FG_DEFER], ndue = 0;
    const int fuse = xin && s->fused;
    fg_dealer d;
    fg_deal_begin(&d, NULL, (*phase)++, nb, tid, nth);
    fg_deal_reverse(&d, s->rev);
    FG_FN(prefetch_rows)(A, (size_t)K, 0, Bt, K);
    for (int u = 0; u >= 0;) {
        u = fg_deal_next(&d);
        if (u >= 0) {
            const int j0 = u * NU, n = H - j0 < NU ? H - j0 : NU;
            if (xin && !fuse)
                FG_FN(project)(cell, Bt, xin->D, H, xin->x, xin->tok, xin->Pi, xin->wT, xin->wdir,
                               xin->bias, s->pre, u, u + 1);
            due[ndue] = FG_FN(fwd_tile)(cell, s, xin, fuse, u, 0, Bt, j0, n, ng, nv,
                                        FG_FN(grp_nv)(ng, UV, n), A, K,
                                        P + (size_t)u * K * G * NU, acc[ndue], tail[ndue]);
            due_u[ndue++] = u;
            if (ndue < FG_DEFER)
                continue;
        }
        for (int q = 0; q < ndue; q++) {
            const int j0 = due_u[q] * NU, n = H - j0 < NU ? H - j0 : NU;
            FG_FN(fwd_gates)(cell, 0, s, 0, Bt, j0, n, nv, due[q]);
        }
        ndue = 0;
    }
}

/* The projection phase of a projected LSTM step (after the gate math of every unit):
 *   h[b, p] = sum_k m[b, k] w_hr[p, k]      b < Bt, p < R
 * for this thread's panels of 4 vectors of the R outputs.  Whole panels and row tiles
 * that depend only on Bt: the order of every sum is the same for any thread count. */
FG_AI void FG_FN(proj_phase)(const FG_FN(fstep) *s, int Bt, int tid, int nth)
{
    const int H = s->H, R = s->R, NP = 4 * FG_VL, np = (R + NP - 1) / NP;
    int q0, q1;
    fg_range(np, tid, nth, &q0, &q1);
    FG_T acc[FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    for (int q = q0; q < q1; q++) {
        const int p0 = q * NP, n = R - p0 < NP ? R - p0 : NP;
        const int nv = (n + FG_VL - 1) / FG_VL, MR = FG_FN(mr_for)(nv);
        const FG_T *Pq = s->Pr + (size_t)q * H * NP;        /* panel [H][NP] */
        for (int b0 = 0; b0 < Bt; b0 += MR) {
            const int mr = Bt - b0 < MR ? Bt - b0 : MR;
            FG_FN(tiles)(nv, mr, s->m + (size_t)b0 * H, (size_t)H, Pq, NP, FG_VL, H, acc);
            FG_FN(tile_out)(mr, nv, acc, s->h + (size_t)b0 * R + p0, (size_t)R, n, 0);
        }
    }
}

/* The LayerNorm phases (FG_LNLSTM, FG_LNGRU): optional phases of the loops below, run only
 * for the LayerNorm cells.  They normalise rows whose units are spread over the threads
 * (the input projection and the recurrent product of a step, the LSTM's c_t) with one
 * reduction per row and phase: each block of VL units leaves its partial sums in
 * part_x / part_h / part_c (layernorm.h), one barrier, then every thread combines the
 * partials of every row in block order -- the same blocks and the same order for any
 * thread count.  The input projection enters the loop without biases (pre); its LN rides
 * on the recurrent side's reduction, so it adds no pass over the sequence and no barrier.
 *   forward step   phase 1 (in fwd_group: the product, ln_fwd1: both sides' partials) |
 *                  barrier | phase 2: the gates (lnlstm: c_t and its partials) |
 *                  lnlstm: barrier | phase 3: h_t
 *   backward step  lnlstm: phase B0 (LN(c_t)'s partials) | barrier | phase B1: the gate
 *                  gradients, parameter sums, both sides' partials | barrier | phase B2:
 *                  dG and dax through their LNs; then the loop's barrier and dh = dG W_hh
 *                  as for every cell */

/* Forward phases 2 and 3 for this thread's blocks [u0, u1), after phase 1. */
FG_AI void FG_FN(ln_fwd_phases)(const int cell, const FG_FN(fstep) *s, int Bt, int u0, int u1)
{
    const int H = s->H, nb = s->nb, G = FG_FN(gates)(cell), nl = H - (nb - 1) * FG_VL;
    const int writer = u0 == 0 && u1 > 0;     /* the owner of block 0 stores the row's rstd */
    const FG_T n = (FG_T)(G * FG_VL), n_last = (FG_T)(G * nl);
    FG_BARRIER();
    for (int b = 0; b < Bt; b++) {
        FG_T st[4];                            /* mean_x, rstd_x, mean_h, rstd_h */
        const size_t row = (size_t)b * 2 * nb;
        FG_FN(ln_stats)(s->part_x + row, nb, n, n_last, &st[0], &st[1]);
        FG_FN(ln_stats)(s->part_h + row, nb, n, n_last, &st[2], &st[3]);
        if (s->rstd && writer)
            s->rstd[(size_t)b * 3] = st[1], s->rstd[(size_t)b * 3 + 1] = st[3];
        for (int u = u0; u < u1; u++) {
            const int j = u * FG_VL, m = H - j < FG_VL ? H - j : FG_VL;
            if (cell == FG_LNLSTM)
                FG_FN(lnlstm_fwd2)(s, (size_t)b, j, m, st);
            else
                FG_FN(lngru_fwd2)(s, (size_t)b, j, m, st);
        }
    }
    if (cell != FG_LNLSTM)
        return;
    FG_BARRIER();
    for (int b = 0; b < Bt; b++) {
        FG_T mean, rstd;
        FG_FN(ln_stats)(s->part_c + (size_t)b * 2 * nb, nb, (FG_T)FG_VL, (FG_T)nl, &mean, &rstd);
        if (s->rstd && writer)
            s->rstd[(size_t)b * 3 + 2] = rstd;
        for (int u = u0; u < u1; u++) {
            const int j = u * FG_VL, m = H - j < FG_VL ? H - j : FG_VL;
            FG_FN(lnlstm_fwd3)(s, (size_t)b, j, m, mean, rstd);
        }
    }
}

/* The forward step's LayerNorm fields: once per call (off = -1), then per step at row off.
 * part: scratch (3, B, H, 2); hn per step (extra_step) or one (B, G*H) scratch. */
FG_AI void FG_FN(ln_fstep)(const int cell, FG_FN(fstep) *s, const fg_forward_args *a, long off)
{
    const size_t GH = (size_t)FG_FN(gates)(cell) * a->H, BH2 = (size_t)2 * a->B * a->H;
    if (off < 0) {
        s->ln_ih = (const FG_T *)a->ln_ih, s->b_ih = (const FG_T *)a->bias;
        s->ln_hh = (const FG_T *)a->ln_hh, s->ln_c = (const FG_T *)a->ln_c;
        s->ln_cb = (const FG_T *)a->ln_cb, s->b_rec = (const FG_T *)a->b_rec;
        s->part_x = (FG_T *)a->part, s->part_h = s->part_x + BH2, s->part_c = s->part_h + BH2;
        s->nb = (a->H + FG_VL - 1) / FG_VL;
        return;
    }
    s->xn = a->xn ? (FG_T *)a->xn + (size_t)off * GH : NULL;
    s->hn = (FG_T *)a->hn + (a->extra_step ? (size_t)off * GH : 0);
    s->cn = a->cn ? (FG_T *)a->cn + (size_t)off * a->H : NULL;
    s->rstd = a->rstd ? (FG_T *)a->rstd + (size_t)off * 3 : NULL;
}

/* Backward phases B0-B2 of this thread's units [jlo, jhi), before the loop's barrier. */
FG_AI void FG_FN(ln_bwd_phases)(const int cell, const FG_FN(bstep) *s, int Bt, int jlo, int jhi)
{
    const int nb = s->nb, G = FG_FN(gates)(cell);
    /* unit vectors outermost: each keeps its parameter sums in registers over the rows */
    if (cell == FG_LNLSTM) {
        for (int j = jlo; j < jhi; j += FG_VL)
            FG_FN(lnlstm_bwd0)(s, Bt, j, jhi - j < FG_VL ? jhi - j : FG_VL);
        FG_BARRIER();
        enum { CHUNK = 64 };                /* rows whose statistics are formed at a time */
        FG_T st[3 * CHUNK];
        for (int b0 = 0; b0 < Bt; b0 += CHUNK) {
            const int b1 = Bt - b0 < CHUNK ? Bt : b0 + CHUNK;
            for (int b = b0; b < b1; b++) {
                FG_T *o = st + 3 * (b - b0);
                FG_FN(ln_sums)(s->part_c + (size_t)b * 2 * nb, nb, (FG_T)s->H, &o[0], &o[1]);
                o[2] = s->rstd[(size_t)b * 3 + 2];
            }
            for (int j = jlo; j < jhi; j += FG_VL)
                FG_FN(lnlstm_bwd1)(s, b0, b1, j, jhi - j < FG_VL ? jhi - j : FG_VL, st);
        }
    } else {
        for (int j = jlo; j < jhi; j += FG_VL)
            FG_FN(lngru_bwd1)(s, Bt, j, jhi - j < FG_VL ? jhi - j : FG_VL);
    }
    FG_BARRIER();
    for (int b = 0; b < Bt; b++) {
        FG_T st[6];             /* means of g, g*xhat and rstd: input side, recurrent side */
        const size_t row = (size_t)b * 2 * nb;
        FG_FN(ln_sums)(s->part_x + row, nb, (FG_T)s->GH, &st[0], &st[1]);
        FG_FN(ln_sums)(s->part_h + row, nb, (FG_T)s->GH, &st[3], &st[4]);
        st[2] = s->rstd[(size_t)b * 3], st[5] = s->rstd[(size_t)b * 3 + 1];
        for (int j = jlo; j < jhi; j += FG_VL)
            FG_FN(ln_bwd2)(s, (size_t)b, j, jhi - j < FG_VL ? jhi - j : FG_VL, G, st);
    }
}

/* The backward step's LayerNorm fields: once per call (off = -1, and the sums of this
 * thread's units [jlo, jhi) zeroed), then per step at row off. */
FG_AI void FG_FN(ln_bstep)(const int cell, FG_FN(bstep) *s, const fg_backward_args *a, long off,
                           int jlo, int jhi)
{
    const int H = a->H, G = FG_FN(gates)(cell);
    const size_t GH = (size_t)G * H, BH2 = (size_t)2 * a->B * H;
    if (off < 0) {
        s->ln_ih = (const FG_T *)a->ln_ih, s->ln_hh = (const FG_T *)a->ln_hh;
        s->ln_c = (const FG_T *)a->ln_c;
        s->db_ih = (FG_T *)a->db_ih, s->db_hh = (FG_T *)a->db;
        s->dln_ih = (FG_T *)a->dln_ih, s->dln_hh = (FG_T *)a->dln_hh;
        s->dln_c = (FG_T *)a->dln_c, s->dln_cb = (FG_T *)a->dln_cb;
        s->part_x = (FG_T *)a->part, s->part_h = s->part_x + BH2, s->part_c = s->part_h + BH2;
        s->nb = (H + FG_VL - 1) / FG_VL;
        const size_t n = (size_t)(jhi - jlo) * sizeof(FG_T);
        for (int g = 0; g < G; g++) {
            if (cell == FG_LNGRU)
                memset(s->db_ih + (size_t)g * H + jlo, 0, n);
            memset(s->dln_ih + (size_t)g * H + jlo, 0, n);
            memset(s->dln_hh + (size_t)g * H + jlo, 0, n);
        }
        if (cell == FG_LNLSTM) {
            memset(s->dln_c + jlo, 0, n);
            memset(s->dln_cb + jlo, 0, n);
        }
        return;
    }
    s->xn = (const FG_T *)a->xn + (size_t)off * GH, s->hn = (const FG_T *)a->hn + (size_t)off * GH;
    s->cn = a->cn ? (const FG_T *)a->cn + (size_t)off * H : NULL;
    s->rstd = (const FG_T *)a->rstd + (size_t)off * 3;
    s->dax = (FG_T *)a->dax + (size_t)off * GH;
}

/* One forward step of Bt rows; the caller ends it with a barrier.  Its products' unit
 * blocks are dealt by `deal` (from fg_deal_use; NULL: each thread its static range); xin:
 * the step's input projection, done in the loop (or NULL). */
FG_AI void FG_FN(fwd_step)(const int cell, const FG_FN(fstep) *s, int Bt, const FG_T *P,
                           const FG_FN(xin) *xin, const fg_deal *deal, unsigned *phase,
                           int tid, int nth)
{
    /* static ranges, short products (fwd_group_small: where the gate math is a large share
     * of a block; measured: B = 1 and 2 at H = 100 0.93-0.96x the time, B = 2 at H = 256
     * 1.01x, B = 1 at H = 512 0.99x) */
    const int small = s->defer && !deal && Bt <= FG_FN(mr_for)(FG_FN(group1)(cell) * FG_FN(uv)(cell))
                      && Bt * (s->R ? s->R : s->H) <= 256;
    if (small)
        FG_FN(fwd_group_small)(cell, s, Bt, s->hp, P, xin, phase, tid, nth);
    else
        FG_FN(fwd_group)(cell, 0, s, Bt, s->hp, P, xin, deal, phase, tid, nth);
    if (FG_FN(group1)(cell) < FG_FN(gates)(cell)) {
        /* the second group's input (gru rb: r * h_{t-1}) must be complete */
        FG_BARRIER();
        FG_FN(fwd_group)(cell, 1, s, Bt, s->ex, P, NULL, deal, phase, tid, nth);
    }
    if (cell == FG_LSTM && s->m) {
        /* lstm projection: h_t = m_t W_hr^T needs m_t of every unit */
        FG_BARRIER();
        FG_FN(proj_phase)(s, Bt, tid, nth);
    }
    if (FG_FN(is_ln)(cell)) {
        const int nb = (s->H + FG_FN(uv)(cell) * FG_VL - 1) / (FG_FN(uv)(cell) * FG_VL);
        int u0, u1;
        fg_range(nb, tid, nth, &u0, &u1);
        FG_FN(ln_fwd_phases)(cell, s, Bt, u0, u1);
    }
}

FG_AI void FG_FN(forward_cell)(const int cell, const fg_forward_args *a, const fg_deal *deal,
                               int tid, int nth)
{
    const int T = a->T, B = a->B, H = a->H;
    const int R = cell == FG_LSTM && a->proj ? a->proj : H;   /* width of h */
    const size_t GH = (size_t)FG_FN(gates)(cell) * H;
    FG_FN(fstep) s = {0};
    s.H = H, s.GH = GH, s.keep = a->keep, s.b_hn = (const FG_T *)a->b_hn;
    if (cell == FG_LSTM)
        s.R = R, s.Pr = (const FG_T *)a->Pr, s.peep = (const FG_T *)a->peep;
    FG_T *hout = (FG_T *)a->hout, *cout = (FG_T *)a->cout;
    const int NU = FG_FN(uv)(cell) * FG_VL, nb = (H + NU - 1) / NU;
    /* small steps are not dealt (deal.h); nor are the LayerNorm cells' (their phases 2 and 3
     * run on the static ranges, and dealing their products alone measured no gain) */
    deal = FG_FN(is_ln)(cell) ? NULL : fg_deal_use(deal, (long)B * (long)GH * R, nth);
    unsigned phase = 0;
    const FG_T *pbias = FG_FN(is_ln)(cell) ? NULL : (const FG_T *)a->bias;
    /* The input projection: with a full row tile per step, step by step inside the loop
     * (each item's rows of pre are still in cache when its gate math reads them); with
     * fewer rows, all rows up front (row tiles spanning steps use each panel load for
     * more rows).  Its sums run in one order for any rows (FG_FN(project)): the same
     * results. */
    const int has_x = a->x || a->tok;
    const int in_loop = has_x && B >= FG_FN(mr_for)(FG_FN(gates)(cell) * FG_FN(uv)(cell));
    /* inference projecting in the loop reuses one step's pre (cache resident); training
     * keeps every step's (it becomes the saved gates), and the RNN's pre is its h itself */
    const int pre_reused = in_loop && !a->keep && a->pre != a->hout;
    if (has_x && !in_loop) {
        int rows = 0, u0, u1;
        for (int t = 0; t < T; t++)
            rows += a->batch ? a->batch[t] : B;
        fg_range(nb, tid, nth, &u0, &u1);
        FG_FN(project)(cell, rows, a->D, H, (const FG_T *)a->x, a->tok, (const FG_T *)a->Pi,
                       (const FG_T *)a->wT, a->wT_direct, pbias, (FG_T *)a->pre, u0, u1);
        if (deal) {     /* dealt steps read pre at any unit */
            FG_BARRIER();
        }
    }
    FG_FN(xin) xin = {a->D, NULL, NULL, (const FG_T *)a->Pi, (const FG_T *)a->wT, pbias,
                      a->wT_direct};
    s.defer = 1;        /* a sequence's steps (see fwd_step) */
    s.fused = in_loop && FG_FN(fuses_x)(cell, B, (const FG_T *)a->x), s.xb = pbias;
    if (FG_FN(is_ln)(cell))
        FG_FN(ln_fstep)(cell, &s, a, -1);
    size_t off = 0, off_prev = 0;   /* first row of steps t and t-1 (packed layout) */
    for (int t = 0; t < T; off_prev = off, off += a->batch ? a->batch[t] : B, t++) {
        const int Bt = a->batch ? a->batch[t] : B;
        s.rev = t & 1;      /* alternate the order of this thread's blocks (fg_deal_reverse) */
        s.hp = t ? hout + off_prev * R : (const FG_T *)a->h0;
        s.h = hout + off * R;
        s.pre = (FG_T *)a->pre + (pre_reused ? 0 : off * GH);
        s.ex = (FG_T *)a->extra + (a->extra_step ? off * H : 0);
        if (FG_FN(has_c)(cell)) {
            /* in place (inference): c_{t-1} and c_t share one (B, H) state */
            s.cp = a->c_in_place || !t ? (const FG_T *)a->c0 : cout + off_prev * H;
            s.c = a->c_in_place ? cout : cout + off * H;
            s.tc = a->tc ? (FG_T *)a->tc + off * H : NULL;
            if (a->proj)
                s.m = (FG_T *)a->m + (a->m_step ? off * H : 0);
        }
        if (FG_FN(is_ln)(cell))
            FG_FN(ln_fstep)(cell, &s, a, (long)off);
        /* this step's input projection, item by item just before the item's product (the
         * item reads pre only at its own units and rows) */
        xin.x = a->x ? (const FG_T *)a->x + off * a->D : NULL;
        xin.tok = a->tok ? a->tok + off : NULL;
        FG_FN(fwd_step)(cell, &s, Bt, (const FG_T *)a->P, in_loop ? &xin : NULL, deal, &phase,
                        tid, nth);
        FG_BARRIER();
    }
}

FG_AI void FG_FN(backward_cell)(const int cell, const fg_backward_args *a, const fg_deal *deal,
                                int tid, int nth)
{
    const int T = a->T, B = a->B, H = a->H, G = FG_FN(gates)(cell);
    const size_t GH = (size_t)G * H;
    const int proj = cell == FG_LSTM ? a->proj : 0, R = proj ? proj : H;   /* width of h */
    /* this thread's units: whole panels of 4 vectors, so that every panel (and with it
     * the tile shape, hence the order of every sum) is the same for any thread count;
     * [rlo, rhi): its panels of the R columns of dh (the same as its units unless the
     * lstm is projected) */
    const int NP = 4 * FG_VL, np = (H + NP - 1) / NP, npr = (R + NP - 1) / NP;
    int p0, p1;
    fg_range(np, tid, nth, &p0, &p1);
    const int jlo = p0 * NP, jhi = p1 * NP < H ? p1 * NP : H;
    fg_range(npr, tid, nth, &p0, &p1);
    const int rlo = p0 * NP, rhi = p1 * NP < R ? p1 * NP : R;
    const FG_T *P = (const FG_T *)a->P;
    FG_T *dh = (FG_T *)a->dh;                       /* (B, R) dL/dh */
    FG_FN(bstep) s = {0};
    /* the gate gradients read dL/dh_t, or with a projection dL/dm_t */
    s.H = H, s.GH = GH, s.dh = proj ? (FG_T *)a->dm : dh, s.dc = (FG_T *)a->dc;
    if (cell == FG_LSTM)
        s.peep = (const FG_T *)a->peep;
    FG_T acc[FG_MRMAX * FG_NVMAX * FG_VL] __attribute__((aligned(64)));
    FG_T *db = (FG_T *)a->db, *dbn = (FG_T *)a->dbn;
    unsigned dp = 0;                                /* dealt phases so far */
    deal = fg_deal_use(deal, (long)B * (long)GH * R, nth);
    FG_T *dpeep = cell == FG_LSTM && a->peep ? (FG_T *)a->dpeep : NULL;
    /* The sums over (step, row) -- db, dbn, dpeep -- of this thread's units [slo, shi); or,
     * when the last thread's share of the dh product is lighter (static ranges, one row
     * tile: B = 1, H = 100 leaves it 3 of the 7 vectors), all of them by that thread in its
     * slack: ~250 cycles of each step off the busier thread.  Same sums, same order. */
    int slo = jlo, shi = jhi;
    if (!deal && !proj && !FG_FN(is_ln)(cell) && nth > 1 && B <= FG_FN(mr_for)(4)
        && FG_FN(range_vecs)(np, NP, H, nth - 1, nth) < FG_FN(range_vecs)(np, NP, H, 0, nth)) {
        slo = 0;
        shi = tid == nth - 1 ? H : 0;
    }
    size_t off = 0;
    for (int t = 0; t < T; t++)
        off += a->batch ? a->batch[t] : B;
    for (int g = 0; g < G; g++)
        memset(db + (size_t)g * H + jlo, 0, (size_t)(jhi - jlo) * sizeof(FG_T));
    if (FG_FN(is_ln)(cell))
        FG_FN(ln_bstep)(cell, &s, a, -1, jlo, jhi);
    if (dbn)
        memset(dbn + jlo, 0, (size_t)(jhi - jlo) * sizeof(FG_T));
    if (dpeep)
        for (int g = 0; g < 3; g++)
            memset(dpeep + (size_t)g * H + jlo, 0, (size_t)(jhi - jlo) * sizeof(FG_T));

    for (int t = T - 1; t >= 0; t--) {
        const int Bt = a->batch ? a->batch[t] : B;
        off -= Bt;
        /* state rows: h0 (B rows) first, then h_t at B + off_t; cs likewise */
        const size_t sp = t ? B + off - (a->batch ? a->batch[t - 1] : B) : 0;
        s.hp = (const FG_T *)a->hs + sp * R;
        s.hc = (const FG_T *)a->hs + (B + off) * R;
        s.g = a->gates ? (const FG_T *)a->gates + off * GH : NULL;
        s.cp = a->cs ? (const FG_T *)a->cs + sp * H : NULL;
        s.cc = a->cs ? (const FG_T *)a->cs + (B + off) * H : NULL;
        s.tc = a->tc ? (const FG_T *)a->tc + off * H : NULL;
        s.ex = a->extra ? (const FG_T *)a->extra + off * H : NULL;
        s.dy = a->dy && !proj ? (const FG_T *)a->dy + off * H : NULL;
        s.dG = (FG_T *)a->dG + off * GH;
        s.dnx = a->dnx ? (FG_T *)a->dnx + off * H : NULL;

        if (proj) {
            /* phase P: dL/dh_t = dh + dy_t for this thread's columns, kept in dhs; then
             * (all columns complete) dm_t = dL/dh_t W_hr for this thread's units */
            FG_T *dht = (FG_T *)a->dhs + off * R;
            const FG_T *dy = a->dy ? (const FG_T *)a->dy + off * R : NULL;
            for (int b = 0; b < Bt; b++)
                for (int j = rlo; j < rhi; j += FG_VL) {
                    const int m = rhi - j < FG_VL ? rhi - j : FG_VL;
                    const size_t o = (size_t)b * R + j;
                    FG_V v = FG_FN(ldn)(dh + o, m);
                    if (dy)
                        v += FG_FN(ldn)(dy + o, m);
                    FG_FN(stn)(dht + o, m, v);
                }
            FG_BARRIER();
            const FG_T *Pr = (const FG_T *)a->Pr;
            for (int j0 = jlo; j0 < jhi; j0 += NP) {
                const int n = jhi - j0 < NP ? jhi - j0 : NP;
                const int nv = (n + FG_VL - 1) / FG_VL, MR = FG_FN(mr_for)(nv);
                const FG_T *Pq = Pr + (size_t)(j0 / NP) * R * NP;   /* panel [R][NP] */
                for (int b0 = 0; b0 < Bt; b0 += MR) {
                    const int mr = Bt - b0 < MR ? Bt - b0 : MR;
                    FG_FN(tiles)(nv, mr, dht + (size_t)b0 * R, (size_t)R, Pq, NP, FG_VL, R, acc);
                    FG_FN(tile_out)(mr, nv, acc, s.dh + (size_t)b0 * H + j0, (size_t)H, n, 0);
                }
            }
        }

        /* phase A: gate gradients of this thread's units (the LayerNorm cells: their phases) */
        if (FG_FN(is_ln)(cell)) {
            FG_FN(ln_bstep)(cell, &s, a, (long)off, jlo, jhi);
            FG_FN(ln_bwd_phases)(cell, &s, Bt, jlo, jhi);
        } else {
            for (int b = 0; b < Bt; b++)
                for (int j = jlo; j < jhi; j += FG_VL)
                    FG_FN(bwd_vec)(cell, &s, (size_t)b, j, jhi - j < FG_VL ? jhi - j : FG_VL);
        }
        FG_BARRIER();
        /* phase B: dL/dh_{t-1} (+)= dG_t W_hh, panels of up to 4 vectors of dh's columns
         * (one contiguous panel each) x row groups, dealt (deal.h); gru rb first needs
         * d(r h) = dn W_hn and then dr (phase B1) */
        for (int phase = cell == FG_GRU_RB ? 0 : 1; phase < 2; phase++) {
            const int K = phase == 0 ? H : cell == FG_GRU_RB ? 2 * H : (int)GH;
            const size_t k0 = phase == 0 ? 2 * (size_t)H : 0;
            const int beta = cell == FG_GRU_LBR || cell == FG_GRU_RB || cell == FG_LNGRU;
            const int ncols = phase == 0 ? H : R, npan = phase == 0 ? np : npr;
            /* groups counted in full panels' row tiles; a narrower last panel's taller
             * tiles leave it empty groups at the end */
            const int ng = deal ? FG_FN(row_groups)(npan, Bt, FG_FN(mr_for)(4), nth) : 1;
            fg_dealer d;
            fg_deal_begin(&d, deal, dp++, npan * ng, tid, nth);
            for (int it, j0, n, nv, MR, r0, r1; (it = fg_deal_next(&d)) >= 0;) {
                if (!FG_FN(panel_item)(it, ng, ncols, Bt, &j0, &n, &nv, &MR, &r0, &r1))
                    continue;
                const FG_T *Pq = P + (size_t)(j0 / NP) * GH * NP + k0 * NP;   /* panel [GH][NP] */
                for (int b0 = r0; b0 < r1; b0 += MR) {
                    const int mr = r1 - b0 < MR ? r1 - b0 : MR;
                    FG_FN(tiles)(nv, mr, s.dG + (size_t)b0 * GH + k0, GH, Pq, NP, FG_VL, K, acc);
                    if (phase == 0) {
                        for (int r = 0; r < mr; r++)
                            for (int v = 0; v < nv; v++) {
                                const int m = n - v * FG_VL < FG_VL ? n - v * FG_VL : FG_VL;
                                FG_FN(bwd_vec2)(cell, &s, (size_t)(b0 + r), j0 + v * FG_VL, m,
                                                acc + (size_t)r * nv * FG_VL + (size_t)v * FG_VL);
                            }
                    } else {
                        FG_FN(tile_out)(mr, nv, acc, dh + (size_t)b0 * R + j0, (size_t)R, n, beta);
                    }
                }
            }
            /* gru rb: phase B1 reads d(r h) of every unit; dealt: the next step's gate
             * gradients read dh at units another thread may have written */
            if (phase == 0 || deal) {
                FG_BARRIER();
            }
        }
        /* phase C (a->Pix): dx_t = dG_t W_ih (gru lbr: [dr dz dnx]_t W_ih) while dG_t is in
         * cache -- panels of 4 vectors of the D columns x row groups as in phase B, a dealt
         * phase of its own (nothing in the loop reads dx, so it needs no barrier; the one
         * after the next step's phase A separates it from the next dealt phase) */
        if (a->Pix) {
            const int D = a->D, npx = (D + NP - 1) / NP;
            const int nv0 = D < NP ? (D + FG_VL - 1) / FG_VL : 4;
            const int ng = FG_FN(row_groups)(npx, Bt, FG_FN(mr_for)(nv0), nth);
            FG_T *dx = (FG_T *)a->dx + off * D;
            fg_dealer d;
            fg_deal_begin(&d, deal, dp++, npx * ng, tid, nth);
            for (int it, j0, n, nv, MR, r0, r1; (it = fg_deal_next(&d)) >= 0;) {
                if (!FG_FN(panel_item)(it, ng, D, Bt, &j0, &n, &nv, &MR, &r0, &r1))
                    continue;
                const FG_T *Pq = (const FG_T *)a->Pix + (size_t)(j0 / NP) * GH * NP;   /* [GH][NP] */
                for (int b0 = r0; b0 < r1; b0 += MR) {
                    const int mr = r1 - b0 < MR ? r1 - b0 : MR;
                    if (cell == FG_GRU_LBR)     /* [dr dz] W_ih[r, z rows], then dnx W_ih[n rows] */
                        FG_FN(tilesx)(nv, mr, s.dG + (size_t)b0 * GH, GH, Pq, NP, 2 * H,
                                      s.dnx + (size_t)b0 * H, (size_t)H, Pq + 2 * (size_t)H * NP,
                                      NP, FG_VL, H, acc);
                    else
                        FG_FN(tiles)(nv, mr, s.dG + (size_t)b0 * GH, GH, Pq, NP, FG_VL, (int)GH, acc);
                    FG_FN(tile_out)(mr, nv, acc, dx + (size_t)b0 * D + j0, (size_t)D, n, 0);
                }
            }
        }
        /* the bias gradients: this step's dG of this thread's units, now final, summed
         * in a fixed order (t = T-1 .. 0, then rows); the LayerNorm cells' in phase B1 */
        for (int g = 0; g < (FG_FN(is_ln)(cell) ? 0 : G); g++)
            for (int j = slo; j < shi; j += FG_VL) {
                const int m = shi - j < FG_VL ? shi - j : FG_VL;
                FG_T *o = db + (size_t)g * H + j;
                FG_V sum = FG_FN(ldn)(o, m);
                for (int b = 0; b < Bt; b++)
                    sum += FG_FN(ldn)(s.dG + (size_t)b * GH + (size_t)g * H + j, m);
                FG_FN(stn)(o, m, sum);
            }
        if (dbn)
            for (int j = slo; j < shi; j += FG_VL) {
                const int m = shi - j < FG_VL ? shi - j : FG_VL;
                FG_V sum = FG_FN(ldn)(dbn + j, m);
                for (int b = 0; b < Bt; b++)
                    sum += FG_FN(ldn)(s.dnx + (size_t)b * H + j, m);
                FG_FN(stn)(dbn + j, m, sum);
            }
        /* the peephole gradients, in the same order: dp_i = sum di c_{t-1},
         * dp_f = sum df c_{t-1}, dp_o = sum do c_t */
        if (dpeep)
            for (int k = 0; k < 3; k++) {
                const size_t gcol = (size_t)(k == 2 ? 3 : k) * H;
                const FG_T *c = k == 2 ? s.cc : s.cp;
                for (int j = slo; j < shi; j += FG_VL) {
                    const int m = shi - j < FG_VL ? shi - j : FG_VL;
                    FG_T *o = dpeep + (size_t)k * H + j;
                    FG_V sum = FG_FN(ldn)(o, m);
                    for (int b = 0; b < Bt; b++)
                        sum += FG_FN(ldn)(s.dG + (size_t)b * GH + gcol + j, m)
                             * FG_FN(ldn)(c + (size_t)b * H + j, m);
                    FG_FN(stn)(o, m, sum);
                }
            }
    }
}

/* One time step of B rows through L stacked layers (fg_step, see fastgates.h): per layer,
 * the input projection and the recurrent step for this thread's units, then a barrier
 * (the next layer reads every unit of this one's h). */
FG_AI void FG_FN(step_cell)(const int cell, const fg_step_args *a, int tid, int nth)
{
    const int L = a->L, B = a->B, H = a->H;
    const int R = cell == FG_LSTM && a->proj ? a->proj : H;   /* width of h */
    const size_t GH = (size_t)FG_FN(gates)(cell) * H, LBH = (size_t)B * H, LBR = (size_t)B * R;
    const int NU = FG_FN(uv)(cell) * FG_VL, nb = (H + NU - 1) / NU;
    int u0, u1;
    fg_range(nb, tid, nth, &u0, &u1);
    unsigned phase = 0;
    FG_FN(fstep) s = {0};
    s.H = H, s.GH = GH, s.keep = 0, s.tc = NULL, s.pre = (FG_T *)a->pre, s.ex = (FG_T *)a->extra;
    for (int k = 0; k < L; k++) {
        const FG_T *x = k ? (const FG_T *)a->h1 + (size_t)(k - 1) * LBR : (const FG_T *)a->x;
        /* the projection fused into the lstm's tiles where forward_cell fuses it (the same
         * sums: a step computes what the sequence forward computes for the same rows) */
        const int fuse = FG_FN(fuses_x)(cell, B, x);
        FG_FN(xin) xin = {a->d_in[k], x, NULL, (const FG_T *)a->Pi[k], NULL, NULL, 0};
        s.fused = fuse, s.xb = (const FG_T *)a->bias[k];
        if (!fuse)
            FG_FN(project)(cell, B, a->d_in[k], H, x, k ? NULL : a->tok, (const FG_T *)a->Pi[k],
                           (const FG_T *)a->wT, 0, (const FG_T *)a->bias[k], s.pre, u0, u1);
        s.hp = (const FG_T *)a->h0 + (size_t)k * LBR;
        s.h = (FG_T *)a->h1 + (size_t)k * LBR;
        if (cell == FG_LSTM) {
            s.cp = (const FG_T *)a->c0 + (size_t)k * LBH;
            s.c = (FG_T *)a->c1 + (size_t)k * LBH;
            s.R = R;
            s.m = a->proj ? (FG_T *)a->m : NULL;
            s.Pr = a->proj ? (const FG_T *)a->Pr[k] : NULL;
            s.peep = a->peep ? (const FG_T *)a->peep[k] : NULL;
        }
        s.b_hn = (const FG_T *)a->b_hn[k];
        FG_FN(fwd_step)(cell, &s, B, (const FG_T *)a->P[k], fuse ? &xin : NULL, NULL, &phase,
                        tid, nth);
        FG_BARRIER();
    }
}

/* out[v] = b[v] + sum_k w[v, k] x[k], v < n: w (n, K) row-major, b NULL for none.  A
 * generated token's input projection and (fg_dense) its logits, where a B = 1 GEMM through
 * BLAS packed w on every call. */
static void FG_FN(dense)(int n, int K, const FG_T *w, const FG_T *x, const FG_T *b, FG_T *out)
{
    for (int v = 0; v < n; v++)
        out[v] = (b ? b[v] : (FG_T)0) + FG_FN(dot)(w + (size_t)v * K, x, K);
}

/* Token-by-token generation for one sequence through L stacked layers (see fastgates.h).
 * Every thread owns the same unit blocks in every layer. */
FG_AI void FG_FN(generate_cell)(const int cell, const fg_generate_args *a, int tid, int nth)
{
    const int L = a->L, H = a->H, G = FG_FN(gates)(cell);
    const int R = cell == FG_LSTM && a->proj ? a->proj : H;   /* width of h */
    const size_t GH = (size_t)G * H, LR = (size_t)L * R;
    const int NU = FG_FN(uv)(cell) * FG_VL, nb = (H + NU - 1) / NU;
    int u0, u1;
    fg_range(nb, tid, nth, &u0, &u1);
    const int jlo = u0 * NU, jhi = u1 * NU < H ? u1 * NU : H;
    FG_T *hb = (FG_T *)a->h, *c = (FG_T *)a->c;
    long long tok = a->first;
    unsigned phase = 0;
    FG_FN(fstep) s = {0};
    s.H = H, s.GH = GH, s.keep = 0, s.tc = NULL;
    if (cell == FG_LSTM)
        s.R = R, s.m = a->proj ? (FG_T *)a->m : NULL;
    const int ln = FG_FN(is_ln)(cell);
    if (ln) {       /* the LayerNorm cells: one row, scratch for its product and partials */
        s.hn = (FG_T *)a->hn, s.part_x = (FG_T *)a->part;
        s.part_h = s.part_x + 2 * (size_t)H, s.part_c = s.part_h + 2 * (size_t)H;
        s.nb = (H + FG_VL - 1) / FG_VL;
    }

    for (int st = 0; st < a->max_steps; st++) {
        FG_T *hold = hb + (size_t)(st & 1) * LR, *hnew = hb + (size_t)((st + 1) & 1) * LR;
        for (int k = 0; k < L; k++) {
            const FG_T *w = (const FG_T *)a->w_ih[k], *bias = (const FG_T *)a->bias[k];
            const int D = a->d_in[k];
            const FG_T *x = k ? hnew + (size_t)(k - 1) * R
                              : a->emb ? (const FG_T *)a->emb + (size_t)tok * D : NULL;
            FG_T *pre = (FG_T *)a->pre + k * GH;
            /* this thread's rows of the input projection (the units it steps below);
             * LayerNorm cells add their bias after the LN */
            for (int g = 0; g < G; g++) {
                const size_t r0 = (size_t)g * H + jlo;
                const FG_T *b = ln ? NULL : bias + r0;
                if (x)
                    FG_FN(dense)(jhi - jlo, D, w + r0 * D, x, b, pre + r0);
                else
                    for (int j = 0; j < jhi - jlo; j++)
                        pre[r0 + j] = w[(size_t)tok * GH + r0 + j] + (b ? b[j] : (FG_T)0);
            }
            if (ln) {       /* pre without biases: the step normalises it (ln_fwd1) */
                s.ln_ih = (const FG_T *)a->ln_ih[k], s.b_ih = bias;
                s.ln_hh = (const FG_T *)a->ln_hh[k], s.b_rec = (const FG_T *)a->b_rec[k];
                s.ln_c = (const FG_T *)a->ln_c[k], s.ln_cb = (const FG_T *)a->ln_cb[k];
            }
                        s.hp = hold + (size_t)k * R, s.h = hnew + (size_t)k * R, s.pre = pre;
            s.cp = s.c = c ? c + (size_t)k * H : NULL;   /* in place: each unit read, then written by its owner */
            if (cell == FG_LSTM) {
                s.Pr = a->proj ? (const FG_T *)a->Pr[k] : NULL;
                s.peep = a->peep ? (const FG_T *)a->peep[k] : NULL;
            }
            s.ex = (FG_T *)a->extra + (size_t)k * H;
            s.b_hn = (const FG_T *)a->b_hn[k];
            FG_FN(fwd_step)(cell, &s, 1, (const FG_T *)a->P[k], NULL, NULL, &phase, tid, nth);
            FG_BARRIER();
        }
        if (tid == 0)
            *a->slot = a->next(a->ctx, st, hnew + (size_t)(L - 1) * R);
        FG_BARRIER();
        tok = *(volatile long long *)a->slot;
        if (tok < 0)
            break;
        /* thread 0 writes the slot again only after the next step's barriers */
    }
}

/* The packing a pass does on entry (fg_pack_job): this thread's share of each job, then
 * a barrier (the loops read any block: the projection's and the dealt steps' owners
 * need not be the packers). */
static void FG_FN(pack_thread)(int cell, const FG_T *w, int H, int K, int which, FG_T *P,
                               int tid, int nth);

/* This thread's share of a FG_PACK_COPY job: 64-byte aligned slices of the bytes. */
static void FG_FN(copy_share)(const fg_pack_job *job, int tid, int nth)
{
    const size_t lines = (job->bytes + 63) / 64;
    const size_t b0 = lines * tid / nth * 64, b1 = lines * (tid + 1) / nth * 64;
    const size_t e = b1 < job->bytes ? b1 : job->bytes;
    if (b0 < e)
        memcpy((char *)job->dst + b0, (const char *)job->w + b0, e - b0);
}

static void FG_FN(pack_jobs)(int cell, int H, const fg_pack_job *jobs, int tid, int nth)
{
    int any = 0;
    for (int i = 0; i < FG_PACK_JOBS; i++)
        if (jobs[i].w) {
            if (jobs[i].which == FG_PACK_COPY)
                FG_FN(copy_share)(&jobs[i], tid, nth);
            else
                FG_FN(pack_thread)(cell, (const FG_T *)jobs[i].w, H, jobs[i].K, jobs[i].which,
                                   (FG_T *)jobs[i].dst, tid, nth);
            any = 1;
        }
    if (any) {
        FG_BARRIER();
    }
}

/* The entry points of one level: a switch on the cell outside the time loop, so every
 * cell's loop is compiled with its own constants. */
static void FG_FN(forward_thread)(const fg_forward_args *a, const fg_deal *deal, int tid, int nth)
{
    FG_FN(pack_jobs)(a->cell, a->H, a->pack, tid, nth);
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: FG_FN(forward_cell)(code, a, deal, tid, nth); break;
    switch (a->cell) { FG_CELLS(FG_X) }
#undef FG_X
    if (a->post.w) {        /* after every thread's last step */
        FG_BARRIER();
        FG_FN(copy_share)(&a->post, tid, nth);
    }
}

static void FG_FN(backward_thread)(const fg_backward_args *a, const fg_deal *deal, int tid, int nth)
{
    FG_FN(pack_jobs)(a->cell, a->H, a->pack, tid, nth);
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: FG_FN(backward_cell)(code, a, deal, tid, nth); break;
    switch (a->cell) { FG_CELLS(FG_X) }
#undef FG_X
    if (a->npost > 0) {
        FG_BARRIER();
        for (int i; (i = FG_FETCH_ADD(a->post_next, 1)) < a->npost;)
            a->post(a->post_ctx, i);
    }
}

static void FG_FN(generate_thread)(const fg_generate_args *a, int tid, int nth)
{
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: FG_FN(generate_cell)(code, a, tid, nth); break;
    switch (a->cell) { FG_CELLS(FG_X) }
#undef FG_X
}

static void FG_FN(step_thread)(const fg_step_args *a, int tid, int nth)
{
    if (FG_FN(is_ln)(a->cell))  /* no LayerNorm cells here yet: the Python side refuses them */
        return;
#define FG_X(NAME, code, G, has_c, fwd, bwd) case code: FG_FN(step_cell)(code, a, tid, nth); break;
    switch (a->cell) { FG_CELLS(FG_X) }
#undef FG_X
}

/* Strips of VL columns of a row-major (rows, cols) matrix w, zero-padded:
 *   trans = 0:  P[q][r][l] = w[r, q*VL + l]    r < rows   (ceil(cols/VL) strips)
 *   trans = 1:  P[q][c][l] = w[q*VL + l, c]    c < cols   (ceil(rows/VL) strips: of w^T)
 * for this thread's share of the strips. */
static void FG_FN(pack_strips)(const FG_T *w, int rows, int cols, int trans, FG_T *P, int tid,
                               int nth)
{   /* panels of NP = 4 vectors of the N output columns: P[q][k][NP], zero past N */
    const int N = trans ? rows : cols, K = trans ? cols : rows, NP = 4 * FG_VL;
    const int nq = (N + NP - 1) / NP;
    int q0, q1;
    fg_range(nq, tid, nth, &q0, &q1);
    for (int q = q0; q < q1; q++) {
        const int j0 = q * NP, n = N - j0 < NP ? N - j0 : NP;
        FG_T *dst = P + (size_t)q * K * NP;
        if (!trans) {       /* each row once: its n columns, then zeros, by whole vectors
                             * (a memcpy and a memset per row of 4 vectors cost more than
                             * the copy: 11 % of a T = 1 training call at H = 100) */
            for (size_t k = 0; k < (size_t)K; k++) {
                const FG_T *src = w + k * cols + j0;
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) {
                    const int m = n - v * FG_VL;
                    FG_FN(st)(dst + k * NP + v * FG_VL,
                              m >= FG_VL ? FG_FN(ld)(src + v * FG_VL)
                              : m > 0 ? FG_FN(ldn)(src + v * FG_VL, m) : (FG_V){0});
                }
            }
        } else {
            if (n < NP)
                memset(dst, 0, (size_t)K * NP * sizeof(FG_T));
            FG_FN(transpose_into)(dst, NP, w + (size_t)j0 * cols, (size_t)cols, n, K);
        }
    }
}

/* Packing, run by every thread of a region over its share of blocks / strips.
 * which: FG_PACK_HH  w_hh (G*H, K=H) for the forward loop (the cell's product groups)
 *        FG_PACK_IH  w_ih (G*H, K=D) for the input projection (one group: every gate)
 *        FG_PACK_BWD w_hh (G*H, K) as panels of 4 vectors of its K columns for BPTT's
 *                    dh = dG W_hh
 *        FG_PACK_HR  the lstm projection w_hr (K=P, H) as panels of w_hr^T (h = m w_hr^T)
 *        FG_PACK_HR_BWD  w_hr (K=P, H) as panels of its H columns (dm = dh w_hr)
 * (K = P for the w_hh of a projected lstm.)  A panel holds 4 vectors of output columns
 * for every row of the product: P[q][k][4*VL], one contiguous stream per tile. */
static void FG_FN(pack_thread)(int cell, const FG_T *w, int H, int K, int which, FG_T *P,
                               int tid, int nth)
{
    const int G = FG_FN(gates)(cell);
    if (which == FG_PACK_BWD || which == FG_PACK_HR || which == FG_PACK_HR_BWD) {
        const int rows = which == FG_PACK_BWD ? G * H : K;
        const int cols = which == FG_PACK_BWD ? K : H;
        FG_FN(pack_strips)(w, rows, cols, which == FG_PACK_HR, P, tid, nth);
        return;
    }
    const int UV = FG_FN(uv)(cell), NU = UV * FG_VL, nb = (H + NU - 1) / NU;
    const int g1 = which == FG_PACK_IH ? G : FG_FN(group1)(cell);
    const size_t blk = (size_t)K * G * NU;
    int u0, u1;
    fg_range(nb, tid, nth, &u0, &u1);
    for (int u = u0; u < u1; u++) {
        const int j0 = u * NU, n = H - j0 < NU ? H - j0 : NU;
        for (int grp = 0; grp < (g1 < G ? 2 : 1); grp++) {
            const int ga = grp ? g1 : 0, gb = grp ? G : g1, ng = gb - ga;
            const int nvu = FG_FN(grp_nv)(ng, UV, n), W = nvu * FG_VL;
            const int gw = nvu < ng * UV ? n : NU;     /* lanes per gate: compact tail, or NU */
            FG_T *dst = P + (size_t)u * blk + (grp ? FG_FN(group2_at)(K, g1, UV, n) : 0);   /* [K][W] */
            if (n < NU)
                memset(dst, 0, (size_t)K * W * sizeof(FG_T));
            if (gw == n && n < FG_VL) {
                /* the compact tail: lane (g - ga) * n + i holds row j0 + i of gate g, so
                 * its gates' rows transpose together (LSTM, n = 4: one band of 16 rows,
                 * not four bands of 4) */
                const FG_T *rows[FG_VL];
                for (int l0 = 0; l0 < ng * n; l0 += FG_VL) {
                    const int ln = ng * n - l0 < FG_VL ? ng * n - l0 : FG_VL;
                    for (int l = 0; l < ln; l++)
                        rows[l] = w + ((size_t)(ga + (l0 + l) / n) * H + j0 + (l0 + l) % n) * K;
                    FG_FN(transpose_rows)(dst + l0, (size_t)W, rows, ln, K);
                }
            } else
                for (int g = ga; g < gb; g++)
                    FG_FN(transpose_into)(dst + (size_t)(g - ga) * gw, (size_t)W,
                                          w + ((size_t)g * H + j0) * K, (size_t)K, n, K);
        }
    }
}

static size_t FG_FN(packed_size)(int cell, int H, int K, int which)
{
    const size_t G = (size_t)FG_FN(gates)(cell);
    if (which == FG_PACK_BWD)
        return (size_t)((K + 4 * FG_VL - 1) / (4 * FG_VL)) * 4 * FG_VL * G * H;
    if (which == FG_PACK_HR)
        return (size_t)((K + 4 * FG_VL - 1) / (4 * FG_VL)) * 4 * FG_VL * H;
    if (which == FG_PACK_HR_BWD)
        return (size_t)((H + 4 * FG_VL - 1) / (4 * FG_VL)) * 4 * FG_VL * K;
    /* full blocks, then the last block's groups (compact when H % NU leaves a tail) */
    const int UV = FG_FN(uv)(cell), NU = UV * FG_VL, nb = (H + NU - 1) / NU;
    if (nb == 0)
        return 0;
    const int g1 = which == FG_PACK_IH ? (int)G : FG_FN(group1)(cell), n = H - (nb - 1) * NU;
    const int last = FG_FN(grp_nv)(g1, UV, n) + (g1 < (int)G ? FG_FN(grp_nv)((int)G - g1, UV, n) : 0);
    return ((size_t)(nb - 1) * NU * G + (size_t)last * FG_VL) * (size_t)K;
}

/* The FMA peak of this level: iters rounds of 12 independent vector FMA chains (enough to
 * cover the FMA latency on every core this targets).  Returns the flop count (2 per lane
 * per FMA); *sink keeps the compiler from dropping the work. */
static double FG_FN(fma_loop)(long iters, FG_T *sink)
{
    enum { NC = 12 };
    FG_V acc[NC];
    for (int c = 0; c < NC; c++)
        acc[c] = FG_SPLAT((FG_T)c * (FG_T)1e-3);
    const FG_V a = FG_SPLAT(0.9999), b = FG_SPLAT(1e-4);
    for (long i = 0; i < iters; i++) {
        for (int c = 0; c < NC; c++)
            acc[c] = acc[c] * a + b;
    }
    FG_V s = acc[0];
    for (int c = 1; c < NC; c++)
        s += acc[c];
    *sink = FG_FN(hsum)(s);
    return 2.0 * NC * FG_VL * (double)iters;
}

static void FG_FN(activation)(int kind, size_t n, const FG_T *x, FG_T *out)
{
    for (size_t i = 0; i < n; i += FG_VL) {
        const int m = n - i < (size_t)FG_VL ? (int)(n - i) : FG_VL;
        const FG_V v = FG_FN(ldn)(x + i, m);
        FG_FN(stn)(out + i, m, kind == 0 ? FG_FN(vsigmoid)(v) : FG_FN(vtanh)(v));
    }
}

