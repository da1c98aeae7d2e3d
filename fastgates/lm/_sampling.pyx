# cython: language_level=3
"""Compiled text generation: the whole sampling loop runs without the GIL.

Design: per token, for B = 1, every layer k computes

    gi = b_ih + W_ih x          x = column ``tok`` of W_ih (one-hot: a strided gather),
                                    an embedding row, or the layer below's h
    gh = b_hh + W_hh h          one GEMV (scipy's cython_blas sgemv/dgemv)

and then the cell's gate math in one small ``cdef`` function per cell (PyTorch
gate order: LSTM i, f, g, o; GRU r, z, n).  The output layer is one more GEMV,
``logits = fc_w h + fc_b``, followed by the draw:

    temperature 0:  argmax (first maximum; deterministic)
    otherwise:      p_i ∝ exp((l_i − max l) / τ) over the ``top_k`` largest logits
                    (all when top_k <= 0 or >= V; ties with the k-th value are kept),
                    i = first index whose cumulative sum exceeds u · Σp,
                    u ∈ [0, 1) from xoshiro256** seeded by splitmix64(seed).

Gate pre-activations, activations, the softmax and the cumulative sum are
evaluated in double precision; states are stored in the model dtype.
``fastgates.lm.generation.sample_numpy`` is the same algorithm in NumPy.
"""

from libc.math cimport exp, tanh, INFINITY
from libc.stdint cimport uint64_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemv, dgemv

ctypedef fused floating:
    float
    double

cdef enum:
    CELL_RNN_TANH = 0
    CELL_GRU_LBR = 1
    CELL_GRU_RB = 2
    CELL_LSTM = 3

#: Cell codes understood by :func:`sample` (also used by the NumPy version).
CELLS = {"rnn": CELL_RNN_TANH, "gru_lbr": CELL_GRU_LBR, "gru_rb": CELL_GRU_RB, "lstm": CELL_LSTM}


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


# -- BLAS: y := A x + beta y for a row-major A (M, N) ------------------------------------------

cdef inline void _gemv(const floating* A, int M, int N, const floating* x, floating beta,
                       floating* y) noexcept nogil:
    # row-major A (M, N) is column-major Aᵀ (N, M) with lda N: y = (Aᵀ)ᵀ x
    cdef char trans = b'T'
    cdef int inc = 1
    cdef floating one = 1
    if M <= 0 or N <= 0:
        return
    if floating is float:
        sgemv(&trans, &N, &M, &one, <float*>A, &N, <float*>x, &inc, &beta, y, &inc)
    else:
        dgemv(&trans, &N, &M, &one, <double*>A, &N, <double*>x, &inc, &beta, y, &inc)


# -- gate math: one function per cell, over one row of H units --------------------------------

cdef inline double _sigmoid(double v) noexcept nogil:
    return 1.0 / (1.0 + exp(-v))

cdef void _rnn_tanh_cell(const floating* gi, const floating* gh, floating* h, int H) noexcept nogil:
    """h = tanh(gi + gh)."""
    cdef int j
    for j in range(H):
        h[j] = <floating>tanh(<double>gi[j] + <double>gh[j])

cdef void _lstm_cell(const floating* gi, const floating* gh, floating* h, floating* c,
                     int H) noexcept nogil:
    """i, f, o = σ(.), g = tanh(.); c = f c + i g; h = o tanh(c)."""
    cdef int j
    cdef double i, f, g, o
    for j in range(H):
        i = _sigmoid(<double>gi[j] + <double>gh[j])
        f = _sigmoid(<double>gi[H + j] + <double>gh[H + j])
        g = tanh(<double>gi[2 * H + j] + <double>gh[2 * H + j])
        o = _sigmoid(<double>gi[3 * H + j] + <double>gh[3 * H + j])
        c[j] = <floating>(f * <double>c[j] + i * g)
        h[j] = <floating>(o * tanh(<double>c[j]))

cdef void _gru_lbr_cell(const floating* gi, const floating* gh, floating* h, int H) noexcept nogil:
    """r, z = σ(gi + gh); n = tanh(gi_n + r gh_n) with gh_n = W_hn h + b_hn; h = z h + (1 - z) n."""
    cdef int j
    cdef double r, z, n
    for j in range(H):
        r = _sigmoid(<double>gi[j] + <double>gh[j])
        z = _sigmoid(<double>gi[H + j] + <double>gh[H + j])
        n = tanh(<double>gi[2 * H + j] + r * <double>gh[2 * H + j])
        h[j] = <floating>(z * <double>h[j] + (1.0 - z) * n)

cdef void _gru_rb_gates(const floating* gi, const floating* gh, const floating* h, floating* z_out,
                        floating* rh, int H) noexcept nogil:
    """Reset-before GRU, first half: z = σ(gi_z + gh_z), rh = σ(gi_r + gh_r) ⊙ h."""
    cdef int j
    for j in range(H):
        rh[j] = <floating>(_sigmoid(<double>gi[j] + <double>gh[j]) * <double>h[j])
        z_out[j] = <floating>_sigmoid(<double>gi[H + j] + <double>gh[H + j])

cdef void _gru_rb_update(const floating* gi_n, const floating* ghn, const floating* z,
                         floating* h, int H) noexcept nogil:
    """Second half: n = tanh(gi_n + (r ⊙ h) W_hnᵀ + b_hn); h = z h + (1 - z) n."""
    cdef int j
    cdef double n
    for j in range(H):
        n = tanh(<double>gi_n[j] + <double>ghn[j])
        h[j] = <floating>(<double>z[j] * <double>h[j] + (1.0 - <double>z[j]) * n)


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

cdef void _layer_step(int cell, int k, int H, int64_t tok, const floating* x, int D,
                      floating** wih, floating** whh, floating** bih, floating** bhh,
                      floating* h, floating* c, floating* gi, floating* gh,
                      floating* tmp, floating* tmp2) noexcept nogil:
    """Advance layer k by one step; input = token ``tok`` (x NULL) or the vector x (D)."""
    cdef int G = 4 if cell == CELL_LSTM else (3 if cell != CELL_RNN_TANH else 1)
    cdef int GH = G * H, j
    cdef const floating* w = wih[k]
    memcpy(gi, bih[k], GH * sizeof(floating))
    if x == NULL:
        for j in range(GH):
            gi[j] = gi[j] + w[<Py_ssize_t>j * D + tok]
    else:
        _gemv(w, GH, D, x, <floating>1, gi)
    if cell == CELL_GRU_RB:
        memcpy(gh, bhh[k], 2 * H * sizeof(floating))
        _gemv(<const floating*>whh[k], 2 * H, H, <const floating*>h, <floating>1, gh)
        _gru_rb_gates(gi, gh, h, tmp, tmp2, H)              # tmp = z, tmp2 = r ⊙ h
        memcpy(gh + 2 * H, bhh[k] + 2 * H, H * sizeof(floating))
        _gemv(<const floating*>(whh[k] + <Py_ssize_t>2 * H * H), H, H, <const floating*>tmp2,
              <floating>1, gh + 2 * H)
        _gru_rb_update(gi + 2 * H, gh + 2 * H, tmp, h, H)
        return
    memcpy(gh, bhh[k], GH * sizeof(floating))
    _gemv(<const floating*>whh[k], GH, H, <const floating*>h, <floating>1, gh)
    if cell == CELL_LSTM:
        _lstm_cell(gi, gh, h, c, H)
    elif cell == CELL_GRU_LBR:
        _gru_lbr_cell(gi, gh, h, H)
    else:
        _rnn_tanh_cell(gi, gh, h, H)


def sample(int cell, list layers, floating[:, ::1] fc_w, floating[::1] fc_b,
           floating[:, ::1] embedding, floating[:, ::1] h_state, floating[:, ::1] c_state,
           const int64_t[::1] prefix, int64_t[::1] out, double temperature, int top_k,
           uint64_t seed):
    """Feed ``prefix`` through the model, then draw ``len(out)`` tokens into ``out``.

    Parameters (validated by the caller; V tokens, H units, L layers)
    ----------
    cell : int
        ``CELLS["rnn"]`` (tanh), ``CELLS["gru_lbr"]``, ``CELLS["gru_rb"]`` or ``CELLS["lstm"]``.
    layers : list of (w_ih, w_hh, b_ih, b_hh)
        # IN  PyTorch layout, C-contiguous, the dtype of fc_w
    fc_w, fc_b : (V, H), (V,)
    embedding : (V, E) or None (one-hot input: layer 0's w_ih is (G·H, V))
    h_state, c_state : (L, H)
        # IN/OUT initial state, overwritten with the final state (c_state unused unless LSTM)
    prefix : (n,) int64, n >= 1, ids in [0, V)
    out : (m,) int64
        # OUT the drawn ids
    temperature : 0 = greedy argmax
    top_k : <= 0 = no limit
    seed : the generator's seed
    """
    cdef int L = len(layers), V = fc_w.shape[0], H = fc_w.shape[1], k, G
    cdef Py_ssize_t n_prefix = prefix.shape[0], n_out = out.shape[0], t
    cdef int use_emb = embedding is not None
    G = 4 if cell == CELL_LSTM else (3 if cell in (CELL_GRU_LBR, CELL_GRU_RB) else 1)
    cdef floating** wih = <floating**>malloc(L * sizeof(floating*))
    cdef floating** whh = <floating**>malloc(L * sizeof(floating*))
    cdef floating** bih = <floating**>malloc(L * sizeof(floating*))
    cdef floating** bhh = <floating**>malloc(L * sizeof(floating*))
    cdef int* din = <int*>malloc(L * sizeof(int))
    cdef floating* gi = <floating*>malloc(G * H * sizeof(floating))
    cdef floating* gh = <floating*>malloc(G * H * sizeof(floating))
    cdef floating* tmp = <floating*>malloc(H * sizeof(floating))
    cdef floating* tmp2 = <floating*>malloc(H * sizeof(floating))
    cdef floating* logits = <floating*>malloc(V * sizeof(floating))
    cdef double* p = <double*>malloc(V * sizeof(double))
    cdef double* scratch = <double*>malloc(V * sizeof(double))
    cdef floating[:, ::1] w2
    cdef floating[::1] w1
    cdef floating* hp = &h_state[0, 0]
    cdef floating* cp = &c_state[0, 0]
    cdef const floating* x
    cdef int64_t tok
    cdef Rng rng
    if (wih == NULL or whh == NULL or bih == NULL or bhh == NULL or din == NULL or gi == NULL
            or gh == NULL or tmp == NULL or tmp2 == NULL or logits == NULL or p == NULL
            or scratch == NULL):
        free(wih); free(whh); free(bih); free(bhh); free(din); free(gi); free(gh)
        free(tmp); free(tmp2); free(logits); free(p); free(scratch)
        raise MemoryError()
    try:
        for k in range(L):
            w2 = layers[k][0]
            wih[k] = &w2[0, 0]
            din[k] = w2.shape[1]
            w2 = layers[k][1]
            whh[k] = &w2[0, 0]
            w1 = layers[k][2]
            bih[k] = &w1[0]
            w1 = layers[k][3]
            bhh[k] = &w1[0]
        _rng_seed(&rng, seed)
        with nogil:
            tok = prefix[0]
            t = 0
            while True:
                # one step of every layer on token ``tok``
                for k in range(L):
                    if k == 0:
                        x = &embedding[tok, 0] if use_emb else NULL
                    else:
                        x = hp + <Py_ssize_t>(k - 1) * H
                    _layer_step(cell, k, H, tok, x, din[k], wih, whh, bih, bhh,
                                hp + <Py_ssize_t>k * H, cp + <Py_ssize_t>k * H, gi, gh, tmp, tmp2)
                if t + 1 < n_prefix:
                    t += 1
                    tok = prefix[t]
                    continue
                t += 1
                if t - n_prefix >= n_out:
                    break
                memcpy(logits, &fc_b[0], V * sizeof(floating))
                _gemv(<const floating*>&fc_w[0, 0], V, H,
                      <const floating*>(hp + <Py_ssize_t>(L - 1) * H), <floating>1, logits)
                tok = _draw(logits, V, temperature, top_k, p, scratch, &rng)
                out[t - n_prefix] = tok
                if t - n_prefix + 1 >= n_out:
                    break
    finally:
        free(wih); free(whh); free(bih); free(bhh); free(din); free(gi); free(gh)
        free(tmp); free(tmp2); free(logits); free(p); free(scratch)
