/* The kernels for AVX2 + FMA: 32-byte vectors, 16 registers.  See kernels.h.
 * Compiled with a target region, never -march: the extension must load on any x86-64;
 * dispatch.c calls into this file only when the CPU and the OS support AVX2 and FMA. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>
#define FG_LEVEL avx2
#define FG_VBYTES 32
#define FG_NREG 16
#include "kernels.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
