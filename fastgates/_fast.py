"""The public kernels: validate, then run the compiled forward / BPTT passes.

Every function checks its arguments with fastgates._checks (the same layer the
NumPy reference uses) before any compiled code runs, then releases the GIL for the
whole call.  The six public functions are thin: they pick the cell of
:mod:`fastgates.cells` from their keyword and call :func:`cell_forward` /
:func:`cell_backward`, which serve every cell of the table (the layers call those).  Shapes: T steps, B batch rows, D input features, H hidden units,
G gates (rnn 1, gru 3, lstm 4).  Weights use PyTorch's layout, so a torch
``state_dict`` loads as is.
"""

from __future__ import annotations

from . import _checks, _fork, _recurrence, cells
from ._checks import Grads, LSTMGrads  # noqa: F401  (the types of the results, re-exported)
from ._threads import blas_single

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward",
           "lstm_forward", "lstm_backward", "cell_forward", "cell_backward"]

_COMMON_PARAMS = """
    x : ndarray, (T, B, D) float32/float64, or (T, B) integer token ids in [0, D)
        Sequence-first input.  Token ids are one-hot inputs: the input projection is a
        gather of columns of ``w_ih`` (no GEMM) and backward returns ``dx=None``.
    h0 : ndarray (B, H) or None
        Initial hidden state (None: zeros).
    w_ih : ndarray (G*H, D)
    w_hh : ndarray (G*H, H)
    b_ih, b_hh : ndarray (G*H,)
        All float arrays share one dtype (float32 or float64); results have it too.
        Non-contiguous inputs are copied once; inputs are never modified."""

_COMMON_KW = """
    training : bool
        False: no cache is kept and ``cache`` is None; the memory beyond ``y`` is then
        O(max(1024, B) * G * H) (the input projection runs in chunks of steps).
    n_threads : int or None
        None: the OpenMP default (OMP_NUM_THREADS or the cores); n > 0: n threads;
        n < 0: counts back from the maximum (-1 = all).  0 is an error.  The results
        are bit-identical for every thread count.
    lengths : array-like (B,) of ints in [0, T], or None
        Variable-length (ragged) batch, rows in any order: row b's recurrence stops
        after lengths[b] steps.  y is zero past a row's end, h_n (and c_n) hold each
        row's state after its last valid step (h0 for length 0), backward takes
        gradients from the valid steps only (dy past a row's end is ignored, dx there
        is zero), and x past a row's end is never read (token ids there may be any
        value).  The work follows the valid tokens, not T*B: the valid rows are packed
        as in PyTorch's PackedSequence.  None: every row runs all T steps.  The cache
        remembers lengths; all lengths T give exactly the results of None."""

_BACKWARD_DOC = """
    Backpropagation through time for a cache from ``{cell}_forward(..., training=True)``.

    Parameters
    ----------
    dy : ndarray (T, B, H) or None
        Gradient of the loss w.r.t. ``y`` (None: no gradient from the outputs).  With
        ``lengths`` (remembered by the cache), entries past a row's end are ignored.
    dh_n : ndarray (B, H) or None
        Gradient w.r.t. the final hidden state.{extra}
    cache : fastgates.Cache
    n_threads : int or None
        As in the forward pass.

    Returns
    -------
    {ret}
        Freshly allocated gradients: backward OVERWRITES, it never accumulates into
        earlier results.  ``dx`` is None for token-id inputs; ``dh0`` (and ``dc0``) are
        the gradients w.r.t. the initial state, returned even when it was None (zeros).
"""


def _threads(n_threads):
    return _fork.safe_threads(_recurrence.resolve_threads(_checks.check_n_threads(n_threads)))


def cell_forward(cell, x, state, params, *, training=True, n_threads=None, lengths=None):
    """Forward pass of any cell of :mod:`fastgates.cells` (what the public functions call).

    cell    a CellDef or its name
    state   state name ("h", "c") -> (B, H) array or None (zeros); missing names are None
    params  parameter stem ("weight_ih", ...) -> array, every one of ``param_specs(cell)``

    Returns ``(y, state_n, cache)`` with ``state_n`` a dict like ``state``.
    """
    cell = cells.get(cell)
    nt = _threads(n_threads)
    f = _checks.check_forward(cell, x, state, params, training=training, lengths=lengths)
    with blas_single():
        y, h_n, c_n, cache = _recurrence.forward(f, bool(training), nt)
    return y, {"h": h_n, "c": c_n} if "c" in cell.states else {"h": h_n}, cache


def cell_backward(cell, dy, dstate, cache, *, n_threads=None):
    """BPTT of :func:`cell_forward`: ``dstate`` maps state names to gradients (or None).

    Returns the cell's gradient tuple (:class:`Grads` or :class:`LSTMGrads`), whose
    ``param_grads`` / ``state_grads`` give the gradients by name.
    """
    cell = cells.get(cell)
    nt = _threads(n_threads)
    b = _checks.check_backward(cell.kernel, dy, dstate.get("h"), dstate.get("c"), cache)
    with blas_single():
        return _checks.make_grads(cache.celldef, *_recurrence.backward(cache, b, nt))


def _h_forward(kernel, options, x, h0, weights, training, n_threads, lengths):
    """A one-state family's public forward: the cell its keyword picks, then cell_forward."""
    _checks.check_n_threads(n_threads)      # first, as in the reference: the same error wins
    cell = _checks.select_cell(kernel, **options)
    y, s, cache = cell_forward(cell, x, {"h": h0}, _checks.kernel_params(*weights),
                               training=training, n_threads=n_threads, lengths=lengths)
    return y, s["h"], cache


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, nonlinearity="tanh", training=True, n_threads=None,
                lengths=None):
    return _h_forward("rnn", {"nonlinearity": nonlinearity}, x, h0, (w_ih, w_hh, b_ih, b_hh),
                      training, n_threads, lengths)


def rnn_backward(dy, dh_n, cache, *, n_threads=None):
    return cell_backward("rnn_tanh", dy, {"h": dh_n}, cache, n_threads=n_threads)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, linear_before_reset=True, training=True, n_threads=None,
                lengths=None):
    return _h_forward("gru", {"linear_before_reset": linear_before_reset}, x, h0,
                      (w_ih, w_hh, b_ih, b_hh), training, n_threads, lengths)


def gru_backward(dy, dh_n, cache, *, n_threads=None):
    return cell_backward("gru", dy, {"h": dh_n}, cache, n_threads=n_threads)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, training=True, n_threads=None, lengths=None):
    y, s, cache = cell_forward("lstm", x, {"h": h0, "c": c0},
                               _checks.kernel_params(w_ih, w_hh, b_ih, b_hh),
                               training=training, n_threads=n_threads, lengths=lengths)
    return y, s["h"], s["c"], cache


def lstm_backward(dy, dh_n, dc_n, cache, *, n_threads=None):
    return cell_backward("lstm", dy, {"h": dh_n, "c": dc_n}, cache, n_threads=n_threads)


rnn_forward.__doc__ = f"""Vanilla RNN over a whole sequence (Elman): G = 1.

    h_t = phi(x_t w_ih^T + b_ih + h_{{t-1}} w_hh^T + b_hh),  phi = tanh or relu

    Parameters
    ----------{_COMMON_PARAMS}
    nonlinearity : "tanh" or "relu"{_COMMON_KW}

    Returns
    -------
    y : ndarray (T, B, H)    h_1 .. h_T (zeros past each row's end with lengths)
    h_n : ndarray (B, H)     h_T (h0 when T = 0); with lengths, h at each row's last step
    cache : fastgates.Cache or None
"""

gru_forward.__doc__ = f"""Gated recurrent unit over a whole sequence: G = 3, gate order r, z, n.

    r = sigma(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigma(x W_iz^T + b_iz + h W_hz^T + b_hz)
    linear_before_reset=True  (PyTorch, cuDNN, oneDNN "lbr"):
        n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
    linear_before_reset=False (the textbook form, Cho et al. 2014):
        n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn)
    h_t = z * h_{{t-1}} + (1 - z) * n

    Parameters
    ----------{_COMMON_PARAMS}
    linear_before_reset : bool{_COMMON_KW}

    Returns
    -------
    y : ndarray (T, B, H)
    h_n : ndarray (B, H)
    cache : fastgates.Cache or None
"""

lstm_forward.__doc__ = f"""Long short-term memory over a whole sequence: G = 4, gate order i, f, g, o.

    i, f, o = sigma(x W_*^T + b_i* + h W_h*^T + b_h*),  g = tanh(...)
    c_t = f * c_{{t-1}} + i * g
    h_t = o * tanh(c_t)

    Parameters
    ----------{_COMMON_PARAMS}
    c0 : ndarray (B, H) or None
        Initial cell state (None: zeros).{_COMMON_KW}

    Returns
    -------
    y : ndarray (T, B, H)
    h_n, c_n : ndarray (B, H)
    cache : fastgates.Cache or None
"""

rnn_backward.__doc__ = _BACKWARD_DOC.format(cell="rnn", extra="", ret="Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)")
gru_backward.__doc__ = _BACKWARD_DOC.format(cell="gru", extra="", ret="Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)")
lstm_backward.__doc__ = _BACKWARD_DOC.format(
    cell="lstm", extra="\n    dc_n : ndarray (B, H) or None\n        Gradient w.r.t. the final cell state.",
    ret="LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)")
