"""The compiled forward and BPTT passes: allocation, the large GEMMs, the time loops.

Design: the caller (fastgates/_fast.py) has validated and normalised every array
(fastgates/_checks.py).  Here, with the GIL released:

forward   one GEMM for the input projection of all T*B rows (token ids: a gather of
          rows of w_ih^T), written straight into the buffer the time loop reads and
          turns into post-activation gates in place; w_hh packed once; then the whole
          time loop in src_c/recurrence.c (one parallel region).  Inference
          (training=False) walks time in chunks so memory stays O(B*G*H) beyond y.
backward  the time loop (t = T-1 .. 0) in src_c/recurrence.c produces the gradient of
          every recurrent pre-activation; then dw_ih, dw_hh, dx as single GEMMs over
          all T*B rows and the biases as column sums (one order for any thread count).
"""

import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from fastgates._blas cimport floating, gemm, gemm_split
from fastgates._checks import Cache

cdef extern from "recurrence.h" nogil:
    enum:
        FG_RNN_TANH
        FG_RNN_RELU
        FG_GRU_LBR
        FG_GRU_RB
        FG_LSTM
        FG_NR_F32
        FG_NR_F64
    ctypedef struct fg_forward_args:
        int cell, T, B, H, n_threads
        const void *P
        void *pre
        const void *h0
        void *hout
        const void *c0
        void *cout
        void *tc
        void *extra
        size_t extra_step
        const void *b_hn
    ctypedef struct fg_backward_args:
        int cell, T, B, H, n_threads
        const void *P
        const void *gates
        const void *hs
        const void *cs
        const void *tc
        const void *extra
        const void *dy
        void *dG
        void *dnx
        void *dh
        void *dc
        void *scratch
    size_t fg_packed_size(int H, int G, int nr)
    void fg_pack_forward_f32(const float *w_hh, int H, int G, float *P, int n_threads)
    void fg_pack_forward_f64(const double *w_hh, int H, int G, double *P, int n_threads)
    void fg_pack_backward_f32(const float *w_hh, int H, int G, float *P, int n_threads)
    void fg_pack_backward_f64(const double *w_hh, int H, int G, double *P, int n_threads)
    void fg_forward_f32(const fg_forward_args *a)
    void fg_forward_f64(const fg_forward_args *a)
    void fg_backward_f32(const fg_backward_args *a)
    void fg_backward_f64(const fg_backward_args *a)
    void fg_activation_f32(int kind, size_t n, const float *x, float *out)
    int fg_gemm_tn_f32(int n_threads, int M, int N, int K, const float *A, size_t lda,
                       const float *B, size_t ldb, float *C, size_t ldc)
    int fg_gemm_tn_f64(int n_threads, int M, int N, int K, const double *A, size_t lda,
                       const double *B, size_t ldb, double *C, size_t ldc)
    void fg_activation_f64(int kind, size_t n, const double *x, double *out)
    int fg_max_threads()
    int fg_have_openmp()
    const char *fg_simd_level()

# Rows of the input projection computed per GEMM in inference mode.
DEF CHUNK_ROWS = 1024

CELL_CODES = {("rnn", "tanh"): FG_RNN_TANH, ("rnn", "relu"): FG_RNN_RELU,
              ("gru", "lbr"): FG_GRU_LBR, ("gru", "rb"): FG_GRU_RB, ("lstm", ""): FG_LSTM}


def max_threads():
    """OpenMP's default thread count (OMP_NUM_THREADS or the cores); 1 without OpenMP."""
    return fg_max_threads()


def have_openmp():
    return bool(fg_have_openmp())


def simd_level():
    return fg_simd_level().decode()


def resolve_threads(n_threads):
    """None -> OpenMP default; n > 0 -> n; n < 0 -> max + 1 + n (at least 1)."""
    cdef int top = fg_max_threads()
    if not fg_have_openmp():
        return 1
    if n_threads is None:
        return top
    if n_threads < 0:
        return max(1, top + 1 + n_threads)
    return int(n_threads)


def activation(kind, floating[::1] x):
    """sigmoid (kind 0) or tanh (kind 1) with the kernels' vector code (for tests)."""
    out = np.empty_like(np.asarray(x))
    cdef floating[::1] o = out
    if x.shape[0] == 0:
        return out
    if floating is float:
        fg_activation_f32(kind, x.shape[0], &x[0], &o[0])
    else:
        fg_activation_f64(kind, x.shape[0], &x[0], &o[0])
    return out


cnp.import_array()


cdef void *vptr(a):
    """Data pointer of a C-contiguous ndarray (NULL for None or empty)."""
    if a is None:
        return NULL
    if cnp.PyArray_SIZE(<cnp.ndarray>a) == 0:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void _pack(bint forward, floating *w_hh, int H, int G, floating *P, int nt) noexcept nogil:
    if floating is float:
        if forward:
            fg_pack_forward_f32(w_hh, H, G, P, nt)
        else:
            fg_pack_backward_f32(w_hh, H, G, P, nt)
    else:
        if forward:
            fg_pack_forward_f64(w_hh, H, G, P, nt)
        else:
            fg_pack_backward_f64(w_hh, H, G, P, nt)


cdef object _packed(w_hh, int H, int G, bint forward, int nt, floating dummy):
    cdef int nr = FG_NR_F32 if floating is float else FG_NR_F64
    P = np.empty(fg_packed_size(H, G, nr), dtype=w_hh.dtype)
    cdef floating *p = <floating *>vptr(P)
    cdef floating *w = <floating *>vptr(w_hh)
    with nogil:
        _pack(forward, w, H, G, p, nt)
    return P


cdef void _project(int nt, int rows, int GH, int D, const floating *x, const long long *tok,
                   const floating *w_ih, const floating *w_ihT, const floating *bias,
                   floating *out) noexcept nogil:
    """out[r, :] = x[r] w_ih^T + bias   (x: [rows, D] or token ids tok: [rows]; out: [rows, GH])"""
    cdef int r
    if tok != NULL:
        for r in prange(rows, num_threads=nt, schedule='static'):
            memcpy(out + <size_t>r * GH, w_ihT + <size_t>tok[r] * GH, GH * sizeof(floating))
            _add_row(GH, bias, out + <size_t>r * GH)
        return
    for r in prange(rows, num_threads=nt, schedule='static'):
        memcpy(out + <size_t>r * GH, bias, GH * sizeof(floating))
    gemm_split(nt, False, True, rows, GH, D, <floating>1, x, D, w_ih, D, <floating>1, out, GH)


cdef inline void _add_row(int n, const floating *src, floating *dst) noexcept nogil:
    cdef int j
    for j in range(n):
        dst[j] += src[j]


cdef void _run_forward(fg_forward_args *a, floating dummy) noexcept nogil:
    if floating is float:
        fg_forward_f32(a)
    else:
        fg_forward_f64(a)


def forward(f, bint training, int nt):
    """Forward pass of a validated call ``f`` (a fastgates._checks.Forward)."""
    dtype = f.dtype
    if dtype == np.float32:
        return _forward(f, training, nt, <float>0)
    return _forward(f, training, nt, <double>0)


cdef object _forward(f, bint training, int nt, floating dummy):
    cdef int T = f.T, B = f.B, D = f.D, H = f.H, G = f.G
    cdef int GH = G * H, rows = T * B
    cdef int cell = CELL_CODES[f.cell, f.variant]
    dtype = f.dtype
    cdef bint lstm = cell == FG_LSTM, gru = cell == FG_GRU_LBR or cell == FG_GRU_RB
    cdef bint tokens = f.tokens

    h0 = f.h0 if f.h0 is not None else np.zeros((B, H), dtype)
    c0 = (f.c0 if f.c0 is not None else np.zeros((B, H), dtype)) if lstm else None
    bias = f.b_ih + f.b_hh
    if cell == FG_GRU_LBR:
        bias[2 * H:] = f.b_ih[2 * H:]      # b_hn acts inside r * (...)
    w_ihT = np.ascontiguousarray(f.w_ih.T) if tokens else None
    x = f.x
    P = _packed(f.w_hh, H, G, True, nt, dummy)

    cdef fg_forward_args a
    memset(&a, 0, sizeof(a))
    a.cell, a.B, a.H, a.n_threads = cell, B, H, nt
    a.P = <floating *>vptr(P)
    a.b_hn = <floating *>vptr(f.b_hh) + 2 * H if cell == FG_GRU_LBR else NULL

    cdef const floating *xp = NULL if tokens else <floating *>vptr(x)
    cdef const long long *tp = <const long long *>vptr(x) if tokens else NULL
    cdef const floating *wp = <floating *>vptr(f.w_ih)
    cdef const floating *wtp = <floating *>vptr(w_ihT)
    cdef const floating *bp = <floating *>vptr(bias)

    if training:
        hs = np.empty((T + 1, B, H), dtype)
        hs[0] = h0
        gates = hs[1:] if cell in (FG_RNN_TANH, FG_RNN_RELU) else np.empty((T, B, GH), dtype)
        cs = tc = extra = None
        if lstm:
            cs = np.empty((T + 1, B, H), dtype)
            cs[0] = c0
            tc = np.empty((T, B, H), dtype)
        if gru:
            extra = np.empty((T, B, H), dtype)
        a.T = T
        a.pre = <floating *>vptr(gates)
        a.h0 = <floating *>vptr(hs)
        a.hout = <floating *>vptr(hs) + <size_t>B * H
        if lstm:
            a.c0 = <floating *>vptr(cs)
            a.cout = <floating *>vptr(cs) + <size_t>B * H
            a.tc = <floating *>vptr(tc)
        a.extra = <floating *>vptr(extra)
        a.extra_step = <size_t>B * H
        with nogil:
            _project(nt, rows, GH, D, xp, tp, wp, wtp, bp, <floating *>a.pre)
            _run_forward(&a, dummy)
        cache = Cache(cell=f.cell, variant=f.variant, dtype=dtype, tokens=tokens, D=D,
                      x=x.copy(),
                      w_ih=None if tokens else f.w_ih.copy(), w_hh=f.w_hh.copy(),
                      hs=hs, gates=None if cell in (FG_RNN_TANH, FG_RNN_RELU) else gates,
                      extra=extra, cs=cs, tc=tc)
        return hs[1:].copy(), hs[T].copy(), (cs[T].copy() if lstm else None), cache

    # inference: chunks of time steps; per-step state lives in y (h) and small buffers
    y = np.empty((T, B, H), dtype)
    cdef int Tc = max(1, min(T, CHUNK_ROWS // max(B, 1)))
    pre = None if cell in (FG_RNN_TANH, FG_RNN_RELU) else np.empty((Tc, B, GH), dtype)
    cbuf = np.empty((Tc, B, H), dtype) if lstm else None
    c_carry = c0.copy() if lstm else None
    extra = np.empty((B, H), dtype) if gru else None
    a.extra = <floating *>vptr(extra)
    a.extra_step = 0
    a.tc = NULL
    cdef int t0 = 0, n
    cdef floating *yp = <floating *>vptr(y)
    cdef size_t BH = <size_t>B * H
    while t0 < T:
        n = min(Tc, T - t0)
        a.T = n
        a.hout = yp + t0 * BH
        a.h0 = <floating *>vptr(h0) if t0 == 0 else yp + (t0 - 1) * BH
        a.pre = a.hout if pre is None else <floating *>vptr(pre)
        if lstm:
            a.c0 = <floating *>vptr(c_carry)
            a.cout = <floating *>vptr(cbuf)
        with nogil:
            _project(nt, n * B, GH, D,
                     xp + <size_t>t0 * B * D if xp != NULL else NULL,
                     tp + <size_t>t0 * B if tp != NULL else NULL,
                     wp, wtp, bp, <floating *>a.pre)
            _run_forward(&a, dummy)
        if lstm:
            c_carry[...] = cbuf[n - 1]
        t0 += n
    h_n = y[T - 1].copy() if T > 0 else h0.copy()
    c_n = (c_carry.copy() if lstm else None)
    return y, h_n, c_n, None


# The weight-gradient product dW_hh^T = [h_{t-1}]^T dG: our micro-kernel (True) or BLAS
# (False; kept for side-by-side measurement, see bench/).
cdef bint _OWN_DW_HH = True


def use_own_dw_hh(bint own):
    """Select the dW_hh product (True: fg_gemm_tn, False: BLAS); returns the previous choice."""
    global _OWN_DW_HH
    prev = _OWN_DW_HH
    _OWN_DW_HH = own
    return prev


cdef void _gemm_tn(int nt, int M, int N, int K, const floating *A, int lda, const floating *B,
                   int ldb, floating *C, int ldc) noexcept nogil:
    """C = A^T B   (A: [K, lda] of which M columns, B: [K, ldb] of which N, C: [M, ldc])"""
    cdef int rc = -1
    if _OWN_DW_HH:
        if floating is float:
            rc = fg_gemm_tn_f32(nt, M, N, K, A, lda, B, ldb, C, ldc)
        else:
            rc = fg_gemm_tn_f64(nt, M, N, K, A, lda, B, ldb, C, ldc)
    if rc != 0:      # BLAS (also when the scratch could not be allocated)
        gemm_split(nt, True, False, M, N, K, <floating>1, A, lda, B, ldb, <floating>0, C, ldc)


cdef void _colsum(int nt, int rows, int cols, const floating *A, int lda, floating *out) noexcept nogil:
    """out[j] = sum_r A[r, j]   (A: [rows, cols], row stride lda); rows added in order for every j,
    threads own column ranges, so the result does not depend on the thread count."""
    cdef int i, r, j, j0, j1
    for i in prange(nt, num_threads=nt, schedule='static'):
        j0 = <int>((<long>cols * i) // nt)
        j1 = <int>((<long>cols * (i + 1)) // nt)
        for j in range(j0, j1):
            out[j] = 0
        for r in range(rows):
            for j in range(j0, j1):
                out[j] += A[<size_t>r * lda + j]


cdef void _scatter_rows(int nt, int rows, int cols, const long long *tok, const floating *A, int lda,
                        floating *out, int ldo) noexcept nogil:
    """out[tok[r], j] += A[r, j] over r in order; threads own column ranges (deterministic)."""
    cdef int i, r, j, j0, j1
    for i in prange(nt, num_threads=nt, schedule='static'):
        j0 = <int>((<long>cols * i) // nt)
        j1 = <int>((<long>cols * (i + 1)) // nt)
        for r in range(rows):
            for j in range(j0, j1):
                out[<size_t>tok[r] * ldo + j] += A[<size_t>r * lda + j]


cdef void _run_backward(fg_backward_args *a, floating dummy) noexcept nogil:
    if floating is float:
        fg_backward_f32(a)
    else:
        fg_backward_f64(a)


def backward(cache, b, int nt):
    """BPTT of a validated call: ``cache`` from forward, ``b`` a fastgates._checks.Backward."""
    if cache.dtype == np.float32:
        return _backward(cache, b, nt, <float>0)
    return _backward(cache, b, nt, <double>0)


cdef object _backward(cache, b, int nt, floating dummy):
    cdef int T = b.T, B = b.B, D = b.D, H = b.H, G = b.G
    cdef int GH = G * H, rows = T * B
    cdef int cell = CELL_CODES[cache.cell, cache.variant]
    cdef bint lstm = cell == FG_LSTM
    dtype = cache.dtype

    dG = np.empty((T, B, GH), dtype)
    dnx = np.empty((T, B, H), dtype) if cell == FG_GRU_LBR else None
    dh = b.dh_n.copy() if b.dh_n is not None else np.zeros((B, H), dtype)
    dc = (b.dc_n.copy() if b.dc_n is not None else np.zeros((B, H), dtype)) if lstm else None
    scratch = np.empty((B, H), dtype) if cell == FG_GRU_RB else None
    P = _packed(cache.w_hh, H, G, False, nt, dummy)

    cdef fg_backward_args a
    memset(&a, 0, sizeof(a))
    a.cell, a.T, a.B, a.H, a.n_threads = cell, T, B, H, nt
    a.P = <floating *>vptr(P)
    a.gates = <floating *>vptr(cache.gates)
    a.hs = <floating *>vptr(cache.hs)
    a.cs = <floating *>vptr(cache.cs)
    a.tc = <floating *>vptr(cache.tc)
    a.extra = <floating *>vptr(cache.extra)
    a.dy = <floating *>vptr(b.dy)
    a.dG = <floating *>vptr(dG)
    a.dnx = <floating *>vptr(dnx)
    a.dh = <floating *>vptr(dh)
    a.dc = <floating *>vptr(dc)
    a.scratch = <floating *>vptr(scratch)

    new = np.empty if rows > 0 else np.zeros    # every entry is written below when T*B > 0
    dw_hh = new((GH, H), dtype)
    db_hh = new(GH, dtype)
    db_ih = new(GH, dtype)
    dw_ih = new((GH, D), dtype)
    dx = None if cache.tokens else new((T, B, D), dtype)

    cdef floating *g = <floating *>vptr(dG)
    cdef floating *gn = <floating *>vptr(dnx)
    cdef floating *hprev = <floating *>vptr(cache.hs)
    cdef floating *rh = <floating *>vptr(cache.extra)
    dw_hhT = new((H, GH), dtype)
    cdef floating *whhT = <floating *>vptr(dw_hhT)
    cdef floating *wih = <floating *>vptr(dw_ih)
    cdef floating *bhh = <floating *>vptr(db_hh)
    cdef floating *bih = <floating *>vptr(db_ih)
    cdef floating *xp = <floating *>vptr(cache.x) if not cache.tokens else NULL
    cdef floating *w_ih = <floating *>vptr(cache.w_ih)
    cdef floating *dxp = <floating *>vptr(dx)
    # columns of dG that equal the input-side gradient (lbr: all but n, which is dnx)
    cdef int gx = 2 * H if cell == FG_GRU_LBR else GH
    cdef int rz = 2 * H if cell == FG_GRU_RB else GH   # columns whose dw_hh input is h_{t-1}
    cdef const long long *tp = <const long long *>vptr(cache.x) if cache.tokens else NULL
    dw_ihT = np.zeros((D, GH), dtype) if tp != NULL else None
    cdef floating *wihT = <floating *>vptr(dw_ihT)

    if rows > 0:
        with nogil:
            _run_backward(&a, dummy)
            # dw_hh^T = [h_{t-1}]^T dG  (rb n-gate columns: (r*h_{t-1})^T dn).  Formed transposed:
            # OpenBLAS 0.3.30 runs dG^T [h_{t-1}] at a third of the speed (10 against 30 GFLOP/s
            # on one core at G*H=1024, H=256, T*B=1120)
            _gemm_tn(nt, H, rz, rows, hprev, H, g, GH, whhT, GH)
            if rz < GH:
                _gemm_tn(nt, H, GH - rz, rows, rh, H, g + rz, GH, whhT + rz, GH)
            _colsum(nt, rows, GH, g, GH, bhh)
            _colsum(nt, rows, gx, g, GH, bih)
            if gx < GH:
                _colsum(nt, rows, H, gn, H, bih + gx)
            if tp == NULL:
                # dw_ih = dGx^T x ;  dx = dGx w_ih
                gemm_split(nt, True, False, gx, D, rows, <floating>1, g, GH, xp, D, <floating>0, wih, D)
                gemm_split(nt, False, False, rows, D, gx, <floating>1, g, GH, w_ih, D, <floating>0, dxp, D)
                if gx < GH:
                    gemm_split(nt, True, False, H, D, rows, <floating>1, gn, H, xp, D, <floating>0,
                               wih + <size_t>gx * D, D)
                    gemm_split(nt, False, False, rows, D, H, <floating>1, gn, H, w_ih + <size_t>gx * D, D,
                               <floating>1, dxp, D)
            else:
                _scatter_rows(nt, rows, gx, tp, g, GH, wihT, GH)
                if gx < GH:
                    _scatter_rows(nt, rows, H, tp, gn, H, wihT + gx, GH)
        dw_hh[...] = dw_hhT.T
        if tp != NULL:
            dw_ih[...] = dw_ihT.T
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh
