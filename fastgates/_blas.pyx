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
    cdef bint by_rows = m >= n
    cdef int extent = m if by_rows else n
    cdef int width = max(32, ((extent + SLABS - 1) // SLABS + 15) // 16 * 16)
    cdef int nslab = (extent + width - 1) // width
    cdef int i
    if n_threads <= 1 or nslab <= 1:
        for i in range(nslab):
            _slab(i, width, by_rows, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    for i in prange(nslab, num_threads=n_threads, schedule='static'):
        _slab(i, width, by_rows, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


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
