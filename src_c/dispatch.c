/* The one dispatch point of the kernels: which instruction-set level runs, the OpenMP
 * parallel regions, and the public functions of fastgates.h.
 *
 * The level is chosen once (fg_isa_select, called by fastgates/_recurrence.pyx at
 * import with the cap from FASTGATES_ISA): the best level that the build compiled
 * (FG_BUILD_AVX2 / FG_BUILD_AVX512, set by setup.py) and that the CPU and the OS
 * support.  Support means the CPUID feature bits and the OS saving the registers
 * (XGETBV: XMM|YMM for AVX2, plus opmask|ZMM for AVX-512) -- a CPU with AVX-512 under an
 * OS or hypervisor that does not save the ZMM state must not run AVX-512 code.
 */
#include <stdlib.h>
#include <string.h>
#include "fastgates.h"
#include "kernels_table.h"
#include "barrier.h"

#if FASTGATES_OPENMP && defined(_OPENMP)
#include <omp.h>
#define FG_HAVE_OMP 1
#else
#define FG_HAVE_OMP 0
#endif

#ifndef FG_BUILD_AVX2
#define FG_BUILD_AVX2 0
#endif
#ifndef FG_BUILD_AVX512
#define FG_BUILD_AVX512 0
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define FG_X86 1
#else
#define FG_X86 0
#endif

static const fg_kernels *const fg_levels[FG_ISA_COUNT] = {
    &fg_kernels_generic,
#if FG_BUILD_AVX2
    &fg_kernels_avx2,
#else
    NULL,
#endif
#if FG_BUILD_AVX512
    &fg_kernels_avx512,
#else
    NULL,
#endif
};

static int fg_active = -1;     /* set by fg_isa_select (or the first kernel call) */

int fg_isa_compiled(void)
{
    int mask = 0;
    for (int l = 0; l < FG_ISA_COUNT; l++)
        if (fg_levels[l])
            mask |= 1 << l;
    return mask;
}

#if FG_X86
static unsigned long long fg_xgetbv0(void)
{
    unsigned int eax, edx;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));   /* xgetbv */
    return ((unsigned long long)edx << 32) | eax;
}
#endif

int fg_isa_supported(void)
{
    int mask = 1 << FG_ISA_GENERIC;
#if FG_X86
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return mask;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx)
        return mask;
    const unsigned long long xcr0 = fg_xgetbv0();
    if ((xcr0 & 0x6) != 0x6)                       /* XMM and YMM state */
        return mask;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return mask;
    const int avx2 = (b >> 5) & 1;
    if (avx2 && fma)
        mask |= 1 << FG_ISA_AVX2;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if ((mask & (1 << FG_ISA_AVX2)) && f && dq && bw && vl && (xcr0 & 0xE6) == 0xE6)
        mask |= 1 << FG_ISA_AVX512;                /* + opmask, ZMM_Hi256, Hi16_ZMM state */
#endif
    return mask;
}

int fg_isa_select(int level)
{
    const int ok = fg_isa_compiled() & fg_isa_supported();
    if (level >= FG_ISA_COUNT)
        level = FG_ISA_COUNT - 1;
    while (level > 0 && !(ok & (1 << level)))
        level--;
    fg_active = level < 0 ? 0 : level;
    return fg_active;
}

int fg_isa_active(void)
{
    if (fg_active < 0)
        fg_isa_select(FG_ISA_COUNT - 1);
    return fg_active;
}

const char *fg_isa_name(int level)
{
    static const char *const names[FG_ISA_COUNT] = {"generic", "avx2", "avx512"};
    return level >= 0 && level < FG_ISA_COUNT ? names[level] : "unknown";
}

static const fg_kernels *fg_k(void) { return fg_levels[fg_isa_active()]; }

int fg_have_openmp(void) { return FG_HAVE_OMP; }

int fg_max_threads(void)
{
#if FG_HAVE_OMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Thread bodies are run by every thread of one parallel region; each region has its own
 * barrier (barrier.h). */
#if FG_OWN_BARRIER
__thread fg_team fg_team_of_thread;
#endif
#if FG_HAVE_OMP
/* The CPUs the process may use (omp_get_num_procs), asked once; only the own barrier
 * reads it. */
static int fg_cpus_available(void)
{
#if FG_OWN_BARRIER
    static int cpus = 0;
    int n = __atomic_load_n(&cpus, __ATOMIC_RELAXED);
    if (!n) {
        n = omp_get_num_procs();
        __atomic_store_n(&cpus, n, __ATOMIC_RELAXED);
    }
    return n;
#else
    return 0;
#endif
}

/* One thread runs without a parallel region (no team to start), unless we are already
 * inside someone's parallel region: the orphaned barriers must bind to a team of ours. */
#define FG_PARALLEL(nt, ...)                                                     \
    { int fg_nt_ = (nt) < 1 ? 1 : (nt);                                          \
      if (fg_nt_ == 1 && !omp_in_parallel()) { int tid = 0, nth = 1;             \
          fg_team_enter(NULL, 1, 1); __VA_ARGS__; }                              \
      else {                                                                     \
      fg_barrier fg_bar_ = {0};                                                  \
      const int fg_cpus_ = fg_cpus_available();                                  \
      _Pragma("omp parallel num_threads(fg_nt_)")                                \
      { int tid = omp_get_thread_num(), nth = omp_get_num_threads();             \
        fg_team_enter(&fg_bar_, nth, fg_cpus_); __VA_ARGS__; } } }
#else
#define FG_PARALLEL(nt, ...) { int tid = 0, nth = 1; (void)(nt); __VA_ARGS__; }
#endif

/* The counters of a region's dealt phases (deal.h), zeroed; none for one thread, or when
 * memory is short (the threads then keep their static shares: the same results). */
static fg_deal fg_deal_alloc(int n_threads)
{
    fg_deal d = {NULL};
    if (FG_HAVE_OMP && n_threads > 1)
        d.ctr = calloc((size_t)2 * n_threads * FG_DEAL_STRIDE, sizeof(int));
    return d;
}

size_t fg_packed_size(int cell, int H, int K, int which, int f64)
{
    const fg_kernels *k = fg_k();
    return f64 ? k->packed_size_f64(cell, H, K, which) : k->packed_size_f32(cell, H, K, which);
}

#define FG_DRIVERS(ELT, S)                                                                   \
void fg_pack_##S(int cell, const ELT *w, int H, int K, int which, ELT *P, int n_threads)     \
{                                                                                            \
    const fg_kernels *k = fg_k();                                                            \
    FG_PARALLEL(n_threads, k->pack_##S(cell, w, H, K, which, P, tid, nth))                   \
}                                                                                            \
void fg_step_##S(const fg_step_args *a)                                                      \
{                                                                                            \
    const fg_kernels *k = fg_k();                                                            \
    if (a->B <= 0 || a->L <= 0)                                                              \
        return;                                                                              \
    FG_PARALLEL(a->n_threads, k->step_##S(a, tid, nth))                                      \
}                                                                                            \
void fg_forward_##S(const fg_forward_args *a)                                                \
{                                                                                            \
    const fg_kernels *k = fg_k();                                                            \
    if (a->T <= 0 || a->B <= 0)                                                              \
        return;                                                                              \
    fg_deal deal = fg_deal_alloc(a->n_threads);                                              \
    FG_PARALLEL(a->n_threads, k->forward_##S(a, &deal, tid, nth))                            \
    free(deal.ctr);                                                                          \
}                                                                                            \
void fg_backward_##S(const fg_backward_args *a)                                              \
{                                                                                            \
    const fg_kernels *k = fg_k();                                                            \
    if (a->T <= 0 || a->B <= 0)                                                              \
        return;                                                                              \
    fg_deal deal = fg_deal_alloc(a->n_threads);                                              \
    FG_PARALLEL(a->n_threads, k->backward_##S(a, &deal, tid, nth))                           \
    free(deal.ctr);                                                                          \
}                                                                                            \
int fg_gemm_tn_##S(int n_threads, const fg_gemm_tn_args *a)                                \
{                                                                                            \
    const fg_kernels *k = fg_k();                                                            \
    const size_t pw = 4 * (size_t)k->vl_##S, kc = FG_GEMM_TN_KC;   /* panel width, chunk */   \
    const int M2 = a->M2 > 0 && a->A2 && a->C2 ? a->M2 : 0;                                  \
    if (a->M < 0 || a->M + M2 <= 0 || a->N <= 0)                                             \
        return 0;                                                                            \
    if (n_threads < 1)                                                                       \
        n_threads = 1;                                                                       \
    fg_gemm_tn_args g = *a;                                                                  \
    g.M2 = M2;                                                                               \
    /* a second panel per thread when C2's columns past N1 come from B2 */                   \
    const size_t npt = M2 && a->B2 && a->N1 < a->N ? 2 : 1;                                  \
    const size_t Mt = (size_t)a->M + (size_t)M2;                                             \
    ELT *At = malloc((Mt * a->K + (size_t)n_threads * npt * kc * pw) * sizeof(ELT) + 64);    \
    if (!At)                                                                                 \
        return -1;                                                                           \
    ELT *Pt = At + Mt * a->K;                                                                \
    FG_PARALLEL(n_threads, k->gemm_tn_##S(&g, At, Pt + (size_t)tid * npt * kc * pw, tid, nth)) \
    free(At);                                                                                \
    return 0;                                                                                \
}                                                                                            \
void fg_generate_##S(const fg_generate_args *a)                                              \
{                                                                                            \
    const fg_kernels *k = fg_k();                                                            \
    if (a->max_steps <= 0)                                                                   \
        return;                                                                              \
    FG_PARALLEL(a->n_threads, k->generate_##S(a, tid, nth))                                  \
}                                                                                            \
void fg_activation_##S(int kind, size_t n, const ELT *x, ELT *out)                           \
{                                                                                            \
    fg_k()->activation_##S(kind, n, x, out);                                                 \
}                                                                                            \
void fg_dense_##S(int n, int K, const ELT *w, const ELT *x, const ELT *b, ELT *out)          \
{                                                                                            \
    fg_k()->dense_##S(n, K, w, x, b, out);                                                   \
}

FG_DRIVERS(float, f32)
FG_DRIVERS(double, f64)

static double fg_fma_one(const fg_kernels *k, int f64, long iters)
{
    float s32;
    double s64;
    return f64 ? k->fma_loop_f64(iters, &s64) : k->fma_loop_f32(iters, &s32);
}

double fg_fma_peak(int f64, int n_threads, long iters, double *seconds)
{
    const fg_kernels *k = fg_k();
    double flops = 0;
#if FG_HAVE_OMP
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(n_threads < 1 ? 1 : n_threads) reduction(+:flops)
    flops += fg_fma_one(k, f64, iters);
    *seconds = omp_get_wtime() - t0;
#else
    (void)n_threads;
    flops = fg_fma_one(k, f64, iters);
    *seconds = 0;
#endif
    return flops;
}
