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

/* Token-by-token generation for one sequence (B = 1) through L stacked layers.
 * Step s feeds token tok_s: layer k computes pre = bias_k + input (row tok_s of w_ih[0]^T,
 * or w_ih[k] x with x = emb[tok_s] / the new h of layer k-1), then one step of the
 * forward kernel with the packed w_hh[k]; afterwards thread 0 calls next(ctx, s, h_top),
 * which returns tok_{s+1}, or -1 to stop.  Every thread owns the same unit blocks in
 * every layer, so each keeps its share of the packed weights in its own cache.
 * Results are bit-identical for every thread count. */
typedef long long (*fg_next_token)(void *ctx, int step, const void *h_top);

typedef struct {
    int cell, L, H;
    int n_threads;
    int max_steps;              /* upper bound on the steps; next() normally stops earlier */
    long long first;            /* tok_0                                                    */
    const int *d_in;            /* [L] input width of each layer                            */
    const void *const *P;       /* [L] packed w_hh^T (fg_pack_forward_*)                    */
    const void *const *w_ih;    /* [L] (G*H, d_in[k]); one-hot input: layer 0 holds w_ih^T
                                   (V, G*H) instead, so a token reads one contiguous row    */
    const void *const *bias;    /* [L] (G*H,) b_ih + b_hh (gru lbr: gate n without b_hn)    */
    const void *const *b_hn;    /* [L] (H,) gru lbr, else NULL entries                      */
    const void *emb;            /* (V, d_in[0]) embedding, or NULL: one-hot token input     */
    void *h;                    /* IN/OUT (2, L, H): buffer 0 = initial state; after s steps
                                   the state is in buffer s % 2                             */
    void *c;                    /* IN/OUT (L, H) lstm cell state                            */
    void *pre;                  /* scratch (L, G*H)                                         */
    void *extra;                /* scratch (L, H)                                           */
    fg_next_token next;
    void *ctx;
    long long *slot;            /* shared cell through which thread 0 hands out tok_{s+1}   */
} fg_generate_args;

void fg_generate_f32(const fg_generate_args *a);
void fg_generate_f64(const fg_generate_args *a);

/* C = A^T B for row-major A [K, lda] (M columns used), B [K, ldb] (N columns), C [M, ldc]:
 * the weight-gradient product dW_hh^T = [h_{t-1}]^T dG with our micro-kernel (OpenBLAS
 * 0.3.30 runs some of these shapes, e.g. 128 x 256 outputs, at a third of its speed).
 * Bit-identical for every thread count.  Returns 0, or -1 when scratch memory is short. */
int fg_gemm_tn_f32(int n_threads, int M, int N, int K, const float *A, size_t lda,
                   const float *B, size_t ldb, float *C, size_t ldc);
int fg_gemm_tn_f64(int n_threads, int M, int N, int K, const double *A, size_t lda,
                   const double *B, size_t ldb, double *C, size_t ldc);

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
