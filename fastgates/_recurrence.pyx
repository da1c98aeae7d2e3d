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
lengths   the same code over the packed layout (fastgates._checks.Packing): the valid
          rows of x (and dy) are gathered once into step-major, length-sorted order, the
          time loop runs n_t rows at step t, every GEMM covers the N valid rows only, and
          y, dx are scattered back with zeros past each row's end.  The work follows the
          valid tokens; the dense case is this layout with n_t = B, minus the gathers.
"""

import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from fastgates._blas cimport (floating, gemm, gemm_batch, gemm_job, gemm_plan, gemm_plan_make,
                              gemm_plan_item_f32, gemm_plan_item_f64, gemm_split)
from fastgates import _fork, cells as _cells
from fastgates._checks import Cache

cdef extern from "fastgates.h" nogil:
    enum:      # the cells with behaviour of their own here; every cell: CELL_CODES below
        FG_GRU_LBR
        FG_GRU_RB
        FG_LNLSTM
        FG_ISA_COUNT
        FG_PACK_HH
        FG_PACK_IH
        FG_PACK_BWD
        FG_PACK_HR
        FG_PACK_HR_BWD
        FG_PACK_COPY
    ctypedef struct fg_pack_job:
        const void *w
        void *dst
        int K, which
        size_t bytes
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
        const int *batch
        int c_in_place
        int keep
        int D
        const void *x
        const long long *tok
        const void *Pi
        const void *wT
        int wT_direct
        const void *bias
        int proj
        const void *Pr
        void *m
        size_t m_step
        const void *peep
        const void *ln_ih
        const void *ln_hh
        const void *ln_c
        const void *ln_cb
        const void *b_rec
        void *xn
        void *hn
        void *cn
        void *rstd
        void *part
        fg_pack_job pack[6]
        fg_pack_job post
    ctypedef struct fg_step_args:
        int cell, L, B, H, n_threads
        const int *d_in
        const void **P
        const void **Pi
        const void *wT
        const void **bias
        const void **b_hn
        const void *x
        const long long *tok
        const void *h0
        void *h1
        const void *c0
        void *c1
        void *pre
        void *extra
        int proj
        const void **Pr
        const void **peep
        void *m
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
        void *db
        void *dbn
        const int *batch
        int proj
        const void *Pr
        void *dhs
        void *dm
        const void *peep
        void *dpeep
        const void *ln_ih
        const void *ln_hh
        const void *ln_c
        const void *xn
        const void *hn
        const void *cn
        const void *rstd
        void *dax
        void *db_ih
        void *dln_ih
        void *dln_hh
        void *dln_c
        void *dln_cb
        void *part
        int D
        const void *Pix
        void *dx
        fg_pack_job pack[6]
        void (*post)(const void *ctx, int item) noexcept nogil
        const void *post_ctx
        int npost
        int *post_next
    size_t fg_packed_size(int cell, int H, int K, int which, int f64)
    void fg_pack_f32(int cell, const float *w, int H, int K, int which, float *P, int n_threads)
    void fg_pack_f64(int cell, const double *w, int H, int K, int which, double *P, int n_threads)
    void fg_step_f32(const fg_step_args *a)
    void fg_step_f64(const fg_step_args *a)
    void fg_forward_f32(const fg_forward_args *a)
    void fg_forward_f64(const fg_forward_args *a)
    void fg_backward_f32(const fg_backward_args *a)
    void fg_backward_f64(const fg_backward_args *a)
    void fg_activation_f32(int kind, size_t n, const float *x, float *out)
    void fg_activation_f64(int kind, size_t n, const double *x, double *out)
    ctypedef struct fg_gemm_tn_args:
        int M, N, K, trans
        const void *A
        const void *B
        size_t lda, ldb
        void *C
        size_t ldc
        int M2
        const void *A2
        size_t lda2
        void *C2
        size_t ldc2
        const void *B2
        size_t ldb2
        int N1
    int fg_gemm_tn_f32(int n_threads, const fg_gemm_tn_args *a)
    int fg_gemm_tn_f64(int n_threads, const fg_gemm_tn_args *a)
    int fg_max_threads()
    int fg_have_openmp()
    double fg_fma_peak(int f64, int n_threads, long iters, double *seconds)
    int fg_isa_compiled()
    int fg_isa_supported()
    int fg_isa_select(int level)
    int fg_isa_active()
    const char *fg_isa_name(int level)

# Rows of the input projection computed per GEMM in inference mode.
DEF CHUNK_ROWS = 1024
DEF OWN_GEMM_ROWS = 256     # from this many rows BPTT's dW_ih is our product, not BLAS's
# Below this many rows BPTT's dW_hh is BLAS's product (its transposes and short k loops
# cost our product more): backward, side by side on the Zen 4 machine, BLAS / ours:
# 25 rows 0.91 (LSTM H 100), 100 rows 0.92-0.97, 200 rows 0.94-1.00, 245 rows 1.04.
DEF BLAS_DWHH_ROWS = 128
# From this batch BPTT forms dx_t = dG_t w_ih step by step in its loop (phase C), not as
# one BLAS product after it; fwd+bwd side by side on the Zen 4 machine, new / old:
# B 64 (mid) GRU 0.91, LSTM 0.975-0.98; B 32 (d2l) 0.98; B 24 1.00; B 16 1.03; B 8 1.04.
DEF RIDE_DX_ROWS = 32

# The compiled core's cell codes and their facts, from the one table (fastgates.cells; the
# C side registers the same codes in src_c/cells/registry.h).
CELL_CODES = {(c.kernel, c.variant): c.code for c in _cells.CELLS.values()}
GATES = {c.code: c.G for c in _cells.CELLS.values()}
HAS_C = frozenset(c.code for c in _cells.CELLS.values() if "c" in c.states)

# The LayerNorm cells (src_c/layernorm.h): their parameters beyond the four reach the core
# by stem (Forward.params), what their backward needs beyond the common fields travels in
# Cache.saved: xn (x-hat of the input projection), hn (h-hat of the recurrent product),
# cn (lnlstm: c-hat), rstd (T, B, 3) the rows' 1/sqrt(var + eps) for x, h, c.
LN_CELLS = frozenset(c.code for c in _cells.CELLS.values()
                     if any(p.stem == "ln_ih_weight" for p in c.params))


def max_threads():
    """OpenMP's default thread count (OMP_NUM_THREADS or the cores); 1 without OpenMP."""
    return fg_max_threads()


def have_openmp():
    return bool(fg_have_openmp())


#: The instruction-set levels, lowest first (see src_c/dispatch.c).
ISA_LEVELS = tuple(fg_isa_name(i).decode() for i in range(FG_ISA_COUNT))


def isa_compiled():
    """Names of the levels this build contains."""
    return [n for i, n in enumerate(ISA_LEVELS) if fg_isa_compiled() & (1 << i)]


def isa_supported():
    """Names of the levels this CPU and OS can run (CPUID and XSAVE state)."""
    return [n for i, n in enumerate(ISA_LEVELS) if fg_isa_supported() & (1 << i)]


def isa_select(name):
    """Make the best available level no higher than ``name`` the active one; return it."""
    return ISA_LEVELS[fg_isa_select(ISA_LEVELS.index(name))]


def fma_peak(int n_threads, dtype=np.float32, double seconds=0.2):
    """Measured FMA peak in GFLOP/s of the active level: n_threads threads of independent
    vector FMAs for about ``seconds`` (best of 3), for the benchmark report."""
    import time
    cdef double secs = 0, flops
    cdef long iters = 1 << 16
    cdef bint f64 = np.dtype(dtype) == np.float64
    best = 0.0
    while True:                       # grow the loop until one run takes ~seconds / 3
        t = time.perf_counter()
        flops = fg_fma_peak(f64, n_threads, iters, &secs)
        el = time.perf_counter() - t
        if el > seconds / 3 or iters > (1 << 40):
            break
        iters *= 2
    for _ in range(3):
        t = time.perf_counter()
        flops = fg_fma_peak(f64, n_threads, iters, &secs)
        el = time.perf_counter() - t
        best = max(best, flops / el / 1e9)
    return best


def isa_active():
    """The name of the level the kernels run with."""
    return ISA_LEVELS[fg_isa_active()]


def resolve_threads(n_threads):
    """None -> OpenMP default; n > 0 -> n; n < 0 -> max + 1 + n (at least 1)."""
    return _resolve_threads(n_threads)


cdef int _resolve_threads(object n_threads) except -1:
    """n_threads checked by _checks.check_n_threads (positive counts are bounded there;
    negative ones may be any int: Python arithmetic)."""
    cdef int top = fg_max_threads()
    if not fg_have_openmp():
        return 1
    if n_threads is None:
        return top
    if n_threads < 0:
        return max(1, top + 1 + n_threads)
    return n_threads


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


def _ram_bytes():
    import os
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 1 << 32


# Workspace memory.  A call allocates tens of MiB at the d2l/mid shapes (the cache, the
# gate gradients, packed weights); fresh memory from the OS costs a page fault per 4 KiB
# page, taken inside the time loop by whichever thread touches the page first while
# the other waits at the next barrier (a quarter of the training forward at d2l).  Large
# arrays therefore come from a pool of freed blocks: an array's memory goes back to the
# pool when the array (and every view of it) is gone, and the next call of the same
# shapes finds it mapped.  The pool holds at most POOL_BYTES; a block that does not fit
# is returned to the OS.  Blocks are 64-byte aligned (one AVX-512 vector).

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)
    void free(void *ptr)

#: Arrays smaller than this come from NumPy (malloc keeps them mapped anyway).
POOL_MIN = 1 << 14
#: The most the pool keeps (bytes): 1/16 of the RAM, at most 1 GiB.
POOL_BYTES = min(1 << 30, max(1 << 26, _ram_bytes() // 16))
cdef dict _pool = {}            # block size -> list of addresses (Python ints)
cdef size_t _pool_held = 0


cdef class _Block:
    """Owns one aligned allocation; its death gives a pooled one back to the pool (a small
    one, never asked for by size again, to the allocator)."""
    cdef void *ptr
    cdef size_t size
    cdef bint pooled

    def __dealloc__(self):
        global _pool_held
        if self.ptr == NULL:
            return
        if self.pooled and _pool_held + self.size <= POOL_BYTES:
            _pool.setdefault(self.size, []).append(<size_t>self.ptr)
            _pool_held += self.size
        else:
            free(self.ptr)


cdef object _empty(shape, dtype):
    """np.empty(shape, dtype), 64-byte aligned; large arrays from the pool (see above).

    Small ones are aligned too: the threads of a step write a state such as c_t or BPTT's
    dh in ranges of whole vectors (64 bytes) of units, and NumPy's own small arrays start
    16 or 48 bytes into a cache line, so two threads would write one line every step."""
    global _pool_held
    # typed: the fields below are C reads (this runs several times a call)
    cdef cnp.dtype dt = dtype if isinstance(dtype, cnp.dtype) else np.dtype(dtype)
    if not isinstance(shape, tuple):
        shape = (shape,)
    cdef cnp.npy_intp dims[8]
    cdef int nd = len(shape), i
    if nd > 8:
        return np.empty(shape, dt)
    cdef Py_ssize_t n = 1
    for i in range(nd):
        dims[i] = shape[i]
        n *= dims[i]
    cdef size_t nbytes = <size_t>n * <size_t>dt.itemsize
    if n < 0:
        return cnp.PyArray_EMPTY(nd, dims, dt.type_num, 0)
    cdef bint pooled = nbytes >= <size_t>POOL_MIN     # small: aligned, not pooled
    cdef size_t size = ((nbytes + 65535) & ~(<size_t>65535) if pooled else
                        max(<size_t>64, (nbytes + 63) & ~(<size_t>63)))
    cdef void *ptr = NULL
    free_list = _pool.get(size) if pooled else None
    if free_list:
        ptr = <void *><size_t>free_list.pop()
        _pool_held -= size
    elif posix_memalign(&ptr, 64, size) != 0:
        raise MemoryError(f"fastgates: cannot allocate {nbytes} bytes of workspace")
    blk = _Block()
    blk.ptr, blk.size, blk.pooled = ptr, size, pooled
    arr = cnp.PyArray_SimpleNewFromData(nd, dims, dt.type_num, ptr)
    cnp.set_array_base(arr, blk)
    return arr


cdef object _zeros(shape, dtype):
    a = _empty(shape, dtype)
    memset(cnp.PyArray_DATA(<cnp.ndarray>a), 0, <size_t>cnp.PyArray_NBYTES(<cnp.ndarray>a))
    return a


cdef object _copy(a):
    """A C-contiguous, 64-byte aligned copy of the ndarray ``a`` (pooled memory when large)."""
    cdef cnp.ndarray arr = <cnp.ndarray?>a
    cdef size_t nbytes = <size_t>cnp.PyArray_NBYTES(arr)
    out = _empty(a.shape, a.dtype)
    if cnp.PyArray_IS_C_CONTIGUOUS(arr):
        memcpy(cnp.PyArray_DATA(<cnp.ndarray>out), cnp.PyArray_DATA(arr), nbytes)
    else:
        np.copyto(out, a)
    return out


cdef object _copy_later(fg_pack_job *job, a, bint region, int skip=0):
    """A C-contiguous copy of the ndarray ``a`` past its first ``skip`` rows (a[skip:],
    without the slice's view), made by the threads of the pass's region (``job`` becomes a
    FG_PACK_COPY job) when there is one and a is C-contiguous; else now (_copy).  Until
    the region has run, the copy's contents are undefined."""
    cdef cnp.ndarray arr = <cnp.ndarray?>a
    cdef size_t row = <size_t>cnp.PyArray_STRIDE(arr, 0) if skip else 0
    cdef size_t nbytes = <size_t>cnp.PyArray_NBYTES(arr) - skip * row
    if not region or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or nbytes == 0:
        return _copy(a[skip:] if skip else a)
    out = _empty((a.shape[0] - skip,) + a.shape[1:] if skip else a.shape, a.dtype)
    job.w = <char *>cnp.PyArray_DATA(arr) + skip * row
    job.dst, job.which, job.bytes = cnp.PyArray_DATA(<cnp.ndarray>out), FG_PACK_COPY, nbytes
    return out


def pool_info():
    """(bytes held in the pool, blocks held): for tests and show_config."""
    return _pool_held, sum(len(v) for v in _pool.values())


def pool_clear():
    """Return every pooled block to the OS (the arrays in use are not affected)."""
    global _pool_held
    for blocks in _pool.values():
        for addr in blocks:
            free(<void *><size_t>addr)
    _pool.clear()
    _pool_held = 0


cdef void *vptr(a):
    """Data pointer of a C-contiguous ndarray (NULL for None or empty)."""
    if a is None:
        return NULL
    if cnp.PyArray_SIZE(<cnp.ndarray>a) == 0:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef object _pack_later(fg_pack_job *job, int cell, w, int H, int which, floating dummy):
    """An array for w packed for `which`, and the job that packs it: a forward / backward
    pass runs the job inside its own region (fg_pack_job), _packed at once.  which =
    FG_PACK_HH (w_hh, the forward loop), FG_PACK_IH (w_ih, the input projection) or
    FG_PACK_BWD (w_hh, BPTT); or the lstm projection w (K=P, H) for FG_PACK_HR (forward) /
    FG_PACK_HR_BWD (BPTT)."""
    cdef size_t n = _pack_size(cell, w, H, which)
    P = _empty((n,), w.dtype)
    _pack_job(job, cell, w, H, which, vptr(P), n)
    return P


cdef inline int _pack_k(w, int which):
    """The inner size K of w packed for `which`: its rows for the projection's w_hr, else
    its columns."""
    return w.shape[0] if which == FG_PACK_HR or which == FG_PACK_HR_BWD else w.shape[1]


cdef size_t _pack_size(int cell, w, int H, int which):
    """Elements of w (float32 or float64) packed for `which` (see _pack_later)."""
    return fg_packed_size(cell, H, _pack_k(w, which), which, w.dtype.itemsize == 8)


cdef void *_pack_job(fg_pack_job *job, int cell, w, int H, int which, void *dst, size_t n):
    """job := pack w for `which` into dst, n elements (see _pack_later); returns dst, or
    NULL when n is 0."""
    job.w, job.dst, job.which, job.K = vptr(w), dst if n > 0 else NULL, which, _pack_k(w, which)
    return job.dst


cdef inline size_t _lines(size_t n, size_t itemsize) noexcept:
    """n elements of itemsize bytes rounded up to whole 64-byte lines (in elements)."""
    cdef size_t per = 64 // itemsize
    return (n + per - 1) // per * per


cdef object _packed(int cell, w, int H, int which, int nt, floating dummy):
    """w packed for the active level now, in a region of nt threads (see _pack_later)."""
    cdef fg_pack_job job
    P = _pack_later(&job, cell, w, H, which, dummy)
    with nogil:
        if floating is float:
            fg_pack_f32(cell, <const float *>job.w, H, job.K, which, <float *>job.dst, nt)
        else:
            fg_pack_f64(cell, <const double *>job.w, H, job.K, which, <double *>job.dst, nt)
    return P


cdef object _rows(int nt, order, a, floating dummy):
    """a[order] (rows of a C-contiguous (B, X) array) in a fresh aligned array (_empty)."""
    out = _empty((len(order), a.shape[1]), a.dtype)
    _gather_py(nt, order, a, out, dummy)
    return out


cdef object _state_copy(const floating *src, int B, int X, dtype):
    """A fresh (B, X) array holding the B*X values at src (a state row block of a buffer)."""
    out = np.empty((B, X), dtype)
    if <size_t>B * X > 0:
        memcpy(vptr(out), src, <size_t>B * X * sizeof(floating))
    return out


cdef void _bias_sum(floating *out, b_ih, b_hh, int n):
    """out = the input projection's bias: b_ih + b_hh in the first n entries, b_ih after
    them (the same sums as NumPy's, without a ufunc call per forward pass)."""
    cdef const floating *a = <floating *>vptr(b_ih)
    cdef const floating *b = <floating *>vptr(b_hh)
    cdef Py_ssize_t i, m = b_ih.shape[0]
    for i in range(m):
        out[i] = a[i] + b[i] if i < n else a[i]


cdef void _run_forward(fg_forward_args *a, floating dummy) noexcept nogil:
    if floating is float:
        fg_forward_f32(a)
    else:
        fg_forward_f64(a)


def forward(f, bint training, int nt, packed=None):
    """Forward pass of a validated call ``f`` (a fastgates._checks.Forward); ``packed``: a
    PackedLayer of f's weights (then nothing is packed again; the results are the same)."""
    return _forward_any(f, training, nt, packed)


cdef object _forward_any(f, bint training, int nt, packed):
    if f.dtype.itemsize == 4:              # float32 (validated: float32 or float64)
        return _forward(f, training, nt, packed, <float>0)
    return _forward(f, training, nt, packed, <double>0)


cdef void _gather(int nt, int n, int cols, const long long *idx, const floating *src,
                  floating *dst) noexcept nogil:
    """dst[r, :] = src[idx[r], :]   (src rows of `cols`; dst: [n, cols])"""
    cdef int r
    for r in prange(n, num_threads=nt, schedule='static'):
        memcpy(dst + <size_t>r * cols, src + <size_t>idx[r] * cols, cols * sizeof(floating))


cdef void _scatter(int nt, int n, int cols, const long long *idx, const floating *src,
                   floating *dst) noexcept nogil:
    """dst[idx[r], :] = src[r, :]   (idx distinct: packed rows to their padded places)"""
    cdef int r
    for r in prange(n, num_threads=nt, schedule='static'):
        memcpy(dst + <size_t>idx[r] * cols, src + <size_t>r * cols, cols * sizeof(floating))


cdef void _gather_py(int nt, idx, src, dst, floating dummy):
    """dst[r] = src.reshape(-1, cols)[idx[r]] for r < len(idx)   (dst: [len(idx), cols])"""
    cdef int n = idx.shape[0], cols = dst.shape[1] if dst.ndim > 1 else 1
    cdef const long long *ip = <const long long *>vptr(idx)
    cdef const floating *sp = <floating *>vptr(src)
    cdef floating *dp = <floating *>vptr(dst)
    if n == 0:
        return
    with nogil:
        _gather(nt, n, cols, ip, sp, dp)


cdef dict _copies(arrays):
    """name -> a copy of each array."""
    return {k: v.copy() for k, v in arrays.items()}


cdef object _forward(f, bint training, int nt, packed, floating dummy):
    # f's fields by position, each read once (f is a _checks.Forward, a NamedTuple: an
    # attribute read costs a descriptor call, ~35 of them a small call's microsecond)
    (kernel, variant, dtype, fx, tokens_, fh0, fc0, fw_ih, fw_hh, fb_ih, fb_hh, T_, B_, D_, H_,
     G_, lengths, pk, _, fparams) = <tuple>f
    cdef int T = T_, B = B_, D = D_, H = H_, G = G_
    cdef int GH = G * H
    extra_params = fparams or {}
    w_hr, w_peep = extra_params.get("weight_hr"), extra_params.get("weight_peep")
    cdef int proj = 0 if w_hr is None else w_hr.shape[0]
    cdef int R = proj or H                     # width of h: P with a projection
    cdef int cell = CELL_CODES[kernel, variant]
    cdef bint ln = cell in LN_CELLS
    cdef bint lstm = cell in HAS_C
    cdef bint gru = GATES[cell] == 3        # keeps one extra (B, H) per row (v_n or r*h)
    cdef bint rnn = GATES[cell] == 1        # its gates are h itself
    cdef bint tokens = tokens_
    cdef bint ragged = pk is not None

    h0 = fh0 if fh0 is not None else _zeros((B, R), dtype)
    c0 = (fc0 if fc0 is not None else _zeros((B, H), dtype)) if lstm else None
    cdef fg_forward_args a
    memset(&a, 0, sizeof(a))
    cdef size_t nbias, nP, nPi, nPr
    cdef floating *sp
    scratch = None
    if packed is not None:
        w_ihT = packed.wT
        a.P, a.Pi, a.Pr = vptr(packed.P), vptr(packed.Pi), vptr(packed.Pr)
        a.bias = vptr(packed.bias)
    else:
        # token ids select columns of w_ih: read in place when the call has fewer than 2 D
        # rows, else from its transpose (measured: B = 1, D = 65, H = 100 at T = 1 / 25 /
        # 100: 0.76 / 0.88 / 0.96 the time of the call transposing; more rows: even)
        w_ihT = None
        if tokens:
            a.wT_direct = (pk.N if ragged else T * B) < 2 * D
            w_ihT = fw_ih if a.wT_direct else np.ascontiguousarray(fw_ih.T)
        # The call's scratch, one allocation of 64-byte aligned parts: the input
        # projection's bias (LayerNorm: b_ih alone, b_hh acts after the LN; GRU lbr: b_hn
        # acts inside r * (...)), then w_hh, w_ih and the lstm's w_hr packed by the forward
        # region itself (a.pack) before its loop reads them.
        nbias = 0 if ln else _lines(GH, sizeof(floating))
        nP = _lines(_pack_size(cell, fw_hh, H, FG_PACK_HH), sizeof(floating))
        nPi = 0 if tokens else _lines(_pack_size(cell, fw_ih, H, FG_PACK_IH), sizeof(floating))
        nPr = _lines(_pack_size(cell, w_hr, H, FG_PACK_HR), sizeof(floating)) if proj else 0
        scratch = _empty((nbias + nP + nPi + nPr,), dtype)
        sp = <floating *>vptr(scratch)
        if ln:
            a.bias = vptr(fb_ih)
        else:
            _bias_sum(sp, fb_ih, fb_hh, 2 * H if cell == FG_GRU_LBR else GH)
            a.bias = sp
        a.P = _pack_job(&a.pack[0], cell, fw_hh, H, FG_PACK_HH, sp + nbias, nP)
        if not tokens:
            a.Pi = _pack_job(&a.pack[1], cell, fw_ih, H, FG_PACK_IH, sp + nbias + nP, nPi)
        if proj:
            a.Pr = _pack_job(&a.pack[2], cell, w_hr, H, FG_PACK_HR, sp + nbias + nP + nPi, nPr)

    # The time loop's layout: Tk steps over `rows` packed rows starting from states in
    # sorted order; dense: Tk = T, rows = T*B, x as given, no permutation.
    cdef int Tk = T, rows = T * B
    x = fx
    batch = flat = None
    if ragged:
        Tk, rows = len(pk.batch_sizes), pk.N
        batch = pk.batch_sizes
        h0 = _rows(nt, pk.order, h0, dummy)
        c0 = _rows(nt, pk.order, c0, dummy) if lstm else None
        if training:             # inference gathers x chunk by chunk
            flat = pk.flat
            if tokens:
                x = fx.reshape(T * B)[flat]
            else:
                x = _empty((rows, D), dtype)
                _gather_py(nt, flat, fx, x, dummy)

    a.cell, a.B, a.H, a.n_threads = cell, B, H, nt
    a.b_hn = (<floating *>vptr(packed.b_hn if packed is not None else fb_hh[2 * H:])
              if cell == FG_GRU_LBR else NULL)
    a.batch = <const int *>vptr(batch)
    a.D = D
    a.wT = <floating *>vptr(w_ihT)
    a.proj = proj
    a.peep = <floating *>vptr(w_peep)
    lnp = extra_params
    part = None
    if ln:
        a.ln_ih, a.ln_hh = vptr(lnp["ln_ih_weight"]), vptr(lnp["ln_hh_weight"])
        a.ln_c, a.ln_cb = vptr(lnp.get("ln_c_weight")), vptr(lnp.get("ln_c_bias"))
        a.b_rec = vptr(fb_hh)
        part = _empty((3, B, H, 2), dtype)
        a.part = vptr(part)

    cdef const floating *xp = NULL if tokens else <floating *>vptr(x)
    cdef const long long *tp = <const long long *>vptr(x) if tokens else NULL
    cdef const long long *fp = <const long long *>vptr(flat)
    cdef floating *yp

    if training:
        # every array in its returned shape: (T, B, X) dense, (rows, X) ragged (packed)
        if ragged:
            lead, lead0 = (rows,), (B + rows,)
        else:
            lead, lead0 = (T, B), (T + 1, B)
        hs = _empty(lead0 + (R,), dtype)         # h0, then h_t of every (step, row)
        if B * R > 0:
            memcpy(vptr(hs), vptr(h0), <size_t>B * R * sizeof(floating))
        gates = (hs[B:] if ragged else hs[1:]) if rnn else _empty(lead + (GH,), dtype)
        cs = tc = extra = ms = None
        if lstm:
            cs = _empty(lead0 + (H,), dtype)
            if B * H > 0:
                memcpy(vptr(cs), vptr(c0), <size_t>B * H * sizeof(floating))
            tc = _empty(lead + (H,), dtype)
        if proj:
            ms = _empty(lead + (H,), dtype)       # m_t = o_t * tanh(c_t), kept for dW_hr
            a.m = <floating *>vptr(ms)
            a.m_step = 1
        if gru:
            extra = _empty(lead + (H,), dtype)
        saved = None
        if ln:
            saved = {"xn": _empty(lead + (GH,), dtype), "hn": _empty(lead + (GH,), dtype),
                     "rstd": (_empty if lstm else _zeros)(lead + (3,), dtype)}   # lngru: no c
            if lstm:
                saved["cn"] = _empty(lead + (H,), dtype)
            a.xn, a.hn = vptr(saved["xn"]), vptr(saved["hn"])
            a.cn, a.rstd = vptr(saved.get("cn")), vptr(saved["rstd"])
        a.T = Tk
        a.pre = <floating *>vptr(gates)
        a.h0 = <floating *>vptr(hs)
        a.hout = <floating *>vptr(hs) + <size_t>B * R
        if lstm:
            a.c0 = <floating *>vptr(cs)
            a.cout = <floating *>vptr(cs) + <size_t>B * H
            a.tc = <floating *>vptr(tc)
        a.extra = <floating *>vptr(extra)
        a.extra_step = 1
        a.keep = 1
        a.x, a.tok = xp, tp              # the kernel projects every row, then runs the loop
        # The cache's private copies of the inputs (the gathered x already is one) and the
        # dense y are made by the region's threads: the inputs while they pack, y after
        # the last step (copy jobs); without a region (no steps) here and now.
        region = Tk > 0 and B > 0
        x_own = x if ragged else _copy_later(&a.pack[3], x, region)
        w_ih_own = None if tokens else _copy_later(&a.pack[4], fw_ih, region)
        # w_hh: kept only as the backward's packed layout, packed by the region (Cache.w_hh)
        if region:
            w_hh_own, w_hh_bwd = None, _pack_later(&a.pack[5], cell, fw_hh, H, FG_PACK_BWD, dummy)
        else:
            w_hh_own, w_hh_bwd = _copy(fw_hh), None
        y = None if ragged else _copy_later(&a.post, hs, region, 1)     # hs past h0
        with nogil:
            _run_forward(&a, dummy)
        if ragged:
            y = _zeros((T, B, R), dtype)
            yp = <floating *>vptr(y)
            with nogil:
                _scatter(nt, rows, R, fp, <floating *>a.hout, yp)
            h_n, c_n = hs[pk.last], (cs[pk.last] if lstm else None)
        else:
            h_n = _state_copy(<floating *>vptr(hs) + <size_t>T * B * R, B, R, dtype)
            c_n = _state_copy(<floating *>vptr(cs) + <size_t>T * B * H, B, H, dtype) if lstm else None
        if proj:
            saved = dict(saved or {}, m=ms)
        # Cache's fields set one by one (its keyword constructor costs a small call ~1 us)
        cache = Cache.__new__(Cache)
        cache.cell, cache.variant, cache.dtype, cache.tokens, cache.D = (kernel, variant,
                                                                        dtype, tokens, D)
        cache._shape = (T, B, D, H)
        cache.x, cache.w_ih, cache.hs, cache.gates = x_own, w_ih_own, hs, None if rnn else gates
        cache.extra, cache.cs, cache.tc, cache.lengths, cache.packing = extra, cs, tc, lengths, pk
        cache.params = _copies(extra_params) if extra_params else None
        cache.saved = saved or None
        if region:      # panel width: the packed size of one column
            cache._keep_packed_w_hh(w_hh_bwd, fg_isa_active(), fg_packed_size(
                cell, H, 1, FG_PACK_BWD, floating is double) // GH, GH, R)
        else:
            cache.w_hh = w_hh_own
        return y, h_n, c_n, cache
    hn = _empty((B, GH), dtype) if ln else None     # inference: one step's scratch
    a.hn = vptr(hn)
    return _infer(f, a, x, h0, c0, nt, dummy)


cdef inline int _chunk_steps(int T, int B) noexcept nogil:
    """Steps per chunk of dense inference: about CHUNK_ROWS rows, at least one step."""
    return max(1, min(T, CHUNK_ROWS // max(B, 1)))


cdef void _infer_dense(fg_forward_args *a, int T, int B, int R, int D, int Tc, floating *yp,
                       const floating *h0p, const floating *xp, const long long *tp,
                       floating *prep) noexcept nogil:
    """The dense inference loop over T steps in chunks of Tc: y (T, B, R) from h0p, the
    input x (T, B, D) or token ids (T, B); prep: one chunk's pre (Tc, B, G*H), or NULL
    where pre is h itself (the rnn).  a's pack jobs, if any, run with the first chunk."""
    cdef size_t BH = <size_t>B * R
    cdef int t0 = 0, n
    while t0 < T:
        n = min(Tc, T - t0)
        a.T = n
        a.hout = yp + t0 * BH
        a.h0 = h0p if t0 == 0 else yp + (t0 - 1) * BH
        a.pre = a.hout if prep == NULL else prep
        a.x = xp + <size_t>t0 * B * D if xp != NULL else NULL
        a.tok = tp + <size_t>t0 * B if tp != NULL else NULL
        _run_forward(a, <floating>0)
        memset(a.pack, 0, sizeof(a.pack))    # packed by the first chunk
        t0 += n


cdef object _infer(f, fg_forward_args a, x, h0, c0, int nt, floating dummy):
    """training=False: time in chunks of about CHUNK_ROWS rows (at least one step), so memory
    beyond y stays O(max(CHUNK_ROWS, B) * G*H); the LSTM's c lives in one (B, H) state
    updated in place."""
    cdef int T = f.T, B = f.B, D = f.D, H = f.H, GH = f.G * f.H
    cdef int cell = a.cell
    cdef int R = a.proj or H                  # width of h
    dtype = f.dtype
    cdef bint lstm = cell in HAS_C
    cdef bint gru = GATES[cell] == 3
    cdef bint rnn = GATES[cell] == 1
    pk = f.packing
    cdef bint ragged = pk is not None
    cdef bint tokens = f.tokens
    cdef const floating *xp = NULL if tokens or ragged else <floating *>vptr(x)
    cdef const long long *tp = <const long long *>vptr(x) if tokens and not ragged else NULL

    c_state = (c0 if f.c0 is None else _copy(c0)) if lstm else None   # fresh zeros: ours
    extra = _empty((B, H), dtype) if gru else None
    a.extra = <floating *>vptr(extra)
    a.extra_step = 0
    a.tc = NULL
    if lstm:
        a.c0 = a.cout = <floating *>vptr(c_state)
        a.c_in_place = 1
    m_scratch = None
    if a.proj:
        m_scratch = _empty((B, H), dtype)     # m_t of the current step only
        a.m = <floating *>vptr(m_scratch)
        a.m_step = 0
    cdef size_t BH = <size_t>B * R
    cdef int t0 = 0, t1, s, lo, nrows
    cdef floating *yp
    cdef floating *hb
    cdef floating *carry
    cdef const int *bs
    cdef const long long *offs
    cdef const long long *fp
    cdef const long long *tp_chunk
    cdef floating *h0p
    cdef floating *prep

    if not ragged:
        y = _empty((T, B, R), dtype)
        yp = <floating *>vptr(y)
        Tc = _chunk_steps(T, B)
        pre = None if rnn else _empty((Tc, B, GH), dtype)
        h0p = <floating *>vptr(h0)
        prep = <floating *>vptr(pre)
        with nogil:
            _infer_dense(&a, T, B, R, D, Tc, yp, h0p, xp, tp, prep)
        h_n = _state_copy(yp + (T - 1) * BH if T > 0 else <floating *>vptr(h0), B, R, dtype)
        return y, h_n, (c_state if lstm else None), None

    # ragged: each chunk of steps runs into a packed buffer that is scattered into y;
    # `carry` holds every sorted row's latest h (its final h once the row has ended)
    cdef int Tk = len(pk.batch_sizes)
    cdef int cap = max(CHUNK_ROWS, B)
    y = _zeros((T, B, R), dtype)
    hbuf = _empty((cap, R), dtype)
    pre = None if rnn else _empty((cap, GH), dtype)
    xbuf = None if tokens else _empty((cap, D), dtype)
    carry = <floating *>vptr(h0)            # h0 is already a private sorted copy
    hb = <floating *>vptr(hbuf)
    yp = <floating *>vptr(y)
    bs = <const int *>vptr(pk.batch_sizes)
    offs = <const long long *>vptr(pk.offsets)
    a.h0 = carry
    a.hout = hb
    a.pre = hb if rnn else <floating *>vptr(pre)
    cdef floating *xb = <floating *>vptr(xbuf)
    cdef const floating *xsrc = <floating *>vptr(f.x)
    while t0 < Tk:
        t1 = t0 + 1
        while t1 < Tk and offs[t1 + 1] - offs[t0] <= cap:
            t1 += 1
        nrows = <int>(offs[t1] - offs[t0])
        a.T = t1 - t0
        a.batch = bs + t0
        flat = pk.flat_range(t0, t1)          # padded place of each packed row of the chunk
        fp = <const long long *>vptr(flat)
        tok = x.reshape(T * B)[flat] if tokens else None
        tp_chunk = <const long long *>vptr(tok)
        a.x, a.tok = xb, tp_chunk
        with nogil:
            if xb != NULL:
                _gather(nt, nrows, D, fp, xsrc, xb)
            _run_forward(&a, dummy)
            memset(a.pack, 0, sizeof(a.pack))    # packed by the first chunk
            _scatter(nt, nrows, R, fp, hb, yp)
            # rows ending at step s (and, at the chunk's last step, all rows) into carry
            for s in range(t0, t1):
                lo = bs[s + 1] if s + 1 < t1 else 0
                memcpy(carry + <size_t>lo * R, hb + <size_t>(offs[s] - offs[t0] + lo) * R,
                       <size_t>(bs[s] - lo) * R * sizeof(floating))
        t0 = t1
    h_n = np.empty((B, R), dtype)
    h_n[pk.order] = h0
    c_n = None
    if lstm:
        c_n = np.empty((B, H), dtype)
        c_n[pk.order] = c_state
    return y, h_n, c_n, None


cdef void _gemm_tn(int nt, int M, int N, int K, const floating *A, int lda, const floating *B,
                   int ldb, floating *C, int ldc, bint trans, int M2=0, const floating *A2=NULL,
                   int lda2=0, floating *C2=NULL, int ldc2=0, const floating *B2=NULL,
                   int ldb2=0, int N1=0) noexcept nogil:
    """C = A^T B   (A: [K, lda] of which M columns, B: [K, ldb] of which N, C: [M, ldc]);
    trans: C^T is stored ([N, ldc]).  With M2 > 0 also C2 = A2^T B' (A2: [K, lda2] of
    which M2 columns, C2: [M2, ldc2], trans: [N, ldc2]) from the same pass over B, where
    B' is B, or with B2 (ldb2): B's columns j < N1 and B2's columns j - N1 from N1 on."""
    cdef fg_gemm_tn_args g
    g.M, g.N, g.K, g.trans = M, N, K, trans
    g.A, g.lda, g.B, g.ldb, g.C, g.ldc = A, lda, B, ldb, C, ldc
    g.M2, g.A2, g.lda2, g.C2, g.ldc2 = M2, A2, lda2, C2, ldc2
    cdef int rc, n1 = N if B2 == NULL else max(0, min(N1, N))
    g.B2, g.ldb2, g.N1 = B2, ldb2, n1
    if floating is float:
        rc = fg_gemm_tn_f32(nt, &g)
    else:
        rc = fg_gemm_tn_f64(nt, &g)
    if rc == 0:
        return
    # BLAS when the scratch could not be allocated: the same products, C2's B2 columns apart
    _tn_blas(nt, trans, M, N, K, A, lda, B, ldb, C, ldc)
    if M2 > 0:
        _tn_blas(nt, trans, M2, n1, K, A2, lda2, B, ldb, C2, ldc2)
        if n1 < N:
            _tn_blas(nt, trans, M2, N - n1, K, A2, lda2, B2, ldb2,
                     C2 + (<size_t>n1 * ldc2 if trans else n1), ldc2)


cdef inline void _tn_blas(int nt, bint trans, int M, int N, int K, const floating *A, int lda,
                          const floating *B, int ldb, floating *C, int ldc) noexcept nogil:
    """C = A^T B by BLAS (trans: C^T = B^T A stored), as _gemm_tn's product; none when
    N is 0."""
    if N <= 0:
        return
    if trans:
        gemm_split(nt, True, False, N, M, K, <floating>1, B, ldb, A, lda, <floating>0, C, ldc)
    else:
        gemm_split(nt, True, False, M, N, K, <floating>1, A, lda, B, ldb, <floating>0, C, ldc)


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


cdef void _scatter_cols(int nt, int rows, int cols, const long long *tok, const floating *A,
                        int lda, floating *out, int D) noexcept nogil:
    """out (cols, D) = 0, then out[j, tok[r]] += A[r, j] over r in order (the sums of
    _scatter_rows, transposed); threads own ranges of out's rows, 16 at a time, which stay
    in L1 while the rows of A pass."""
    cdef int i, r, j, j0, j1, jb, je
    cdef floating *o
    cdef const floating *s
    for i in prange(nt, num_threads=nt, schedule='static'):
        j0 = <int>((<long>cols * i) // nt)
        j1 = <int>((<long>cols * (i + 1)) // nt)
        memset(out + <size_t>j0 * D, 0, <size_t>(j1 - j0) * D * sizeof(floating))
        for jb in range(j0, j1, 16):
            je = min(jb + 16, j1)
            for r in range(rows):
                o = out + tok[r]
                s = A + <size_t>r * lda
                for j in range(jb, je):
                    o[<size_t>j * D] += s[j]


cdef int _job(gemm_job *jobs, int nj, bint trans_a, bint trans_b, int m, int n, int k,
              const floating *A, int lda, const floating *B, int ldb, double beta,
              floating *C, int ldc, bint chained=False) noexcept nogil:
    """jobs[nj] := the product C = op(A) op(B) + beta C for gemm_batch; returns nj + 1."""
    jobs[nj].trans_a, jobs[nj].trans_b, jobs[nj].m, jobs[nj].n, jobs[nj].k = trans_a, trans_b, m, n, k
    jobs[nj].A, jobs[nj].lda, jobs[nj].B, jobs[nj].ldb = A, lda, B, ldb
    jobs[nj].beta, jobs[nj].C, jobs[nj].ldc, jobs[nj].chained = beta, C, ldc, chained
    return nj + 1


cdef void _run_backward(fg_backward_args *a, floating dummy) noexcept nogil:
    if floating is float:
        fg_backward_f32(a)
    else:
        fg_backward_f64(a)


def backward(cache, b, int nt):
    """BPTT of a validated call: ``cache`` from forward, ``b`` a fastgates._checks.Backward.

    Returns (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dparams), dparams: stem -> gradient
    of each parameter beyond the four (the lstm's weight_hr, weight_peep)."""
    return _backward_any(cache, b, nt)


cdef object _backward_any(cache, b, int nt):
    if cache.dtype.itemsize == 4:          # float32 (the caches hold float32 or float64)
        return _backward(cache, b, nt, <float>0)
    return _backward(cache, b, nt, <double>0)


cdef object _backward(cache, b, int nt, floating dummy):
    # b's fields by position, each read once (a _checks.Backward: see _forward)
    (bdy, bdh_n, bdc_n, T_, B_, D_, H_, G_) = <tuple>b
    cdef int T = T_, B = B_, D = D_, H = H_, G = G_
    cdef int GH = G * H, rows = T * B, Tk = T
    cdef int cell = CELL_CODES[cache.cell, cache.variant]
    cdef bint ln = cell in LN_CELLS
    cdef bint lstm = cell in HAS_C
    dtype = cache.dtype
    pk = cache.packing
    cdef bint ragged = pk is not None
    extra_params = cache.params or {}
    w_hr, w_peep = extra_params.get("weight_hr"), extra_params.get("weight_peep")
    cdef int proj = 0 if w_hr is None else w_hr.shape[0]
    cdef int R = proj or H                     # width of h: P with a projection

    # dh, dc: written by the loop's threads at their units (aligned: see _empty)
    dh = _copy(bdh_n) if bdh_n is not None else _zeros((B, R), dtype)
    dc = (_copy(bdc_n) if bdc_n is not None else _zeros((B, H), dtype)) if lstm else None
    dy = bdy
    hprev_rows = cache.hs     # h_{t-1} of every row of dG: the first `rows` state rows
    if ragged:
        # packed layout: dh/dc in sorted order, dy gathered, h_{t-1} gathered (see Packing)
        Tk, rows = len(pk.batch_sizes), pk.N
        dh = _rows(nt, pk.order, dh, dummy)
        dc = _rows(nt, pk.order, dc, dummy) if lstm else None
        if dy is not None:
            dy = _empty((rows, R), dtype)
            _gather_py(nt, pk.flat, bdy, dy, dummy)
        hprev_rows = _empty((rows, R), dtype)
        _gather_py(nt, pk.prev, cache.hs, hprev_rows, dummy)
    dG = _empty((rows, GH), dtype)
    dnx = _empty((rows, H), dtype) if cell == FG_GRU_LBR else None
    cdef fg_backward_args a
    memset(&a, 0, sizeof(a))
    P = cache._packed_w_hh(fg_isa_active())     # packed by the forward's region
    if P is None:
        P = _pack_later(&a.pack[0], cell, cache.w_hh, H, FG_PACK_BWD, dummy)   # by the region
    a.cell, a.T, a.B, a.H, a.n_threads = cell, Tk, B, H, nt
    a.batch = <const int *>vptr(pk.batch_sizes) if ragged else NULL
    a.P = <floating *>vptr(P)
    a.gates = <floating *>vptr(cache.gates)
    a.hs = <floating *>vptr(cache.hs)
    a.cs = <floating *>vptr(cache.cs)
    a.tc = <floating *>vptr(cache.tc)
    a.extra = <floating *>vptr(cache.extra)
    a.dy = <floating *>vptr(dy)
    a.dG = <floating *>vptr(dG)
    a.dnx = <floating *>vptr(dnx)
    a.dh = <floating *>vptr(dh)
    a.dc = <floating *>vptr(dc)
    dparams = {}
    dax = part = None
    if ln:
        # the LayerNorm cells: gamma gradients summed in the loop, the input side's
        # gradient (through its LN) in dax, which stands in for dG below
        lnp, sv = cache.params, cache.saved
        a.ln_ih, a.ln_hh, a.ln_c = (vptr(lnp["ln_ih_weight"]), vptr(lnp["ln_hh_weight"]),
                                    vptr(lnp.get("ln_c_weight")))
        a.xn, a.hn, a.cn, a.rstd = vptr(sv["xn"]), vptr(sv["hn"]), vptr(sv.get("cn")), vptr(sv["rstd"])
        dax = _empty((rows, GH), dtype)
        part = _empty((3, B, H, 2), dtype)
        a.dax, a.part = vptr(dax), vptr(part)
        dparams = {"ln_ih_weight": np.zeros(GH, dtype), "ln_hh_weight": np.zeros(GH, dtype)}
        if lstm:
            dparams["ln_c_weight"], dparams["ln_c_bias"] = np.zeros(H, dtype), np.zeros(H, dtype)
        a.dln_ih, a.dln_hh = vptr(dparams["ln_ih_weight"]), vptr(dparams["ln_hh_weight"])
        a.dln_c, a.dln_cb = vptr(dparams.get("ln_c_weight")), vptr(dparams.get("ln_c_bias"))

    new = _empty if rows > 0 else _zeros        # every entry is written below when T*B > 0
    dhs = dm = Pr = None
    if proj:        # dW_hr = sum_t dh_t^T m_t after the loop, from the dh_t the loop keeps
        Pr = _pack_later(&a.pack[1], cell, w_hr, H, FG_PACK_HR_BWD, dummy)
        dhs = _empty((rows, R), dtype)
        dm = _empty((B, H), dtype)
        dparams["weight_hr"] = new((R, H), dtype)
    if w_peep is not None:
        dparams["weight_peep"] = new((3, H), dtype)
    a.proj = proj
    a.Pr = <floating *>vptr(Pr)
    a.dhs = <floating *>vptr(dhs)
    a.dm = <floating *>vptr(dm)
    a.peep = <floating *>vptr(w_peep)
    a.dpeep = <floating *>vptr(dparams.get("weight_peep"))
    cdef floating *dhsp = <floating *>vptr(dhs)
    cdef floating *msp = <floating *>vptr(cache.saved["m"]) if proj else NULL
    cdef floating *dwhr = <floating *>vptr(dparams.get("weight_hr"))
    dw_hh = new((GH, R), dtype)
    db_hh = new(GH, dtype)
    db_ih = new(GH, dtype)
    dw_ih = new((GH, D), dtype)
    dx = dx_out = None
    if not cache.tokens:
        if ragged:
            dx = new((rows, D), dtype)         # packed, scattered below
            dx_out = _zeros((T, B, D), dtype)
        else:
            dx = dx_out = new((T, B, D), dtype)

    cdef floating *g = <floating *>vptr(dG)
    cdef floating *gi = <floating *>vptr(dax) if ln else g    # the input side's gradient
    cdef floating *gn = <floating *>vptr(dnx)
    cdef floating *hprev = <floating *>vptr(hprev_rows)
    cdef floating *rh = <floating *>vptr(cache.extra)
    cdef floating *whh = <floating *>vptr(dw_hh)
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
    # token ids: dW_ih's columns are sums of dG rows; with fewer than 4 D rows summed into
    # dw_ih in place (_scatter_cols), else into its transpose, then transposed (measured
    # like the forward's choice: in place gains up to 4 D rows)
    cdef bint scatter_T = tp != NULL and rows >= 4 * D
    dw_ihT = _zeros((D, GH), dtype) if scatter_T else None
    cdef floating *wihT = <floating *>vptr(dw_ihT)
    cdef const long long *flatp = <const long long *>vptr(pk.flat) if ragged else NULL
    cdef floating *dxo = <floating *>vptr(dx_out)

    # dx inside the time loop (phase C of the kernel) from RIDE_DX_ROWS rows; else one
    # product after the loop
    cdef bint ride_dx = tp == NULL and not ln and B >= RIDE_DX_ROWS
    if ride_dx:
        Pix = _pack_later(&a.pack[2], cell, cache.w_ih, H, FG_PACK_BWD, dummy)   # by the region
        a.Pix, a.dx, a.D = vptr(Pix), dxp, D
    # dW_ih by our weight-gradient product with many rows (it packs dGx by copying, where
    # BLAS transposes it; with few rows its transposed stores cost more): in dW_hh's pass
    # over dG where dG is the input side's gradient in every column (rnn, lstm) or in all
    # but the n gate's, whose input side is dnx (gru lbr: gemm_tn's B2 columns)
    cdef bint own_ih = tp == NULL and rows >= OWN_GEMM_ROWS
    cdef bint fuse_ih = own_ih and gi == g and rz == GH
    cdef bint blas_hh = rows < BLAS_DWHH_ROWS     # dW_hh by BLAS (see BLAS_DWHH_ROWS)

    # the time loop also sums the bias gradients: db_hh = sum of dG, and for lbr the
    # input-side n gate's = sum of dnx
    dbn = _empty(H, dtype) if cell == FG_GRU_LBR else None
    a.db = bhh
    a.dbn = <floating *>vptr(dbn)
    a.db_ih = bih if ln else NULL
    # The BLAS products after the loop (what the loop's values are inputs to): one batch
    # (gemm_batch's items).  When every product after the loop is one of them (few rows,
    # unprojected: the small cases) the loop's own region runs them after its last step
    # (a.post); else one region of their own after our products (_gemm_tn).
    # dw_hh = dG^T [h_{t-1}]  (rb n-gate rows: dn^T (r*h_{t-1})); dw_ih = dGx^T x;
    # dx = dGx w_ih
    cdef gemm_job jobs[6]
    cdef gemm_plan plan
    cdef int nj = 0, post_next = 0
    if blas_hh:
        nj = _job(jobs, nj, True, False, rz, R, rows, g, GH, hprev, R, 0, whh, R)
        if rz < GH:
            nj = _job(jobs, nj, True, False, GH - rz, H, rows, g + rz, GH, rh, H, 0,
                      whh + <size_t>rz * H, H)
    if tp == NULL:
        if not own_ih:
            nj = _job(jobs, nj, True, False, gx, D, rows, gi, GH, xp, D, 0, wih, D)
        if gx < GH and not fuse_ih:
            nj = _job(jobs, nj, True, False, H, D, rows, gn, H, xp, D, 0,
                      wih + <size_t>gx * D, D)
        if not ride_dx:
            nj = _job(jobs, nj, False, False, rows, D, gx, gi, GH, w_ih, D, 0, dxp, D)
            if gx < GH:     # dx += dnx w_ih[n rows]: after the dx above, slab by slab
                nj = _job(jobs, nj, False, False, rows, D, H, gn, H,
                          w_ih + <size_t>gx * D, D, 1, dxp, D, True)
    if blas_hh and not own_ih and not proj and nj > 0:
        a.npost = gemm_plan_make(&plan, jobs, nj)
        a.post_ctx, a.post_next = &plan, &post_next
        if floating is float:
            a.post = gemm_plan_item_f32
        else:
            a.post = gemm_plan_item_f64
        nj = 0
    if rows > 0:
        with nogil:
            _run_backward(&a, dummy)
            # dw_hh as the transpose of [h_{t-1}]^T dG: the transposition of the narrow
            # operand is the cheap one (fuse_ih: and dw_ih = dG^T x from the same pass)
            if fuse_ih:
                _gemm_tn(nt, R, rz, rows, hprev, R, g, GH, whh, R, True, D, xp, D, wih, D,
                         gn, H, gx)
            elif not blas_hh:
                _gemm_tn(nt, R, rz, rows, hprev, R, g, GH, whh, R, True)
            if proj:      # dw_hr = [dL/dh_t]^T [m_t]
                _gemm_tn(nt, R, H, rows, dhsp, R, msp, H, dwhr, H, False)
            if rz < GH and not blas_hh:
                _gemm_tn(nt, H, GH - rz, rows, rh, H, g + rz, GH, whh + <size_t>rz * H, H, True)
            if not ln or cell == FG_LNLSTM:         # the lstm's two biases: one gradient
                memcpy(bih, bhh, gx * sizeof(floating))
            if gx < GH:
                memcpy(bih + gx, <floating *>a.dbn, H * sizeof(floating))
            if tp == NULL:
                if own_ih and not fuse_ih:
                    _gemm_tn(nt, D, gx, rows, xp, D, gi, GH, wih, D, True)
            elif scatter_T:
                _scatter_rows(nt, rows, gx, tp, gi, GH, wihT, GH)
                if gx < GH:
                    _scatter_rows(nt, rows, H, tp, gn, H, wihT + gx, GH)
            else:
                _scatter_cols(nt, rows, gx, tp, gi, GH, wih, D)
                if gx < GH:
                    _scatter_cols(nt, rows, H, tp, gn, H, wih + <size_t>gx * D, D)
            gemm_batch(nt, jobs, nj, dummy)
            if ragged and dxp != NULL:
                _scatter(nt, rows, D, flatp, dxp, dxo)
        if scatter_T:
            dw_ih[...] = dw_ihT.T
    if ragged:          # back from sorted order
        dh0 = np.empty((B, R), dtype)
        dh0[pk.order] = dh
        dc0 = None
        if lstm:
            dc0 = np.empty((B, H), dtype)
            dc0[pk.order] = dc
        dh, dc = dh0, dc0
    return dx_out, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dparams


def _select_isa_from_environment():
    """Cap the level by FASTGATES_ISA (generic | avx2 | avx512), once, at import.

    _FASTGATES_ISA_CPU (tests only) makes the CPU look as if it offered nothing above the
    level it names, so that asking for more than the CPU has can be tested anywhere."""
    import os
    import warnings
    cpu = isa_supported()
    pretend = os.environ.get("_FASTGATES_ISA_CPU", "").strip().lower()
    if pretend in ISA_LEVELS:
        cpu = [n for n in cpu if ISA_LEVELS.index(n) <= ISA_LEVELS.index(pretend)]
    available = [n for n in ISA_LEVELS if n in isa_compiled() and n in cpu]
    best = isa_select(available[len(available) - 1])
    want = os.environ.get("FASTGATES_ISA", "").strip().lower()
    if not want:
        return
    if want not in ISA_LEVELS:
        warnings.warn(f"FASTGATES_ISA={want!r} is not a level ({' | '.join(ISA_LEVELS)}); "
                      f"running {best}, the best of the available levels {available}",
                      RuntimeWarning, stacklevel=2)
        return
    if want not in available:
        warnings.warn(f"FASTGATES_ISA={want} asks for more than this machine offers: the "
                      f"available levels are {available} (CPU/OS: {cpu}, build: "
                      f"{isa_compiled()}); running {best}", RuntimeWarning, stacklevel=2)
        return
    isa_select(want)


_select_isa_from_environment()


include "_sampling.pxi"
include "_lean_checks.pxi"


def gemm_tn(A, B, int nt, A2=None, B2=None, bint trans=False):
    """C = A^T B with the kernels' product (tests and bench/; A: (K, M), B: (K, N)).

    With A2 (K, M2) also C2 = A2^T [B[:, :N1] B2] from the same pass, N1 = N - B2's
    columns (B2 None: C2 = A2^T B); returns (C, C2) then.  trans: the products are
    stored transposed (the backward's way) and returned as their transposes' views."""
    if A.dtype == np.float32:
        return _gemm_tn_py(A, B, nt, A2, B2, trans, <float>0)
    return _gemm_tn_py(A, B, nt, A2, B2, trans, <double>0)


cdef object _gemm_tn_py(A, B, int nt, A2, B2, bint trans, floating dummy):
    A = np.ascontiguousarray(A)
    B = np.ascontiguousarray(B, dtype=A.dtype)
    cdef int K = A.shape[0], M = A.shape[1], N = B.shape[1], M2 = 0, N2 = 0
    if A2 is not None:
        A2 = np.ascontiguousarray(A2, dtype=A.dtype)
        M2 = A2.shape[1]
        assert A2.shape[0] == K
    if B2 is not None:
        B2 = np.ascontiguousarray(B2, dtype=A.dtype)
        N2 = B2.shape[1]
        assert B2.shape[0] == K and N2 <= N and A2 is not None
    assert B.shape[0] == K
    C = np.empty((N, M) if trans else (M, N), A.dtype)
    C2 = np.empty((N, M2) if trans else (M2, N), A.dtype) if A2 is not None else None
    cdef const floating *a = <floating *>vptr(A)
    cdef const floating *b = <floating *>vptr(B)
    cdef const floating *a2 = <floating *>vptr(A2)
    cdef const floating *b2 = <floating *>vptr(B2)
    cdef floating *c = <floating *>vptr(C)
    cdef floating *c2 = <floating *>vptr(C2)
    with nogil:
        _gemm_tn(nt, M, N, K, a, M, b, N, c, N if not trans else M, trans, M2, a2, M2, c2,
                 N if not trans else M2, b2, N2, N - N2)
    if trans:
        C, C2 = C.T, (C2.T if C2 is not None else None)
    return C if A2 is None else (C, C2)


# Packed layers and the streaming step (inference runners, fastgates/_runner.py).

cdef class PackedLayer:
    """The weights of one single-direction layer, packed once for the active level.

    cell     kernel cell code        dtype  float32 / float64
    H, D     hidden and input size    isa    the level that packed them (they are valid
                                             for that level only: the level is fixed at import)
    P        w_hh packed for the forward loop     Pi  w_ih packed for the input projection
    wT       w_ih^T (D, G*H), the rows that token ids select
    bias     b_ih + b_hh (gru lbr: gate n without b_hn)    b_hn  gru lbr (H,)
    R        width of h: P for a projected lstm, else H
    Pr       the lstm projection w_hr (P, H) packed for the forward loop, or None
    peep     the lstm peepholes (3, H), or None
    The arrays are private copies: later changes to the caller's weights do not reach them.
    """
    cdef readonly int cell, H, D, G, R
    cdef readonly object dtype, isa, P, Pi, wT, bias, b_hn, Pr, peep

    def __repr__(self):
        return (f"<PackedLayer cell={self.cell} {self.dtype} D={self.D} H={self.H} "
                f"isa={self.isa}>")


def pack_layer(int cell, w_ih, w_hh, b_ih, b_hh, int nt, w_hr=None, w_peep=None):
    """A :class:`PackedLayer` from validated, C-contiguous weights of one dtype
    (w_ih (G*H, D), w_hh (G*H, R), b_ih, b_hh (G*H,); lstm: w_hr (P, H) and w_peep (3, H)
    or None).
    Not for the LayerNorm cells."""
    if cell in LN_CELLS:
        raise NotImplementedError("packed layers and the streaming step do not run the "
                                  "LayerNorm cells yet; use cell_forward(..., training=False)")
    if w_hh.dtype == np.float32:
        return _pack_layer(cell, w_ih, w_hh, b_ih, b_hh, nt, w_hr, w_peep, <float>0)
    return _pack_layer(cell, w_ih, w_hh, b_ih, b_hh, nt, w_hr, w_peep, <double>0)


cdef object _pack_layer(int cell, w_ih, w_hh, b_ih, b_hh, int nt, w_hr, w_peep, floating dummy):
    cdef PackedLayer p = PackedLayer()
    cdef int G = GATES[cell]
    cdef int H = w_hh.shape[0] // G
    p.cell, p.H, p.D, p.G, p.R = cell, H, w_ih.shape[1], G, w_hh.shape[1]
    p.dtype, p.isa = w_hh.dtype, isa_active()
    p.P = _packed(cell, w_hh, H, FG_PACK_HH, nt, dummy)
    p.Pr = None if w_hr is None else _packed(cell, w_hr, H, FG_PACK_HR, nt, dummy)
    p.peep = None if w_peep is None else np.array(w_peep, copy=True)
    p.Pi = _packed(cell, w_ih, H, FG_PACK_IH, nt, dummy)
    p.wT = np.ascontiguousarray(w_ih.T)
    bias = b_ih + b_hh
    p.b_hn = None
    if cell == FG_GRU_LBR:
        bias[2 * H:] = b_ih[2 * H:]      # b_hn acts inside r * (...)
        p.b_hn = b_hh[2 * H:].copy()
    p.bias = bias
    return p


def step(list layers, x, h0, c0, int nt):
    """One time step of B rows through the stacked ``layers`` (PackedLayer, one per layer).

    x   (B, D) floats or (B,) int64 token ids      h0 (L, B, R), c0 (L, B, H) (lstm, else None)
    Returns fresh (h1, c1) of shapes (L, B, R), (L, B, H) (c1 None unless lstm; R = P for a
    projected lstm, else H).  Validated by the caller; the arithmetic is that of forward()
    on the same rows, bit for bit."""
    if (<PackedLayer>layers[0]).dtype == np.float32:
        return _step(layers, x, h0, c0, nt, <float>0)
    return _step(layers, x, h0, c0, nt, <double>0)


cdef object _step(list layers, x, h0, c0, int nt, floating dummy):
    cdef PackedLayer first = layers[0]
    cdef int L = len(layers), H = first.H, cell = first.cell, G = first.G, R = first.R
    cdef int B = h0.shape[1], k
    cdef bint tokens = x.dtype.kind in "iu"
    dtype = first.dtype
    ptrs = np.zeros((6, L), np.uintp)            # P, Pi, bias, b_hn, Pr, peep (0 = NULL)
    d_in = np.empty(L, np.intc)
    cdef PackedLayer lay
    for k in range(L):
        lay = layers[k]
        ptrs[0, k] = <size_t>vptr(lay.P)
        ptrs[1, k] = <size_t>vptr(lay.Pi)
        ptrs[2, k] = <size_t>vptr(lay.bias)
        ptrs[3, k] = <size_t>vptr(lay.b_hn)
        ptrs[4, k] = <size_t>vptr(lay.Pr)
        ptrs[5, k] = <size_t>vptr(lay.peep)
        d_in[k] = lay.D
    h1 = np.empty((L, B, R), dtype)
    m = np.empty((B, H), dtype) if first.Pr is not None else None
    c1 = np.empty((L, B, H), dtype) if cell in HAS_C else None
    pre = np.empty((B, G * H), dtype)
    extra = np.empty((B, H), dtype)
    cdef const size_t[:, ::1] pv = ptrs
    cdef const int[::1] dv = d_in
    cdef fg_step_args a
    memset(&a, 0, sizeof(a))
    a.cell, a.L, a.B, a.H, a.n_threads = cell, L, B, H, nt
    a.d_in = &dv[0]
    a.P = <const void **>&pv[0, 0]
    a.Pi = <const void **>&pv[1, 0]
    a.bias = <const void **>&pv[2, 0]
    a.b_hn = <const void **>&pv[3, 0]
    a.wT = vptr(first.wT)
    a.x = NULL if tokens else vptr(x)
    a.tok = <const long long *>vptr(x) if tokens else NULL
    a.h0, a.h1 = vptr(h0), vptr(h1)
    a.c0, a.c1 = vptr(c0), vptr(c1)
    a.pre, a.extra = vptr(pre), vptr(extra)
    a.proj = R if first.Pr is not None else 0
    a.Pr = <const void **>&pv[4, 0]
    a.peep = <const void **>&pv[5, 0] if first.peep is not None else NULL
    a.m = vptr(m)
    with nogil:
        if floating is float:
            fg_step_f32(&a)
        else:
            fg_step_f64(&a)
    return h1, c1


# The inference runner's step (fastgates/_runner.py) and the BLAS hold of the functional
# API (fastgates/_threads.py): the per-call work of both is a few hundred nanoseconds.

cdef class StepPlan:
    """One time step through a stacked unidirectional list of :class:`PackedLayer`, with
    the pointer tables ``fg_step`` reads gathered once (``step`` gathers them per call).

    The arithmetic is ``step``'s, bit for bit.  Read-only after construction: calls from
    several threads share a plan, each with its own outputs and scratch.
    """
    cdef readonly list layers
    cdef readonly int L, H, G, D, cell
    cdef readonly object dtype
    cdef object _ptrs, _d_in
    cdef fg_step_args _a
    cdef int _typenum, _pad, _isa
    cdef bint _f64, _lstm
    # stream() and call(): the caller's n_threads, its small-work caps (a step of float
    # input, of token ids, a sequence of at least seq_steps steps of float input)
    cdef public object n_threads
    cdef public int cap_x, cap_ids, cap_seq, seq_steps

    def __init__(self, list layers):
        if not layers:
            raise ValueError("a StepPlan needs at least one layer")
        cdef PackedLayer first = layers[0], lay
        cdef int k, L = len(layers)
        for k in range(L):
            lay = layers[k]
            if lay.cell != first.cell or lay.H != first.H or lay.dtype != first.dtype:
                raise ValueError("the layers of a StepPlan share cell, H and dtype")
            if k > 0 and lay.D != first.H:
                raise ValueError(f"layer {k} reads {lay.D} features, the layer below has {first.H}")
        self.layers = list(layers)
        self.L, self.H, self.G, self.D, self.cell = L, first.H, first.G, first.D, first.cell
        self.dtype = first.dtype
        self._isa = ISA_LEVELS.index(first.isa)
        self.n_threads, self.cap_x, self.cap_ids, self.cap_seq = None, 1 << 30, 1 << 30, 1 << 30
        self.seq_steps = 1
        self._f64 = first.dtype == np.float64
        self._typenum = cnp.NPY_DOUBLE if self._f64 else cnp.NPY_FLOAT
        self._lstm = first.cell in HAS_C
        # the extra scratch starts 64 bytes after pre's end at most: same alignment as pre
        self._pad = 16
        ptrs = np.zeros((4, L), np.uintp)              # P, Pi, bias, b_hn (0 = NULL)
        d_in = np.empty(L, np.intc)
        for k in range(L):
            lay = layers[k]
            ptrs[0, k] = <size_t>vptr(lay.P)
            ptrs[1, k] = <size_t>vptr(lay.Pi)
            ptrs[2, k] = <size_t>vptr(lay.bias)
            ptrs[3, k] = <size_t>vptr(lay.b_hn)
            d_in[k] = lay.D
        self._ptrs, self._d_in = ptrs, d_in
        cdef size_t *pp = <size_t *>cnp.PyArray_DATA(<cnp.ndarray>ptrs)
        memset(&self._a, 0, sizeof(self._a))
        self._a.cell, self._a.L, self._a.H = first.cell, L, first.H
        self._a.d_in = <const int *>cnp.PyArray_DATA(<cnp.ndarray>d_in)
        self._a.P = <const void **>pp
        self._a.Pi = <const void **>(pp + L)
        self._a.bias = <const void **>(pp + 2 * L)
        self._a.b_hn = <const void **>(pp + 3 * L)
        self._a.wT = vptr(first.wT)

    def run(self, cnp.ndarray x, cnp.ndarray h0, c0, int nt):
        """One step: ``x`` (B, D) floats or (B,) int64 token ids in [0, D), ``h0`` and (lstm)
        ``c0`` (L, B, H), every array C-contiguous of the plan's dtype (validated by the
        caller).  Returns fresh ``(h1, c1)`` (L, B, H) (``c1`` None unless lstm)."""
        return self._run(x, h0, c0, nt)

    def stream(self, x, state):
        """``Runner.step`` for the common call, or None for anything else (the caller then
        validates in full and raises what is wrong): ``x`` (B, D) floats of the plan's dtype
        or (B,) int64 ids in [0, D), C-contiguous, B >= 1; ``state`` None or what the
        previous step returned ((L, B, H) C-contiguous arrays of the dtype: ``h``, or the
        pair ``(h, c)``).  Threads: ``n_threads`` resolved, capped by ``cap_x`` / ``cap_ids``
        and by the fork guard.  Returns ``(y_t, state)``, fresh arrays, y_t (B, H) the top
        layer's h.  The same call as ``run``, so the same bits, without the Python work."""
        cdef cnp.ndarray xa
        cdef cnp.npy_intp B, i, dims[3]
        cdef const long long *ids
        cdef bint tok
        if type(x) is not np.ndarray:
            return None
        xa = <cnp.ndarray>x
        if not cnp.PyArray_IS_C_CONTIGUOUS(xa) or cnp.PyArray_NDIM(xa) == 0:
            return None
        B = cnp.PyArray_DIM(xa, 0)
        if B < 1:
            return None
        if cnp.PyArray_TYPE(xa) == self._typenum:
            if cnp.PyArray_NDIM(xa) != 2 or cnp.PyArray_DIM(xa, 1) != self.D:
                return None
            tok = False
        elif cnp.PyArray_TYPE(xa) == cnp.NPY_INT64 and cnp.PyArray_NDIM(xa) == 1:
            ids = <const long long *>cnp.PyArray_DATA(xa)
            for i in range(B):
                if ids[i] < 0 or ids[i] >= self.D:
                    return None
            tok = True
        else:
            return None
        parts = self._state_parts(state, B)
        if parts is None:
            return None
        h0, c0 = parts
        if h0 is None:
            dims[0], dims[1], dims[2] = self.L, B, self.H
            h0 = cnp.PyArray_ZEROS(3, dims, self._typenum, 0)
            if self._lstm:
                c0 = cnp.PyArray_ZEROS(3, dims, self._typenum, 0)
        h1, c1 = self._run(xa, h0, c0, self._threads(self.cap_ids if tok else self.cap_x))
        dims[0], dims[1] = B, self.H
        y = cnp.PyArray_EMPTY(2, dims, self._typenum, 0)
        memcpy(cnp.PyArray_DATA(<cnp.ndarray>y),
               <char *>cnp.PyArray_DATA(<cnp.ndarray>h1) + (self.L - 1) * cnp.PyArray_NBYTES(<cnp.ndarray>y),
               cnp.PyArray_NBYTES(<cnp.ndarray>y))
        return y, (h1 if c1 is None else (h1, c1))

    def call(self, x, state):
        """``Runner.__call__`` for the common call, or None for anything else (the caller
        then validates in full): ``x`` (T, B, D) floats of the plan's dtype, C-contiguous,
        T, B >= 1, no lengths; ``state`` None or (L, B, H) C-contiguous arrays of the dtype
        (``h``, or the pair ``(h, c)``).  Threads as ``stream`` (the sequence cap from
        ``seq_steps`` steps).  Returns ``(y, state)``: ``sequence``'s results."""
        cdef cnp.ndarray xa
        cdef cnp.npy_intp T, B
        if type(x) is not np.ndarray:
            return None
        xa = <cnp.ndarray>x
        if cnp.PyArray_TYPE(xa) != self._typenum or cnp.PyArray_NDIM(xa) != 3 \
                or not cnp.PyArray_IS_C_CONTIGUOUS(xa) or cnp.PyArray_DIM(xa, 2) != self.D:
            return None
        T, B = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1)
        if T < 1 or B < 1:
            return None
        parts = self._state_parts(state, B)
        if parts is None:
            return None
        h0, c0 = parts
        y, h, c = self.sequence(xa, h0, c0,
                                self._threads(self.cap_seq if T >= self.seq_steps else self.cap_x))
        return y, ((h, c) if self._lstm else h)

    cdef int _threads(self, int cap) except -1:
        """The call's threads: n_threads resolved, capped by cap and the fork guard."""
        cdef int nt = _resolve_threads(self.n_threads)
        if nt > 1:
            nt = _fork.safe_threads(min(nt, cap))
        return nt

    cdef tuple _state_parts(self, state, cnp.npy_intp B):
        """The compiled calls' state: (None, None) for None, (h0, c0 or None) for a state as
        step() and __call__ return it; None for anything else, or when the kernels no
        longer run the level the weights were packed for (the checked path says so)."""
        cdef cnp.ndarray h0, c0 = None
        if self._isa != fg_isa_active():
            return None
        if state is None:
            return None, None
        if self._lstm:
            if type(state) is not tuple or len(<tuple>state) != 2:
                return None
            h0 = self._state_part((<tuple>state)[0], B)
            c0 = self._state_part((<tuple>state)[1], B)
            if c0 is None:
                return None
        else:
            h0 = self._state_part(state, B)
        return None if h0 is None else (h0, c0)

    cdef cnp.ndarray _state_part(self, s, cnp.npy_intp B):
        """``s`` when it is an (L, B, H) C-contiguous array of the plan's dtype, else None."""
        if type(s) is not np.ndarray:
            return None
        cdef cnp.ndarray a = <cnp.ndarray>s
        if cnp.PyArray_TYPE(a) != self._typenum or cnp.PyArray_NDIM(a) != 3 \
                or not cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_DIM(a, 0) != self.L \
                or cnp.PyArray_DIM(a, 1) != B or cnp.PyArray_DIM(a, 2) != self.H:
            return None
        return a

    cdef tuple _run(self, cnp.ndarray x, cnp.ndarray h0, c0, int nt):
        cdef fg_step_args a = self._a
        cdef cnp.npy_intp dims[3]
        cdef cnp.npy_intp B = h0.shape[1]
        cdef cnp.npy_intp GH = <cnp.npy_intp>self.G * self.H
        dims[0], dims[1], dims[2] = self.L, B, self.H
        h1 = cnp.PyArray_EMPTY(3, dims, self._typenum, 0)
        c1 = cnp.PyArray_EMPTY(3, dims, self._typenum, 0) if self._lstm else None
        dims[0] = B * (GH + self.H) + self._pad        # scratch: pre (B, G*H), extra (B, H)
        scratch = cnp.PyArray_EMPTY(1, dims, self._typenum, 0)
        cdef char *sp = <char *>cnp.PyArray_DATA(<cnp.ndarray>scratch)
        cdef size_t pre_bytes = <size_t>(B * GH) * (8 if self._f64 else 4)
        a.B, a.n_threads = <int>B, nt
        if cnp.PyArray_TYPE(x) == cnp.NPY_INT64:
            a.tok = <const long long *>cnp.PyArray_DATA(x)
        else:
            a.x = cnp.PyArray_DATA(x)
        a.h0 = cnp.PyArray_DATA(h0)
        a.h1 = cnp.PyArray_DATA(<cnp.ndarray>h1)
        if self._lstm:
            a.c0 = cnp.PyArray_DATA(<cnp.ndarray>c0)
            a.c1 = cnp.PyArray_DATA(<cnp.ndarray>c1)
        a.pre = sp
        a.extra = sp + ((pre_bytes + 63) & ~(<size_t>63))
        if B > 0:
            with nogil:
                if self._f64:
                    fg_step_f64(&a)
                else:
                    fg_step_f32(&a)
        return h1, c1

    def sequence(self, cnp.ndarray x, h0, c0, int nt):
        """The stack over whole sequences: ``x`` (T, B, D) floats, ``h0`` and (lstm) ``c0``
        (L, B, H) or None (zeros); every array C-contiguous of the plan's dtype, T, B >= 1
        (validated by the caller).  Returns fresh ``(y, h_n, c_n)``: y (T, B, H) the top
        layer's outputs, h_n and c_n (L, B, H) (c_n None unless lstm).  Each layer runs
        ``forward(..., training=False)``'s loop on its packed weights (_infer_dense), so the
        results are that path's, bit for bit, without its per-call Python work."""
        if self._f64:
            return _plan_sequence(self, x, h0, c0, nt, <double>0)
        return _plan_sequence(self, x, h0, c0, nt, <float>0)

    def __repr__(self):
        return (f"<StepPlan cell={self.cell} {self.dtype} L={self.L} D={self.D} H={self.H} "
                f"isa={(<PackedLayer>self.layers[0]).isa}>")


ctypedef int (*_blas_get_t)() noexcept nogil
ctypedef void (*_blas_set_t)(int) noexcept nogil
cdef _blas_get_t _blas_get = NULL
cdef _blas_set_t _blas_set = NULL
cdef int _blas_depth = 0
cdef int _blas_saved = 0


def blas_bind(size_t get_addr, size_t set_addr):
    """Bind the BLAS hold to ``openblas_get_num_threads`` / ``openblas_set_num_threads`` of
    scipy's BLAS (their addresses; 0, 0 unbinds).  Returns whether the hold is bound."""
    global _blas_get, _blas_set
    if _blas_depth:
        raise RuntimeError("the BLAS hold cannot be rebound while a call holds it")
    _blas_get = <_blas_get_t><void *>get_addr if get_addr and set_addr else NULL
    _blas_set = <_blas_set_t><void *>set_addr if get_addr and set_addr else NULL
    return _blas_get != NULL


def blas_hold():
    """Hold the bound BLAS at one thread; calls nest and may come from several threads
    (the count lives under the GIL).  The first hold saves the thread count it finds."""
    _blas_hold()


def blas_release():
    """End one hold; the last restores the thread count the first one found."""
    _blas_release()


cdef void _blas_hold() noexcept:
    global _blas_depth, _blas_saved
    cdef int n
    if _blas_get == NULL:
        return
    if _blas_depth == 0:
        n = _blas_get()
        _blas_saved = n
        if n != 1:
            _blas_set(1)
    _blas_depth += 1


cdef void _blas_release() noexcept:
    global _blas_depth
    if _blas_get == NULL or _blas_depth == 0:
        return
    _blas_depth -= 1
    if _blas_depth == 0 and _blas_saved != 1:
        _blas_set(_blas_saved)


def blas_threads():
    """The bound BLAS's current thread count (None when unbound): for tests."""
    return None if _blas_get == NULL else _blas_get()


cdef object _plan_sequence(StepPlan plan, cnp.ndarray x, h0, c0, int nt, floating dummy):
    """StepPlan.sequence for one element type."""
    cdef int T = <int>x.shape[0], B = <int>x.shape[1], H = plan.H, L = plan.L, k
    cdef int cell = plan.cell, GH = plan.G * plan.H
    cdef bint lstm = plan._lstm, gru = plan.G == 3
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = L, B, H
    h_n = cnp.PyArray_EMPTY(3, dims, plan._typenum, 0)
    c_n = None
    if lstm:
        # updated in place by the threads at their units: aligned (see _empty)
        c_n = _zeros((L, B, H), plan.dtype) if c0 is None else _copy(c0)
    dtype = plan.dtype
    cdef int Tc = _chunk_steps(T, B)
    pre = None if GATES[cell] == 1 else _empty((Tc, B, GH), dtype)
    extra = _empty((B, H), dtype) if gru else None
    zeros = _zeros((B, H), dtype) if h0 is None else None
    cdef size_t BH = <size_t>B * H
    cdef fg_forward_args a
    cdef PackedLayer lay
    cdef floating *yp
    cdef const floating *h0p
    cdef const floating *xp = <floating *>cnp.PyArray_DATA(x)
    cdef floating *prep = <floating *>vptr(pre)
    cdef floating *hnp = <floating *>cnp.PyArray_DATA(<cnp.ndarray>h_n)
    y = x
    for k in range(L):
        lay = plan.layers[k]
        below = y               # layer k's input (xp) stays alive while it runs
        y = _empty((T, B, H), dtype)
        yp = <floating *>vptr(y)
        memset(&a, 0, sizeof(a))
        a.cell, a.B, a.H, a.n_threads, a.D = cell, B, H, nt, lay.D
        a.P, a.Pi, a.wT, a.bias = vptr(lay.P), vptr(lay.Pi), vptr(lay.wT), vptr(lay.bias)
        a.b_hn = vptr(lay.b_hn) if cell == FG_GRU_LBR else NULL
        a.extra = vptr(extra)
        if lstm:
            a.c0 = a.cout = <floating *>cnp.PyArray_DATA(<cnp.ndarray>c_n) + k * BH
            a.c_in_place = 1
        h0p = <floating *>vptr(zeros) if h0 is None else \
            <floating *>cnp.PyArray_DATA(<cnp.ndarray>h0) + k * BH
        with nogil:
            _infer_dense(&a, T, B, H, lay.D, Tc, yp, h0p, xp, NULL, prep)
            memcpy(hnp + k * BH, yp + (T - 1) * BH, BH * sizeof(floating))
        xp = yp
    return y, h_n, c_n


include "_common_call.pxi"
