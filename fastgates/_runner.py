"""Frozen inference runners: weights packed once, a streaming step, lean calls.

Design: ``layer.freeze()`` (every layer class of :mod:`fastgates.layers`, and the
inference cache of :mod:`fastgates.torch`) builds a :class:`Runner` from a snapshot of
the layer: its :class:`~fastgates.layers.StackSpec`, its parameters packed for the
active instruction-set level (one ``_recurrence.PackedLayer`` per layer and direction,
private copies), ``batch_first``, dtype and ``n_threads``.  Later changes to the layer
do not reach the runner.

* ``runner(x, state, lengths)`` runs the one stack of :mod:`fastgates.layers`
  (:func:`~fastgates.layers.stack_forward`: the same flips, gathers and
  concatenations) with a per-(layer, direction) call that skips what a layer call
  redoes every time: the weights are neither validated, copied nor packed again
  (``_recurrence.forward(..., packed=)`` gives the same bits), only ``x``, the state
  and ``lengths`` are checked.  So the results are those of
  ``layer.eval(); layer.forward(x, state, lengths)`` bit for bit.
* ``runner.step(x_t, state)`` is one time step of a unidirectional stack through
  ``_recurrence.StepPlan`` (the packed layers and the pointer tables of the compiled
  step gathered once): T steps equal one call over T steps bit for bit.
* The common calls -- ``step`` and ``__call__`` of a unidirectional packed stack with
  input and state as the runner returns them (C-contiguous, its dtype; ids in range for
  ``step``), no ``lengths``, sequence first -- are checked and run inside the compiled
  plan (``StepPlan.stream`` / ``StepPlan.call``, about a microsecond of fixed cost);
  anything else they decline takes the Python path below, which validates in full and
  names what is wrong.  Both paths run the same loops: the same bits.
* Threads: ``n_threads`` is resolved at every call (OpenMP default, negative counts),
  capped by the small-work policy (:func:`fastgates._threads.small_work_threads`: a
  call too small to pay for a parallel region runs on one thread; a sequence pays
  sooner than a single step) and by the fork guard (:mod:`fastgates._fork`).  Results
  are bit-identical for every thread count.
* Concurrency: nothing a call writes is shared; every call allocates its outputs and
  its scratch, so any number of threads may call one runner at once.
* Cells whose parameters a packed layer does not carry (anything beyond ``weight_ih``,
  ``weight_hh``, ``bias_ih``, ``bias_hh``: projections, peepholes, LayerNorm gains) run
  the same stack over the snapshot's private copies through the public kernels: still a
  snapshot and still bit for bit the layer, without the packing; their ``step`` runs
  one-step sequences.
"""

from __future__ import annotations

import numpy as np

from . import _checks, _fork, _recurrence, cells
from ._threads import (SEQ_STEPS, SMALL_SEQ_BYTES, SMALL_STEP_BYTES, small_work_threads,
                       unit_for_steps)
from .layers import (_full_params, article, check_state, check_x, join_state, split_state,
                     stack_forward)

__all__ = ["Runner"]

_STANDARD = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class Runner:
    """A frozen, inference-only copy of a recurrent layer: ``layer.freeze()``.

    Made by :meth:`fastgates.RNN.freeze` (and the ``freeze`` of every layer class): the
    weights are validated, copied and packed once, for the instruction-set level the
    kernels run with.  The runner is a snapshot: later changes to the layer (its
    parameters, ``batch_first``, ``n_threads``) do not reach it; freeze again to take
    them.  Every call returns fresh arrays owned by the caller, and any number of
    threads may call one runner at once (nothing a call writes is shared).

    Parameters
    ----------
    spec : fastgates.layers.StackSpec
        The stack: cell, sizes, layers, directions, bias, projection.
    weights : list of dict
        One dict stem -> array per ``k = layer * num_dirs + direction`` (the form of
        :func:`fastgates.layers.stack_forward`); the arrays are copied.
    batch_first : bool, default False
        ``x`` and ``y`` of :meth:`__call__` are (B, T, ...) instead of (T, B, ...).
    dtype : float32 or float64, default float32
        The parameters' dtype (they are cast to it).
    n_threads : int or None, default None
        Threads of every call (see :func:`fastgates.lstm_forward`); small steps run on
        fewer (the results are the same for every thread count).

    Raises
    ------
    TypeError, ValueError
        A weight of the wrong shape or dtype, or a bad ``n_threads``.

    See Also
    --------
    fastgates.LSTM.freeze : how runners are usually made.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgates
    >>> layer = fastgates.LSTM(3, 8, num_layers=2, seed=0)
    >>> runner = layer.freeze()
    >>> x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    >>> y, (h, c) = runner(x)                            # (T, B, H), (L, B, H) x 2
    >>> y_ref, _ = layer.eval().forward(x)
    >>> bool(np.array_equal(y, y_ref))
    True
    >>> state = None
    >>> for t in range(5):                               # one frame at a time
    ...     y_t, state = runner.step(x[t], state)
    >>> bool(np.array_equal(y_t, y[-1]))
    True
    """

    def __init__(self, spec, weights, *, batch_first=False, dtype=np.float32, n_threads=None):
        self._spec = spec
        self._cell = cell = spec.celldef
        self._dtype = dt = np.dtype(dtype)
        if dt not in _checks.FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
        self._n_threads = _checks.check_n_threads(n_threads)
        self.batch_first = bool(batch_first)
        L, dirs = spec.num_layers, spec.num_dirs
        if len(weights) != L * dirs:
            raise ValueError(f"weights must hold {L * dirs} dicts (one per layer and "
                             f"direction), got {len(weights)}")
        self._packable = set(spec.stems(bias=True)) <= set(_STANDARD)
        self._weights = self._packed = self._plan = None
        copies = []
        for k, w in enumerate(weights):
            layer = k // dirs
            full = _full_params(spec, k, dict(w), dt)
            shapes = spec.shapes(layer, bias=True)
            if set(full) != set(shapes):
                raise ValueError(f"weights[{k}] has parameters {sorted(full)}, expected "
                                 f"{sorted(shapes)}")
            own = {}
            for stem, shape in shapes.items():
                name = cells.param_names([stem], layer, k % dirs == 1)[0]
                a = _checks._as_array(name, full[stem])
                if a.dtype.kind != "f":
                    raise TypeError(f"{name} must be a float array, got dtype {a.dtype}")
                if a.shape != shape:
                    raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
                own[stem] = np.array(a, dtype=dt, order="C", copy=True)
            copies.append(own)
        if self._packable:
            nt = _fork.safe_threads(_recurrence.resolve_threads(self._n_threads))
            self._packed = [_recurrence.pack_layer(cell.code, w["weight_ih"], w["weight_hh"],
                                                   w["bias_ih"], w["bias_hh"], nt)
                            for w in copies]
            if dirs == 1:
                self._plan = _recurrence.StepPlan(self._packed)
        else:
            self._weights = [{st: w[st] for st in spec.stems()} for w in copies]
        # the small-work policy's cap, for float input and for token ids (D counts as 0)
        H, D, R = spec.hidden_size, spec.input_size, spec.out_size
        big = 1 << 30
        rest = dirs * R
        self._cap = {(tok, unit): small_work_threads(big, cell.G, H, 0 if tok else D, dt.itemsize,
                                                     L * dirs, rest, unit)
                     for tok in (False, True) for unit in (SMALL_STEP_BYTES, SMALL_SEQ_BYTES)}
        if self._plan is not None:          # what the compiled common calls need
            self._plan.n_threads = self._n_threads
            self._plan.cap_x = self._cap[False, SMALL_STEP_BYTES]
            self._plan.cap_ids = self._cap[True, SMALL_STEP_BYTES]
            self._plan.cap_seq = self._cap[False, SMALL_SEQ_BYTES]
            self._plan.seq_steps = SEQ_STEPS

    @classmethod
    def from_layer(cls, layer):
        """The runner of a :mod:`fastgates.layers` layer (what ``layer.freeze()`` returns).

        Parameters
        ----------
        layer : fastgates.RNN, fastgates.GRU, fastgates.LSTM or another layer class
            Its parameters, ``batch_first``, dtype and ``n_threads`` as they are now.

        Returns
        -------
        Runner
        """
        return cls(layer._spec, layer._weights(), batch_first=layer.batch_first,
                   dtype=layer.dtype, n_threads=layer.n_threads)

    # What the runner is.

    @property
    def cell(self) -> str:
        """The cell's name in :data:`fastgates.cells.CELLS`."""
        return self._cell.name

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters, of float inputs and of the results."""
        return self._dtype

    @property
    def n_threads(self):
        """The ``n_threads`` every call resolves (None: the OpenMP default)."""
        return self._n_threads

    @property
    def input_size(self) -> int:
        return self._spec.input_size

    @property
    def hidden_size(self) -> int:
        return self._spec.hidden_size

    @property
    def num_layers(self) -> int:
        return self._spec.num_layers

    @property
    def bidirectional(self) -> bool:
        return self._spec.num_dirs == 2

    @property
    def isa(self):
        """The instruction-set level the weights are packed for (None: not packed)."""
        return self._packed[0].isa if self._packed else None

    def __repr__(self):
        s = self._spec
        opts = f"{s.input_size}, {s.hidden_size}"
        if s.num_layers != 1:
            opts += f", num_layers={s.num_layers}"
        if s.num_dirs == 2:
            opts += ", bidirectional=True"
        if self.batch_first:
            opts += ", batch_first=True"
        how = f"packed for {self.isa}" if self._packed else "not packed"
        return f"<fastgates.Runner {self._cell.layer}({opts}) {self._cell.name} {self._dtype}, {how}>"

    # Calls.

    def _threads(self, tokens, T):
        """Threads of a call of T steps (token ids or float input)."""
        nt = _recurrence.resolve_threads(self._n_threads)
        if nt > 1:
            nt = min(nt, self._cap[tokens, unit_for_steps(T)])
        return _fork.safe_threads(nt)

    def _check_packing(self):
        if self._packed and self._packed[0].isa != _recurrence.isa_active():
            raise RuntimeError(f"this runner's weights are packed for {self._packed[0].isa}, "
                               f"but the kernels now run {_recurrence.isa_active()}: freeze "
                               "the layer again")

    def _check_ids(self, x, lengths, T, B):
        """Token ids must lie in [0, input_size) in the steps that are read."""
        D = self._spec.input_size
        if not x.size:
            return
        flat = x.ravel()
        if flat.size <= 32:
            vals = flat.tolist()
            lo, hi = min(vals), max(vals)
        else:
            lo, hi = int(flat.min()), int(flat.max())
        if (lo < 0 or hi >= D) and lengths is not None:
            valid = np.arange(T)[:, None] < lengths[None, :]     # padding may hold anything
            ids = x[valid] if x.ndim == 2 else x
            lo, hi = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
        if lo < 0 or hi >= D:
            bad = lo if lo < 0 else hi
            raise ValueError(f"x holds token ids in [0, input_size) = [0, {D}); found {bad}")

    def _check_x(self, x):
        """x of __call__ -> (T, B, D) float / (T, B) int64, sequence first."""
        return check_x(x, self._dtype, self._spec.input_size, self.batch_first, "runner",
                       "freeze a layer of dtype {}")

    def _split_state(self, state, B):
        """The state argument as a dict name -> C-contiguous (L * dirs, B, width) or None."""
        spec, names = self._spec, self._cell.states
        layer = self._cell.layer

        def check(label, s):
            name = names[0] if isinstance(label, str) else names[label]
            label = label if isinstance(label, str) else f"state[{label}] ({name})"
            s = check_state(label, s, spec.state_shape(name, B), self._dtype)
            return None if s is None else np.ascontiguousarray(s)

        def bad(s):
            return (f"state of {article(layer)} {layer} must be a pair "
                    f"({', '.join(names)}) of arrays or None, got {_checks._describe(s)}")
        return split_state(spec, state, "state", check, bad)

    def __call__(self, x, state=None, lengths=None):
        """Run the stack over a batch of sequences: ``layer.eval(); layer.forward(...)``.

        Parameters
        ----------
        x : ndarray (T, B, input_size), or (B, T, input_size) with ``batch_first``
            Float input of the runner's dtype, or integer token ids (T, B) / (B, T) in
            [0, input_size).
        state : ndarray (num_layers * num_directions, B, H), a pair ``(h0, c0)`` of them
            for an LSTM, or None (zeros).
        lengths : int array (B,) or None
            Valid steps per row, 0 <= lengths[b] <= T: ``y`` is zero past a row's end and
            the state is each row's state after its last valid step.

        Returns
        -------
        y : ndarray (T, B, num_directions * H) (batch_first: (B, T, ...), a view)
        state : ndarray (num_layers * num_directions, B, H), or ``(h_n, c_n)``

        Raises
        ------
        TypeError, ValueError
            ``x``, ``state`` or ``lengths`` of the wrong type, dtype or shape, or token ids
            out of range; the message names the argument.
        """
        if lengths is None and self._plan is not None and not self.batch_first:
            out = self._plan.call(x, state)     # the common call, checked and run in C
            if out is not None:
                return out
        xs = self._check_x(x)
        T, B = xs.shape[:2]
        lengths = _checks.check_lengths(lengths, T, B)
        state = self._split_state(state, B)
        tokens = xs.dtype.kind in "iu"
        if tokens:
            xs = np.ascontiguousarray(xs, dtype=np.int64)
            self._check_ids(xs, lengths, T, B)
        if self._packed is None:
            y, state_n, _ = stack_forward(self._spec, self._weights, xs, state, lengths=lengths,
                                          training=False, n_threads=self._threads(tokens, T))
        else:
            self._check_packing()
            y, state_n = self._stack(xs, state, lengths, self._threads(tokens, T))
        return (y.swapaxes(0, 1) if self.batch_first else y), join_state(self._spec, state_n)

    def _run(self, xs, state, lengths):
        """The stack on validated input (fastgates.torch's inference cache): ``xs`` (T, B, D)
        floats of the runner's dtype, ``state`` a dict name -> (L * dirs, B, width) or None,
        ``lengths`` an int64 (B,) array or None.  Returns ``(y, state_n)``, sequence first."""
        state = {k: None if v is None else np.ascontiguousarray(v) for k, v in state.items()}
        if self._packed is None:
            y, state_n, _ = stack_forward(self._spec, self._weights, xs, state, lengths=lengths,
                                          training=False, n_threads=self._threads(False, len(xs)))
            return y, state_n
        self._check_packing()
        nt = self._threads(False, len(xs))
        if self._plan is not None and lengths is None and xs.shape[0] and xs.shape[1]:
            # the compiled stack (__call__'s common call: the same loop on the same packed
            # weights, bit for bit, without the per-layer Python work)
            y, h_n, c_n = self._plan.sequence(np.ascontiguousarray(xs), state.get("h"),
                                              state.get("c"), nt)
            return y, ({"h": h_n} if c_n is None else {"h": h_n, "c": c_n})
        return self._stack(xs, state, lengths, nt)

    def _layer(self, k, x, h0, c0, nt, lengths=None, pk=None):
        """Packed layer k on ``x`` (T, B, D) floats or (T, B) int64, C-contiguous: y, h_n, c_n."""
        cell = self._cell
        f = _checks.Forward(cell.kernel, cell.variant, self._dtype, x, x.dtype.kind in "iu", h0,
                            c0, None, None, None, None, x.shape[0], x.shape[1],
                            self._packed[k].D, self._spec.hidden_size, cell.G, lengths, pk,
                            cell, None)
        return _recurrence.forward(f, False, nt, self._packed[k])[:3]

    def _stack(self, xs, state, lengths, nt):
        """The stack over packed layers: ``xs`` (T, B, D) / (T, B) int64, ``state`` a dict of
        C-contiguous (L * dirs, B, H) arrays, ``lengths`` checked."""
        pk = None if lengths is None else _checks.Packing(lengths, xs.shape[0])
        lstm = "c" in self._cell.states

        def layer_forward(k, x, s, _lengths):
            x = np.ascontiguousarray(x)           # the reverse direction's input is a view
            y, h_n, c_n = self._layer(k, x, s.get("h"), s.get("c"), nt, lengths, pk)
            return y, ({"h": h_n, "c": c_n} if lstm else {"h": h_n})

        y, state_n, _ = stack_forward(self._spec, None, xs, state, lengths=lengths,
                                      training=False, layer_forward=layer_forward)
        return y, state_n

    def step(self, x_t, state=None):
        """One time step of a unidirectional stack: the streaming call.

        ``T`` calls of ``step`` give the results of one call over ``T`` steps, bit for bit.

        Parameters
        ----------
        x_t : ndarray (B, input_size) of the runner's dtype, or (B,) integer token ids
        state : ndarray (num_layers, B, H), a pair ``(h, c)`` of them for an LSTM, or None
            (zeros): the ``state`` the previous step returned.

        Returns
        -------
        y_t : ndarray (B, H)
            The top layer's output at this step (a fresh array; ``(B, proj_size)`` for a
            projected LSTM).
        state : ndarray (num_layers, B, H), or ``(h, c)``
            The state after this step, in the layer's layout (fresh arrays).

        Raises
        ------
        ValueError
            A bidirectional runner (its reverse direction needs the whole sequence), or
            ``x_t`` / ``state`` of the wrong shape, or token ids out of range.
        TypeError
            ``x_t`` or ``state`` of the wrong type or dtype.
        """
        plan = self._plan
        if plan is not None:
            out = plan.stream(x_t, state)       # the common call, checked and run in C
            if out is not None:
                return out
        if self._spec.num_dirs != 1:
            raise ValueError("step() runs a unidirectional stack: the reverse direction of a "
                             "bidirectional layer reads the sequence from its end, so it cannot "
                             "stream; call the runner on the whole sequence instead")
        x, tokens = self._check_step_x(x_t)
        B = x.shape[0]
        L = self._spec.num_layers
        if self._plan is None:
            return self._step_unpacked(x, state, tokens)
        s = self._step_state(state, B)
        h0, c0 = s["h"], s.get("c")
        self._check_packing()
        h1, c1 = self._plan.run(x, h0, c0, self._threads(tokens, 1))
        y = h1[L - 1].copy()
        return y, (h1 if c1 is None else (h1, c1))

    def _step_state(self, state, B):
        """The step's state as a dict of C-contiguous (L, B, H) arrays (zeros for None)."""
        s = self._split_state(state, B)
        for name in self._cell.states:
            if s.get(name) is None:
                s[name] = np.zeros(self._spec.state_shape(name, B), self._dtype)
        return s

    def _check_step_x(self, x):
        """x_t of step -> ((B, D) float or (B,) int64, C-contiguous; tokens)."""
        x = _checks._as_array("x_t", x)
        D = self._spec.input_size
        if x.dtype.kind in "iu":
            if x.ndim != 1:
                raise ValueError(f"x_t of token ids must be 1-D (B,), got shape {x.shape}")
            x = np.ascontiguousarray(x, dtype=np.int64)
            if x.size:
                vals = x.tolist() if x.size <= 32 else (int(x.min()), int(x.max()))
                lo, hi = min(vals), max(vals)
                if lo < 0 or hi >= D:
                    bad = lo if lo < 0 else hi
                    raise ValueError(f"x_t holds token ids in [0, input_size) = [0, {D}); "
                                     f"found {bad}")
            return x, True
        if x.dtype.kind != "f":
            raise TypeError(f"x_t must be a float array (B, {D}) or integer token ids (B,), "
                            f"got dtype {x.dtype}")
        if x.dtype != self._dtype:
            raise TypeError(f"x_t has dtype {x.dtype} but the runner's parameters are "
                            f"{self._dtype}")
        if x.ndim != 2 or x.shape[1] != D:
            raise ValueError(f"x_t must have shape (B, input_size) = (B, {D}), got {x.shape}")
        return np.ascontiguousarray(x), False

    def _step_unpacked(self, x, state, tokens):
        """step for cells the packed layers do not carry: a one-step sequence."""
        B = x.shape[0]
        s = self._split_state(state, B) if state is not None else {}
        y, state_n, _ = stack_forward(self._spec, self._weights, x[None], s, training=False,
                                      n_threads=self._threads(tokens, 1))
        return y[0].copy(), join_state(self._spec, state_n)

