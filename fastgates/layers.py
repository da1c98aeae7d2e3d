"""Stacked, bidirectional and variable-length recurrent layers over the fastgates kernels.

Design: ``RNN``, ``GRU`` and ``LSTM`` hold their parameters as NumPy arrays under
PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) and run a stack of
single-layer kernel calls, one per layer and direction; every time loop stays in the
compiled kernels, and the Python loops here only run over layers and directions.

* The stack itself is two plain functions, :func:`stack_forward` and
  :func:`stack_backward`, over lists of per-(layer, direction) weights; the layer
  classes and the PyTorch adapter (``fastgates.torch``) share them.
* Bidirectional layers concatenate the forward and the reverse outputs along the
  feature axis, like PyTorch.  The reverse direction of a ragged batch runs over
  ``x[lengths[b]-1], ..., x[0]`` of each row: the valid prefix of every row is
  reversed by one index gather (its own inverse), never by flipping the padded
  tensor, so padding never enters a recurrence.
* Variable lengths go to the kernels as they are (no re-padding per layer, no loop
  over rows): outputs past a row's end are zero and states are each row's state at
  its last valid step, as with PyTorch's packed sequences.
* Dropout (between layers, training mode only) is inverted dropout with masks drawn
  from a seeded generator before the stack runs, so the stack is a deterministic
  function of its inputs and the masks.
* Backward overwrites ``.grads`` (it never accumulates), like the kernels.
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple, Optional

import numpy as np

from . import _checks, _fast

__all__ = ["RNN", "GRU", "LSTM", "stack_forward", "stack_backward", "StackSpec",
           "parameter_names"]


class StackSpec(NamedTuple):
    """The shape of a recurrent stack.

    cell         "rnn", "gru" or "lstm"
    variant      the kernel variant: "tanh"/"relu" (rnn), "lbr"/"rb" (gru), "" (lstm)
    input_size   D of the first layer
    hidden_size  H of every layer
    num_layers   L
    num_dirs     1, or 2 when bidirectional
    bias         False: the biases are zeros and have no parameters
    """

    cell: str
    variant: str
    input_size: int
    hidden_size: int
    num_layers: int
    num_dirs: int
    bias: bool

    def layer_input_size(self, layer):
        return self.input_size if layer == 0 else self.num_dirs * self.hidden_size


def parameter_names(spec):
    """PyTorch's parameter names per (layer, direction), in PyTorch's order.

    Returns a list with one tuple of names per ``k = layer * num_dirs + direction``:
    ``(weight_ih, weight_hh[, bias_ih, bias_hh])``.
    """
    out = []
    for layer in range(spec.num_layers):
        for d in range(spec.num_dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            names = ["weight_ih" + sfx, "weight_hh" + sfx]
            if spec.bias:
                names += ["bias_ih" + sfx, "bias_hh" + sfx]
            out.append(tuple(names))
    return out


def parameter_shapes(spec):
    """name -> shape for every parameter, in PyTorch's order."""
    G, H = _checks.GATES[spec.cell], spec.hidden_size
    shapes = {}
    for k, names in enumerate(parameter_names(spec)):
        D = spec.layer_input_size(k // spec.num_dirs)
        for name, shape in zip(names, [(G * H, D), (G * H, H), (G * H,), (G * H,)]):
            shapes[name] = shape
    return shapes


# The stack: one kernel call per (layer, direction).

class Tape(NamedTuple):
    """What :func:`stack_backward` needs from :func:`stack_forward`."""

    spec: StackSpec
    caches: list            # one kernel cache per (layer, direction)
    masks: Optional[list]   # dropout masks applied to the outputs of layers 0 .. L-2
    rev: Optional[tuple]    # the reverse-direction gather (see _reverse_index), None: a flip
    T: int
    B: int


def _reverse_index(lengths, T):
    """Index pair that reverses the valid prefix of every row of a (T, B, ...) array.

    ``a[idx, cols][t, b] = a[lengths[b] - 1 - t, b]`` for ``t < lengths[b]`` and
    ``a[t, b]`` past the row's end; the gather is a permutation within each column
    and its own inverse, so the same pair maps the reverse outputs back.
    """
    t = np.arange(T)[:, None]
    L = lengths[None, :]
    idx = np.where(t < L, L - 1 - t, t)
    return idx, np.arange(lengths.shape[0])[None, :]


def _flip(a, rev):
    """Time-reverse ``a`` (T, B, ...) per row: a view for full rows, a gather for ragged ones."""
    if a is None:
        return None
    return a[::-1] if rev is None else a[rev]


def _kernel_forward(spec, x, h0, c0, w, lengths, training, n_threads):
    kw = {"training": training, "n_threads": n_threads}
    if lengths is not None:
        kw["lengths"] = lengths
    if spec.cell == "lstm":
        return _fast.lstm_forward(x, h0, c0, *w, **kw)
    if spec.cell == "gru":
        y, h, cache = _fast.gru_forward(x, h0, *w, linear_before_reset=spec.variant == "lbr", **kw)
    else:
        y, h, cache = _fast.rnn_forward(x, h0, *w, nonlinearity=spec.variant, **kw)
    return y, h, None, cache


def _kernel_backward(spec, dy, dh_n, dc_n, cache, n_threads):
    if spec.cell == "lstm":
        return _fast.lstm_backward(dy, dh_n, dc_n, cache, n_threads=n_threads)
    g = getattr(_fast, spec.cell + "_backward")(dy, dh_n, cache, n_threads=n_threads)
    return _checks.LSTMGrads(g.dx, g.dh0, None, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh)


def stack_forward(spec, weights, x, h0=None, c0=None, *, lengths=None, masks=None,
                  training=True, n_threads=None):
    """Run a stacked (and maybe bidirectional) recurrent network, sequence first.

    Parameters
    ----------
    spec : StackSpec
    weights : list of (w_ih, w_hh, b_ih, b_hh), one per ``k = layer * num_dirs + direction``
    x : ndarray (T, B, D) float, or (T, B) integer token ids in [0, D)
    h0, c0 : ndarray (L * num_dirs, B, H) or None (zeros); c0 for lstm only
    lengths : int ndarray (B,) or None
        Valid steps per row (validated, at most T); None: every row has T steps.
    masks : list of L - 1 ndarrays (T, B, num_dirs * H) or None
        Dropout masks (already scaled by 1 / (1 - p)) for the outputs of layers 0 .. L-2.
    training : bool
        False: no tape is kept.
    n_threads : int or None
        Passed to every kernel.

    Returns
    -------
    y : ndarray (T, B, num_dirs * H)
    h_n, c_n : ndarray (L * num_dirs, B, H) (c_n is None unless lstm)
    tape : Tape or None
    """
    T, B = x.shape[:2]
    H, dirs = spec.hidden_size, spec.num_dirs
    rev = None if lengths is None else _reverse_index(lengths, T)
    h_n, c_n, caches = [], [], []
    inp = x
    for layer in range(spec.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            y, h, c, cache = _kernel_forward(
                spec, inp if d == 0 else _flip(inp, rev),
                None if h0 is None else h0[k], None if c0 is None else c0[k],
                weights[k], lengths, training, n_threads)
            outs.append(y if d == 0 else _flip(y, rev))
            h_n.append(h)
            c_n.append(c)
            caches.append(cache)
        inp = outs[0] if dirs == 1 else np.concatenate(outs, axis=2)
        if masks is not None and layer < spec.num_layers - 1:
            inp = inp * masks[layer]
    h_n = np.stack(h_n) if h_n else np.empty((0, B, H), x.dtype)
    c_n = np.stack(c_n) if spec.cell == "lstm" else None
    tape = Tape(spec, caches, masks, rev, T, B) if training else None
    return inp, h_n, c_n, tape


def stack_backward(tape, dy, dh_n=None, dc_n=None, *, n_threads=None):
    """Backpropagation through a stack recorded by :func:`stack_forward`.

    Parameters
    ----------
    tape : Tape
    dy : ndarray (T, B, num_dirs * H) or None
    dh_n, dc_n : ndarray (L * num_dirs, B, H) or None

    Returns
    -------
    dx : ndarray (T, B, D), or None for token-id inputs
    dh0, dc0 : ndarray (L * num_dirs, B, H) (dc0 is None unless lstm)
    grads : list of (dw_ih, dw_hh, db_ih, db_hh), one per (layer, direction)
    """
    spec = tape.spec
    H, dirs, L = spec.hidden_size, spec.num_dirs, spec.num_layers
    lstm = spec.cell == "lstm"
    dh0 = [None] * (L * dirs)
    dc0 = [None] * (L * dirs)
    grads = [None] * (L * dirs)
    g_out = dy
    for layer in range(L - 1, -1, -1):
        dx = None
        for d in range(dirs):
            k = layer * dirs + d
            dyd = g_out if g_out is None or dirs == 1 else g_out[..., d * H:(d + 1) * H]
            g = _kernel_backward(spec, dyd if d == 0 else _flip(dyd, tape.rev),
                                 None if dh_n is None else dh_n[k],
                                 None if dc_n is None or not lstm else dc_n[k],
                                 tape.caches[k], n_threads)
            grads[k] = (g.dw_ih, g.dw_hh, g.db_ih, g.db_hh)
            dh0[k], dc0[k] = g.dh0, g.dc0
            gx = g.dx if d == 0 else _flip(g.dx, tape.rev)
            if gx is not None:     # the direction-0 dx is a fresh kernel output: add in place
                dx = gx if dx is None else np.add(dx, gx, out=dx)
        if layer > 0 and tape.masks is not None:
            dx *= tape.masks[layer - 1]
        g_out = dx
    dtype = tape.caches[0].dtype if tape.caches else np.float64
    shape = (L * dirs, tape.B, H)
    dh0 = np.stack(dh0) if dh0 else np.empty(shape, dtype)
    dc0 = (np.stack(dc0) if dc0 else np.empty(shape, dtype)) if lstm else None
    return g_out, dh0, dc0, grads


# Validation of the layer-level arguments (the kernels validate their own).

def _check_int(name, v, lo):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {_checks._describe(v)}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _check_bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_checks._describe(v)}")
    return bool(v)


def check_dropout(dropout, num_layers):
    """Validate the dropout probability; warn (like PyTorch) when it cannot act."""
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.number)):
        raise TypeError(f"dropout must be a float in [0, 1], got {_checks._describe(dropout)}")
    if not 0 <= dropout <= 1:
        raise ValueError(f"dropout must be a probability in [0, 1], got {dropout}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(f"dropout={dropout} has no effect with num_layers=1: dropout acts "
                      "between stacked layers", UserWarning, stacklevel=3)
    return float(dropout)


def check_state(name, s, shape, dtype):
    """Validate one (L * num_dirs, B, H) state array; None passes through."""
    if s is None:
        return None
    if hasattr(s, "detach"):
        s = s.detach().cpu().numpy()
    s = _checks._as_array(name, s)
    if s.dtype != dtype:
        raise TypeError(f"{name} has dtype {s.dtype} but the layer's parameters are {dtype}")
    if s.shape != shape:
        raise ValueError(f"{name} must have shape (num_layers * num_directions, B, H) = {shape}, "
                         f"got {s.shape}")
    return s


_CELL_NAMES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


class _Layer:
    """The layer machinery shared by RNN, GRU and LSTM (see the module docstring)."""

    _cell = ""

    def __init__(self, input_size, hidden_size, num_layers=1, *, variant, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32,
                 n_threads=None, seed=None):
        self.input_size = _check_int("input_size", input_size, 1)
        self.hidden_size = _check_int("hidden_size", hidden_size, 1)
        self.num_layers = _check_int("num_layers", num_layers, 1)
        self.bias = _check_bool("bias", bias)
        self.batch_first = _check_bool("batch_first", batch_first)
        self.bidirectional = _check_bool("bidirectional", bidirectional)
        self.dropout = check_dropout(dropout, self.num_layers)
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt not in _checks.FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
        self.dtype = dt
        self.n_threads = _checks.check_n_threads(n_threads)
        self.training = True
        self._spec = StackSpec(self._cell, variant, self.input_size, self.hidden_size,
                               self.num_layers, 2 if self.bidirectional else 1, self.bias)
        # One generator for the initialisation and then the dropout masks: a seed
        # makes a whole run reproducible.
        self._rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        self._params = {name: self._rng.uniform(-k, k, shape).astype(self.dtype)
                        for name, shape in parameter_shapes(self._spec).items()}
        self.grads = {}
        self.state_grad = None
        self._tape = None
        self._zeros = None

    # Parameters.

    def parameters(self):
        """name -> parameter array (the live arrays: update them in place)."""
        return dict(self._params)

    def state_dict(self):
        """name -> a copy of each parameter, under PyTorch's names.

        Save it with ``np.savez(path, **layer.state_dict())``.
        """
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load parameters from a mapping (NumPy arrays or torch tensors) or an ``.npz`` file.

        A ``torch.nn.RNN/GRU/LSTM(...).state_dict()`` of the same configuration loads as
        is.  Values are cast to the layer's dtype and copied into the existing arrays.
        ``strict=True`` requires exactly the layer's names; ``strict=False`` loads the
        names both have.  Returns the (missing, unexpected) names.
        """
        if isinstance(state_dict, (str, os.PathLike)):
            with np.load(state_dict) as f:
                return self.load_state_dict({k: f[k] for k in f.files}, strict)
        if hasattr(state_dict, "files") and hasattr(state_dict, "__getitem__"):   # an NpzFile
            state_dict = {k: state_dict[k] for k in state_dict.files}
        if not hasattr(state_dict, "keys"):
            raise TypeError("state_dict must be a mapping name -> array, or the path of an "
                            f".npz file, got {_checks._describe(state_dict)}")
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict does not match {self!r}: missing {missing}, "
                             f"unexpected {unexpected}")
        new = {}
        for name in self._params:
            if name not in state_dict:
                continue
            v = state_dict[name]
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            v = _checks._as_array(name, v)
            if v.dtype.kind != "f":
                raise TypeError(f"state_dict[{name!r}] must be a float array, got dtype {v.dtype}")
            if v.shape != self._params[name].shape:
                raise ValueError(f"state_dict[{name!r}] has shape {v.shape}, expected "
                                 f"{self._params[name].shape}")
            new[name] = v
        for name, v in new.items():      # all checked before any is written
            self._params[name][...] = v
        return missing, unexpected

    # Modes.

    def train(self, mode=True):
        """Training mode (dropout on, a tape kept for backward); returns self."""
        self.training = _check_bool("mode", mode)
        return self

    def eval(self):
        """Inference mode: no dropout, no tape (less memory); returns self."""
        return self.train(False)

    # Forward and backward.

    def _weights(self):
        names = parameter_names(self._spec)
        if self.bias:
            return [tuple(self._params[n] for n in ns) for ns in names]
        G, H = _checks.GATES[self._cell], self.hidden_size
        if self._zeros is None or self._zeros.dtype != self.dtype:
            self._zeros = np.zeros(G * H, self.dtype)
        return [(self._params[ns[0]], self._params[ns[1]], self._zeros, self._zeros)
                for ns in names]

    def _check_x(self, x):
        x = _checks._as_array("x", x)
        bf = " (batch_first)" if self.batch_first else ""
        if x.dtype.kind in "iu":
            if x.ndim != 2:
                raise ValueError(f"x of token ids must be 2-D {'(B, T)' if self.batch_first else '(T, B)'}"
                                 f"{bf}, got shape {x.shape}")
        elif x.dtype.kind == "f":
            if x.dtype != self.dtype:
                raise TypeError(f"x has dtype {x.dtype} but the layer's parameters are {self.dtype} "
                                f"(cast x, or build the layer with dtype=np.{x.dtype})")
            if x.ndim != 3:
                raise ValueError(f"x must be 3-D {'(B, T, D)' if self.batch_first else '(T, B, D)'}"
                                 f"{bf}, got shape {x.shape}")
            if x.shape[2] != self.input_size:
                raise ValueError(f"x has {x.shape[2]} features (shape {x.shape}), expected "
                                 f"input_size={self.input_size}")
        else:
            raise TypeError(f"x must be a float array or integer token ids, got dtype {x.dtype}")
        return x.swapaxes(0, 1) if self.batch_first else x

    def _split_state(self, state, B, name="state"):
        shape = (self._spec.num_layers * self._spec.num_dirs, B, self.hidden_size)
        return check_state(name, state, shape, self.dtype), None

    def _join_state(self, h, c):
        return h

    def forward(self, x, state=None, lengths=None):
        """Run the stack over a batch of sequences.

        Parameters
        ----------
        x : ndarray (T, B, input_size), or (B, T, input_size) with ``batch_first``
            Float input of the layer's dtype, or integer token ids (T, B) / (B, T) in
            [0, input_size) that stand for one-hot rows (then ``backward`` returns None).
        state : ndarray (num_layers * num_directions, B, H), a pair ``(h0, c0)`` of them
            for LSTM, or None (zeros).  Ordered like PyTorch: index ``layer * dirs + d``.
        lengths : int array (B,) or None
            Valid steps per row, 0 <= lengths[b] <= T, any order.  ``y`` is zero past a
            row's end and the returned state is each row's state at its last valid step
            (the reverse direction's at step 0).

        Returns
        -------
        y : ndarray (T, B, num_directions * H) (batch_first: (B, T, ...), a view)
        state : ndarray (num_layers * num_directions, B, H), or ``(h_n, c_n)`` for LSTM
        """
        xs = self._check_x(x)
        T, B = xs.shape[:2]
        lengths = _checks.check_lengths(lengths, T, B)
        h0, c0 = self._split_state(state, B)
        masks = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            p = self.dropout
            scale = self.dtype.type(0 if p == 1 else 1 / (1 - p))
            shape = (T, B, self._spec.num_dirs * self.hidden_size)
            masks = [(self._rng.random(shape) >= p).astype(self.dtype) * scale
                     for _ in range(self.num_layers - 1)]
        self._tape = None
        y, h_n, c_n, tape = stack_forward(self._spec, self._weights(), xs, h0, c0,
                                          lengths=lengths, masks=masks,
                                          training=self.training, n_threads=self.n_threads)
        self._tape = tape
        return (y.swapaxes(0, 1) if self.batch_first else y), self._join_state(h_n, c_n)

    __call__ = forward

    def backward(self, dy, dstate=None):
        """Backpropagate through the last training-mode forward pass.

        Parameters
        ----------
        dy : ndarray shaped like ``y``, or None (no gradient from the outputs)
        dstate : gradient w.r.t. the returned state (same structure), or None

        Returns
        -------
        dx : ndarray shaped like ``x`` (None for token ids).  ``.grads`` is then
        name -> gradient of every parameter (overwritten, not accumulated) and
        ``.state_grad`` the gradient w.r.t. the initial state (same structure).
        """
        if self._tape is None:
            raise ValueError("backward needs a forward pass in training mode first "
                             "(layer.train(); y, state = layer.forward(x); layer.backward(dy))")
        tape = self._tape
        H, dirs = self.hidden_size, self._spec.num_dirs
        if dy is not None:
            dy = _checks._as_array("dy", dy)
            shape = ((tape.B, tape.T) if self.batch_first else (tape.T, tape.B)) + (dirs * H,)
            if dy.dtype != self.dtype:
                raise TypeError(f"dy has dtype {dy.dtype}, expected {self.dtype} like y")
            if dy.shape != shape:
                raise ValueError(f"dy must have the shape of y {shape}, got {dy.shape}")
            if self.batch_first:
                dy = dy.swapaxes(0, 1)
        dh_n, dc_n = self._split_state(dstate, tape.B, "dstate") if dstate is not None else (None, None)
        dx, dh0, dc0, grads = stack_backward(tape, dy, dh_n, dc_n, n_threads=self.n_threads)
        self.grads = {}
        for names, g in zip(parameter_names(self._spec), grads):
            self.grads.update(zip(names, g))
        self.state_grad = self._join_state(dh0, dc0)
        if dx is not None and self.batch_first:
            dx = dx.swapaxes(0, 1)
        return dx

    def __repr__(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += self._extra_repr()
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name}"
        return f"fastgates.layers.{_CELL_NAMES[self._cell]}({s})"

    def _extra_repr(self):
        return ""


_LAYER_DOC = """{title}

    A NumPy layer with ``torch.nn.{cls}``'s constructor vocabulary, parameter names
    and state layout, running on the fastgates kernels.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
        Stacked layers; layer l > 0 reads the (concatenated) outputs of layer l - 1.{extra}
    bias : bool
        False: no bias parameters (zeros).
    batch_first : bool
        x and y are (B, T, ...) instead of (T, B, ...); states stay (L * dirs, B, H).
    dropout : float
        Dropout probability on the outputs of every layer but the last, in training
        mode only (inverted dropout, masks from the layer's seeded generator).
    bidirectional : bool
        A reverse direction per layer; outputs concatenate [forward, reverse].
    dtype : float32 (default, like PyTorch) or float64
    n_threads : int or None
        Threads for every kernel call (see ``fastgates.lstm_forward``).
    seed : int or None
        Seeds the initialisation (PyTorch's uniform(-1/sqrt(H), 1/sqrt(H))) and then
        the dropout masks; None draws fresh entropy.

    Methods: ``forward(x, state=None, lengths=None) -> (y, state)``,
    ``backward(dy, dstate=None) -> dx`` (fills ``.grads`` and ``.state_grad``),
    ``parameters()``, ``state_dict()``, ``load_state_dict()``, ``train()``, ``eval()``.
"""


class RNN(_Layer):
    __doc__ = _LAYER_DOC.format(
        title="Elman RNN stack: h_t = phi(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).",
        cls="RNN", extra="\n    nonlinearity : 'tanh' or 'relu'")
    _cell = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", *,
                 bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                 dtype=np.float32, n_threads=None, seed=None):
        self.nonlinearity = _checks.check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, variant=self.nonlinearity,
                         bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, dtype=dtype, n_threads=n_threads, seed=seed)

    def _extra_repr(self):
        return "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"


class GRU(_Layer):
    __doc__ = _LAYER_DOC.format(
        title="GRU stack (gates r, z, n), see ``fastgates.gru_forward``.", cls="GRU",
        extra="\n    linear_before_reset : bool\n        True (default): PyTorch's form; "
              "False: the textbook form (no PyTorch counterpart).")
    _cell = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, linear_before_reset=True, dtype=np.float32,
                 n_threads=None, seed=None):
        self.linear_before_reset = _check_bool("linear_before_reset", linear_before_reset)
        super().__init__(input_size, hidden_size, num_layers,
                         variant=_checks.gru_variant(self.linear_before_reset), bias=bias,
                         batch_first=batch_first, dropout=dropout, bidirectional=bidirectional,
                         dtype=dtype, n_threads=n_threads, seed=seed)

    def _extra_repr(self):
        return "" if self.linear_before_reset else ", linear_before_reset=False"


class LSTM(_Layer):
    __doc__ = _LAYER_DOC.format(
        title="LSTM stack (gates i, f, g, o), see ``fastgates.lstm_forward``.", cls="LSTM",
        extra="\n\n    The state is a pair ``(h, c)`` of (num_layers * num_directions, B, H) arrays.")
    _cell = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, n_threads=None, seed=None):
        super().__init__(input_size, hidden_size, num_layers, variant="", bias=bias,
                         batch_first=batch_first, dropout=dropout, bidirectional=bidirectional,
                         dtype=dtype, n_threads=n_threads, seed=seed)

    def _split_state(self, state, B, name="state"):
        if state is None:
            return None, None
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} of an LSTM must be a pair (h, c) of arrays or None, got "
                            f"{_checks._describe(state)}")
        shape = (self._spec.num_layers * self._spec.num_dirs, B, self.hidden_size)
        return (check_state(f"{name}[0] (h)", state[0], shape, self.dtype),
                check_state(f"{name}[1] (c)", state[1], shape, self.dtype))

    def _join_state(self, h, c):
        return h, c
