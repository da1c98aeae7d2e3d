/* Instantiates the kernels for float and double under one instruction-set level.
 *
 * Included by kernels_<level>.c with FG_LEVEL (the level's name), FG_VBYTES (vector
 * bytes) and FG_NREG (vector registers) defined, inside that file's target region.
 * Exports one table, fg_kernels_<level>, of the entry points dispatch.c calls.
 */
#include <string.h>
#include "fastgates.h"
#include "kernels_table.h"
#include "barrier.h"

#define FG_CAT3_(a, b, c) fg_##a##_##b##_##c
#define FG_CAT3(a, b, c) FG_CAT3_(a, b, c)

/* Per-step pointers of the forward loop, for the cell functions (cells/<cell>.h).  Rows are
 * this step's active rows; shapes (Bt, X) with row stride X. */
#define FG_STEP_STRUCTS                                                                     \
typedef struct {                                                                            \
    int H;                                                                                  \
    size_t GH;                                                                              \
    const FG_T *hp;     /* IN  h_{t-1}     (Bt, H)                                      */  \
    FG_T *h;            /* OUT h_t         (Bt, H)                                      */  \
    FG_T *pre;          /* IN  x w_ih^T + biases (Bt, G*H); OUT the gates (if keep)     */  \
    const FG_T *cp;     /* IN  lstm c_{t-1} (Bt, H)                                     */  \
    FG_T *c;            /* OUT lstm c_t    (Bt, H) (may be cp: updated in place)        */  \
    FG_T *tc;           /* OUT lstm tanh(c_t) (Bt, H), or NULL                          */  \
    FG_T *ex;           /* OUT gru lbr: h W_hn^T + b_hn; gru rb: r * h_{t-1}  (Bt, H)   */  \
    const FG_T *b_hn;   /* IN  gru lbr (H,)                                             */  \
    int fused;          /* lstm: x w_ih^T is in the product's sums (FG_FN(fuses_x)); pre  \
                         *     is not read (written only if keep)                         */  \
    const FG_T *xb;     /* IN  with fused: the summed biases (G*H,), or NULL              */  \
    int keep;           /* training: keep the post-activation gates (and lbr's ex)      */  \
    int rev;            /* take this thread's unit blocks last to first (odd steps)     */  \
    int defer;          /* a sequence's step: small steps may defer their gate math     */  \
    /* LSTM variants (NULL / 0: the plain LSTM, h is H wide)                            */  \
    int R;              /* width of h (P with a projection), 0 = H                      */  \
    FG_T *m;            /* OUT lstm projection: m_t = o tanh(c_t) (Bt, H), or NULL      */  \
    const FG_T *Pr;     /* IN  w_hr packed FG_PACK_HR (with m)                          */  \
    const FG_T *peep;   /* IN  lstm peepholes (3, H), rows i, f, o, or NULL             */  \
    /* LayerNorm cells (layernorm.h, cells/ln*.h; pre: x W_ih^T without biases)         */  \
    const FG_T *ln_ih;  /* IN  gamma_ih (G*H,)                                          */  \
    const FG_T *b_ih;   /* IN  b_ih (G*H,), added after the input LN                    */  \
    const FG_T *ln_hh;  /* IN  gamma_hh (G*H,)                                          */  \
    const FG_T *ln_c;   /* IN  lnlstm gamma_c (H,)                                      */  \
    const FG_T *ln_cb;  /* IN  lnlstm beta_c (H,)                                       */  \
    const FG_T *b_rec;  /* IN  b_hh (G*H,), added after the recurrent LN                */  \
    FG_T *xn;           /* OUT xhat (Bt, G*H), or NULL                                  */  \
    FG_T *hn;           /* OUT the raw product h W_hh^T, then (keep) hhat (Bt, G*H)     */  \
    FG_T *cn;           /* OUT lnlstm chat = LN(c_t) (Bt, H), or NULL                   */  \
    FG_T *rstd;         /* OUT (Bt, 3) 1/sqrt(var + eps) of the rows x, h, c, or NULL   */  \
    FG_T *part_x;       /* scratch (Bt, nb, 2) block partials of the input rows         */  \
    FG_T *part_h;       /* scratch (Bt, nb, 2) block partials of the recurrent rows     */  \
    FG_T *part_c;       /* scratch (Bt, nb, 2) block partials of c_t (lnlstm)           */  \
    int nb;             /* blocks of VL units per row                                   */  \
} FG_FN(fstep);                                                                             \
typedef struct {                                                                            \
    int H;                                                                                  \
    size_t GH;                                                                              \
    const FG_T *g;      /* IN  post-activation gates (Bt, G*H)                          */  \
    const FG_T *hp;     /* IN  h_{t-1} (Bt, H)                                          */  \
    const FG_T *hc;     /* IN  h_t (Bt, H)                                              */  \
    const FG_T *cp;     /* IN  lstm c_{t-1} (Bt, H)                                     */  \
    const FG_T *tc;     /* IN  lstm tanh(c_t) (Bt, H)                                   */  \
    const FG_T *ex;     /* IN  gru: as in the forward step (Bt, H)                      */  \
    const FG_T *dy;     /* IN  dL/dy_t (Bt, H), or NULL                                 */  \
    FG_T *dG;           /* OUT gradient of the recurrent pre-activations (Bt, G*H)      */  \
    FG_T *dnx;          /* OUT gru lbr: gradient of the input-side n pre-activation     */  \
    FG_T *dh;           /* IN  dL/dh_t; OUT the direct part of dL/dh_{t-1} (gru)  (Bt, H) */ \
    FG_T *dc;           /* IN  dL/dc_t; OUT dL/dc_{t-1} (lstm)  (Bt, H)                 */  \
    /* LSTM variants; with a projection dh (and dy) here are dL/dm_t (Bt, H)            */  \
    const FG_T *peep;   /* IN  lstm peepholes (3, H), or NULL                           */  \
    const FG_T *cc;     /* IN  lstm c_t (Bt, H) (with peep)                             */  \
    /* LayerNorm cells (layernorm.h, cells/ln*.h), else unused                          */  \
    const FG_T *ln_ih;  /* IN  gamma_ih (G*H,)                                          */  \
    const FG_T *ln_hh;  /* IN  gamma_hh (G*H,)                                          */  \
    const FG_T *ln_c;   /* IN  lnlstm gamma_c (H,)                                      */  \
    const FG_T *xn;     /* IN  xhat (Bt, G*H)                                           */  \
    const FG_T *hn;     /* IN  hhat (Bt, G*H)                                           */  \
    const FG_T *cn;     /* IN  lnlstm chat (Bt, H)                                      */  \
    const FG_T *rstd;   /* IN  (Bt, 3) the rows' 1/sqrt(var + eps): x, h, c             */  \
    FG_T *dax;          /* OUT dL/d(gamma_ih xhat + b_ih), then dL/d(x W_ih^T) (Bt, G*H) */  \
    FG_T *db_ih, *db_hh, *dln_ih, *dln_hh;  /* IN/OUT (G*H,) sums over (step, row)      */  \
    FG_T *dln_c, *dln_cb;                   /* IN/OUT (H,) lnlstm sums                  */  \
    FG_T *part_x;       /* scratch (Bt, nb, 2) block partials of the input rows         */  \
    FG_T *part_h;       /* scratch (Bt, nb, 2) block partials of the recurrent rows     */  \
    FG_T *part_c;       /* scratch (Bt, nb, 2) block partials of LN(c_t)'s backward     */  \
    int nb;             /* blocks of VL units per row                                   */  \
} FG_FN(bstep);

/* sum_k a[k] b[k], vector partial sums added in a fixed order (no thread dependence). */
#define FG_DOT                                                                              \
static FG_T FG_FN(dot)(const FG_T *a, const FG_T *b, int n)                                \
{                                                                                           \
    FG_V s0 = {0}, s1 = {0};                                                                \
    int k = 0;                                                                              \
    for (; k + 2 * FG_VL <= n; k += 2 * FG_VL) {                                            \
        s0 += FG_FN(ld)(a + k) * FG_FN(ld)(b + k);                                          \
        s1 += FG_FN(ld)(a + k + FG_VL) * FG_FN(ld)(b + k + FG_VL);                          \
    }                                                                                       \
    FG_T r = FG_FN(hsum)(s0 + s1);                                                          \
    for (; k < n; k++)                                                                      \
        r += a[k] * b[k];                                                                   \
    return r;                                                                               \
}

#define FG_INSTANTIATE                                                                      \
    FG_STEP_STRUCTS                                                                         \
    FG_DOT

/* float */
#define FG_T float
#define FG_IS_F32 1
#define FG_FN(name) FG_CAT3(name, f32, FG_LEVEL)
#include "isa.h"
#include "vecmath.h"
#include "product.h"
FG_INSTANTIATE
#include "layernorm.h"
#include "cells/registry.h"
#include "loop.h"
#include "kernels_undef.h"

/* double */
#define FG_T double
#define FG_IS_F32 0
#define FG_FN(name) FG_CAT3(name, f64, FG_LEVEL)
#include "isa.h"
#include "vecmath.h"
#include "product.h"
FG_INSTANTIATE
#include "layernorm.h"
#include "cells/registry.h"
#include "loop.h"
#include "kernels_undef.h"

#define FG_TABLE_(level) fg_kernels_##level
#define FG_TABLE(level) FG_TABLE_(level)
const fg_kernels FG_TABLE(FG_LEVEL) = {
    .forward_f32 = FG_CAT3(forward_thread, f32, FG_LEVEL),
    .forward_f64 = FG_CAT3(forward_thread, f64, FG_LEVEL),
    .backward_f32 = FG_CAT3(backward_thread, f32, FG_LEVEL),
    .backward_f64 = FG_CAT3(backward_thread, f64, FG_LEVEL),
    .generate_f32 = FG_CAT3(generate_thread, f32, FG_LEVEL),
    .generate_f64 = FG_CAT3(generate_thread, f64, FG_LEVEL),
    .gemm_tn_f32 = FG_CAT3(gemm_tn_thread, f32, FG_LEVEL),
    .gemm_tn_f64 = FG_CAT3(gemm_tn_thread, f64, FG_LEVEL),
    .step_f32 = FG_CAT3(step_thread, f32, FG_LEVEL),
    .step_f64 = FG_CAT3(step_thread, f64, FG_LEVEL),
    .pack_f32 = FG_CAT3(pack_thread, f32, FG_LEVEL),
    .pack_f64 = FG_CAT3(pack_thread, f64, FG_LEVEL),
    .packed_size_f32 = FG_CAT3(packed_size, f32, FG_LEVEL),
    .packed_size_f64 = FG_CAT3(packed_size, f64, FG_LEVEL),
    .activation_f32 = FG_CAT3(activation, f32, FG_LEVEL),
    .activation_f64 = FG_CAT3(activation, f64, FG_LEVEL),
    .dense_f32 = FG_CAT3(dense, f32, FG_LEVEL),
    .dense_f64 = FG_CAT3(dense, f64, FG_LEVEL),
    .fma_loop_f32 = FG_CAT3(fma_loop, f32, FG_LEVEL),
    .fma_loop_f64 = FG_CAT3(fma_loop, f64, FG_LEVEL),
    .vl_f32 = FG_VBYTES / 4,
    .vl_f64 = FG_VBYTES / 8,
};
