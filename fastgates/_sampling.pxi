# Included by _recurrence.pyx: the sampler is part of the one compiled core.
"""Compiled text generation: the whole sampling loop runs without the GIL.

Design: the recurrence runs in the kernels' C code (``fg_generate_*`` in
src_c/recurrence.c) inside one OpenMP parallel region for the whole text.  Per
token, for B = 1, every layer k computes

    pre = b_ih + b_hh + input   input = row ``tok`` of W_ihᵀ (one-hot), W_ih x for an
                                embedding row or the layer below's new h
    one step of the forward kernel: the product with the packed W_hh and the fused
    gate math (PyTorch gate order: LSTM i, f, g, o; GRU r, z, n), in the model dtype

with every thread owning the same hidden-unit blocks in every layer and token, so
each core keeps its share of the packed weights in its own cache.  After the top
layer, thread 0 calls back into this module (``_next_token``) for the output
layer, ``logits = fc_w h + fc_b`` (one GEMV), and the draw:

    temperature 0:  argmax (first maximum; deterministic)
    otherwise:      p_i ∝ exp((l_i − max l) / τ) over the ``top_k`` largest logits
                    (all when top_k <= 0 or >= V; ties with the k-th value are kept),
                    i = first index whose cumulative sum exceeds u · Σp,
                    u ∈ [0, 1) from xoshiro256** seeded by splitmix64(seed).

The softmax and the cumulative sum are evaluated in double precision.  The states
are those of ``fastgates.*_forward`` on the same tokens (bit-identical for one-hot
input), and the drawn ids do not depend on the thread count.
``fastgates.lm.generation.sample_numpy`` is the same algorithm in NumPy.
"""

from libc.math cimport exp, INFINITY
from libc.stdint cimport uint64_t, int64_t


# -- random numbers: xoshiro256** (Blackman & Vigna), seeded with splitmix64 ----------------

cdef struct Rng:
    uint64_t s0, s1, s2, s3

cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))

cdef uint64_t _splitmix64(uint64_t* x) noexcept nogil:
    x[0] += <uint64_t>0x9E3779B97F4A7C15ULL
    cdef uint64_t z = x[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)

cdef void _rng_seed(Rng* r, uint64_t seed) noexcept nogil:
    cdef uint64_t x = seed
    r.s0 = _splitmix64(&x)
    r.s1 = _splitmix64(&x)
    r.s2 = _splitmix64(&x)
    r.s3 = _splitmix64(&x)

cdef uint64_t _rng_next(Rng* r) noexcept nogil:
    cdef uint64_t result = _rotl(r.s1 * 5, 7) * 9
    cdef uint64_t t = r.s1 << 17
    r.s2 ^= r.s0
    r.s3 ^= r.s1
    r.s1 ^= r.s2
    r.s0 ^= r.s3
    r.s2 ^= t
    r.s3 = _rotl(r.s3, 45)
    return result

cdef inline double _rng_uniform(Rng* r) noexcept nogil:
    """u in [0, 1) with 53 random bits."""
    return <double>(_rng_next(r) >> 11) * (1.0 / 9007199254740992.0)


def random_doubles(uint64_t seed, Py_ssize_t n):
    """The first ``n`` uniforms of the generator seeded with ``seed`` (for tests)."""
    cdef Rng r
    _rng_seed(&r, seed)
    return [_rng_uniform(&r) for _ in range(n)]


# -- the draw ----------------------------------------------------------------------------------

cdef double _kth_largest(double* a, int n, int k) noexcept nogil:
    """The k-th largest (1-based) of a[0:n]; reorders a (Hoare quickselect)."""
    cdef int lo = 0, hi = n - 1, i, j, target = k - 1
    cdef double pivot, tmp
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while a[i] > pivot:
                i += 1
            while a[j] < pivot:
                j -= 1
            if i <= j:
                tmp = a[i]; a[i] = a[j]; a[j] = tmp
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return a[target]

cdef int64_t _draw(const floating* logits, int V, double temperature, int top_k, double* p,
                   double* scratch, Rng* rng) noexcept nogil:
    cdef int i, best = 0
    cdef double m = -INFINITY, thr = -INFINITY, total = 0.0, u, acc
    cdef int64_t last = -1
    for i in range(V):
        if <double>logits[i] > m:
            m = <double>logits[i]
            best = i
    if temperature <= 0.0:
        return best
    if 0 < top_k < V:
        for i in range(V):
            scratch[i] = <double>logits[i]
        thr = _kth_largest(scratch, V, top_k)
    for i in range(V):
        if <double>logits[i] >= thr:
            p[i] = exp((<double>logits[i] - m) / temperature)
        else:
            p[i] = 0.0
        total += p[i]
    u = _rng_uniform(rng) * total
    acc = 0.0
    for i in range(V):
        if p[i] > 0.0:
            acc += p[i]
            last = i
            if acc > u:
                return i
    return last if last >= 0 else best


# -- the loop ----------------------------------------------------------------------------------

cdef extern from "fastgates.h" nogil:
    ctypedef long long (*fg_next_token)(void *ctx, int step, const void *h_top) noexcept nogil
    ctypedef struct fg_generate_args:
        int cell, L, H, n_threads, max_steps
        long long first
        const int *d_in
        const void **P
        const void **w_ih
        const void **bias
        const void **b_hn
        const void *emb
        void *h
        void *c
        void *pre
        void *extra
        fg_next_token next
        void *ctx
        long long *slot
        int proj
        const void **Pr
        const void **peep
        void *m
        const void **ln_ih
        const void **ln_hh
        const void **ln_c
        const void **ln_cb
        const void **b_rec
        void *hn
        void *part
    void fg_generate_f32(const fg_generate_args *a)
    void fg_generate_f64(const fg_generate_args *a)
    void fg_dense_f32(int n, int K, const float *w, const float *x, const float *b, float *out)
    void fg_dense_f64(int n, int K, const double *w, const double *x, const double *b,
                      double *out)


cdef struct DrawCtx:
    int n_prefix, n_out, V, H, top_k, last_step, f32
    const int64_t *prefix
    int64_t *out
    const void *fc_w
    const void *fc_b
    void *logits
    double temperature
    double *p
    double *scratch
    Rng rng


cdef int64_t _logits_draw(DrawCtx *d, const floating *h) noexcept nogil:
    """logits = fc_w h + fc_b (the kernels' dot products: a 1-row GEMM through BLAS spent
    most of its time packing fc_w, ~30 % of a GRU H 256 character), then the draw."""
    cdef floating *logits = <floating *>d.logits
    if floating is float:
        fg_dense_f32(d.V, d.H, <const float *>d.fc_w, h, <const float *>d.fc_b, logits)
    else:
        fg_dense_f64(d.V, d.H, <const double *>d.fc_w, h, <const double *>d.fc_b, logits)
    return _draw(logits, d.V, d.temperature, d.top_k, d.p, d.scratch, &d.rng)


cdef long long _next_token(void *ctx, int step, const void *h_top) noexcept nogil:
    """Called by the kernel after step ``step`` fed its token: the next token, or -1 = stop."""
    cdef DrawCtx *d = <DrawCtx *>ctx
    cdef int t = step + 1                 # tokens consumed so far
    cdef int64_t tok
    d.last_step = step
    if t < d.n_prefix:
        return d.prefix[t]
    t -= d.n_prefix                       # index of this draw
    if t >= d.n_out:
        return -1
    if d.f32:
        tok = _logits_draw(d, <const float *>h_top)
    else:
        tok = _logits_draw(d, <const double *>h_top)
    d.out[t] = tok
    return tok if t + 1 < d.n_out else -1


def sample(int cell, list layers, floating[:, ::1] fc_w, floating[::1] fc_b,
           floating[:, ::1] embedding, floating[:, ::1] h_state, floating[:, ::1] c_state,
           const int64_t[::1] prefix, int64_t[::1] out, double temperature, int top_k,
           uint64_t seed, int n_threads):
    """Feed ``prefix`` through the model, then draw ``len(out)`` tokens into ``out``.

    Parameters (validated by the caller; V tokens, H units, L layers)
    ----------
    cell : int
        The kernel code of the cell (``CELL_CODES``; rnn with tanh, gru lbr or rb, lstm).
    layers : list of (w_ih, w_hh, b_ih, b_hh, extra)
        # IN  PyTorch layout, C-contiguous, the dtype of fc_w; ``extra``: the cell's other
        # parameters by stem (every layer alike): the LSTM's weight_hr (P, H) and
        # weight_peep (3, H), the LayerNorm cells' ln_ih_weight, ln_hh_weight[, ln_c_weight,
        # ln_c_bias].  With weight_hr, h is P wide (R = P), else R = H.
    fc_w, fc_b : (V, R), (V,)
    embedding : (V, E) or None (one-hot input: layer 0's w_ih is (G·H, V))
    h_state, c_state : (L, R), (L, H)
        # IN/OUT initial state, overwritten with the final state (c_state unused unless LSTM)
    prefix : (n,) int64, n >= 1, ids in [0, V)
    out : (m,) int64
        # OUT the drawn ids
    temperature : 0 = greedy argmax
    top_k : <= 0 = no limit
    seed : the generator's seed
    n_threads : threads of the recurrence, resolved and checked by the caller like every
        kernel's (fastgates._fast); the results do not depend on it
    """
    cdef int L = len(layers), V = fc_w.shape[0], R = fc_w.shape[1], k
    cdef int G = GATES[cell]
    cdef int H = layers[0][1].shape[0] // G
    dtype = np.float32 if floating is float else np.float64
    # per layer: packed w_hh, combined bias (lbr keeps b_hn apart), pointers
    packed, biases = [], []
    d_in = np.empty(L, np.intc)
    ptrs = np.zeros((6, L), np.uintp)       # P, w_ih, bias, b_hn, Pr, peep (0 = NULL)
    ext0 = layers[0][4] if len(layers[0]) > 4 else {}
    cdef bint proj = ext0.get("weight_hr") is not None
    cdef bint peep = ext0.get("weight_peep") is not None
    cdef bint ln = cell in LN_CELLS
    lnptrs = np.zeros((5, L), np.uintp)     # ln_ih, ln_hh, ln_c, ln_cb, b_rec (LayerNorm cells)
    for k in range(L):
        w_ih, w_hh, b_ih, b_hh = layers[k][:4]
        ext = layers[k][4] if len(layers[k]) > 4 else {}
        P = _packed(cell, np.ascontiguousarray(w_hh), H, FG_PACK_HH, n_threads, fc_b[0])
        if proj:
            Pr = _packed(cell, np.ascontiguousarray(ext["weight_hr"]), H, FG_PACK_HR, n_threads,
                         fc_b[0])
            packed.append(Pr)
            ptrs[4, k] = Pr.ctypes.data
        if peep:
            w_peep = np.ascontiguousarray(ext["weight_peep"], dtype=dtype)
            packed.append(w_peep)
            ptrs[5, k] = w_peep.ctypes.data
        bias = b_ih.copy() if ln else b_ih + b_hh    # LayerNorm: b_hh acts after the LN
        if ln:
            for i, arr in enumerate((ext["ln_ih_weight"], ext["ln_hh_weight"],
                                     ext.get("ln_c_weight"), ext.get("ln_c_bias"), b_hh)):
                if arr is not None:
                    arr = np.ascontiguousarray(arr, dtype)
                    packed.append(arr)          # kept alive until the call returns
                    lnptrs[i, k] = arr.ctypes.data
        if cell == FG_GRU_LBR:
            bias[2 * H:] = b_ih[2 * H:]    # b_hn acts inside r * (...)
        if k == 0 and embedding is None:
            w_ih = np.ascontiguousarray(w_ih.T)   # (V, G*H): a token's column as one row
        packed.append((P, w_ih))
        biases.append(bias)
        d_in[k] = layers[k][0].shape[1]
        ptrs[0, k] = P.ctypes.data
        ptrs[1, k] = w_ih.ctypes.data
        ptrs[2, k] = bias.ctypes.data
        ptrs[3, k] = b_hh[2 * H:].ctypes.data if cell == FG_GRU_LBR else 0
    hbuf = np.zeros((2, L, R), dtype)
    hbuf[0] = h_state
    cbuf = np.array(c_state, dtype) if cell in HAS_C else None
    pre = np.empty((L, G * H), dtype)
    extra = np.empty((L, H), dtype)
    mbuf = np.empty(H, dtype)
    hn = np.empty(G * H, dtype)
    part = np.empty(6 * H, dtype)
    logits = np.empty(V, dtype)
    pd = np.empty(V, np.float64)
    scratch = np.empty(V, np.float64)

    cdef DrawCtx d
    d.n_prefix, d.n_out, d.V, d.H, d.top_k = prefix.shape[0], out.shape[0], V, R, top_k
    d.last_step, d.f32 = -1, floating is float
    d.prefix = &prefix[0]
    d.out = &out[0] if out.shape[0] else NULL
    d.fc_w, d.fc_b = <const void *>&fc_w[0, 0], <const void *>&fc_b[0]
    d.logits = <void *><size_t>logits.ctypes.data
    d.temperature = temperature
    d.p = <double *><size_t>pd.ctypes.data
    d.scratch = <double *><size_t>scratch.ctypes.data
    _rng_seed(&d.rng, seed)

    cdef long long slot = 0
    cdef const int[::1] dv = d_in
    cdef const size_t[:, ::1] pv = ptrs
    cdef const size_t[:, ::1] lv = lnptrs
    cdef fg_generate_args a
    memset(&a, 0, sizeof(a))
    a.cell, a.L, a.H, a.n_threads = cell, L, H, n_threads
    a.max_steps = prefix.shape[0] + out.shape[0]
    a.first = prefix[0]
    a.d_in = &dv[0]
    a.P = <const void **>&pv[0, 0]
    a.w_ih = <const void **>&pv[1, 0]
    a.bias = <const void **>&pv[2, 0]
    a.b_hn = <const void **>&pv[3, 0]
    a.emb = <const void *>&embedding[0, 0] if embedding is not None else NULL
    a.h = <void *><size_t>hbuf.ctypes.data
    a.c = <void *><size_t>cbuf.ctypes.data if cbuf is not None else NULL
    a.pre = <void *><size_t>pre.ctypes.data
    a.extra = <void *><size_t>extra.ctypes.data
    a.next = _next_token
    a.ctx = &d
    a.slot = &slot
    a.proj = R if proj else 0
    a.Pr = <const void **>&pv[4, 0] if proj else NULL
    a.peep = <const void **>&pv[5, 0] if peep else NULL
    a.m = <void *><size_t>mbuf.ctypes.data
    if ln:
        a.ln_ih, a.ln_hh = <const void **>&lv[0, 0], <const void **>&lv[1, 0]
        a.ln_c, a.ln_cb = <const void **>&lv[2, 0], <const void **>&lv[3, 0]
        a.b_rec = <const void **>&lv[4, 0]
        a.hn, a.part = <void *><size_t>hn.ctypes.data, <void *><size_t>part.ctypes.data
    with nogil:
        if floating is float:
            fg_generate_f32(&a)
        else:
            fg_generate_f64(&a)
    np.asarray(h_state)[...] = hbuf[(d.last_step + 1) % 2]
    if cbuf is not None:
        np.asarray(c_state)[...] = cbuf
