/* The entry points of one instruction-set level (see kernels.h, dispatch.c). */
#ifndef FASTGATES_KERNELS_TABLE_H
#define FASTGATES_KERNELS_TABLE_H
#include <stddef.h>
#include "fastgates.h"
#include "deal.h"

/* gemm_tn's chunk: most rows of B it packs at a time; the scratch dispatch.c allocates
 * holds this many panel rows per thread, which product.h's gemm_tn_thread fills. */
#define FG_GEMM_TN_KC 1536

typedef struct {
    /* thread bodies, run by every thread of one parallel region */
    void (*forward_f32)(const fg_forward_args *, const fg_deal *, int tid, int nth);
    void (*forward_f64)(const fg_forward_args *, const fg_deal *, int tid, int nth);
    void (*backward_f32)(const fg_backward_args *, const fg_deal *, int tid, int nth);
    void (*backward_f64)(const fg_backward_args *, const fg_deal *, int tid, int nth);
    void (*generate_f32)(const fg_generate_args *, int tid, int nth);
    void (*generate_f64)(const fg_generate_args *, int tid, int nth);
    void (*gemm_tn_f32)(const fg_gemm_tn_args *, float *At, float *Pt, int tid, int nth);
    void (*gemm_tn_f64)(const fg_gemm_tn_args *, double *At, double *Pt, int tid, int nth);
    void (*step_f32)(const fg_step_args *, int tid, int nth);
    void (*step_f64)(const fg_step_args *, int tid, int nth);
    void (*pack_f32)(int cell, const float *w, int H, int K, int which, float *P, int tid, int nth);
    void (*pack_f64)(int cell, const double *w, int H, int K, int which, double *P, int tid, int nth);
    /* plain functions */
    size_t (*packed_size_f32)(int cell, int H, int K, int which);
    size_t (*packed_size_f64)(int cell, int H, int K, int which);
    void (*activation_f32)(int kind, size_t n, const float *x, float *out);
    void (*activation_f64)(int kind, size_t n, const double *x, double *out);
    void (*dense_f32)(int n, int K, const float *w, const float *x, const float *b, float *out);
    void (*dense_f64)(int n, int K, const double *w, const double *x, const double *b,
                      double *out);
    double (*fma_loop_f32)(long iters, float *sink);
    double (*fma_loop_f64)(long iters, double *sink);
    int vl_f32, vl_f64;   /* vector lanes */
} fg_kernels;

extern const fg_kernels fg_kernels_generic, fg_kernels_avx2, fg_kernels_avx512;

#endif
