"""One validation layer for the fast kernels and the NumPy reference.

Design: every public function validates *before* any compiled code runs.  The
checks normalise the arrays (C-contiguous, one floating dtype), resolve the sizes
(T, B, D, H, G) and raise ``ValueError``/``TypeError`` messages that name the
argument, what it got and what was expected.  The compiled loops then assume
valid input.  The forward pass returns a :class:`Cache` with the same fields from
both implementations, so a cache made by one backend can be consumed by the
other's backward (the tests use this).

Variable lengths (``lengths=``) are described once, by :class:`Packing`: the
packed layout of PyTorch's PackedSequence that both backends store in the cache.

What a cell is (its gates, states and parameters) comes from :mod:`fastgates.cells`;
:class:`Forward` carries the validated call's :class:`~fastgates.cells.CellDef`.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping
from typing import NamedTuple, Optional

import numpy as np

from . import cells
from .cells import CellDef

#: Gates per kernel family (``Forward.cell``), read from the table of fastgates.cells.
GATES = {kernel: defs[0].G for kernel, defs in cells.families().items()}

#: Largest size that fits the BLAS integer type (LP64: a C int).
BLAS_INT_MAX = 2**31 - 1

#: Most threads a call may ask for: far beyond any speed-up, short of exhausting the OS.
MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _GradsMixin:
    """Access by name for the gradient tuples (the positional fields never change).

    ``param_grads`` maps every parameter stem of the cell (``weight_ih``, ``bias_hh``, ...,
    and the extra parameters of cells that have them) to its gradient, ``state_grads``
    every state ("h", "c") to the gradient w.r.t. its initial value.  Gradients of
    parameters beyond the positional fields live only there (``extra=`` at construction),
    so new weights never change the tuple.
    """

    __slots__ = ()
    _STATE_FIELDS = {"h": "dh0", "c": "dc0"}
    _PARAM_FIELDS = {"weight_ih": "dw_ih", "weight_hh": "dw_hh", "bias_ih": "db_ih",
                     "bias_hh": "db_hh"}

    def __new__(cls, *fields, extra=None):
        if len(fields) != len(cls._fields):      # the namedtuple's own message
            return super().__new__(cls, *fields)
        self = tuple.__new__(cls, fields)        # (the namedtuple's __new__ is a Python frame)
        if extra:
            self.__dict__["_extra"] = dict(extra)
        return self

    @property
    def param_grads(self) -> dict:
        """stem -> gradient of every parameter, in the cell's parameter order."""
        out = {stem: getattr(self, f) for stem, f in self._PARAM_FIELDS.items()}
        out.update(self.__dict__.get("_extra", {}))
        return out

    @property
    def state_grads(self) -> dict:
        """state name -> gradient w.r.t. its initial value (dh0, dc0)."""
        return {s: getattr(self, f) for s, f in self._STATE_FIELDS.items() if f in self._fields}


class _GradsFields(NamedTuple):
    dx: Optional[np.ndarray]
    dh0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray


class _LSTMGradsFields(NamedTuple):
    dx: Optional[np.ndarray]
    dh0: np.ndarray
    dc0: np.ndarray
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray
    db_hh: np.ndarray


# The docstring of Grads and LSTMGrads: what tells them apart is formatted in.
_GRADS_DOC = """{head}

    Parameters
    ----------
    *fields : ndarray or None
        The {n} fields, in order.
    extra : dict of str to ndarray or None, default None
        Gradients of parameters beyond the four (``param_grads`` only).

    Attributes
    ----------
    dx : ndarray of shape (T, B, D), or None
        Gradient with respect to the input; None for token-id inputs.
    dh0 : ndarray of shape (B, R)
        Gradient with respect to the initial hidden state (R = H, or P for a projected
        LSTM), also when it was None.{dc0}
    dw_ih : ndarray of shape (G*H, D)
        Gradient of ``w_ih``.
    dw_hh : ndarray of shape (G*H, R)
        Gradient of ``w_hh``.
    db_ih, db_hh : ndarray of shape (G*H,)
        Gradients of the two biases.
    param_grads : dict of str to ndarray
        Parameter stem -> gradient of every parameter of the cell, in its order:
        ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` (the fields above) and
        the extra parameters of cells that have them (``weight_hr``, ``weight_peep``).
    state_grads : dict of str to ndarray
        State name -> gradient with respect to its initial value ({states}).

    Examples
    --------{example}
    """


class Grads(_GradsMixin, _GradsFields):
    __doc__ = _GRADS_DOC.format(
        head="""Gradients of an RNN or GRU layer: what ``rnn_backward`` / ``gru_backward`` return.

    A NamedTuple ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)`` of fresh arrays of the
    forward pass's dtype; ``param_grads`` and ``state_grads`` give the same arrays by
    parameter stem and state name.  Shapes with T steps, B rows, D inputs, H units
    and G gates (1 or 3).""",
        n="six", dc0="", states='"h"',
        example="""
    >>> import numpy as np, fastgates
    >>> T, B, D, H = 5, 3, 4, 8
    >>> w_ih, w_hh = np.full((3 * H, D), 0.1), np.full((3 * H, H), 0.1)
    >>> b = np.zeros(3 * H)
    >>> y, h_n, cache = fastgates.gru_forward(np.ones((T, B, D)), None, w_ih, w_hh, b, b)
    >>> g = fastgates.gru_backward(np.ones_like(y), None, cache)
    >>> dx, dh0, dw_ih, dw_hh, db_ih, db_hh = g
    >>> dw_hh.shape, list(g.param_grads), list(g.state_grads)
    ((24, 8), ['weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'], ['h'])""")


class LSTMGrads(_GradsMixin, _LSTMGradsFields):
    __doc__ = _GRADS_DOC.format(
        head="""Gradients of an LSTM layer: what ``lstm_backward`` returns.

    A NamedTuple ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)`` of fresh arrays of the
    forward pass's dtype; ``param_grads`` and ``state_grads`` give the same arrays by
    parameter stem and state name (and ``param_grads`` the gradients of ``w_hr`` and
    ``w_peep``).  Shapes with G = 4.""",
        n="seven", states='"h", "c"',
        dc0="""
    dc0 : ndarray of shape (B, H)
        Gradient with respect to the initial cell state.""",
        example="""
    >>> import numpy as np, fastgates
    >>> T, B, D, H, P = 5, 3, 4, 8, 2
    >>> w_ih, w_hh, b = np.full((4 * H, D), 0.1), np.full((4 * H, P), 0.1), np.zeros(4 * H)
    >>> y, h_n, c_n, cache = fastgates.lstm_forward(np.ones((T, B, D)), None, None,
    ...                                             w_ih, w_hh, b, b, w_hr=np.ones((P, H)))
    >>> g = fastgates.lstm_backward(np.ones_like(y), None, None, cache)
    >>> g.dh0.shape, g.dc0.shape, g.param_grads["weight_hr"].shape
    ((3, 2), (3, 8), (2, 8))""")


def make_grads(cell: CellDef, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, extra=None):
    """The gradient tuple of ``cell``: LSTMGrads when it carries a cell state, else Grads."""
    if "c" in cell.states:
        return LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, extra=extra)
    return Grads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, extra=extra)


class Packing:
    """Where the valid steps of a ragged batch live in the packed layout.

    Rows are sorted by length, descending and stable (``order``); step t holds the
    ``n_t = batch_sizes[t]`` rows still running, which are the first n_t of the
    sorted rows, and its block starts at packed row ``offsets[t] = n_0 + ... + n_{t-1}``.
    Packed row k is padded position ``flat[k] = t * B + b``; a padded (T, B, ...) array
    ``a`` packs as ``a.reshape(T * B, ...)[flat]``.  State arrays (hs, cs) hold the B
    initial rows (in sorted order) before the N packed rows: ``prev[k]`` is the state
    row that packed row k starts from, ``last[b]`` the final state of batch row b
    (its initial state when lengths[b] = 0).  Equal lengths T give the dense layout:
    identity order, n_t = B, flat = arange(T * B).

    The per-row index arrays (flat, prev: N entries each) are built on first use, so
    inference, which walks the steps in chunks, never holds them.
    """

    __slots__ = ("lengths", "order", "batch_sizes", "offsets", "T", "B", "_index")

    def __init__(self, lengths, T):
        B = lengths.shape[0]
        steps = int(lengths.max()) if B else 0
        self.lengths = lengths                                               # (B,) int64
        self.order = np.argsort(-lengths, kind="stable").astype(np.int64)    # (B,)
        counts = np.bincount(lengths, minlength=steps + 1)                   # rows per length
        self.batch_sizes = (B - np.cumsum(counts)[:steps]).astype(np.int32)  # (steps,) n_t > 0
        self.offsets = np.zeros(steps + 1, np.int64)                         # (steps + 1,)
        np.cumsum(self.batch_sizes, out=self.offsets[1:])
        self.T, self.B = T, B
        self._index = None

    @property
    def N(self) -> int:
        """The number of valid (step, row) pairs."""
        return int(self.offsets[-1])

    def flat_range(self, t0, t1):
        """``flat`` of the packed rows of steps [t0, t1), int64."""
        time = np.repeat(np.arange(t0, t1, dtype=np.int64), self.batch_sizes[t0:t1])
        rank = np.arange(time.size, dtype=np.int64) - (self.offsets[time] - self.offsets[t0])
        return time * self.B + self.order[rank]

    def _indices(self):
        if self._index is None:
            N, B = self.N, self.B
            time = np.repeat(np.arange(len(self.batch_sizes), dtype=np.int64), self.batch_sizes)
            rank = np.arange(N, dtype=np.int64) - self.offsets[time]   # position among sorted rows
            row = self.order[rank]
            prev = np.where(time > 0, B + self.offsets[np.maximum(time - 1, 0)] + rank, rank)
            self._index = (time * B + row, prev)
        return self._index

    flat = property(lambda self: self._indices()[0],
                    doc="(N,) time * B + row: the padded place of each packed row")
    prev = property(lambda self: self._indices()[1],
                    doc="(N,) state row (of B + N) each packed row starts from")

    @property
    def last(self):
        """(B,) state row (of B + N) after each batch row's last step."""
        B = self.B
        sl = self.lengths[self.order]
        last_sorted = np.where(sl > 0, B + self.offsets[np.maximum(sl - 1, 0)] + np.arange(B),
                               np.arange(B))
        out = np.empty(B, np.int64)
        out[self.order] = last_sorted
        return out

    def __repr__(self):
        return f"<Packing T={self.T} B={self.B} N={self.N} steps={len(self.batch_sizes)}>"


class Cache:
    """What a training forward pass keeps for its backward pass.

    Both backends fill the same fields, so a cache made by one is read by the other's
    backward.  The arrays are private to the cache: changing the caller's inputs or
    outputs after the forward pass cannot corrupt the gradients.  Shapes with T steps,
    B rows, D inputs, H units, G gates and R the width of h (H, or P for a projected
    LSTM).  With ``lengths``, every array is stored packed (see
    :class:`fastgates._checks.Packing`): the (T, B, X) arrays become (N, X) with only
    the N valid steps, ``hs`` and ``cs`` (B + N, X) with the initial states first (in
    sorted order), and ``x`` (N, D) or (N,) token ids.

    Parameters
    ----------
    cell, variant, dtype, x, tokens, D, w_ih, w_hh, hs, gates, extra, cs, tc, lengths, packing, params, saved
        Keyword-only: the attributes below by name; those not given are None.
    shape : tuple of int or None, default None
        (T, B, D, H) of the forward pass when the caller knows it (the compiled forward
        does); None: :attr:`shape` works it out from the fields on first use.

    Attributes
    ----------
    cell : str
        The kernel family, ``CellDef.kernel``: "rnn", "gru", "lstm".
    variant : str
        ``CellDef.variant``; (cell, variant) name the cell, see :attr:`celldef`.
    dtype : numpy.dtype
        float32 or float64: the dtype of every float array below.
    x : ndarray of shape (T, B, D), float; or (T, B), int64
        A private copy of the float input, or the token ids.
    tokens : bool
        True when ``x`` holds token ids.
    D : int
        The input size.
    w_ih : ndarray of shape (G*H, D) or None
        Copy of the input weights (None for token ids: backward needs no dx).
    w_hh : ndarray of shape (G*H, R)
        Copy of the recurrent weights (the compiled forward keeps it in the layout its
        backward reads; it is unpacked on first access).
    hs : ndarray of shape (T+1, B, R)
        The hidden states, ``hs[0]`` = h0.
    gates : ndarray of shape (T, B, G*H) or None
        The post-activation gates; None for the RNN (its activation is ``hs[t+1]``).
    extra : ndarray of shape (T, B, H) or None
        GRU linear before reset: h_{t-1} W_hn^T + b_hn; GRU reset before:
        r_t * h_{t-1}; else None.
    cs : ndarray of shape (T+1, B, H) or None
        LSTM cell states, ``cs[0]`` = c0; else None.
    tc : ndarray of shape (T, B, H) or None
        LSTM tanh(c_t); else None.
    lengths : ndarray of shape (B,), int64, or None
        Copy of the forward's ``lengths``.
    packing : Packing or None
        The packed layout of ``lengths``.
    params : dict of str to ndarray or None
        Stem -> copy of each parameter beyond w_ih/w_hh/b_ih/b_hh (``weight_hr``,
        ``weight_peep``, the extra parameters of other cells of :mod:`fastgates.cells`).
    saved : dict of str to ndarray or None
        Name -> (T, B, X) array a cell keeps beyond the fields above (a projected
        LSTM: "m", (T, B, H), m_t = o_t * tanh(c_t)).

    Raises
    ------
    TypeError
        An unknown field name.

    Examples
    --------
    >>> import numpy as np, fastgates
    >>> w_ih, w_hh, b = np.full((8, 3), 0.1), np.full((8, 8), 0.1), np.zeros(8)
    >>> _, _, cache = fastgates.rnn_forward(np.ones((5, 2, 3)), None, w_ih, w_hh, b, b,
    ...                                     lengths=[5, 2])
    >>> cache
    <fastgates.Cache rnn/tanh float64 T=5 B=2 D=3 H=8, float input, ragged (7 valid steps)>
    >>> cache.shape, cache.hs.shape, cache.celldef.name
    ((5, 2, 3, 8), (9, 8), 'rnn_tanh')
    """

    __slots__ = ("cell", "variant", "dtype", "x", "tokens", "D", "w_ih", "_w_hh", "_w_hh_bwd",
                 "hs", "gates", "extra", "cs", "tc", "lengths", "packing", "params", "saved",
                 "_shape")

    def __init__(self, *, cell=None, variant=None, dtype=None, x=None, tokens=None, D=None,
                 w_ih=None, w_hh=None, hs=None, gates=None, extra=None, cs=None, tc=None,
                 lengths=None, packing=None, params=None, saved=None, shape=None):
        # one assignment per field (a call per training forward pass: no setattr loop);
        # an unknown field is a TypeError naming it.  shape: (T, B, D, H) when the caller
        # knows it (the compiled forward), else worked out on first use
        self.cell, self.variant, self.dtype, self.x, self.tokens = cell, variant, dtype, x, tokens
        self.D, self.w_ih, self._w_hh, self.hs, self.gates = D, w_ih, w_hh, hs, gates
        self.extra, self.cs, self.tc, self.lengths = extra, cs, tc, lengths
        self.packing, self.params, self.saved = packing, params, saved
        self._w_hh_bwd, self._shape = None, shape

    # The compiled forward keeps w_hh only in the layout its backward reads (panels of
    # the columns, packed by the forward's threads while they pack for the forward
    # anyway): the backward then packs nothing and the pass keeps one copy of w_hh
    # instead of two.  ``w_hh`` unpacks it on first use (the reference backward, users).
    @property
    def w_hh(self):
        if self._w_hh is None and self._w_hh_bwd is not None:
            P, _, NP, rows, cols = self._w_hh_bwd
            nq = -(-cols // NP)
            self._w_hh = np.ascontiguousarray(
                P.reshape(nq, rows, NP).transpose(1, 0, 2).reshape(rows, nq * NP)[:, :cols])
        return self._w_hh

    @w_hh.setter
    def w_hh(self, value):
        self._w_hh, self._w_hh_bwd = value, None

    def _keep_packed_w_hh(self, P, level, NP, rows, cols):
        """Hold w_hh (rows, cols) as P[q, r, l] = w_hh[r, q*NP + l] (zero past cols),
        packed at ISA level ``level``: what the compiled backward of that level reads."""
        self._w_hh, self._w_hh_bwd = None, (P, level, NP, rows, cols)

    def _packed_w_hh(self, level):
        """The packed w_hh if it was packed at ``level``, else None."""
        kept = self._w_hh_bwd
        return kept[0] if kept is not None and kept[1] == level else None

    @property
    def celldef(self) -> CellDef:
        """The :class:`~fastgates.cells.CellDef` of the forward pass."""
        return cells.by_kernel(self.cell, self.variant)

    @property
    def shape(self):
        """(T, B, D, H) of the forward pass (H the hidden size, also when h is projected)."""
        if self._shape is None:
            rows = self._w_hh.shape[0] if self._w_hh is not None else self._w_hh_bwd[3]
            H = rows // self.celldef.G
            if self.packing is not None:
                self._shape = self.packing.T, self.packing.B, self.D, H
            else:
                self._shape = self.hs.shape[0] - 1, self.hs.shape[1], self.D, H
        return self._shape

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the cache holds (w_hh as it is kept: packed, or not)."""
        total = 0
        for name in self.__slots__:
            v = getattr(self, name)
            for a in (v.values() if isinstance(v, dict) else v if isinstance(v, tuple) else (v,)):
                total += a.nbytes if isinstance(a, np.ndarray) else 0
        return total

    @property
    def proj_size(self) -> int:
        """P of a projected LSTM (h is P wide), else 0."""
        return proj_size(self.params)

    def __repr__(self):
        T, B, D, H = self.shape
        kind = self.cell + (f"/{self.variant}" if self.variant else "")
        src = "token ids" if self.tokens else "float input"
        ragged = f", ragged ({self.packing.N} valid steps)" if self.packing is not None else ""
        return f"<fastgates.Cache {kind} {self.dtype} T={T} B={B} D={D} H={H}, {src}{ragged}>"


class Forward(NamedTuple):
    """Validated forward arguments (all arrays C-contiguous, one dtype).  The compiled
    forward reads the fields by position: new ones go at the end."""

    cell: str
    variant: str
    dtype: np.dtype
    x: np.ndarray          # (T, B, D) float or (T, B) int64 token ids
    tokens: bool
    h0: Optional[np.ndarray]
    c0: Optional[np.ndarray]
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    T: int
    B: int
    D: int
    H: int
    G: int
    lengths: Optional[np.ndarray] = None   # (B,) int64 copy
    packing: Optional[Packing] = None
    celldef: Optional[CellDef] = None      # the cell (its ``code`` for the compiled core)
    params: Optional[dict] = None          # stem -> the parameters beyond the four above


class Backward(NamedTuple):
    """Validated backward arguments (read by position, as Forward)."""

    dy: Optional[np.ndarray]
    dh_n: Optional[np.ndarray]
    dc_n: Optional[np.ndarray]
    T: int
    B: int
    D: int
    H: int
    G: int


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"an array of shape {a.shape} and dtype {a.dtype}"
    return f"{type(a).__name__} {a!r}" if np.isscalar(a) or a is None else type(a).__name__


def _as_array(name, a):
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    if isinstance(a, np.ndarray):
        return a
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists, objects that refuse conversion
        raise TypeError(f"{name} must be an array, got {type(a).__name__}: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__} of objects")
    return arr


def _float_dtype(name, arr) -> np.dtype:
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be float32 or float64, got dtype {arr.dtype}"
            + (" (cast it with .astype(np.float32) or np.float64)"
               if arr.dtype.kind in "biuf" else ""))
    return arr.dtype


def _same_dtype(name, arr, dtype) -> None:
    """TypeError unless ``arr`` has ``dtype``, the call's dtype (``w_hh``'s)."""
    if arr.dtype != dtype:
        _float_dtype(name, arr)
        raise TypeError(f"all arrays must share one dtype: w_hh is {dtype}, {name} is {arr.dtype}")


def _check_shape(name, arr, expected, what):
    if arr.ndim != len(expected):
        raise ValueError(f"{name} must be {len(expected)}-D {what}, got {arr.ndim}-D shape {arr.shape}")
    if tuple(arr.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({what}), got {arr.shape}")


def _contiguous(arr, dtype):
    return np.ascontiguousarray(arr, dtype=dtype)


def check_n_threads(n_threads):
    """Validate ``n_threads`` (None, or a non-zero int); resolution happens in the compiled core."""
    if n_threads is None:
        return None
    if type(n_threads) is int and 0 < n_threads <= MAX_THREADS:    # the common call, fast
        return n_threads
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"n_threads must be None or an int, got {_describe(n_threads)}")
    n = operator.index(n_threads)
    if n == 0:
        raise ValueError("n_threads must be None (OpenMP default), a positive count, or a negative "
                         "count back from the maximum (-1 = all); got 0")
    if n > MAX_THREADS:
        # GNU libgomp segfaults when it cannot create the threads asked for (seen at 100000)
        raise ValueError(f"n_threads = {n} is more than {MAX_THREADS} threads (4 per core of "
                         f"this machine, at least 256); use None for all cores")
    return n


def _check_blas_size(**sizes):
    for name, value in sizes.items():
        if value > BLAS_INT_MAX:
            raise ValueError(f"{name} = {value} exceeds the BLAS integer limit {BLAS_INT_MAX}; "
                             "split the sequence or the batch")


def check_lengths(lengths, T, B):
    """Validate ``lengths``: None, or B integers in [0, T]; return an int64 copy (or None)."""
    if lengths is None:
        return None
    arr = _as_array("lengths", lengths)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be an integer array of shape (B,) = ({B},) with values in "
                        f"[0, T] = [0, {T}], got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},) (one length per batch row), "
                         f"got shape {arr.shape}")
    if B:
        lo, hi = int(arr.min()), int(arr.max())   # Python ints: no wrap-around of uint64
        if lo < 0 or hi > T:
            bad = lo if lo < 0 else hi
            where = int(np.flatnonzero(arr == bad)[0])
            raise ValueError(f"lengths must lie in [0, T] = [0, {T}]; got lengths[{where}] = {bad}")
    return np.array(arr, dtype=np.int64, copy=True)


def _physical_memory():
    """Bytes of RAM of this machine (None when the platform does not say); asked once."""
    global _RAM
    if _RAM is False:
        try:
            _RAM = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            _RAM = None
    return _RAM


_RAM = False      # not asked yet


_SMALL_CALL = 1 << 26     # bytes: a call this small fits every machine fastgates runs on


def _check_sizes(T, B, D, H, G, itemsize, training, tokens):
    """Sizes the compiled loops can index and memory the call can get, before anything is
    copied or scanned (a zero-strided view can claim any shape at no cost).

    The C code indexes with int (BLAS dimensions, T*B rows, B*H state offsets), so each
    must fit a C int.  The arrays a forward call allocates (outputs, cache, contiguous
    copies of the inputs) are counted too: more than the machine's RAM can never succeed,
    and a lazily committed allocation would be killed by the kernel's OOM killer mid-call
    instead of failing, so it is refused up front with the figure.
    """
    if max(T, B, T * B, G * H, D, B * H) > BLAS_INT_MAX:
        _check_blas_size(**{"T": T, "B": B, "T*B": T * B, "G*H": G * H, "D": D, "B*H": B * H})
    cached = (G + 2) * H if training else 0       # gates, h and the cell/extra states per row
    x_row = 1 if tokens else D                    # a token id, or a row of features
    elements = T * B * (H + x_row + cached) + G * H * (D + H + 2) + 4 * B * H
    need = elements * itemsize
    if need < _SMALL_CALL:                        # below any machine's RAM: no need to ask
        return
    ram = _physical_memory()
    if ram is not None and need > ram:
        raise ValueError(f"this call (T={T}, B={B}, D={D}, H={H}, training={training}) needs at "
                         f"least {need / 2**30:.1f} GiB for its outputs"
                         f"{' and cache' if training else ''}, more than this machine's "
                         f"{ram / 2**30:.1f} GiB of RAM; split the sequence or the batch")


def kernel_params(w_ih, w_hh, b_ih, b_hh, w_hr=None, w_peep=None) -> dict:
    """The functional kernels' weight arguments by parameter stem: the four of every cell,
    plus the LSTM's optional ``w_hr`` / ``w_peep`` where not None."""
    out = {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    if w_hr is not None:
        out["weight_hr"] = w_hr
    if w_peep is not None:
        out["weight_peep"] = w_peep
    return out


def proj_size(params) -> int:
    """P of a projected LSTM from its validated parameters by stem (``weight_hr`` (P, H)),
    0 without a projection."""
    w_hr = (params or {}).get("weight_hr")
    return 0 if w_hr is None else int(w_hr.shape[0])


def _variant_options(cell, params):
    """The options of ``cells.param_specs`` that the given ``params`` select: proj_size and
    peephole (a cell's ``when=`` parameters are on when they are given, not None)."""
    whens = {p.when: p.stem for p in cell.params if p.when}
    opts = {}
    if "proj" in whens and params.get(whens["proj"]) is not None:
        opts["proj_size"] = -1          # resolved from w_hr's shape by check_forward
    if "peephole" in whens and params.get(whens["peephole"]) is not None:
        opts["peephole"] = True
    return opts


def check_mapping(name, m, what):
    """``m`` as a mapping: None -> {} (every entry None), a Mapping as it is; anything else
    is a TypeError naming the argument (``what``: what it maps)."""
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise TypeError(f"{name} must be a dict of {what} (or None), got {_describe(m)}")
    return m


def check_forward(cell, x, state, params, *, training=True, lengths=None):
    """Validate a forward call of ``cell`` (a :class:`~fastgates.cells.CellDef`).

    ``state`` maps state names ("h", "c") to (B, H) arrays or None; ``params`` maps the
    stems of ``cells.param_specs(cell)`` to arrays (messages name them by their kernel
    argument names, ``w_ih``).  A cell's optional parameters (``when=`` in the table: the
    LSTM's ``weight_hr``, ``weight_peep``) are on when given and not None; with
    ``weight_hr`` (P, H), h0 is (B, P) and ``w_hh`` (G*H, P).  Returns a :class:`Forward`
    with normalised arrays (the optional ones in ``params``).
    """
    state = check_mapping("state", state, "state name -> (B, H) array or None")
    params = check_mapping("params", params, "parameter stem -> array")
    G = cell.G
    kernel = cell.kernel
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {_describe(training)}")

    w_ih = _as_array("w_ih", params["weight_ih"])
    w_hh = _as_array("w_hh", params["weight_hh"])
    dtype = _float_dtype("w_hh", w_hh)
    options = _variant_options(cell, params)
    P = 0
    if "proj_size" in options:
        # a projected LSTM: w_hr (P, H) with 0 < P < H, h and w_hh's columns P wide
        w_hr = _as_array("w_hr", params["weight_hr"])
        _same_dtype("w_hr", w_hr, dtype)
        if w_hr.ndim != 2:
            raise ValueError(f"w_hr must be 2-D (P, H) (the projection, proj_size P < hidden size "
                             f"H), got {w_hr.ndim}-D shape {w_hr.shape}")
        P, H = w_hr.shape
        if not 0 < P < H:
            raise ValueError(f"w_hr must have shape (P, H) with 0 < P < H (proj_size below the "
                             f"hidden size), got {w_hr.shape}")
        options["proj_size"] = P
        if w_hh.shape != (G * H, P):
            raise ValueError(f"w_hh must have shape ({G}*H, P) = ({G * H}, {P}) for a {kernel} "
                             f"with H={H} projected to P={P} (w_hr is {w_hr.shape}), got "
                             f"{w_hh.shape}")
    else:
        if w_hh.ndim != 2:
            raise ValueError(f"w_hh must be 2-D ({G}*H, H), got shape {w_hh.shape}")
        GH, H = w_hh.shape
        if GH != G * H:
            hint = ""
            if any(p.when == "proj" for p in cell.params) and GH % G == 0 and 0 < H < GH // G:
                hint = (f"; a w_hh of shape ({G}*H, P) belongs to a projected {kernel}: pass "
                        f"w_hr (P, H) = ({H}, {GH // G})")
            raise ValueError(f"w_hh must have shape ({G}*H, H) = ({G * H}, {H}) for a {kernel} "
                             f"with H={H} ({G} gate{'s' if G > 1 else ''}), got {w_hh.shape}"
                             + hint)
        if H == 0:
            raise ValueError("w_hh has hidden size H=0; expected H >= 1")
    _same_dtype("w_ih", w_ih, dtype)
    if w_ih.ndim != 2 or w_ih.shape[0] != G * H:
        raise ValueError(f"w_ih must have shape ({G}*H, D) = ({G * H}, D), got shape {w_ih.shape}")
    D = w_ih.shape[1]
    if D == 0:
        raise ValueError("w_ih has input size D=0; expected D >= 1")
    _check_sizes(0, 0, D, H, G, dtype.itemsize, training, True)   # the weights, before any copy

    # every other parameter: the biases, then what the cell adds (shapes from the table)
    shapes = cells.param_shapes(cell, D, H, **options)
    rest = {}
    for spec in cells.param_specs(cell, **options):
        if spec.stem in ("weight_ih", "weight_hh"):
            continue
        name = spec.arg
        a = _as_array(name, params[spec.stem])
        _same_dtype(name, a, dtype)
        what = (f"{G}*H biases" if spec.shape == ("G*H",) and spec.bias else
                f"{spec.stem} ({', '.join(map(str, spec.shape))}{',' * (len(spec.shape) == 1)})")
        _check_shape(name, a, shapes[spec.stem], what)
        rest[spec.stem] = _contiguous(a, dtype)
    b_ih, b_hh = rest.pop("bias_ih"), rest.pop("bias_hh")

    x = _as_array("x", x)
    if x.dtype.kind in "iu":
        tokens = True
        if x.ndim != 2:
            raise ValueError(f"x of token ids must be 2-D (T, B), got {x.ndim}-D shape {x.shape}")
        T, B = x.shape
        _check_sizes(T, B, D, H, G, dtype.itemsize, training, True)  # before scanning/copying x
    elif x.dtype.kind == "b":
        raise TypeError("x must be a float array (T, B, D) or an integer array (T, B) of token ids, "
                        "got dtype bool")
    else:
        tokens = False
        _same_dtype("x", x, dtype)
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D (T, B, D) (or 2-D (T, B) token ids), "
                             f"got {x.ndim}-D shape {x.shape}")
        T, B, Dx = x.shape
        if Dx != D:
            raise ValueError(f"x has D={Dx} features (shape {x.shape}) but w_ih expects "
                             f"D={D} (shape {w_ih.shape})")
        _check_sizes(T, B, D, H, G, dtype.itemsize, training, False)  # before copying x
        x = _contiguous(x, dtype)

    states = {}
    for s_name in cell.states:
        name, s = s_name + "0", state.get(s_name)
        if s is None:
            states[s_name] = None
            continue
        s = _as_array(name, s)
        _same_dtype(name, s, dtype)
        if s_name == "h" and P:
            _check_shape(name, s, (B, P), f"(B, P) state: a projected h is P = {P} wide "
                                          f"(w_hr is {params['weight_hr'].shape})")
        else:
            _check_shape(name, s, (B, H), "(B, H) state")
        states[s_name] = _contiguous(s, dtype)
    lengths = check_lengths(lengths, T, B)
    pk = None if lengths is None else Packing(lengths, T)
    if tokens and x.size:
        lo, hi = int(x.min()), int(x.max())
        if (lo < 0 or hi >= D) and pk is not None:
            # only valid steps are read: padding past a row's end may hold any value (e.g. -1)
            ids = x.reshape(T * B)[pk.flat_range(0, len(pk.batch_sizes))]
            lo, hi = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
        if lo < 0 or hi >= D:
            bad = lo if lo < 0 else hi
            raise ValueError(f"x holds token ids in [0, D) = [0, {D}) (D = w_ih.shape[1]); "
                             f"found {bad}")
    if tokens:
        x = np.ascontiguousarray(x, dtype=np.int64)

    return Forward(kernel, cell.variant, dtype, x, tokens, states["h"], states.get("c"),
                   _contiguous(w_ih, dtype), _contiguous(w_hh, dtype), b_ih, b_hh,
                   T, B, D, H, G, lengths, pk, cell, rest or None)


#: (cell name, D, H) -> ((stem, shape) of every parameter but the two weights, ...): for
#: the compiled core's check of the common call (fastgates/_lean_checks.pxi)
_SHAPES: dict = {}


def _rest_shapes(cell, D, H):
    key = (cell.name, D, H)
    out = _SHAPES.get(key)
    if out is None:
        shapes = cells.param_shapes(cell, D, H)
        out = tuple((st, shapes[st]) for st in shapes if st not in ("weight_ih", "weight_hh"))
        if len(_SHAPES) > 256:
            _SHAPES.clear()
        _SHAPES[key] = out
    return out


def check_cache(cell, cache):
    """Check that ``cache`` is a training cache of ``cell``; return (T, B, D, H, G)."""
    if cache is None:
        raise ValueError(f"cache is None: the forward pass ran with training=False; "
                         f"call {cell}_forward(..., training=True) to get a cache for backward")
    if not isinstance(cache, Cache):
        raise TypeError(f"cache must be the cache returned by {cell}_forward, got {_describe(cache)}")
    if cache.cell != cell:
        raise ValueError(f"cache comes from {cache.cell}_forward, not {cell}_forward")
    T, B, D, H = cache.shape
    return T, B, D, H, cache.celldef.G


def check_backward(cell, dy, dh_n, dc_n, cache):
    """Validate a backward call against its cache."""
    T, B, D, H, G = check_cache(cell, cache)
    dtype = cache.dtype
    P = cache.proj_size
    R = P or H                      # width of h and y
    w = "P" if P else "H"
    out = []
    for name, a, shape, what in (("dy", dy, (T, B, R), "(T, B, {w}) like y"),
                                 ("dh_n", dh_n, (B, R), "(B, {w}) like h_n"),
                                 ("dc_n", dc_n, (B, H), "(B, H) like c_n")):
        if a is None:
            out.append(None)
            continue
        if type(a) is np.ndarray and a.dtype is dtype and a.shape == shape \
                and a.flags.c_contiguous:      # the common case: nothing to normalise
            out.append(a)
            continue
        what = what.format(w=w)
        a = _as_array(name, a)
        if a.dtype != dtype:
            _float_dtype(name, a)
            raise TypeError(f"{name} has dtype {a.dtype} but the cache holds {dtype} "
                            "(the forward pass's dtype)")
        _check_shape(name, a, shape, what)
        out.append(_contiguous(a, dtype))
    return Backward(*out, T, B, D, H, G)


def check_nonlinearity(nonlinearity):
    """One of the values that select a cell by ``nonlinearity=`` in the table (tanh, relu)."""
    values = [c.option[1] for c in cells.CELLS.values()
              if c.option and c.option[0] == "nonlinearity"]
    if nonlinearity not in values:
        names = [repr(v) for v in values]
        raise ValueError(f"nonlinearity must be {', '.join(names[:-1])} or {names[-1]}, "
                         f"got {nonlinearity!r}")
    return nonlinearity


def check_linear_before_reset(linear_before_reset):
    if not isinstance(linear_before_reset, (bool, np.bool_)):
        raise TypeError(f"linear_before_reset must be True or False, got {_describe(linear_before_reset)}")
    return bool(linear_before_reset)


#: The keyword that picks a cell within a family -> its validator (see ``CellDef.option``).
OPTION_CHECKS = {"nonlinearity": check_nonlinearity,
                 "linear_before_reset": check_linear_before_reset}


def select_cell(kernel, **options):
    """The :class:`~fastgates.cells.CellDef` of family ``kernel`` picked by the public
    keyword in ``options`` (validated first: the public error messages).  Answers for
    str / bool option values are remembered (keyed by value and type, so 1 never passes
    for True): the public functions call this on every call."""
    types = tuple(map(type, options.values()))
    key = (kernel, tuple(options.items()), types)
    remember = types in _MEMO_TYPES
    hit = _SELECTED.get(key) if remember else None
    if hit is not None:
        return hit
    unknown = sorted(set(options) - cells.option_keywords(kernel))
    if unknown:
        raise TypeError(f"unexpected keyword arguments {unknown}")
    checked = {k: OPTION_CHECKS[k](v) for k, v in options.items()}
    cell = cells.select(kernel, **checked)
    if remember and len(_SELECTED) < 64:
        _SELECTED[key] = cell
    return cell


def select_one(kernel, name, value):
    """``select_cell(kernel, **{name: value})``: the public functions' call (one keyword),
    remembered for str / bool values without building the keyword dict."""
    memo = type(value) is str or type(value) is bool      # (1 never passes for True)
    hit = _SELECTED_ONE.get((kernel, name, value)) if memo else None
    if hit is None:
        hit = select_cell(kernel, **{name: value})
        if memo and len(_SELECTED_ONE) < 64:
            _SELECTED_ONE[kernel, name, value] = hit
    return hit


_SELECTED_ONE = {}  # select_one's answers: (kernel, keyword, value) -> CellDef
_SELECTED = {}      # select_cell's answers: (kernel, options, their types) -> CellDef
_MEMO_TYPES = {(), (str,), (bool,), (str, str), (str, bool), (bool, str), (bool, bool)}
