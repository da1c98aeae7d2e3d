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

# Slabs per large GEMM (an even count, so two threads split it evenly).
DEF SLABS = 8


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
    """gemm() with the m rows of C cut into slabs that the OpenMP threads share.

    The slabs depend on m only, never on n_threads: OpenBLAS's result for an element
    depends on where its row falls in the call (edge tiles accumulate differently), so
    thread-count-independent slabs keep results bit-identical for any n_threads."""
    cdef int i, m0, m1, nslab
    cdef int rows = max(32, ((m + SLABS - 1) // SLABS + 15) // 16 * 16)
    cdef size_t a_off
    nslab = (m + rows - 1) // rows
    if n_threads <= 1 or nslab <= 1:
        for i in range(nslab):
            m0 = i * rows
            m1 = min(m, m0 + rows)
            a_off = <size_t>m0 if trans_a else <size_t>m0 * lda
            gemm(trans_a, trans_b, m1 - m0, n, k, alpha, A + a_off, lda, B, ldb,
                 beta, C + <size_t>m0 * ldc, ldc)
        return
    for i in prange(nslab, num_threads=n_threads, schedule='static'):
        m0 = i * rows
        m1 = min(m, m0 + rows)
        # rows m0.. of op(A): row offset of A, or column offset when A is transposed
        a_off = <size_t>m0 if trans_a else <size_t>m0 * lda
        gemm(trans_a, trans_b, m1 - m0, n, k, alpha, A + a_off, lda, B, ldb,
             beta, C + <size_t>m0 * ldc, ldc)
