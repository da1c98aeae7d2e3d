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

# One GEMM of a gemm_batch: C := op(A) op(B) + beta * C (row-major, as gemm with alpha 1);
# A, B, C point to float or double, the batch's type.  chained: run slab by slab right
# after the job before it, which has the same m and n (so the same slabs): it may
# accumulate (beta = 1) into that job's C.
cdef struct gemm_job:
    bint trans_a, trans_b
    int m, n, k
    const void *A
    int lda
    const void *B
    int ldb
    double beta
    void *C
    int ldc
    bint chained

cdef void gemm_batch(int n_threads, const gemm_job *jobs, int njobs,
                     floating dummy) noexcept nogil

# A gemm_batch's items (a job's slab and the slabs chained to it) in the order its threads
# take them, largest first: for a caller that runs them in a parallel region of its own,
# each thread taking the next free item i and running gemm_plan_item_f32/f64(plan, i).
# The same slabs and calls as gemm_batch: the same results, bit for bit.
cdef enum:
    GEMM_PLAN_ITEMS = 32        # MAX_JOBS * SLABS of _blas.pyx
cdef struct gemm_plan:
    const gemm_job *jobs
    int njobs, n
    int item_job[GEMM_PLAN_ITEMS]
    int item_slab[GEMM_PLAN_ITEMS]

cdef int gemm_plan_make(gemm_plan *p, const gemm_job *jobs, int njobs) noexcept nogil
cdef void gemm_plan_item_f32(const void *plan, int i) noexcept nogil
cdef void gemm_plan_item_f64(const void *plan, int i) noexcept nogil
