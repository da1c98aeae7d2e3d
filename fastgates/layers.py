"""Stacked, bidirectional and variable-length recurrent layers over the fastgates kernels.

Design: ``RNN``, ``GRU`` and ``LSTM`` hold their parameters as NumPy arrays under
PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) and run a stack of
single-layer kernel calls, one per layer and direction; every time loop stays in the
compiled kernels, and the Python loops here only run over layers and directions.

* What a cell is comes from :mod:`fastgates.cells`: parameters (names, shapes,
  initialisation, which vanish with ``bias=False``), states, the keyword that picks a
  cell in its family.  ``RNN`` and ``LSTM`` are written out (PyTorch's positional
  ``nonlinearity``); every other class of the table (``GRU``, new cells) is made by
  :func:`table_class` with the common constructor.
* The stack itself is two plain functions, :func:`stack_forward` and
  :func:`stack_backward`, over per-(layer, direction) dicts of parameters by stem and
  a backend (the compiled kernels or ``fastgates.reference``); the layer classes, the
  PyTorch adapter (``fastgates.torch``) and the language model (``fastgates.lm``) all
  run on them, and share the scaffolding here (:class:`StackSpec` shapes and names,
  :func:`make_spec` checks, :func:`split_state` / :func:`join_state`).
* Gradients come back per (layer, direction) as dicts stem -> gradient (from the
  kernels' ``Grads.param_grads``), so a cell's extra parameters need no code here.
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

import importlib
import inspect
import os
import warnings
from typing import NamedTuple, Optional

import numpy as np

from . import _checks, cells

__all__ = ["RNN", "GRU", "LSTM", "stack_forward", "stack_backward", "StackSpec",
           "parameter_names", "make_spec", "CLASSES"]


class StackSpec(NamedTuple):
    """The shape of a recurrent stack: cell, sizes, layers, directions and options.

    A NamedTuple: its fields are its parameters.  :func:`make_spec` validates the
    arguments of a layer class and returns one; the layer classes, the runners, the
    PyTorch modules and the language model read their shapes and names from it.

    Parameters
    ----------
    cell : str
        The cell's name in :data:`fastgates.cells.CELLS` ("lstm", "gru_rb", ...).
    input_size : int
        D, the input width of the first layer.
    hidden_size : int
        H, the units of every layer.
    num_layers : int
        L, the stacked layers.
    num_dirs : {1, 2}, default 1
        2 when bidirectional.
    bias : bool, default True
        False: the parameters marked ``bias`` in the table are zeros, not parameters.
    proj_size : int, default 0
        P > 0: the recurrent state and the outputs have P units (the cells that declare
        ``when="proj"`` parameters: the LSTM); 0: H.
    peephole : bool, default False
        True: the ``when="peephole"`` parameters exist (the LSTM's peepholes).

    See Also
    --------
    make_spec : the validated way to build one.

    Examples
    --------
    >>> from fastgates.layers import StackSpec
    >>> spec = StackSpec("lstm", 10, 32, 2, num_dirs=2, proj_size=16)
    >>> spec.out_size, spec.layer_input_size(1)
    (16, 32)
    >>> spec.stems()
    ['weight_ih', 'weight_hh', 'bias_ih', 'bias_hh', 'weight_hr']
    >>> spec.shapes(1)["weight_ih"], spec.state_shape("c", 5)
    ((128, 32), (4, 5, 32))
    """

    cell: str
    """The cell's name in :data:`fastgates.cells.CELLS`."""
    input_size: int
    """D, the input width of the first layer."""
    hidden_size: int
    """H, the units of every layer."""
    num_layers: int
    """L, the stacked layers."""
    num_dirs: int = 1
    """1, or 2 when bidirectional."""
    bias: bool = True
    """False: the bias-like parameters of the table are zeros, not parameters."""
    proj_size: int = 0
    """P > 0: h and the outputs are P wide (a projected LSTM); 0: H."""
    peephole: bool = False
    """True: the peephole parameters exist (LSTM)."""

    @property
    def celldef(self) -> cells.CellDef:
        """The :class:`~fastgates.cells.CellDef` of :attr:`cell`."""
        return cells.get(self.cell)

    @property
    def out_size(self) -> int:
        """Width of h and of each direction's output: P, or H."""
        return self.proj_size or self.hidden_size

    def layer_input_size(self, layer):
        """The input width of a layer.

        Parameters
        ----------
        layer : int
            The layer, 0 to ``num_layers - 1``.

        Returns
        -------
        int
            D for layer 0, ``num_dirs * out_size`` above it.
        """
        return self.input_size if layer == 0 else self.num_dirs * self.out_size

    def _options(self, bias=None):
        return dict(bias=self.bias if bias is None else bias, proj_size=self.proj_size,
                    peephole=self.peephole)

    def stems(self, bias=None):
        """The parameter stems of one (layer, direction), in PyTorch's order.

        Parameters
        ----------
        bias : bool or None, default None
            None: the stack's own ``bias``; True: also the stems a bias-free stack
            leaves out (what the kernels take).

        Returns
        -------
        list of str
            ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, then the cell's
            other parameters (``weight_hr``, ``weight_peep``, ...).
        """
        return [p.stem for p in cells.param_specs(self.celldef, **self._options(bias))]

    def shapes(self, layer, bias=None):
        """The shape of every parameter of a layer (either direction).

        Parameters
        ----------
        layer : int
            The layer, 0 to ``num_layers - 1``.
        bias : bool or None, default None
            As in :meth:`stems`.

        Returns
        -------
        dict of str to tuple of int
            stem -> shape, in the order of :meth:`stems`.
        """
        return cells.param_shapes(self.celldef, self.layer_input_size(layer), self.hidden_size,
                                  **self._options(bias))

    def state_shape(self, state, B):
        """The shape of a stacked state.

        Parameters
        ----------
        state : str
            A state name of the cell: "h" or "c".
        B : int
            Batch rows.

        Returns
        -------
        tuple of int
            ``(num_layers * num_dirs, B, width)``, width :attr:`out_size` for "h", H
            for the others.
        """
        width = self.out_size if state == "h" else self.hidden_size
        return (self.num_layers * self.num_dirs, B, width)


def parameter_names(spec):
    """PyTorch's parameter names per (layer, direction), in PyTorch's order.

    Parameters
    ----------
    spec : StackSpec
        The stack.

    Returns
    -------
    list of tuple of str
        One tuple of names per ``k = layer * num_dirs + direction``, in the order of
        ``spec.stems()``.

    Examples
    --------
    >>> from fastgates.layers import StackSpec, parameter_names
    >>> parameter_names(StackSpec("gru", 4, 8, 2, num_dirs=2, bias=False))
    [('weight_ih_l0', 'weight_hh_l0'), ('weight_ih_l0_reverse', 'weight_hh_l0_reverse'),
     ('weight_ih_l1', 'weight_hh_l1'), ('weight_ih_l1_reverse', 'weight_hh_l1_reverse')]
    """
    stems = spec.stems()
    return [tuple(cells.param_names(stems, layer, d == 1))
            for layer in range(spec.num_layers) for d in range(spec.num_dirs)]


def parameter_shapes(spec):
    """name -> shape for every parameter, in PyTorch's order."""
    out = {}
    for k, names in enumerate(parameter_names(spec)):
        shapes = spec.shapes(k // spec.num_dirs)
        out.update(zip(names, shapes.values()))
    return out


def make_spec(cell, input_size, hidden_size, num_layers, *, bias, bidirectional,
              proj_size=0, peephole=False, strict=True):
    """Validate the constructor arguments every layer class shares; return the StackSpec.

    Parameters
    ----------
    cell : str or fastgates.cells.CellDef
        A cell of :data:`fastgates.cells.CELLS`, or its name.
    input_size, hidden_size, num_layers : int
        D, H and L, each at least 1.
    bias, bidirectional : bool
        As in the layer classes.
    proj_size : int, default 0
        An int in [0, hidden_size); above 0 only for the cells that declare
        ``when="proj"`` parameters in :mod:`fastgates.cells` (the LSTM).
    peephole : bool, default False
        True only for the cells that declare ``when="peephole"`` parameters (the LSTM).
    strict : bool, default True
        False accepts any truthy/falsy ``bias``, ``bidirectional`` and ``peephole``
        (as torch.nn does); True requires bools.

    Returns
    -------
    StackSpec
        The validated stack, sizes as Python ints.

    Raises
    ------
    TypeError
        A size or ``proj_size`` that is not an int (bools refused), or a flag that is
        not a bool with ``strict=True``.
    ValueError
        An unknown cell, a size below 1, ``proj_size`` outside [0, hidden_size), or
        ``proj_size`` / ``peephole`` for a cell without them.

    Examples
    --------
    >>> from fastgates.layers import make_spec
    >>> make_spec("gru", 4, 8, 2, bias=True, bidirectional=True)
    StackSpec(cell='gru', input_size=4, hidden_size=8, num_layers=2, num_dirs=2,
              bias=True, proj_size=0, peephole=False)
    >>> make_spec("gru", 4, 8, 1, bias=True, bidirectional=False, proj_size=2)
    Traceback (most recent call last):
        ...
    ValueError: proj_size=2: only the LSTM has a projection, not the GRU (cell 'gru')
    """
    c = cells.get(cell)
    sizes = [_check_int(n, v, 1) for n, v in (("input_size", input_size),
                                               ("hidden_size", hidden_size),
                                               ("num_layers", num_layers))]
    flags = [_check_bool(n, v) if strict else bool(v)
             for n, v in (("bias", bias), ("bidirectional", bidirectional), ("peephole", peephole))]
    whens = {p.when for p in c.params}
    if isinstance(proj_size, (bool, np.bool_)) or not isinstance(proj_size, (int, np.integer)):
        raise TypeError(f"proj_size must be an int, got {_checks._describe(proj_size)}")
    if proj_size != 0 and "proj" not in whens:
        raise ValueError(f"proj_size={proj_size}: only the LSTM has a projection, "
                         f"not the {c.layer} (cell {c.name!r})")
    if proj_size < 0:
        raise ValueError(f"proj_size must be 0 (no projection) or a positive int below "
                         f"hidden_size={sizes[1]}, got {proj_size}")
    if proj_size >= sizes[1]:
        raise ValueError(f"proj_size must be smaller than hidden_size={sizes[1]} (the projection "
                         f"maps H cell units to proj_size < H outputs), got {proj_size}")
    if flags[2] and "peephole" not in whens:
        raise ValueError(f"peephole=True: only the LSTM has peepholes, not the {c.layer} "
                         f"(cell {c.name!r})")
    return StackSpec(c.name, *sizes, 2 if flags[1] else 1, flags[0], int(proj_size), flags[2])


# The stack: one kernel call per (layer, direction).

def kernels(backend):
    """The kernel module of ``backend``: "fast" (``fastgates``), "reference"
    (``fastgates.reference``), or a module with ``cell_forward`` / ``cell_backward``."""
    if isinstance(backend, str):
        if backend not in ("fast", "reference"):
            raise ValueError(f"backend must be 'fast' or 'reference', got {backend!r}")
        return importlib.import_module("fastgates" if backend == "fast" else "fastgates.reference")
    return backend


class Tape(NamedTuple):
    """What :func:`stack_backward` needs from :func:`stack_forward`."""

    spec: StackSpec
    caches: list            # one kernel cache per (layer, direction)
    masks: Optional[list]   # dropout masks applied to the outputs of layers 0 .. L-2
    rev: Optional[tuple]    # the reverse-direction gather (see _reverse_index), None: a flip
    T: int
    B: int
    backend: object         # the kernel module the forward pass ran on


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


def _full_params(spec, k, w, dtype):
    """The kernel's parameters of (layer, direction) k: ``w`` plus zeros for the bias-like
    parameters a bias-free stack does not have."""
    if spec.bias:
        return w
    shapes = spec.shapes(k // spec.num_dirs, bias=True)
    return {stem: w[stem] if stem in w else np.zeros(shapes[stem], dtype) for stem in shapes}


def stack_forward(spec, weights, x, state=None, *, lengths=None, masks=None, training=True,
                  n_threads=None, backend="fast", layer_forward=None):
    """Run a stacked (and maybe bidirectional) recurrent network, sequence first.

    The one stack of the package: the layer classes, :class:`fastgates.Runner`,
    :mod:`fastgates.torch` and :mod:`fastgates.lm` all run on it.  One kernel call per
    (layer, direction); reverse directions read each row's valid prefix backwards.

    Parameters
    ----------
    spec : StackSpec
        The stack.
    weights : list of dict of str to ndarray
        One dict stem -> array per ``k = layer * num_dirs + direction``, with the
        parameters the stack has (``spec.stems()``: no biases when ``spec.bias`` is
        False) in the shapes of ``spec.shapes(layer)``, all of one float dtype.
    x : ndarray of shape (T, B, D), float32 or float64; or (T, B) integer token ids
        The input of layer 0, of the weights' dtype; token ids lie in [0, D).
    state : dict of str to ndarray or None, default None
        State name ("h", "c") -> array of shape ``spec.state_shape(name, B)``; a
        missing name or None: zeros.
    lengths : ndarray of shape (B,), int, or None, default None
        Valid steps per row, in [0, T] (validated by the kernels); None: every row has
        T steps.
    masks : list of ndarray or None, default None
        L - 1 dropout masks of shape (T, B, num_dirs * out_size), already scaled by
        1 / (1 - p), multiplied into the outputs of layers 0 .. L-2.
    training : bool, default True
        False: no tape is kept (the kernels keep no cache).
    n_threads : int or None, default None
        Passed to every kernel.
    backend : {"fast", "reference"} or module, default "fast"
        The kernels: ``fastgates``, ``fastgates.reference``, or a module with
        ``cell_forward`` / ``cell_backward``.
    layer_forward : callable or None, default None
        ``layer_forward(k, x, state, lengths) -> (y, state_n)`` runs (layer, direction)
        k in inference (``training=False``) instead of the backend's ``cell_forward``,
        with the arguments it would get; ``weights`` is then not read (the frozen
        runners of :mod:`fastgates._runner`, over packed weights).

    Returns
    -------
    y : ndarray of shape (T, B, num_dirs * out_size)
        The last layer's outputs, directions concatenated [forward, reverse]; zero
        past each row's end.
    state_n : dict of str to ndarray
        State name -> (L * num_dirs, B, width): each row's state after its last step.
    tape : Tape or None
        What :func:`stack_backward` needs; None when ``training=False``.

    Raises
    ------
    ValueError
        An unknown ``backend``; the kernels' own errors (``TypeError`` /
        ``ValueError``) for arrays of the wrong shape or dtype, or bad ``lengths``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgates.layers import StackSpec, stack_backward, stack_forward
    >>> spec = StackSpec("gru", 4, 8, 2)
    >>> rng = np.random.default_rng(0)
    >>> weights = [{stem: rng.uniform(-0.3, 0.3, shape)
    ...             for stem, shape in spec.shapes(layer).items()} for layer in range(2)]
    >>> x = rng.standard_normal((5, 3, 4))                       # (T, B, D) float64
    >>> y, state_n, tape = stack_forward(spec, weights, x)
    >>> y.shape, state_n["h"].shape
    ((5, 3, 8), (2, 3, 8))
    >>> dx, dstate0, grads = stack_backward(tape, np.ones_like(y))
    >>> dx.shape, dstate0["h"].shape, grads[1]["weight_hh"].shape
    ((5, 3, 4), (2, 3, 8), (24, 8))
    """
    K = kernels(backend) if layer_forward is None else None
    cell = spec.celldef
    state = state or {}
    T, B = x.shape[:2]
    dirs = spec.num_dirs
    rev = None if lengths is None else _reverse_index(lengths, T)
    finals = {s: [] for s in cell.states}
    caches = []
    inp = x
    for layer in range(spec.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            xk = inp if d == 0 else _flip(inp, rev)
            sk = {s: None if state.get(s) is None else state[s][k] for s in cell.states}
            if layer_forward is not None:
                (y, s_n), cache = layer_forward(k, xk, sk, lengths), None
            else:
                dtype = next(iter(weights[k].values())).dtype
                y, s_n, cache = K.cell_forward(cell, xk, sk, _full_params(spec, k, weights[k], dtype),
                                               training=training, n_threads=n_threads,
                                               lengths=lengths)
            outs.append(y if d == 0 else _flip(y, rev))
            for s in cell.states:
                finals[s].append(s_n[s])
            caches.append(cache)
        inp = outs[0] if dirs == 1 else np.concatenate(outs, axis=2)
        if masks is not None and layer < spec.num_layers - 1:
            inp = inp * masks[layer]
    dtype = inp.dtype if inp.dtype.kind == "f" else np.float64
    # one (layer, direction): its fresh state arrays, viewed with the leading axis
    state_n = {s: (v[0][None] if len(v) == 1 else np.stack(v)) if v
               else np.empty(spec.state_shape(s, B), dtype) for s, v in finals.items()}
    tape = Tape(spec, caches, masks, rev, T, B, K) if training else None
    return inp, state_n, tape


def stack_backward(tape, dy, dstate=None, *, n_threads=None):
    """Backpropagation through a stack recorded by :func:`stack_forward`.

    Parameters
    ----------
    tape : Tape
        The tape of a ``training=True`` :func:`stack_forward`.
    dy : ndarray of shape (T, B, num_dirs * out_size) or None
        Gradient with respect to ``y``, of the forward's dtype; None: no gradient
        from the outputs.
    dstate : dict of str to ndarray or None, default None
        State name -> gradient with respect to ``state_n`` (L * num_dirs, B, width);
        a missing name or None: zero.
    n_threads : int or None, default None
        Passed to every kernel.

    Returns
    -------
    dx : ndarray of shape (T, B, D), or None
        Gradient with respect to ``x``; None for token-id inputs.
    dstate0 : dict of str to ndarray
        State name -> gradient with respect to the initial state (L * num_dirs, B,
        width), also when it was None.
    grads : list of dict of str to ndarray
        One dict stem -> gradient per (layer, direction), with the stems of the
        stack's parameters (``tape.spec.stems()``); fresh arrays, overwritten (never
        accumulated).

    Raises
    ------
    TypeError, ValueError
        The kernels' errors for gradients of the wrong dtype or shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgates.layers import StackSpec, stack_backward, stack_forward
    >>> spec = StackSpec("rnn_tanh", 3, 4, 1)
    >>> weights = [{stem: np.full(shape, 0.1) for stem, shape in spec.shapes(0).items()}]
    >>> y, h_n, tape = stack_forward(spec, weights, np.ones((2, 1, 3)))
    >>> dx, dstate0, grads = stack_backward(tape, None, {"h": np.ones((1, 1, 4))})  # dL/dh_n
    >>> dx.shape, list(grads[0])
    ((2, 1, 3), ['weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'])
    """
    spec = tape.spec
    cell = spec.celldef
    R, dirs, L = spec.out_size, spec.num_dirs, spec.num_layers
    dstate = dstate or {}
    stems = spec.stems()
    d0 = {s: [None] * (L * dirs) for s in cell.states}
    grads = [None] * (L * dirs)
    g_out = dy
    for layer in range(L - 1, -1, -1):
        dx = None
        for d in range(dirs):
            k = layer * dirs + d
            dyd = g_out if g_out is None or dirs == 1 else g_out[..., d * R:(d + 1) * R]
            g = tape.backend.cell_backward(
                cell, dyd if d == 0 else _flip(dyd, tape.rev),
                {s: None if dstate.get(s) is None else dstate[s][k] for s in cell.states},
                tape.caches[k], n_threads=n_threads)
            pg = g.param_grads
            grads[k] = {stem: pg[stem] for stem in stems}
            for s, v in g.state_grads.items():
                d0[s][k] = v
            gx = g.dx if d == 0 else _flip(g.dx, tape.rev)
            if gx is not None:     # the direction-0 dx is a fresh kernel output: add in place
                dx = gx if dx is None else np.add(dx, gx, out=dx)
        if layer > 0 and tape.masks is not None:
            dx *= tape.masks[layer - 1]
        g_out = dx
    dtype = tape.caches[0].dtype if tape.caches else np.float64
    dstate0 = {s: np.stack(v) if v else np.empty(spec.state_shape(s, tape.B), dtype)
               for s, v in d0.items()}
    return g_out, dstate0, grads


def split_state(spec, state, name, check, bad):
    """A layer's state argument as a dict state name -> ``check(label, entry)``.

    One state: ``state`` itself, labelled ``name``.  Several (an LSTM's h and c): a tuple
    or list of them in the table's order, or None, labelled ``name[i] (<state>)`` by
    default; anything else raises ``TypeError(bad(state))``.
    """
    names = spec.celldef.states
    if len(names) == 1:
        return {names[0]: check(name, state)}
    if state is None:
        return {}
    if not isinstance(state, (tuple, list)) or len(state) != len(names):
        raise TypeError(bad(state))
    return {s: check(i, v) for i, (s, v) in enumerate(zip(names, state))}


def join_state(spec, state):
    """The inverse of :func:`split_state`: the one array, or a tuple in the table's order."""
    names = spec.celldef.states
    return state[names[0]] if len(names) == 1 else tuple(state[s] for s in names)


def article(word):
    """"an LSTM", "a GRU", "a LayerNormGRU" (acronyms by their letters' sound)."""
    return "an" if word[0] in ("AEFHILMNORSX" if word.isupper() else "AEIOU") else "a"


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


def check_x(x, dtype, input_size, batch_first, owner, remedy):
    """Validate ``x`` of a layer's or a runner's call: (T, B, D) floats of the parameters'
    ``dtype`` or (T, B) integer token ids, (B, T, ...) with ``batch_first``; return it
    sequence first.  A dtype mismatch names the ``owner`` of the parameters and suggests
    ``remedy`` (formatted with x's dtype)."""
    if type(x) is not np.ndarray:
        x = _checks._as_array("x", x)
    bf = " (batch_first)" if batch_first else ""
    if x.dtype.kind in "iu":
        if x.ndim != 2:
            raise ValueError(f"x of token ids must be 2-D {'(B, T)' if batch_first else '(T, B)'}"
                             f"{bf}, got shape {x.shape}")
    elif x.dtype.kind == "f":
        if x.dtype != dtype:
            raise TypeError(f"x has dtype {x.dtype} but the {owner}'s parameters are {dtype} "
                            f"(cast x, or {remedy.format(x.dtype)})")
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D {'(B, T, D)' if batch_first else '(T, B, D)'}"
                             f"{bf}, got shape {x.shape}")
        if x.shape[2] != input_size:
            raise ValueError(f"x has {x.shape[2]} features (shape {x.shape}), expected "
                             f"input_size={input_size}")
    else:
        raise TypeError(f"x must be a float array or integer token ids, got dtype {x.dtype}")
    return x.swapaxes(0, 1) if batch_first else x


def check_state(name, s, shape, dtype):
    """Validate one (L * num_dirs, B, width) state array; None passes through."""
    if s is None:
        return None
    if hasattr(s, "detach"):
        s = s.detach().cpu().numpy()
    s = _checks._as_array(name, s)
    if s.dtype != dtype:
        raise TypeError(f"{name} has dtype {s.dtype} but the layer's parameters are {dtype}")
    if s.shape != shape:
        raise ValueError(f"{name} must have shape (num_layers * num_directions, B, width) = "
                         f"{shape}, got {s.shape}")
    return s


def option_repr(spec, fmt):
    """", nonlinearity='relu'" when the cell is not its family's default, else ""."""
    cell = spec.celldef
    if cell.option is None or cell is cells.families()[cell.kernel][0]:
        return ""
    return f", {cell.option[0]}={fmt(cell.option[1])}"


def family(layer_class):
    """The kernel family of the cells that the layer class named ``layer_class`` runs."""
    return next(c.kernel for c in cells.CELLS.values() if c.layer == layer_class)


class _Layer:
    """The layer machinery shared by every layer class (see the module docstring).

    A subclass names its class in the table (``_layer``); the cell is the table's cell of
    that family picked by the keyword in ``options`` (``nonlinearity``, ...).
    """

    _layer = ""

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, peephole=False, dtype=np.float32,
                 n_threads=None, seed=None, **options):
        cell = _checks.select_cell(family(self._layer), **options)
        if cell.option is not None:              # self.nonlinearity, self.linear_before_reset
            setattr(self, cell.option[0], cell.option[1])
        self._spec = make_spec(cell, input_size, hidden_size, num_layers, bias=bias,
                               bidirectional=bidirectional, proj_size=proj_size,
                               peephole=peephole)
        self.input_size, self.hidden_size, self.num_layers = self._spec[1:4]
        self.bias, self.bidirectional = self._spec.bias, self._spec.num_dirs == 2
        self.proj_size, self.peephole = self._spec.proj_size, self._spec.peephole
        self.batch_first = _check_bool("batch_first", batch_first)
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
        # One generator for the initialisation and then the dropout masks: a seed
        # makes a whole run reproducible.
        self._rng = np.random.default_rng(seed)
        specs = {p.stem: p for p in cells.param_specs(cell, **self._spec._options())}
        self._params = {}
        for (name, shape), stem in zip(parameter_shapes(self._spec).items(),
                                       [st for _ in parameter_names(self._spec)
                                        for st in self._spec.stems()]):
            kind, v = cells.init_spec(specs[stem], self.hidden_size)
            self._params[name] = (self._rng.uniform(-v, v, shape) if kind == "uniform"
                                  else np.full(shape, v)).astype(self.dtype)
        self.grads = {}
        self.state_grad = None
        self._tape = None

    # Parameters.

    def parameters(self):
        """The parameters by PyTorch's name: the live arrays, not copies.

        Returns
        -------
        dict of str to ndarray
            ``name -> array`` in PyTorch's order (``weight_ih_l0``, ``weight_hh_l0``,
            ``bias_ih_l0``, ``bias_hh_l0``, ``weight_ih_l0_reverse``, ...), each of the
            layer's dtype and of the shape of the ``torch.nn`` parameter.  The dict is
            new, the arrays are the layer's: update them in place (an optimizer step)
            to change the layer.

        Examples
        --------
        >>> import fastgates
        >>> layer = fastgates.RNN(3, 4, bias=False, seed=0)
        >>> {name: p.shape for name, p in layer.parameters().items()}
        {'weight_ih_l0': (4, 3), 'weight_hh_l0': (4, 4)}
        >>> layer.parameters()["weight_hh_l0"] *= 0.5              # changes the layer
        """
        return dict(self._params)

    def state_dict(self):
        """A copy of every parameter, under PyTorch's names.

        Returns
        -------
        dict of str to ndarray
            ``name -> copy`` in the order of :meth:`parameters`, of the layer's dtype.
            Save it with ``np.savez(path, **layer.state_dict())``; it loads into a
            layer of the same configuration, or a ``torch.nn`` module
            (``{k: torch.from_numpy(v) ...}``), with ``load_state_dict``.

        Examples
        --------
        >>> import numpy as np, fastgates
        >>> a, b = fastgates.GRU(3, 4, seed=0), fastgates.GRU(3, 4, seed=1)
        >>> missing, unexpected = b.load_state_dict(a.state_dict())
        >>> bool(np.array_equal(a.parameters()["weight_hh_l0"], b.parameters()["weight_hh_l0"]))
        True
        """
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load parameters from a mapping (NumPy arrays or torch tensors) or an ``.npz`` file.

        A ``torch.nn.RNN/GRU/LSTM(...).state_dict()`` of the same configuration loads as
        is.  Values are cast to the layer's dtype and copied into the existing arrays
        (so :meth:`parameters` stays valid).  Every value is checked before any is
        written: an error leaves the layer unchanged.

        Parameters
        ----------
        state_dict : mapping of str to array_like or torch.Tensor, numpy.lib.npyio.NpzFile, str or os.PathLike
            ``name -> value`` under PyTorch's names, each a float array of the
            parameter's shape; or an ``.npz`` file (an open one, or its path).
        strict : bool, default True
            True: the names must be exactly the layer's; False: load the names both
            have, ignore the rest.

        Returns
        -------
        missing : list of str
            The layer's names that ``state_dict`` lacks (not loaded).
        unexpected : list of str
            The names of ``state_dict`` the layer does not have (ignored).

        Raises
        ------
        TypeError
            ``state_dict`` is neither a mapping nor a path, or a value is not a float
            array.
        ValueError
            With ``strict=True``, missing or unexpected names; a value of the wrong
            shape.
        OSError
            A path that cannot be read as an ``.npz`` file.

        Examples
        --------
        >>> import torch, fastgates
        >>> net = torch.nn.LSTM(3, 4, num_layers=2)
        >>> layer = fastgates.LSTM(3, 4, num_layers=2)
        >>> layer.load_state_dict(net.state_dict())                # float32 tensors
        ([], [])
        >>> layer.load_state_dict({"weight_hh_l1": net.weight_hh_l1}, strict=False)[0][:2]
        ['weight_ih_l0', 'weight_hh_l0']
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
        """Switch training mode on (dropout on, a tape kept for backward) or off.

        Parameters
        ----------
        mode : bool, default True
            True: training mode (the default of a new layer); False: :meth:`eval`.

        Returns
        -------
        self
            The layer, for chaining (``layer.train().forward(x)``).

        Raises
        ------
        TypeError
            ``mode`` is not a bool.

        Examples
        --------
        >>> import fastgates
        >>> fastgates.GRU(3, 4).train(False).training
        False
        """
        self.training = _check_bool("mode", mode)
        return self

    def eval(self):
        """Switch to inference mode: no dropout, no tape (less memory), no :meth:`backward`.

        Returns
        -------
        self
            The layer, for chaining (``y, state = layer.eval().forward(x)``).

        Examples
        --------
        >>> import fastgates
        >>> fastgates.LSTM(3, 4).eval().training
        False
        """
        return self.train(False)

    def freeze(self):
        """A frozen inference runner of this layer: weights packed once, a streaming step.

        Returns
        -------
        fastgates.Runner
            A snapshot: the parameters are validated, copied and packed now, with
            ``batch_first``, dtype and ``n_threads`` as they are; later changes to the
            layer do not reach it (freeze again).  ``runner(x, state, lengths)`` gives
            the results of ``layer.eval(); layer.forward(x, state, lengths)`` bit for
            bit; ``runner.step(x_t, state)`` runs one time step of a unidirectional stack.

        Examples
        --------
        >>> import numpy as np
        >>> import fastgates
        >>> runner = fastgates.GRU(4, 16, seed=0).freeze()
        >>> y_t, h = runner.step(np.ones((1, 4), np.float32))      # B = 1, one frame
        >>> y_t.shape, h.shape
        ((1, 16), (1, 1, 16))
        """
        from ._runner import Runner

        return Runner.from_layer(self)

    # Forward and backward.

    def _weights(self):
        stems = self._spec.stems()
        return [{st: self._params[n] for st, n in zip(stems, names)}
                for names in parameter_names(self._spec)]

    def _check_x(self, x):
        return check_x(x, self.dtype, self.input_size, self.batch_first, "layer",
                       "build the layer with dtype=np.{}")

    def _split_state(self, state, B, name="state"):
        spec, names = self._spec, self._spec.celldef.states

        def check(label, s):
            which = names[0] if isinstance(label, str) else names[label]
            label = label if isinstance(label, str) else f"{name}[{label}] ({names[label]})"
            return check_state(label, s, spec.state_shape(which, B), self.dtype)

        def bad(s):
            return (f"{name} of {article(self._layer)} {self._layer} must be a pair "
                    f"({', '.join(names)}) of arrays or None, got {_checks._describe(s)}")
        return split_state(spec, state, name, check, bad)

    def forward(self, x, state=None, lengths=None):
        """Run the stack over a batch of sequences.

        In training mode (the default) the call keeps a tape for :meth:`backward` and
        applies dropout between layers; after :meth:`eval` it keeps nothing.
        ``layer(x, ...)`` is the same call.

        Parameters
        ----------
        x : ndarray of shape (T, B, input_size), or (B, T, input_size) with ``batch_first``
            Float input of the layer's dtype; or integer token ids of shape (T, B) /
            (B, T) in [0, input_size) that stand for one-hot rows (then
            :meth:`backward` returns None).
        state : ndarray, tuple of ndarray, or None, default None
            The initial state: an array (num_layers * num_directions, B, H) for one-state
            cells, a pair ``(h0, c0)`` for the LSTM (h0 ``proj_size`` wide when
            ``proj_size > 0``); None means zeros (also for either array of the pair).
            Ordered like PyTorch: index ``layer * num_directions + direction``.
        lengths : array_like of shape (B,), int, or None, default None
            Valid steps per row, 0 <= lengths[b] <= T, any order.  ``y`` is zero past a
            row's end and the returned state is each row's state at its last valid step
            (the reverse direction's after reading the row's first step).  None: every
            row runs T steps.

        Returns
        -------
        y : ndarray of shape (T, B, num_directions * out)
            The last layer's outputs, ``out`` = ``proj_size`` or ``hidden_size``,
            directions concatenated [forward, reverse]; (B, T, ...) with
            ``batch_first`` (a view).  Of the layer's dtype.
        state : ndarray or tuple of ndarray
            The final state in the layout of ``state``: (num_layers * num_directions, B,
            H), or ``(h_n, c_n)`` for the LSTM.

        Raises
        ------
        TypeError
            ``x`` neither float nor integer, a float ``x`` or a state of another dtype
            than the layer's, or a state of the wrong structure.
        ValueError
            ``x`` of the wrong number of dimensions or features, a state of the wrong
            shape, token ids or ``lengths`` out of range.

        Examples
        --------
        >>> import numpy as np, fastgates
        >>> lstm = fastgates.LSTM(4, 8, num_layers=2, bidirectional=True, seed=0)
        >>> x = np.ones((6, 3, 4), np.float32)                  # (T, B, D)
        >>> y, (h_n, c_n) = lstm.forward(x, lengths=[6, 2, 0])
        >>> y.shape, h_n.shape, bool(np.all(y[2:, 1] == 0))
        ((6, 3, 16), (4, 3, 8), True)
        >>> ids = np.array([[0, 3], [2, 1]])                   # (T, B) token ids in [0, D)
        >>> y, _ = lstm(ids)
        >>> y.shape
        (2, 2, 16)
        """
        xs = self._check_x(x)
        T, B = xs.shape[:2]
        lengths = _checks.check_lengths(lengths, T, B)
        state = self._split_state(state, B)
        masks = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            p = self.dropout
            scale = self.dtype.type(0 if p == 1 else 1 / (1 - p))
            shape = (T, B, self._spec.num_dirs * self._spec.out_size)
            masks = [(self._rng.random(shape) >= p).astype(self.dtype) * scale
                     for _ in range(self.num_layers - 1)]
        self._tape = None
        y, state_n, tape = stack_forward(self._spec, self._weights(), xs, state,
                                         lengths=lengths, masks=masks,
                                         training=self.training, n_threads=self.n_threads)
        self._tape = tape
        return (y.swapaxes(0, 1) if self.batch_first else y), join_state(self._spec, state_n)

    __call__ = forward

    def backward(self, dy, dstate=None):
        """Backpropagate through the last training-mode forward pass.

        Fills ``.grads`` (name -> gradient of every parameter, overwritten, never
        accumulated) and ``.state_grad`` (the gradient with respect to the initial
        state, in the layout of the state).

        Parameters
        ----------
        dy : ndarray shaped like ``y``, or None
            Gradient of the loss with respect to ``y``, of the layer's dtype (batch first
            with ``batch_first``); None: no gradient from the outputs.
        dstate : ndarray, tuple of ndarray, or None, default None
            Gradient with respect to the returned state, in its structure (a pair for
            the LSTM, either entry may be None); None: zero.

        Returns
        -------
        dx : ndarray shaped like ``x``, or None
            Gradient with respect to ``x``; None for token-id inputs.

        Raises
        ------
        ValueError
            No training-mode forward pass to go back through (none yet, or the last
            one ran in :meth:`eval` mode), or ``dy`` / ``dstate`` of the wrong shape.
        TypeError
            ``dy`` or ``dstate`` of another dtype than the layer's, or ``dstate`` of
            the wrong structure.

        Examples
        --------
        >>> import numpy as np, fastgates
        >>> gru = fastgates.GRU(4, 8, num_layers=2, seed=0)
        >>> y, h_n = gru(np.ones((5, 3, 4), np.float32))
        >>> dx = gru.backward(np.ones_like(y))                  # dL/dy = 1
        >>> dx.shape, gru.grads["weight_hh_l1"].shape, gru.state_grad.shape
        ((5, 3, 4), (24, 8), (2, 3, 8))
        """
        if self._tape is None:
            raise ValueError("backward needs a forward pass in training mode first "
                             "(layer.train(); y, state = layer.forward(x); layer.backward(dy))")
        tape = self._tape
        if dy is not None:
            dy = _checks._as_array("dy", dy)
            shape = (((tape.B, tape.T) if self.batch_first else (tape.T, tape.B))
                     + (self._spec.num_dirs * self._spec.out_size,))
            if dy.dtype != self.dtype:
                raise TypeError(f"dy has dtype {dy.dtype}, expected {self.dtype} like y")
            if dy.shape != shape:
                raise ValueError(f"dy must have the shape of y {shape}, got {dy.shape}")
            if self.batch_first:
                dy = dy.swapaxes(0, 1)
        dstate = self._split_state(dstate, tape.B, "dstate") if dstate is not None else None
        dx, dstate0, grads = stack_backward(tape, dy, dstate, n_threads=self.n_threads)
        self.grads = {}
        for names, g in zip(parameter_names(self._spec), grads):
            self.grads.update(zip(names, g.values()))
        self.state_grad = join_state(self._spec, dstate0)
        if dx is not None and self.batch_first:
            dx = dx.swapaxes(0, 1)
        return dx

    def __repr__(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += option_repr(self._spec, repr)
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0), ("peephole", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name}"
        return f"fastgates.layers.{self._layer}({s})"


_LAYER_DOC = """{title}

    A NumPy layer with ``torch.nn.{twin}``'s constructor vocabulary, parameter names
    (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) and state layout, running on the
    fastgates kernels: stacked and bidirectional layers, ragged batches (``lengths``),
    float32 or float64, token ids as input.  :meth:`forward` runs it (in training mode
    keeping a tape), :meth:`backward` fills ``.grads``, :meth:`freeze` makes an
    inference :class:`fastgates.Runner`.{notes}

    Parameters
    ----------
{params}

    Attributes
    ----------
    training : bool
        Training mode (:meth:`train`, the default) or inference (:meth:`eval`).
    dtype : numpy.dtype
        float32 or float64: the parameters', float inputs' and results' dtype.
    grads : dict of str to ndarray
        After :meth:`backward`: parameter name -> gradient (overwritten by every call).
    state_grad : ndarray, tuple of ndarray, or None
        After :meth:`backward`: the gradient with respect to the initial state.

    Raises
    ------
    TypeError
        A size that is not an int, a flag that is not a bool, a ``dtype`` other than
        float32/float64, or an unknown keyword.
    ValueError
        A size below 1, a ``dropout`` outside [0, 1], ``n_threads=0``, or a value
        the cell does not take{value_errors}.
"""


def doc_tail(dropout_warning):
    """The Warns, See Also and Examples sections that end the class docstrings of the layers
    and of the torch modules; ``{see_also}`` and ``{examples}`` stay for :func:`table_doc`."""
    return ("\n    Warns\n    -----\n    UserWarning\n        ``dropout > 0`` with ``num_layers=1``"
            + dropout_warning + "\n\n    See Also\n    --------\n    {see_also}\n\n"
            "    Examples\n    --------\n{examples}\n")


_LAYER_DOC += doc_tail(": dropout acts between stacked layers.")

#: The entries of the constructors' Parameters sections (layer classes), by parameter:
#: :func:`table_doc` writes the ones of a class's signature, in its order.
LAYER_PARAMS = {
    "input_size": "input_size : int\n"
                  "    D, the input features (the number of token ids for integer input).",
    "hidden_size": "hidden_size : int\n    H, the units of every layer and direction.",
    "num_layers": "num_layers : int, default 1\n"
                  "    Stacked layers; layer l > 0 reads the (concatenated) outputs of layer\n"
                  "    l - 1.",
    "bias": "bias : bool, default True\n"
            "    False: no bias parameters (the kernels get zeros).",
    "batch_first": "batch_first : bool, default False\n"
                   "    ``x`` and ``y`` are (B, T, ...) instead of (T, B, ...); states stay\n"
                   "    (num_layers * num_directions, B, H).",
    "dropout": "dropout : float, default 0.0\n"
               "    Dropout probability on the outputs of every layer but the last, in\n"
               "    training mode only (inverted dropout, masks from the layer's seeded\n"
               "    generator).",
    "bidirectional": "bidirectional : bool, default False\n"
                     "    A reverse direction per layer; outputs concatenate [forward, reverse]\n"
                     "    and parameters of the reverse direction end in ``_reverse``.",
    "proj_size": "proj_size : int, default 0\n"
                 "    P > 0 (below hidden_size): PyTorch's projected LSTM,\n"
                 "    h_t = (o_t * tanh(c_t)) W_hr^T with ``weight_hr_l{k}[_reverse]`` (P, H);\n"
                 "    h, the outputs of each direction and the next layer's inputs per\n"
                 "    direction are P wide, c stays H wide.",
    "peephole": "peephole : bool, default False\n"
                "    Peephole connections (ONNX's LSTM input ``P``): i and f see c_{t-1}, o\n"
                "    sees c_t, through ``weight_peep_l{k}[_reverse]`` (3, H), rows i, f, o,\n"
                "    last in each layer's parameter order.  A fastgates extension (torch.nn\n"
                "    has no peepholes).",
    "dtype": "dtype : {numpy.float32, numpy.float64}, default numpy.float32\n"
             "    The parameters' dtype (anything ``numpy.dtype`` reads as one of them).",
    "n_threads": "n_threads : int or None, default None\n"
                 "    Threads of every kernel call (see :func:`fastgates.lstm_forward`).",
    "seed": "seed : int or None, default None\n"
            "    Seeds the initialisation (PyTorch's: uniform(-1/sqrt(H), 1/sqrt(H)) unless\n"
            "    the table says otherwise) and then the dropout masks; None draws fresh\n"
            "    entropy.",
}


class RNN(_Layer):
    _layer = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", *,
                 bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                 dtype=np.float32, n_threads=None, seed=None):
        super().__init__(input_size, hidden_size, num_layers, nonlinearity=nonlinearity,
                         bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, dtype=dtype, n_threads=n_threads, seed=seed)


class LSTM(_Layer):
    _layer = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, peephole=False,
                 dtype=np.float32, n_threads=None, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional, proj_size=proj_size,
                         peephole=peephole, dtype=dtype, n_threads=n_threads, seed=seed)


def table_class(base, name, doc, module):
    """The class ``name`` of the table (``CellDef.layer``) on ``base``.

    Its constructor is the base's common one, without the keywords of optional
    parameters its cells lack (``proj_size``, ``peephole``) and with the keyword that
    picks among the family's cells (``GRU``'s ``linear_before_reset``, default: the
    family's first cell) in its signature.

    Parameters
    ----------
    base : type
        ``_Layer`` (fastgates.layers) or ``_RNNBase`` (fastgates.torch).
    name : str
        A ``CellDef.layer`` of :data:`fastgates.cells.CELLS`.
    doc : str or None
        The class docstring (:func:`table_doc` writes it once the class exists).
    module : str
        The class's ``__module__``.

    Returns
    -------
    type
        The new subclass of ``base``, with ``__signature__`` set.
    """
    family_cells = [c for c in cells.CELLS.values() if c.layer == name]
    sig = inspect.signature(base.__init__)
    # the keywords of optional parameters (proj_size, peephole) only where the cells have them
    whens = {p.when for c in family_cells for p in c.params}
    absent = {k for k, w in (("proj_size", "proj"), ("peephole", "peephole")) if w not in whens}
    params = [p for p in sig.parameters.values()
              if p.kind is not p.VAR_KEYWORD and p.name not in absent]
    option = family_cells[0].option
    if option is not None:
        at = next(i for i, p in enumerate(params) if p.kind is p.KEYWORD_ONLY)
        params.insert(at, inspect.Parameter(option[0], inspect.Parameter.KEYWORD_ONLY,
                                            default=option[1]))
    return type(name, (base,), {"__doc__": doc, "_layer": name, "__module__": module,
                                "__signature__": sig.replace(parameters=params[1:])})


def _option_doc(family_cells):
    """The Parameters entry of the keyword that picks among a family's cells."""
    c = family_cells[0]
    values = [d.option[1] for d in family_cells]
    kind = ("bool" if all(isinstance(v, bool) for v in values)
            else "{" + ", ".join(repr(v) for v in values) + "}")
    return (f"{c.option[0]} : {kind}, default {c.option[1]!r}\n    Picks the cell: "
            + ", ".join(f"{d.option[1]!r} -> {d.name!r}" for d in family_cells)
            + " (see :doc:`/cells`).")


def table_doc(template, cls, docs, **fields):
    """The docstring of the table's class ``cls``: ``template`` filled in.

    The class's Parameters section is written from its signature, in order: the
    entries of ``docs`` and of the keyword that picks among its cells (a parameter
    that has neither is listed without a type, which the documentation build's
    numpydoc validation reports).

    Parameters
    ----------
    template : str
        A docstring with the fields ``{params}``, ``{twin}`` and ``fields``.
    cls : type
        A layer or module class whose ``_layer`` is a ``CellDef.layer``.
    docs : dict of str to str
        Parameter name (``**kwargs`` with its stars) -> its unindented entry.
    **fields
        The template's other fields.

    Returns
    -------
    str
        The docstring.
    """
    family_cells = [c for c in cells.CELLS.values() if c.layer == cls._layer]
    c = family_cells[0]
    entries = []
    for p in inspect.signature(cls).parameters.values():
        key = {p.VAR_KEYWORD: "**", p.VAR_POSITIONAL: "*"}.get(p.kind, "") + p.name
        if key in docs:
            entry = docs[key]
        elif c.option is not None and p.name == c.option[0]:
            entry = _option_doc(family_cells)
        else:
            entry = f"{key}\n    Not described yet."
        entries.append("\n".join("    " + line for line in entry.split("\n")))
    twin = c.torch or ("LSTM" if "c" in c.states else "GRU")
    return template.format(params="\n".join(entries), twin=twin, **fields)


def _layer_doc(cls, title, notes=""):
    """The docstring of the layer class ``cls`` (see ``_LAYER_DOC``)."""
    c = next(c for c in cells.CELLS.values() if c.layer == cls._layer)
    state = "h_n" if len(c.states) == 1 else "(" + ", ".join(s + "_n" for s in c.states) + ")"
    examples = f"""    >>> import numpy as np, fastgates
    >>> layer = fastgates.{cls.__name__}(4, 8, num_layers=2, seed=0)
    >>> x = np.ones((5, 3, 4), np.float32)                  # (T, B, D)
    >>> y, {state} = layer(x)
    >>> y.shape, h_n.shape
    ((5, 3, 8), (2, 3, 8))
    >>> dx = layer.backward(np.ones_like(y))                # dL/dy = 1
    >>> dx.shape, layer.grads["weight_hh_l1"].shape
    ((5, 3, 4), ({c.G * 8}, 8))
    >>> runner = layer.freeze()                             # inference: packed weights
    >>> bool(np.array_equal(runner(x)[0], layer.eval()(x)[0]))
    True"""
    see = [f"fastgates.{c.kernel}_forward : The kernel of one layer and direction."]
    if c.torch:
        see.append(f"fastgates.torch.{cls.__name__} : The same layer as a ``torch.nn`` module.")
    see.append("fastgates.Runner : Its frozen inference runner (:meth:`freeze`).")
    whens = {p.when for d in cells.CELLS.values() if d.layer == cls._layer for p in d.params}
    value_errors = (";\n        ``proj_size`` outside [0, hidden_size)" if "proj" in whens else
                    ";\n        a nonzero ``proj_size`` or ``peephole=True`` (the LSTM's options)")
    return table_doc(_LAYER_DOC, cls, LAYER_PARAMS, title=title, notes=notes,
                     value_errors=value_errors, see_also="\n    ".join(see), examples=examples)


RNN.__doc__ = _layer_doc(
    RNN, "Elman RNN stack: h_t = phi(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), phi = tanh "
    "or relu.")
LSTM.__doc__ = _layer_doc(
    LSTM, "LSTM stack (gates i, f, g, o), see :func:`fastgates.lstm_forward`.", notes="""

    The state is a pair ``(h, c)``: h (num_layers * num_directions, B, proj_size or H),
    c (num_layers * num_directions, B, H).""")


#: Every layer class, by name: the hand-written ones above (signatures PyTorch's positional
#: order needs) and one per other ``layer`` of the table (``_Layer``'s constructor).
CLASSES = {"RNN": RNN, "LSTM": LSTM}
for _c in cells.CELLS.values():
    if _c.layer not in CLASSES:
        CLASSES[_c.layer] = table_class(_Layer, _c.layer, None, __name__)
        CLASSES[_c.layer].__doc__ = _layer_doc(
            CLASSES[_c.layer], f"{_c.layer} stack (gates {', '.join(_c.gates)}), see "
            f":func:`fastgates.{_c.kernel}_forward` / :func:`fastgates.cell_forward`.")
globals().update(CLASSES)
__all__ += [name for name in CLASSES if name not in __all__]
GRU = CLASSES["GRU"]      # the same class, under a name linters and type checkers can see
