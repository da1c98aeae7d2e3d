/* Drivers of the time loops: packing, the parallel region, and the choice of
 * instruction set (see recurrence.h for the design). */
#include <stdlib.h>
#include <string.h>
#include "recurrence.h"

#if FASTGATES_OPENMP && defined(_OPENMP)
#include <omp.h>
#define FG_HAVE_OMP 1
#else
#define FG_HAVE_OMP 0
#endif

/* The same code twice: portable, and AVX2+FMA picked at run time when the CPU has it
 * (no -march=native: a wheel built here must run on any x86-64). */
#define FG_ISA generic
#include "kernels_isa.h"
#undef FG_ISA

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define FG_X86_DISPATCH 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FG_ISA avx2
#include "kernels_isa.h"
#undef FG_ISA
#pragma GCC pop_options
#elif defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define FG_X86_DISPATCH 1
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define FG_ISA avx2
#include "kernels_isa.h"
#undef FG_ISA
#pragma clang attribute pop
#else
#define FG_X86_DISPATCH 0
#endif

static int fg_use_avx2(void)
{
#if FG_X86_DISPATCH
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

const char *fg_simd_level(void) { return fg_use_avx2() ? "avx2+fma" : "generic"; }

int fg_have_openmp(void) { return FG_HAVE_OMP; }

int fg_max_threads(void)
{
#if FG_HAVE_OMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

size_t fg_packed_size(int H, int G, int nr)
{
    size_t nb = ((size_t)H + nr - 1) / nr;
    return nb * (size_t)G * H * nr;
}

/* Thread bodies are run by every thread of one parallel region. */
#if FG_HAVE_OMP
#define FG_PARALLEL(nt, ...)                                                     \
    { int fg_nt_ = (nt);                                                         \
      _Pragma("omp parallel num_threads(fg_nt_)")                                \
      { int tid = omp_get_thread_num(), nth = omp_get_num_threads(); __VA_ARGS__; } }
#else
#define FG_PARALLEL(nt, ...) { int tid = 0, nth = 1; (void)(nt); __VA_ARGS__; }
#endif

/* Packing (see kernels_typed.h for the layouts), parallel over unit blocks.  Rows of
 * w_hh are read contiguously; zero padding past H is written once per block. */
#define FG_PACKERS(T, S, NR)                                                          \
void fg_pack_forward_##S(const T *w, int H, int G, T *P, int n_threads)              \
{                                                                                     \
    const int nb = (H + NR - 1) / NR;                                                 \
    FG_PARALLEL(n_threads, {                                                          \
        for (int u = nb * tid / nth; u < nb * (tid + 1) / nth; u++) {                 \
            const int j0 = u * NR, n = H - j0 < NR ? H - j0 : NR;                     \
            for (int g = 0; g < G; g++) {                                             \
                T *dst = P + ((size_t)u * G + g) * H * NR;                            \
                if (n < NR)                                                           \
                    memset(dst, 0, (size_t)H * NR * sizeof(T));                       \
                for (int jj = 0; jj < n; jj++) {                                      \
                    const T *row = w + ((size_t)g * H + j0 + jj) * H;                 \
                    for (int k = 0; k < H; k++)                                       \
                        dst[(size_t)k * NR + jj] = row[k];                            \
                }                                                                     \
            }                                                                         \
        }                                                                             \
    })                                                                                \
}                                                                                     \
void fg_pack_backward_##S(const T *w, int H, int G, T *P, int n_threads)             \
{                                                                                     \
    const int nb = (H + NR - 1) / NR;                                                 \
    const size_t GH = (size_t)G * H;                                                  \
    FG_PARALLEL(n_threads, {                                                          \
        for (int u = nb * tid / nth; u < nb * (tid + 1) / nth; u++) {                 \
            const int j0 = u * NR, n = H - j0 < NR ? H - j0 : NR;                     \
            T *dst = P + (size_t)u * GH * NR;                                         \
            if (n < NR)                                                               \
                memset(dst, 0, GH * NR * sizeof(T));                                  \
            for (size_t k = 0; k < GH; k++)                                           \
                memcpy(dst + k * NR, w + k * H + j0, (size_t)n * sizeof(T));          \
        }                                                                             \
    })                                                                                \
}

FG_PACKERS(float, f32, FG_NR_F32)
FG_PACKERS(double, f64, FG_NR_F64)

#if FG_X86_DISPATCH
#define FG_PICK(name, S) (fg_use_avx2() ? fg_##name##_##S##_avx2 : fg_##name##_##S##_generic)
#else
#define FG_PICK(name, S) (fg_##name##_##S##_generic)
#endif

#define FG_DRIVERS(ELT, S)                                                              \
void fg_forward_##S(const fg_forward_args *a)                                        \
{                                                                                     \
    void (*run)(const fg_forward_args *, int, int) = FG_PICK(forward_thread, S);      \
    if (a->T <= 0 || a->B <= 0)                                                       \
        return;                                                                       \
    FG_PARALLEL(a->n_threads, run(a, tid, nth))                                       \
}                                                                                     \
void fg_backward_##S(const fg_backward_args *a)                                      \
{                                                                                     \
    void (*run)(const fg_backward_args *, int, int) = FG_PICK(backward_thread, S);    \
    if (a->T <= 0 || a->B <= 0)                                                       \
        return;                                                                       \
    FG_PARALLEL(a->n_threads, run(a, tid, nth))                                       \
}                                                                                     \
int fg_gemm_tn_##S(int n_threads, int M, int N, int K, const ELT *A, size_t lda,          \
                   const ELT *B, size_t ldb, ELT *C, size_t ldc)                      \
{                                                                                     \
    void (*run)(int, int, int, const ELT *, size_t, const ELT *, size_t, ELT *, size_t, \
                ELT *, ELT *, int, int) = FG_PICK(gemm_tn_thread, S);                 \
    const int nr = sizeof(ELT) == 4 ? FG_NR_F32 : FG_NR_F64;                          \
    if (M <= 0 || N <= 0)                                                             \
        return 0;                                                                     \
    if (n_threads < 1)                                                                \
        n_threads = 1;                                                                \
    ELT *At = malloc(((size_t)M * K + (size_t)n_threads * K * nr) * sizeof(ELT) + 1);  \
    if (!At)                                                                          \
        return -1;                                                                    \
    ELT *Pt = At + (size_t)M * K;                                                     \
    FG_PARALLEL(n_threads, run(M, N, K, A, lda, B, ldb, C, ldc, At,                   \
                               Pt + (size_t)tid * K * nr, tid, nth))                  \
    free(At);                                                                         \
    return 0;                                                                         \
}                                                                                     \
void fg_generate_##S(const fg_generate_args *a)                                      \
{                                                                                     \
    void (*run)(const fg_generate_args *, int, int) = FG_PICK(generate_thread, S);    \
    if (a->max_steps <= 0)                                                            \
        return;                                                                       \
    FG_PARALLEL(a->n_threads, run(a, tid, nth))                                       \
}                                                                                     \
void fg_activation_##S(int kind, size_t n, const ELT *x, ELT *out)                       \
{                                                                                     \
    FG_PICK(activation, S)(kind, n, x, out);                                          \
}

FG_DRIVERS(float, f32)
FG_DRIVERS(double, f64)
