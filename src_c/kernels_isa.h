/* Instantiates kernels_typed.h for float and double under one instruction set.
 * Included by recurrence.c with FG_ISA defined (generic, or avx2 inside a
 * `#pragma GCC target("avx2,fma")` region). */

#define FG_CAT_(a, b, c, d) fg_##a##_##b##_##c
#define FG_CAT(a, b, c) FG_CAT_(a, b, c, 0)

/* float: 8 lanes per 32-byte vector */
#define FG_T float
#define FG_IS_F32 1
#define FG_VL 8
#define FG_NR FG_NR_F32
#define FG_FN(name) FG_CAT(name, f32, FG_ISA)
typedef float FG_FN(v) __attribute__((vector_size(32)));
typedef int FG_FN(vi) __attribute__((vector_size(32)));
#define FG_V FG_FN(v)
#define FG_VI FG_FN(vi)
#define FG_SPLAT(c) ((FG_V){0} + (FG_T)(c))
#define FG_SIGNMASK ((FG_VI){0} + (int)0x80000000u)
#include "kernels_typed.h"
#undef FG_T
#undef FG_IS_F32
#undef FG_VL
#undef FG_NR
#undef FG_FN
#undef FG_V
#undef FG_VI
#undef FG_SPLAT
#undef FG_SIGNMASK

/* double: 4 lanes per 32-byte vector */
#define FG_T double
#define FG_IS_F32 0
#define FG_VL 4
#define FG_NR FG_NR_F64
#define FG_FN(name) FG_CAT(name, f64, FG_ISA)
typedef double FG_FN(v) __attribute__((vector_size(32)));
typedef long long FG_FN(vi) __attribute__((vector_size(32)));
#define FG_V FG_FN(v)
#define FG_VI FG_FN(vi)
#define FG_SPLAT(c) ((FG_V){0} + (FG_T)(c))
#define FG_SIGNMASK ((FG_VI){0} + (long long)0x8000000000000000ull)
#include "kernels_typed.h"
#undef FG_T
#undef FG_IS_F32
#undef FG_VL
#undef FG_NR
#undef FG_FN
#undef FG_V
#undef FG_VI
#undef FG_SPLAT
#undef FG_SIGNMASK
#undef FG_CAT
#undef FG_CAT_
