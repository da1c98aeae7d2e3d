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

from . import _checks, _recurrence, cells
from ._checks import Grads, LSTMGrads  # noqa: F401  (the types of the results, re-exported)
from ._threads import blas_hold, blas_release
from .reference import _GRU_MATH  # the equations the reference states

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward",
           "lstm_forward", "lstm_backward", "cell_forward", "cell_backward"]

_COMMON_PARAMS = """
    x : ndarray of shape (T, B, D), float32 or float64; or (T, B) integer token ids
        Sequence-first input.  Integer ids in ``[0, D)`` stand for one-hot rows: the
        input projection is then a gather of columns of ``w_ih`` (no GEMM) and backward
        returns ``dx=None``.
    h0 : ndarray of shape (B, H) or None
        Initial hidden state; None means zeros."""

_WEIGHT_PARAMS = """
    w_ih : ndarray of shape (G*H, D)
        Input weights of the G gates, stacked in gate order ({gates}).
    w_hh : ndarray of shape (G*H, H)
        Recurrent weights, stacked the same way.
    b_ih, b_hh : ndarray of shape (G*H,)
        The two biases (PyTorch's layout).  Every float array of a call shares one
        dtype, float32 or float64, and the results have it too.  Non-contiguous
        inputs are copied once; inputs are never modified."""

_COMMON_KW = """
    training : bool, default True
        False: no cache is kept (no per-step activations are stored) and ``cache``
        is None; the memory beyond ``y`` is then O(max(1024, B) * G * H) (the steps
        run in chunks).
    n_threads : int or None, default None
        None: the OpenMP default (``OMP_NUM_THREADS`` or the cores); n > 0: n
        threads; n < 0: counts back from the maximum (-1 = all).  0 is an error.
        The results are bit-identical for every thread count.
    lengths : array_like of shape (B,), integers in [0, T], or None
        A ragged batch, rows in any order: row b runs ``lengths[b]`` steps.  ``y``
        is zero past a row's end, the final states hold each row's state after its
        last valid step (``h0`` for length 0), and ``x`` past a row's end is never
        read.  The work follows the valid steps, not ``T*B`` (they are packed as in
        PyTorch's PackedSequence).  None: every row runs all T steps; all lengths
        equal to T give exactly the results of None."""

_RAISES = """
    Raises
    ------
    TypeError
        An argument of the wrong type or dtype (mixed float dtypes, a float ``x``
        whose dtype differs from the weights', non-integer ``lengths``...).
    ValueError
        A shape that does not match the others, token ids or lengths out of range,
        ``n_threads=0``, an unknown variant, or a call that would need more memory
        than the machine has.  Every message names the argument, what it got and
        what was expected; nothing runs before the checks pass."""

_BACKWARD_DOC = """Backpropagation through time of :func:`{cell}_forward`.

    Walks ``t = T-1, ..., 0`` through the cache of a ``training=True`` forward pass,
    then forms ``dw_ih``, ``dw_hh`` and ``dx`` as single products over all ``T*B``
    rows (so the results do not depend on the thread count).

    Parameters
    ----------
    dy : ndarray of shape (T, B, H) or None
        Gradient of the loss with respect to ``y``; None means no gradient from the
        outputs.  With ``lengths`` (remembered by the cache), entries past a row's
        end are ignored.
    dh_n : ndarray of shape (B, H) or None
        Gradient with respect to the final hidden state; None means zero.{extra}
    cache : Cache
        The cache returned by ``{cell}_forward(..., training=True)`` (of either
        backend: the fast path and :mod:`fastgates.reference` read each other's).
    n_threads : int or None, default None
        As in the forward pass.

    Returns
    -------
    {ret_type}
        ``{ret}``:
        freshly allocated gradients of the cache's dtype.  Backward OVERWRITES, it
        never accumulates into earlier results.  ``dx`` is (T, B, D), or None for
        token-id inputs; {states} (B, H) the gradient with respect to the initial
        state, returned also when it was None (zeros); ``dw_ih`` (G*H, D), ``dw_hh``
        (G*H, H), ``db_ih`` and ``db_hh`` (G*H,).
{raises}

    Examples
    --------
{example}
"""

def cell_forward(cell, x, state, params, *, training=True, n_threads=None, lengths=None):
    """Forward pass of any cell of :mod:`fastgates.cells` (what the public functions call).

    cell    a CellDef or its name
    state   state name ("h", "c") -> (B, H) array or None (zeros); missing names are None
    params  parameter stem ("weight_ih", ...) -> array, every one of ``param_specs(cell)``

    Returns ``(y, state_n, cache)`` with ``state_n`` a dict like ``state``.  The forward
    pass calls no BLAS (the kernels project the input themselves), so it leaves BLAS's
    thread count alone.
    """
    cell = cells.get(cell)
    n_threads = _checks.check_n_threads(n_threads)  # first: the same error wins everywhere
    return _cell_forward(cell, x, state, params, training, n_threads, lengths)


def _cell_forward(cell, x, state, params, training, n_threads, lengths):
    """cell_forward with ``cell`` a CellDef and ``n_threads`` checked."""
    y, h_n, c_n, cache = _forward(cell, x, state, params, training, n_threads, lengths)
    return y, {"h": h_n, "c": c_n} if "c" in cell.states else {"h": h_n}, cache


def _forward(cell, x, state, params, training, n_threads, lengths):
    """(y, h_n, c_n, cache) of _cell_forward's call (c_n None without a cell state)."""
    out = _recurrence.run_forward(cell, x, state, params, training, n_threads, lengths)  # common call
    if out is None:
        f = _checks.check_forward(cell, x, state, params, training=training, lengths=lengths)
        out = _recurrence.forward(f, bool(training), _recurrence.forward_threads(n_threads, f))
    return out


def cell_backward(cell, dy, dstate, cache, *, n_threads=None):
    """BPTT of :func:`cell_forward`: ``dstate`` maps state names to gradients (or None).

    Returns the cell's gradient tuple (:class:`Grads` or :class:`LSTMGrads`), whose
    ``param_grads`` / ``state_grads`` give the gradients by name.  Its dW_ih and dx
    products are single-threaded BLAS calls inside our threads: scipy's BLAS is held at
    one thread for the call (fastgates._threads.blas_hold) and given back its count after.
    """
    cell = cells.get(cell)
    n_threads = _checks.check_n_threads(n_threads)
    dstate = _checks.check_mapping("dstate", dstate, "state name -> gradient or None")
    return _backward(cell.kernel, dy, dstate.get("h"), dstate.get("c"), cache, n_threads)


def _backward(kernel, dy, dh_n, dc_n, cache, n_threads):
    """cell_backward of family ``kernel`` with the final states' gradients one by one and
    ``n_threads`` checked."""
    grads = _recurrence.run_backward(kernel, dy, dh_n, dc_n, cache, n_threads)   # the common call
    if grads is not None:
        return grads
    b = _checks.check_backward(kernel, dy, dh_n, dc_n, cache)
    nt = _recurrence.backward_threads(n_threads, b, cache)
    blas_hold()
    try:
        *g, dparams = _recurrence.backward(cache, b, nt)
    finally:
        blas_release()
    return _checks.make_grads(cache.celldef, *g, extra=dparams)


def _h_forward(kernel, option, value, x, h0, weights, training, n_threads, lengths):
    """A one-state family's public forward: the cell its keyword ``option`` = ``value``
    picks, then cell_forward."""
    n_threads = _checks.check_n_threads(n_threads)  # first, as in the reference: the same error wins
    cell = _checks.select_one(kernel, option, value)
    y, h_n, _, cache = _forward(cell, x, {"h": h0}, _checks.kernel_params(*weights), training,
                                n_threads, lengths)
    return y, h_n, cache


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, nonlinearity="tanh", training=True, n_threads=None,
                lengths=None):
    return _h_forward("rnn", "nonlinearity", nonlinearity, x, h0, (w_ih, w_hh, b_ih, b_hh),
                      training, n_threads, lengths)


def rnn_backward(dy, dh_n, cache, *, n_threads=None):
    return _backward("rnn", dy, dh_n, None, cache, _checks.check_n_threads(n_threads))


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, linear_before_reset=True, training=True, n_threads=None,
                lengths=None):
    return _h_forward("gru", "linear_before_reset", linear_before_reset, x, h0,
                      (w_ih, w_hh, b_ih, b_hh), training, n_threads, lengths)


def gru_backward(dy, dh_n, cache, *, n_threads=None):
    return _backward("gru", dy, dh_n, None, cache, _checks.check_n_threads(n_threads))


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, training=True, n_threads=None, lengths=None,
                 w_hr=None, w_peep=None):
    n_threads = _checks.check_n_threads(n_threads)
    return _forward(_LSTM, x, {"h": h0, "c": c0},
                    _checks.kernel_params(w_ih, w_hh, b_ih, b_hh, w_hr=w_hr, w_peep=w_peep),
                    training, n_threads, lengths)


def lstm_backward(dy, dh_n, dc_n, cache, *, n_threads=None):
    return _backward("lstm", dy, dh_n, dc_n, cache, _checks.check_n_threads(n_threads))


_LSTM = cells.get("lstm")


_EXAMPLE_SETUP = """    >>> import numpy as np
    >>> import fastgates
    >>> T, B, D, H, G = 5, 3, 4, 8, {G}
    >>> rng = np.random.default_rng(0)
    >>> w_ih, w_hh = rng.uniform(-0.3, 0.3, (G * H, D)), rng.uniform(-0.3, 0.3, (G * H, H))
    >>> b_ih, b_hh = rng.uniform(-0.3, 0.3, G * H), rng.uniform(-0.3, 0.3, G * H)
    >>> x = rng.standard_normal((T, B, D))                      # float64 in, float64 out"""

# The end of a forward pass's Returns, then Raises, See Also and the head of Examples.
_FORWARD_TAIL = """    cache : Cache or None
        What :func:`{name}_backward` needs; None when ``training=False``.
""" + _RAISES + """

    See Also
    --------
    {name}_backward : the backward pass.
    fastgates.reference.{name}_forward : the NumPy twin.
    fastgates.{layer} : stacked, bidirectional layers over this kernel.

    Examples
    --------
""" + _EXAMPLE_SETUP

rnn_forward.__doc__ = rf"""Elman RNN over a whole sequence (G = 1).

    .. math::

        h_t = \phi\left(x_t W_{{ih}}^\top + b_{{ih}} + h_{{t-1}} W_{{hh}}^\top + b_{{hh}}\right),
        \qquad \phi = \tanh \text{{ or }} \max(\cdot, 0)

    Parameters
    ----------{_COMMON_PARAMS}{_WEIGHT_PARAMS.format(gates="one block: h")}
    nonlinearity : {{"tanh", "relu"}}, default "tanh"
        The activation :math:`\phi`.{_COMMON_KW}

    Returns
    -------
    y : ndarray of shape (T, B, H)
        :math:`h_1, \dots, h_T` (zero past each row's end with ``lengths``).
    h_n : ndarray of shape (B, H)
        The last hidden state (``h0``, or zeros, when T = 0); with ``lengths``, each
        row's state after its last step.
{_FORWARD_TAIL.format(name="rnn", layer="RNN", G=1)}
    >>> y, h_n, cache = fastgates.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    >>> y.shape, h_n.shape, y.dtype
    ((5, 3, 8), (3, 8), dtype('float64'))
    >>> bool(np.array_equal(h_n, y[-1]))
    True
    >>> y2, _, _ = fastgates.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh, lengths=[5, 2, 0])
    >>> bool(np.all(y2[2:, 1] == 0))
    True
"""

gru_forward.__doc__ = rf"""Gated recurrent unit over a whole sequence (G = 3, gate order r, z, n).
{_GRU_MATH}

    Parameters
    ----------{_COMMON_PARAMS}{_WEIGHT_PARAMS.format(gates="r, z, n")}
    linear_before_reset : bool, default True
        True: PyTorch's, cuDNN's and oneDNN's form (the reset gate scales
        :math:`h_{{t-1}} W_{{hn}}^\top + b_{{hn}}`); False: the textbook form of Cho et
        al. (2014) (the reset gate scales :math:`h_{{t-1}}` before the product).{_COMMON_KW}

    Returns
    -------
    y : ndarray of shape (T, B, H)
        :math:`h_1, \dots, h_T` (zero past each row's end with ``lengths``).
    h_n : ndarray of shape (B, H)
        The last hidden state; with ``lengths``, each row's state after its last step.
{_FORWARD_TAIL.format(name="gru", layer="GRU", G=3)}
    >>> y, h_n, cache = fastgates.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    >>> y_rb, _, _ = fastgates.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh,
    ...                                    linear_before_reset=False, training=False)
    >>> y.shape, bool(np.allclose(y, y_rb))
    ((5, 3, 8), False)
"""

lstm_forward.__doc__ = rf"""Long short-term memory over a whole sequence (G = 4, gate order i, f, g, o).

    .. math::

        i_t, f_t, o_t &= \sigma(x_t W_{{i\cdot}}^\top + b_{{i\cdot}} + h_{{t-1}} W_{{h\cdot}}^\top
        + b_{{h\cdot}}) \text{{ for the gates }} i, f, o \\
        g_t &= \tanh(x_t W_{{ig}}^\top + b_{{ig}} + h_{{t-1}} W_{{hg}}^\top + b_{{hg}}) \\
        c_t &= f_t \odot c_{{t-1}} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t)

    With peepholes ``w_peep`` (rows :math:`p_i, p_f, p_o`) the pre-activations of
    :math:`i_t` and :math:`f_t` add :math:`p_i \odot c_{{t-1}}`, :math:`p_f \odot c_{{t-1}}`
    and that of :math:`o_t` adds :math:`p_o \odot c_t` (ONNX's semantics); with a
    projection ``w_hr`` (PyTorch's ``proj_size``), :math:`h_t = (o_t \odot \tanh(c_t))
    W_{{hr}}^\top` is P wide (see :doc:`/cells`).

    Parameters
    ----------{_COMMON_PARAMS}
    c0 : ndarray of shape (B, H) or None
        Initial cell state; None means zeros.{_WEIGHT_PARAMS.format(gates="i, f, g, o")}{_COMMON_KW}
    w_hr : ndarray of shape (P, H) with 0 < P < H, or None
        The projection; then ``h0`` is (B, P), ``w_hh`` is (4*H, P) and ``y``, ``h_n``
        are P wide.  None (the default): no projection.
    w_peep : ndarray of shape (3, H) or None
        Peephole weights, rows i, f, o (ONNX's input ``P`` holds them in the order
        i, o, f: :func:`fastgates.cells.from_onnx_peepholes` converts).  None: none.

    Returns
    -------
    y : ndarray of shape (T, B, H), or (T, B, P) with ``w_hr``
        :math:`h_1, \dots, h_T` (zero past each row's end with ``lengths``).
    h_n, c_n : ndarray of shape (B, H) (h_n: (B, P) with ``w_hr``)
        The last hidden and cell states; with ``lengths``, each row's states after
        its last step.
{_FORWARD_TAIL.format(name="lstm", layer="LSTM", G=4)}
    >>> y, h_n, c_n, cache = fastgates.lstm_forward(x, None, None, w_ih, w_hh, b_ih, b_hh)
    >>> y.shape, c_n.shape
    ((5, 3, 8), (3, 8))
    >>> ids = rng.integers(0, D, (T, B))                         # token ids: one-hot inputs
    >>> y_ids, *_ = fastgates.lstm_forward(ids, None, None, w_ih, w_hh, b_ih, b_hh)
    >>> y_hot, *_ = fastgates.lstm_forward(np.eye(D)[ids], None, None, w_ih, w_hh, b_ih, b_hh)
    >>> bool(np.allclose(y_ids, y_hot))
    True
    >>> P = 3                                                    # a projected LSTM
    >>> w_hr, w_hh_p = rng.uniform(-0.3, 0.3, (P, H)), rng.uniform(-0.3, 0.3, (G * H, P))
    >>> y, h_n, c_n, cache = fastgates.lstm_forward(x, None, None, w_ih, w_hh_p, b_ih, b_hh,
    ...                                             w_hr=w_hr, w_peep=np.zeros((3, H)))
    >>> y.shape, h_n.shape, c_n.shape
    ((5, 3, 3), (3, 3), (3, 8))
    >>> g = fastgates.lstm_backward(np.ones_like(y), None, None, cache)
    >>> g.param_grads["weight_hr"].shape, g.param_grads["weight_peep"].shape
    ((3, 8), (3, 8))
"""

_BACKWARD_EXAMPLE = _EXAMPLE_SETUP + """
    >>> {call}
    >>> g = fastgates.{cell}_backward(np.ones_like(y), {dstate}cache)      # dL/dy = 1
    >>> g.dw_hh.shape, g.dx.shape
    (({GH}, 8), (5, 3, 4))"""


def _h_backward_doc(cell, G):
    """The docstring of a one-state family's backward pass (rnn, gru)."""
    return _BACKWARD_DOC.format(
        cell=cell, extra="", ret_type="Grads", ret="Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)",
        states="``dh0``", raises=_RAISES,
        example=_BACKWARD_EXAMPLE.format(
            G=G, GH=G * 8, cell=cell, dstate="None, ",
            call=f"y, h_n, cache = fastgates.{cell}_forward(x, None, w_ih, w_hh, b_ih, b_hh)"))


rnn_backward.__doc__ = _h_backward_doc("rnn", 1)
gru_backward.__doc__ = _h_backward_doc("gru", 3)
lstm_backward.__doc__ = _BACKWARD_DOC.format(
    cell="lstm",
    extra="\n    dc_n : ndarray of shape (B, H) or None\n        Gradient with respect to the "
          "final cell state; None means zero.\n        For a projected LSTM (``w_hr``) ``dy``,"
          "        ``dh_n``, ``dh0`` and the columns of ``dw_hh`` are P wide; the gradients of\n"
          "        ``w_hr`` and ``w_peep`` are ``param_grads['weight_hr']`` and\n"
          "        ``param_grads['weight_peep']``.",
    ret_type="LSTMGrads", ret="LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)",
    states="``dh0`` and ``dc0``", raises=_RAISES,
    example=_BACKWARD_EXAMPLE.format(
        G=4, GH=32, cell="lstm", dstate="None, None, ",
        call="y, h_n, c_n, cache = fastgates.lstm_forward(x, None, None, w_ih, w_hh, b_ih, b_hh)"))
