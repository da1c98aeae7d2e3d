/* The kernels for AVX-512 (F, VL, BW, DQ) + FMA: 64-byte vectors, 32 registers, masked
 * loads and stores for the tails.  See kernels.h and kernels_avx2.c.  setup.py leaves
 * this file out (FG_BUILD_AVX512 = 0) when the compiler cannot build it. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#endif
#include <immintrin.h>
#define FG_LEVEL avx512
#define FG_VBYTES 64
#define FG_NREG 32
#include "kernels.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
