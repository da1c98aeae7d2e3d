/* The compiled time loops of fastgates: forward and BPTT of RNN, GRU and LSTM.
 *
 * Design.  One parallel region covers the whole time loop; each thread owns a fixed
 * range of hidden units (blocks of FG_NR units, all gates of a unit together) for
 * every step, so its slice of the packed recurrent weights stays in its own cache.
 * A step is: the recurrent product for the thread's units (a register-blocked
 * kernel over weights packed once per call), then the fused gate math on those
 * units while they are hot, then one barrier (the next step needs all of h).  The
 * reset-before GRU needs (r*h) of all units before its n-gate product, so it takes
 * two barriers per step.  Every output element is computed by the same code in the
 * same order whatever the thread count, so results are bit-identical for any
 * n_threads.  Partitioning over units (not batch rows) keeps all threads busy at
 * batch 1 and halves each thread's weight traffic.
 *
 * Arrays are row-major and C-contiguous; shapes are given on every field
 * (T steps, B rows, H units, G gates: rnn 1, gru 3 (r, z, n), lstm 4 (i, f, g, o)).
 * The caller (fastgates/_recurrence.pyx) validates everything first.
 *
 * Variable lengths use PyTorch's packed layout: rows sorted by length (descending),
 * step t has the n_t = batch[t] rows still running (non-increasing in t), and they
 * are the prefix [0, n_t) of the previous step's rows, so h_{t-1} of the active rows
 * is the start of step t-1's block.  Step t's block starts at row off_t = n_0 + ... +
 * n_{t-1} of every per-step array; "(T, B, X)" below then means (N, X) with N = the sum
 * of n_t, and "(T+1, B, H)" means (B + N, H) (the B rows of the initial state first).
 * batch = NULL is the dense case n_t = B, off_t = t*B.  Rows past n_t are neither read
 * nor written at step t, so a finished row's dh/dc in backward keeps dh_n/dc_n until
 * its last step comes.
 */
#ifndef FASTGATES_RECURRENCE_H
#define FASTGATES_RECURRENCE_H

#include <stddef.h>

enum fg_cell { FG_RNN_TANH = 0, FG_RNN_RELU = 1, FG_GRU_LBR = 2, FG_GRU_RB = 3, FG_LSTM = 4 };

/* Hidden units per packed block (two SIMD vectors of 32 bytes). */
#define FG_NR_F32 16
#define FG_NR_F64 8

typedef struct {
    int cell, T, B, H;
    int n_threads;
    const void *P;      /* packed w_hh^T from fg_pack_forward_*                                */
    void *pre;          /* IN  (T, B, G*H): x_t w_ih^T + biases (lbr: without b_hn)            */
                        /* OUT the post-activation gates (rnn: pre is hout itself)             */
    const void *h0;     /* IN  (B, H) state before step 0                                      */
    void *hout;         /* OUT (T, B, H) h_t                                                   */
    const void *c0;     /* IN  (B, H) lstm cell state before step 0                            */
    void *cout;         /* OUT (T, B, H) lstm c_t; or, with c_in_place, cout == c0 is one
                           (B, H) state updated in place (each row stops at its last step)    */
    void *tc;           /* OUT (T, B, H) lstm tanh(c_t), or NULL                               */
    void *extra;        /* OUT gru lbr: h_{t-1} W_hn^T + b_hn; gru rb: r_t * h_{t-1}; (T|1, B, H)  */
    size_t extra_step;  /* nonzero: one extra slice per step (T, B, H); 0: one (B, H) scratch  */
    const void *b_hn;   /* IN  (H,) gru lbr recurrent n-gate bias                              */
    const int *batch;   /* IN  (T,) rows active at each step (packed layout), or NULL: all B   */
    int c_in_place;     /* lstm: c updated in place in cout (== c0), see cout                  */
} fg_forward_args;

typedef struct {
    int cell, T, B, H;
    int n_threads;
    const void *P;      /* packed w_hh from fg_pack_backward_*                                 */
    const void *gates;  /* IN  (T, B, G*H) post-activations (NULL for rnn)                     */
    const void *hs;     /* IN  (T+1, B, H) hs[0] = h0                                          */
    const void *cs;     /* IN  (T+1, B, H) lstm cell states                                    */
    const void *tc;     /* IN  (T, B, H) lstm tanh(c_t)                                        */
    const void *extra;  /* IN  (T, B, H) gru: as in fg_forward_args                            */
    const void *dy;     /* IN  (T, B, H) or NULL                                               */
    void *dG;           /* OUT (T, B, G*H) gradient of the recurrent pre-activations           */
    void *dnx;          /* OUT (T, B, H) gru lbr: gradient of the input-side n pre-activation  */
    void *dh;           /* IN  (B, H) dL/dh_T (zeros if none); OUT dL/dh_0                     */
    void *dc;           /* IN  (B, H) lstm dL/dc_T;            OUT dL/dc_0                     */
    void *scratch;      /* (B, H) gru rb workspace                                             */
    const int *batch;   /* IN  (T,) rows active at each step (packed layout), or NULL: all B   */
} fg_backward_args;

/* Size in elements of the packed weights for H units and G gates. */
size_t fg_packed_size(int H, int G, int nr);

void fg_pack_forward_f32(const float *w_hh, int H, int G, float *P, int n_threads);
void fg_pack_forward_f64(const double *w_hh, int H, int G, double *P, int n_threads);
void fg_pack_backward_f32(const float *w_hh, int H, int G, float *P, int n_threads);
void fg_pack_backward_f64(const double *w_hh, int H, int G, double *P, int n_threads);

void fg_forward_f32(const fg_forward_args *a);
void fg_forward_f64(const fg_forward_args *a);
void fg_backward_f32(const fg_backward_args *a);
void fg_backward_f64(const fg_backward_args *a);

/* out[i] = sigmoid(x[i]) (kind 0), tanh(x[i]) (kind 1), with the kernels' vector code. */
void fg_activation_f32(int kind, size_t n, const float *x, float *out);
void fg_activation_f64(int kind, size_t n, const double *x, double *out);

/* OpenMP: the maximum thread count (1 without OpenMP) and whether OpenMP is compiled in. */
int fg_max_threads(void);
int fg_have_openmp(void);
/* The instruction set the gate kernels run with on this CPU: "avx2+fma" or "generic". */
const char *fg_simd_level(void);

#endif
