# The only place fastgates talks to BLAS (scipy.linalg.cython_blas, the scikit-learn pattern).

ctypedef fused floating:
    float
    double

cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating *A, int lda,
               const floating *B, int ldb,
               floating beta, floating *C, int ldc) noexcept nogil

cdef void gemm_split(int n_threads, bint trans_a, bint trans_b, int m, int n, int k,
                     floating alpha, const floating *A, int lda,
                     const floating *B, int ldb,
                     floating beta, floating *C, int ldc) noexcept nogil
