"""Row-major GEMM over scipy's BLAS.

Design: BLAS is column-major, our arrays are row-major.  A row-major C = op(A) op(B)
is the column-major C^T = op(B)^T op(A)^T, so the operands are swapped and no data
moves.  ``gemm_split`` cuts the rows of C into slabs shared by the OpenMP threads and
runs a single-threaded BLAS call on each (the caller keeps BLAS itself at one
thread, see fastgates/_threads.py): our threads own the cores in every phase, and
each element of C is computed by the same BLAS kernel whatever the thread count.
"""

from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm

# Slabs per large GEMM: one per core of the 2-core target. More, thinner slabs re-pack the
# shared operand more often and hit OpenBLAS slow shapes (256-wide slabs: a third of the speed).
DEF SLABS = 2
DEF MAX_JOBS = 16     # jobs per gemm_batch region


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating *A, int lda,
               const floating *B, int ldb,
               floating beta, floating *C, int ldc) noexcept nogil:
    """C := alpha * op(A) op(B) + beta * C   (row-major; op(A): [m, k], op(B): [k, n], C: [m, n])"""
    cdef char ta = b't' if trans_a else b'n'
    cdef char tb = b't' if trans_b else b'n'
    if m <= 0 or n <= 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>B, &ldb, <float *>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *>B, &ldb, <double *>A, &lda, &beta, C, &ldc)


cdef void gemm_split(int n_threads, bint trans_a, bint trans_b, int m, int n, int k,
                     floating alpha, const floating *A, int lda,
                     const floating *B, int ldb,
                     floating beta, floating *C, int ldc) noexcept nogil:
    """gemm() cut into slabs of rows (or of columns, when C is wider than tall) that the
    OpenMP threads share; each slab re-packs only the operand it slices.

    The slabs depend on the shape only, never on n_threads: OpenBLAS's result for an
    element depends on where it falls in the call (edge tiles accumulate differently),
    so thread-count-independent slabs keep results bit-identical for any n_threads."""
    cdef bint by_rows
    cdef int width, i
    cdef int nslab = _slab_plan(m, n, &width, &by_rows)
    if n_threads <= 1 or nslab <= 1:
        for i in range(nslab):
            _slab(i, width, by_rows, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    for i in prange(nslab, num_threads=n_threads, schedule='static'):
        _slab(i, width, by_rows, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef int _slab_plan(int m, int n, int *width, bint *by_rows) noexcept nogil:
    """The slabs of an (m, n) result: rows, or columns when wider than tall, at most SLABS
    of them (16-aligned, at least 32 wide); returns their count."""
    by_rows[0] = m >= n
    cdef int extent = m if by_rows[0] else n
    width[0] = max(32, ((extent + SLABS - 1) // SLABS + 15) // 16 * 16)
    return (extent + width[0] - 1) // width[0]


cdef inline int _slabs(const gemm_job *j, int *width, bint *by_rows) noexcept nogil:
    return _slab_plan(j.m, j.n, width, by_rows)


cdef void gemm_batch(int n_threads, const gemm_job *jobs, int njobs,
                     floating dummy) noexcept nogil:
    """Every job's gemm_split slabs in ONE parallel region (a gemm_split is a region of its
    own, and at the tiny shapes their starts cost more than the products); a chained job
    runs in the item of the job before it, slab by slab.  The slabs are gemm_split's, so
    the results are its results, bit for bit, for any n_threads.

    The items go out largest first, each to the next free thread (a dynamic schedule over
    the items sorted by multiply-adds, gemm_plan_make): a static split in job order gave
    one thread of a tiny LSTM's BPTT (dW_hh, dW_ih, dx; 25 rows) 2.7 MFLOP against the
    other's 2.0."""
    cdef gemm_plan plan
    cdef int j, c
    if njobs > MAX_JOBS:        # more than the callers ever pass: one region per job
        for j in range(0, njobs, MAX_JOBS):
            gemm_batch(n_threads, jobs + j, min(MAX_JOBS, njobs - j), dummy)
        return
    gemm_plan_make(&plan, jobs, njobs)
    if n_threads <= 1 or plan.n <= 1:
        for c in range(plan.n):
            _batch_item(jobs, njobs, plan.item_job[c], plan.item_slab[c], dummy)
        return
    for c in prange(plan.n, num_threads=n_threads, schedule='dynamic', chunksize=1):
        _batch_item(jobs, njobs, plan.item_job[c], plan.item_slab[c], dummy)


cdef int gemm_plan_make(gemm_plan *p, const gemm_job *jobs, int njobs) noexcept nogil:
    """p := the items of jobs[:njobs] (njobs <= MAX_JOBS), largest first; returns their count."""
    cdef double item_cost[MAX_JOBS * SLABS]
    cdef int n = 0, j, i, c, w, nslab, jj, extent
    cdef double cost
    cdef bint rows
    p.jobs, p.njobs = jobs, njobs
    for j in range(njobs):
        if jobs[j].chained and j > 0:      # runs in its predecessor's items
            continue
        nslab = _slabs(&jobs[j], &w, &rows)      # at most SLABS (width >= extent / SLABS)
        extent = jobs[j].m if rows else jobs[j].n
        cost, jj = 0, j                          # multiply-adds of the job and its chain
        while True:
            cost += <double>jobs[jj].m * jobs[jj].n * jobs[jj].k
            jj += 1
            if jj >= njobs or not jobs[jj].chained:
                break
        for i in range(nslab):
            p.item_job[n], p.item_slab[n] = j, i
            item_cost[n] = cost * (min(extent, (i + 1) * w) - i * w) / extent   # the slab's share
            n += 1
    for c in range(n):                  # insertion sort, largest first (n <= 32)
        i = c
        while i > 0 and item_cost[i - 1] < item_cost[i]:
            item_cost[i - 1], item_cost[i] = item_cost[i], item_cost[i - 1]
            p.item_job[i - 1], p.item_job[i] = p.item_job[i], p.item_job[i - 1]
            p.item_slab[i - 1], p.item_slab[i] = p.item_slab[i], p.item_slab[i - 1]
            i -= 1
    p.n = n
    return n


cdef void gemm_plan_item_f32(const void *plan, int i) noexcept nogil:
    cdef const gemm_plan *p = <const gemm_plan *>plan
    _batch_item(p.jobs, p.njobs, p.item_job[i], p.item_slab[i], <float>0)


cdef void gemm_plan_item_f64(const void *plan, int i) noexcept nogil:
    cdef const gemm_plan *p = <const gemm_plan *>plan
    _batch_item(p.jobs, p.njobs, p.item_job[i], p.item_slab[i], <double>0)


cdef inline void _batch_item(const gemm_job *jobs, int njobs, int j, int i,
                             floating dummy) noexcept nogil:
    """Slab i of job j, then of the jobs chained to it."""
    cdef int w
    cdef bint rows
    while True:
        _slabs(&jobs[j], &w, &rows)
        _slab(i, w, rows, jobs[j].trans_a, jobs[j].trans_b, jobs[j].m, jobs[j].n, jobs[j].k,
              <floating>1, <const floating *>jobs[j].A, jobs[j].lda,
              <const floating *>jobs[j].B, jobs[j].ldb, <floating>jobs[j].beta,
              <floating *>jobs[j].C, jobs[j].ldc)
        j += 1
        if j >= njobs or not jobs[j].chained:
            return


cdef inline void _slab(int i, int width, bint by_rows, bint trans_a, bint trans_b, int m, int n, int k,
                       floating alpha, const floating *A, int lda, const floating *B, int ldb,
                       floating beta, floating *C, int ldc) noexcept nogil:
    """Slab i of gemm_split: rows [i*width, ...) of C, or its columns."""
    cdef int s0 = i * width
    cdef int s1 = min(m if by_rows else n, s0 + width)
    if by_rows:      # rows of op(A): a row offset of A, or a column offset when A is transposed
        gemm(trans_a, trans_b, s1 - s0, n, k, alpha,
             A + (<size_t>s0 if trans_a else <size_t>s0 * lda), lda, B, ldb,
             beta, C + <size_t>s0 * ldc, ldc)
    else:            # columns of op(B): a column offset of B, or a row offset when B is transposed
        gemm(trans_a, trans_b, m, s1 - s0, k, alpha, A, lda,
             B + (<size_t>s0 * ldb if trans_b else <size_t>s0), ldb,
             beta, C + s0, ldc)
