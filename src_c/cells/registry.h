/* The compiled core's cells: the one place in C where a cell is registered.
 *
 *   FG_CELLS(X): X(NAME, code, G, has_c, fwd, bwd) for every cell
 *     NAME   the enum constant FG_<NAME> (enum fg_cell, fastgates.h)
 *     code   its value: fastgates.cells' CellDef.code (the Python side reads the table)
 *     G      gates: rows of w_ih / w_hh are G*H
 *     has_c  1: the cell carries a cell state c (the LSTM family)
 *     fwd    FG_FN(fwd)(s, b, j, m, acc, an): the gate math of one vector of units after
 *            the recurrent product (loop.h's fwd_vec)
 *     bwd    FG_FN(bwd)(s, b, j, m): the gate gradients of one vector of units (bwd_vec);
 *            no_bwd for cells whose backward runs in optional phases (the LayerNorm cells)
 *
 * Adding a cell: its line here, its header cells/<name>.h (listed below) with the two
 * hooks, its entry in fastgates/cells.py with the same code.  fastgates.h makes the enum
 * from this list, loop.h its switches; kernels.h includes this file once per type for the
 * headers.
 */
#ifndef FG_CELLS
#define FG_CELLS(X)                                                                     \
    X(RNN_TANH, 0, 1, 0, rnn_tanh_fwd, rnn_tanh_bwd)                                    \
    X(RNN_RELU, 1, 1, 0, rnn_relu_fwd, rnn_relu_bwd)                                    \
    X(GRU_LBR,  2, 3, 0, gru_lbr_fwd,  gru_lbr_bwd)                                     \
    X(GRU_RB,   3, 3, 0, gru_rb_fwd,   gru_rb_bwd)                                      \
    X(LSTM,     4, 4, 1, lstm_fwd,     lstm_bwd)                                        \
    X(LNLSTM,   5, 4, 1, lnlstm_fwd,   no_bwd)                                          \
    X(LNGRU,    6, 3, 0, lngru_fwd,    no_bwd)
#endif

/* Included by kernels.h with FG_T and FG_FN defined: the cells' hooks, once per type. */
#ifdef FG_T
#include "rnn.h"
#include "gru.h"
#include "lstm.h"
#include "lnlstm.h"
#include "lngru.h"
#endif
