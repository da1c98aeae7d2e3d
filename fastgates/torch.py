"""PyTorch drop-in modules over the fastgates kernels: ``fastgates.torch.RNN / GRU / LSTM``.

Design: each module is a ``torch.nn.Module`` with ``torch.nn.RNN/GRU/LSTM``'s constructor,
forward signature, parameter names, parameter order and initialisation (so, under the same
``torch.manual_seed``, it starts from the same weights and their ``state_dict``s are
interchangeable); the cell, its parameters and their initialisation come from
:mod:`fastgates.cells`, the scaffolding (shapes, names, states) from :mod:`fastgates.layers`,
so a new cell of the table gets its module class here without code.  The whole stack --
every layer and direction -- is one
``torch.autograd.Function`` around :func:`fastgates.layers.stack_forward` /
:func:`~fastgates.layers.stack_backward`: tensors cross into NumPy as views (no copy for
CPU tensors) and the results come back through ``torch.from_numpy``.  Dropout masks are
drawn with torch's generator, so ``torch.manual_seed`` governs them.  Packed sequences
are unpacked to a padded batch plus lengths, which the kernels take as they are.

Inference (no autograd node: under ``torch.no_grad()`` / ``torch.inference_mode()``, or
with no tensor that requires grad) without dropout reuses packed weights: the module
keeps the :class:`fastgates.Runner` of its last inference call and runs it again while
every parameter is the same tensor (identity), on the same storage (``data_ptr()``) at
the same version (``_version``, which every in-place change through autograd-visible
ops bumps: ``p.add_()`` under ``no_grad``, ``load_state_dict``, optimizer steps,
``.to()``).  Writes that bump none of the three are not seen: through ``p.data``
(``p.data.add_(1)``, ``p.data[...] = ...``: ``.data`` is a tensor with a version counter
of its own) or through a NumPy view of a parameter (``p.detach().numpy()[...] = ...``).
After such writes call :meth:`~_RNNBase.clear_inference_cache` (the next inference call
packs again).  The cache holds one packed copy of the weights and is never pickled.

PyTorch is imported when this module is, never by ``import fastgates``.  Supported: CPU
float32/float64 tensors, every constructor option (``LSTM``'s ``proj_size`` included);
GRU additionally takes ``linear_before_reset`` (default True, PyTorch's form) and LSTM
``peephole`` (ONNX's peephole connections, which torch.nn does not have).  ``RNN`` and ``LSTM`` are
written out for torch.nn's positional arguments; every other class (``GRU``, and those
of new cells) is made from the table by :func:`fastgates.layers.table_class`.
"""

from __future__ import annotations

try:
    import torch
except ImportError as exc:  # torch is an optional extra
    raise ImportError("fastgates.torch needs PyTorch: pip install torch "
                      "(or pip install 'fastgates[torch]')") from exc

import numpy as np
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import _checks, cells
from .layers import (article, check_dropout, doc_tail, family, join_state, make_spec,
                     option_repr, parameter_names, split_state, stack_backward, stack_forward,
                     table_class, table_doc)

__all__ = ["RNN", "GRU", "LSTM", "CLASSES"]

_DTYPES = (torch.float32, torch.float64)


def _np(t):
    """A NumPy view of a CPU tensor (no copy), or None."""
    return None if t is None else t.detach().numpy()


def _weights(spec, params):
    """Group the flat parameter list per (layer, direction) as dicts stem -> array."""
    stems = spec.stems()
    arrays = [_np(p) for p in params]
    n = len(stems)
    return [dict(zip(stems, arrays[i:i + n])) for i in range(0, len(arrays), n)]


class _Stack(torch.autograd.Function):
    """The stack as one autograd node: inputs x, the states and the flat parameters."""

    @staticmethod
    def forward(ctx, spec, n_threads, lengths, masks, x, n_states, *rest):
        states, params = rest[:n_states], rest[n_states:]
        names = spec.celldef.states
        y, state_n, tape = stack_forward(spec, _weights(spec, params), _np(x),
                                         {s: _np(v) for s, v in zip(names, states)},
                                         lengths=lengths, masks=masks, training=True,
                                         n_threads=n_threads)
        ctx.tape, ctx.n_threads = tape, n_threads
        ctx.given = [v is not None for v in states]
        ctx.set_materialize_grads(False)        # unused outputs give None, not zeros
        return (torch.from_numpy(y),) + tuple(torch.from_numpy(state_n[s]) for s in names)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, *dstate):
        names = ctx.tape.spec.celldef.states
        dx, dstate0, grads = stack_backward(ctx.tape, _np(dy),
                                            {s: _np(v) for s, v in zip(names, dstate)},
                                            n_threads=ctx.n_threads)
        dparams = [torch.from_numpy(g) for per in grads for g in per.values()]
        return (None, None, None, None,
                None if dx is None else torch.from_numpy(dx), None,
                *(torch.from_numpy(dstate0[s]) if given else None
                  for s, given in zip(names, ctx.given)),
                *dparams)


class _RNNBase(torch.nn.Module):
    """What every module class shares; the cell comes from the table (see fastgates.layers)."""

    _layer = ""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, n_threads=None,
                 proj_size=0, peephole=False, **options):
        super().__init__()
        if proj_size != 0 and self._layer != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU "
                             f"(got proj_size={proj_size} for {self._layer})")
        if "linear_before_reset" in options:           # torch-style: any truthy value
            options["linear_before_reset"] = bool(options["linear_before_reset"])
        cell = _checks.select_cell(family(self._layer), **options)
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device={device!r} is not supported: fastgates.torch runs on CPU "
                             "tensors only (use torch.nn for other devices)")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in _DTYPES:
            raise TypeError(f"dtype={dtype} is not supported: fastgates.torch needs "
                            "torch.float32 or torch.float64")
        self._spec = make_spec(cell, input_size, hidden_size, num_layers, bias=bias,
                               bidirectional=bidirectional, proj_size=proj_size,
                               peephole=peephole, strict=False)
        if cell.option is not None:             # self.nonlinearity, self.linear_before_reset
            setattr(self, cell.option[0], cell.option[1])
        self.mode = self._layer.upper()
        self.input_size, self.hidden_size, self.num_layers = self._spec[1:4]
        self.bias, self.batch_first = self._spec.bias, bool(batch_first)
        self.dropout = check_dropout(dropout, num_layers)
        self.bidirectional = self._spec.num_dirs == 2
        self.proj_size = self._spec.proj_size
        if self._spec.peephole:
            self.peephole = True
        self.n_threads = _checks.check_n_threads(n_threads)
        self._flat_weights_names = []
        self._all_weights = []
        self._init = {}
        self._inference_cache = None        # (key, Runner) of the last inference call
        specs = {p.stem: p for p in cells.param_specs(cell, **self._spec._options())}
        for k, names in enumerate(parameter_names(self._spec)):
            shapes = self._spec.shapes(k // self._spec.num_dirs)
            for name, stem in zip(names, self._spec.stems()):
                setattr(self, name, torch.nn.Parameter(torch.empty(shapes[stem], dtype=dtype)))
                self._init[name] = cells.init_spec(specs[stem], hidden_size)
            self._flat_weights_names.extend(names)
            self._all_weights.append(list(names))
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise every parameter again, as ``torch.nn`` does, in parameter order.

        uniform(-1/sqrt(H), 1/sqrt(H)) from torch's generator (the table's "uniform"),
        constants where the table says "ones"/"zeros"; so under the same
        ``torch.manual_seed`` a module and its ``torch.nn`` twin get the same weights.

        Examples
        --------
        >>> import torch, fastgates.torch
        >>> m, net = fastgates.torch.GRU(3, 4), torch.nn.GRU(3, 4)
        >>> _ = torch.manual_seed(1); m.reset_parameters()
        >>> _ = torch.manual_seed(1); net.reset_parameters()
        >>> torch.equal(m.weight_hh_l0, net.weight_hh_l0)
        True
        """
        for name in self._flat_weights_names:
            kind, v = self._init[name]
            w = getattr(self, name)
            if kind == "uniform":
                torch.nn.init.uniform_(w, -v, v)
            else:
                torch.nn.init.constant_(w, v)

    @property
    def all_weights(self):
        """The parameters as ``torch.nn`` lists them: one list per (layer, direction)."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self):
        """Do nothing: there is no cuDNN buffer to compact (for code written against torch.nn).

        Examples
        --------
        >>> import fastgates.torch
        >>> fastgates.torch.LSTM(3, 4).flatten_parameters()
        """

    def clear_inference_cache(self):
        """Drop the packed weights kept for inference calls (see the module docstring).

        The next inference call packs the parameters again.  Needed only after writes
        the cache cannot see: through ``p.data`` or a NumPy view of a parameter.

        Examples
        --------
        >>> import torch, fastgates.torch
        >>> lstm = fastgates.torch.LSTM(4, 8)
        >>> with torch.no_grad():
        ...     y, _ = lstm(torch.zeros(3, 1, 4))
        ...     _ = lstm.weight_hh_l0.data.mul_(0)      # .data escapes the version counter
        ...     lstm.clear_inference_cache()            # so tell the module
        ...     y, _ = lstm(torch.zeros(3, 1, 4))
        """
        self._inference_cache = None

    def _inference_runner(self, params, dtype):
        """The Runner of the current parameters: the cached one while no parameter changed
        identity, storage or version, else a new one (packed now)."""
        key = (dtype, self.n_threads) + tuple((id(p), p.data_ptr(), p._version) for p in params)
        cached = getattr(self, "_inference_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        from ._runner import Runner

        runner = Runner(self._spec, _weights(self._spec, params),
                        dtype=np.float64 if dtype == torch.float64 else np.float32,
                        n_threads=self.n_threads)
        self._inference_cache = (key, runner)
        return runner

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state, _inference_cache=None)      # packed weights are never pickled
        return state

    def extra_repr(self):
        """The arguments in the module's repr: those ``torch.nn`` shows, and ``peephole``.

        Returns
        -------
        str
            ``"input_size, hidden_size"`` and every argument that differs from its
            default, as ``torch.nn`` writes them.

        Examples
        --------
        >>> import fastgates.torch
        >>> fastgates.torch.GRU(3, 4, num_layers=2, linear_before_reset=False)
        GRU(3, 4, num_layers=2, linear_before_reset=False)
        """
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += option_repr(self._spec, str)
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self._spec.peephole:
            s += ", peephole=True"
        return s

    def _flat(self):
        # the registered Parameters straight from their dict (getattr goes through
        # Module.__getattr__: 0.9 us each), anything else as an attribute
        registered = self._parameters
        params = [registered.get(n) for n in self._flat_weights_names]
        if any(p is None for p in params):
            params = [getattr(self, n) for n in self._flat_weights_names]
        dtype = params[0].dtype
        for name, p in zip(self._flat_weights_names, params):
            if not p.is_cpu:
                raise ValueError(f"parameter {name} is on device {p.device}: fastgates.torch runs "
                                 "on CPU tensors only")
            if p.dtype not in _DTYPES or p.dtype != dtype:
                raise TypeError(f"parameter {name} has dtype {p.dtype}; fastgates.torch needs all "
                                f"parameters float32 or all float64 (the first is {dtype})")
        return params, dtype

    def _check_state(self, name, s, shape, dtype, batched, width="hidden_size"):
        if s is None:
            return None
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"{name} must be a tensor or None, got {type(s).__name__}")
        if s.device.type != "cpu":
            raise ValueError(f"{name} is on device {s.device}: fastgates.torch runs on CPU tensors only")
        if s.dtype != dtype:
            raise TypeError(f"{name} has dtype {s.dtype} but the parameters are {dtype}")
        want = shape if batched else (shape[0], shape[2])
        if tuple(s.shape) != want:
            raise ValueError(f"{name} must have shape {want} (num_layers * num_directions, "
                             f"{'B, ' if batched else ''}{width}), got {tuple(s.shape)}")
        return s if batched else s.unsqueeze(1)

    def _split_hx(self, hx, B, dtype, batched):
        spec, names = self._spec, self._spec.celldef.states

        def check(label, s):
            which = names[0] if isinstance(label, str) else names[label]
            label = label if isinstance(label, str) else f"hx[{label}] ({names[label]}_0)"
            width = "proj_size" if which == "h" and self.proj_size else "hidden_size"
            return self._check_state(label, s, spec.state_shape(which, B), dtype, batched, width)

        def bad(s):
            return (f"hx of {article(self._layer)} {self._layer} must be a tuple "
                    f"({', '.join(n + '_0' for n in names)}) of tensors, got {type(s).__name__}")
        return split_state(spec, hx, "hx", check, bad)

    def forward(self, input, hx=None):
        """Run the stack over a batch of sequences, like ``torch.nn.RNN/GRU/LSTM.forward``.

        With autograd recording (a tensor that requires grad, grad mode on) the whole
        stack is one autograd node: ``backward`` runs the kernels' BPTT (not twice
        differentiable).  Otherwise, without dropout, the call is an inference call over
        packed weights that are kept while the parameters do not change (see
        :meth:`clear_inference_cache`).  While ``torch.jit.trace``, ``torch.onnx.export``
        or ``torch.export`` records, the ``torch.nn`` twin's operators run instead, on
        this module's parameters (modules without a twin raise).

        Parameters
        ----------
        input : Tensor of shape (T, B, input_size), (B, T, input_size) or (T, input_size); or PackedSequence
            CPU tensor of the parameters' dtype (float32 or float64), sequence first,
            batch first with ``batch_first=True``, or 2-D for one unbatched sequence.
            A ``PackedSequence`` (sorted or not) runs its rows to their own lengths.
        hx : Tensor, tuple of Tensor, or None, default None
            The initial state, zeros when None.  RNN and GRU: ``h_0`` of shape
            (num_layers * num_directions, B, hidden_size), or (num_layers *
            num_directions, hidden_size) for an unbatched input.  LSTM: a tuple
            ``(h_0, c_0)``, ``h_0`` ``proj_size`` wide when ``proj_size > 0``.  Index
            ``layer * num_directions + direction``, as in ``torch.nn``; same dtype as
            the parameters.

        Returns
        -------
        output : Tensor of shape (T, B, num_directions * out), or PackedSequence
            The last layer's outputs at every step, ``out`` = ``proj_size`` or
            ``hidden_size``, forward and reverse directions concatenated; (B, T, ...)
            with ``batch_first``, (T, num_directions * out) for an unbatched input, a
            ``PackedSequence`` (zeros never packed) for a packed one.
        h_n : Tensor of shape (num_layers * num_directions, B, out), or tuple of Tensor
            The final state of every layer and direction (each row's state at its last
            valid step for a packed input); LSTM: ``(h_n, c_n)``, ``c_n`` of shape
            (num_layers * num_directions, B, hidden_size).  Unbatched: no B axis.

        Raises
        ------
        TypeError
            ``input`` that is neither a tensor nor a PackedSequence, ``hx`` of the wrong
            type, or a dtype other than the parameters' (which must all be float32 or
            all float64).
        ValueError
            A tensor or parameter off the CPU, ``input`` that is not 2-D or 3-D or has
            not ``input_size`` features, or ``hx`` of the wrong shape.
        RuntimeError
            Tracing or exporting a module that has no ``torch.nn`` twin (a peephole
            LSTM, the textbook GRU): export it with :func:`fastgates.onnx.export`.

        Examples
        --------
        >>> import torch, fastgates.torch
        >>> _ = torch.manual_seed(0)
        >>> lstm = fastgates.torch.LSTM(4, 8, num_layers=2, batch_first=True)
        >>> x = torch.randn(3, 5, 4, requires_grad=True)          # (B, T, D)
        >>> y, (h_n, c_n) = lstm(x)
        >>> tuple(y.shape), tuple(h_n.shape)
        ((3, 5, 8), (2, 3, 8))
        >>> y.sum().backward()                                    # BPTT in the kernels
        >>> tuple(x.grad.shape), tuple(lstm.weight_hh_l1.grad.shape)
        ((3, 5, 4), (32, 8))
        """
        if _tracing():   # jit.trace / onnx.export / torch.export cannot see into the kernels
            return _traced_forward(self, input, hx)
        params, dtype = self._flat()
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            x, lens = pad_packed_sequence(input)           # (T, B, D) in the caller's row order
            lengths = lens.numpy().astype(np.int64)
            batched = True
        else:
            x = input
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"input must be a tensor or a PackedSequence, got {type(x).__name__}")
            if x.dim() not in (2, 3):
                raise ValueError(f"input must be 2-D (unbatched) or 3-D, got {x.dim()}-D "
                                 f"shape {tuple(x.shape)}")
            batched = x.dim() == 3
            x = x.unsqueeze(1) if not batched else x.transpose(0, 1) if self.batch_first else x
        if not x.is_cpu:
            raise ValueError(f"input is on device {x.device}: fastgates.torch runs on CPU "
                             "tensors only")
        if x.dtype != dtype:
            raise TypeError(f"input has dtype {x.dtype} but the parameters are {dtype}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"input has {x.shape[2]} features, expected input_size="
                             f"{self.input_size}")
        T, B = x.shape[:2]
        given = self._split_hx(hx, B, dtype, batched)
        names = self._spec.celldef.states
        states = [given.get(s) for s in names]

        masks = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            p = self.dropout
            size = (T, B, self._spec.num_dirs * self._spec.out_size)
            masks = [_np(torch.zeros(size, dtype=dtype) if p == 1
                         else torch.empty(size, dtype=dtype).bernoulli_(1 - p).div_(1 - p))
                     for _ in range(self.num_layers - 1)]

        inputs = (x, *states, *params)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
            out = _Stack.apply(self._spec, self.n_threads, lengths, masks, x, len(states),
                               *states, *params)
        elif masks is None:
            # inference: no tape, no autograd node; packed weights reused (see above)
            runner = self._inference_runner(params, dtype)
            y, state_n = runner._run(_np(x), {s: _np(v) for s, v in zip(names, states)},
                                     lengths)
            out = (torch.from_numpy(y),) + tuple(torch.from_numpy(state_n[s]) for s in names)
        else:
            # dropout without autograd (training mode under no_grad): the plain stack
            y, state_n, _ = stack_forward(self._spec, _weights(self._spec, params), _np(x),
                                          {s: _np(v) for s, v in zip(names, states)},
                                          lengths=lengths, masks=masks, training=False,
                                          n_threads=self.n_threads)
            out = (torch.from_numpy(y),) + tuple(torch.from_numpy(state_n[s]) for s in names)
        y, states = out[0], out[1:]

        if packed:
            order = input.sorted_indices
            ys = y if order is None else y.index_select(1, order)
            lens_sorted = torch.from_numpy(lengths) if order is None else torch.from_numpy(lengths)[order]
            valid = torch.arange(T)[:, None] < lens_sorted[None, :]
            y = PackedSequence(ys[valid], input.batch_sizes, input.sorted_indices,
                               input.unsorted_indices)
        elif not batched:
            y = y.squeeze(1)
            states = tuple(s.squeeze(1) for s in states)
        elif self.batch_first:
            y = y.transpose(0, 1)
        return y, join_state(self._spec, dict(zip(names, states)))


_DOC = r"""{title}

    Same constructor, forward signature (tensor or PackedSequence input, {state}),
    parameter names, order and initialisation as ``torch.nn.{twin}`` (under the same
    ``torch.manual_seed`` both start from the same weights, and their ``state_dict``\ s
    load into each other).  CPU float32/float64 only; ``n_threads`` (keyword) sets the
    kernels' OpenMP threads.  Gradients flow through one autograd node per call (not
    twice differentiable); inference calls reuse packed weights (see
    :meth:`clear_inference_cache`).{notes}

    Parameters
    ----------
{params}

    Raises
    ------
    TypeError
        A size that is not an int, a ``dtype`` other than torch.float32/float64, or an
        unknown keyword.
    ValueError
        A size below 1, a ``dropout`` outside [0, 1], a ``device`` other than the CPU,
        ``n_threads=0``, or a value the cell does not take{value_errors}.
""" + doc_tail(", as ``torch.nn`` warns.")

#: The entries of the constructors' Parameters sections (module classes), by parameter:
#: :func:`fastgates.layers.table_doc` writes the ones of a class's signature, in its order.
MODULE_PARAMS = {
    "input_size": "input_size : int\n    D, the features of the input.",
    "hidden_size": "hidden_size : int\n    H, the units of every layer and direction.",
    "num_layers": "num_layers : int, default 1\n"
                  "    Stacked layers; layer l > 0 reads the (concatenated) outputs of layer\n"
                  "    l - 1.",
    "bias": "bias : bool, default True\n"
            "    False: no ``bias_*`` parameters (any truthy value counts, as in torch.nn).",
    "batch_first": "batch_first : bool, default False\n"
                   "    ``input`` and ``output`` are (B, T, ...) instead of (T, B, ...); the\n"
                   "    states stay (num_layers * num_directions, B, H).",
    "dropout": "dropout : float, default 0.0\n"
               "    Dropout probability on the outputs of every layer but the last, in\n"
               "    training mode (masks drawn with torch's generator).",
    "bidirectional": "bidirectional : bool, default False\n"
                     "    A reverse direction per layer (parameters ``*_reverse``); outputs\n"
                     "    concatenate [forward, reverse].",
    "proj_size": "proj_size : int, default 0\n"
                 "    P > 0 (below hidden_size): PyTorch's projected LSTM\n"
                 "    (``weight_hr_l{k}[_reverse]`` (P, H); h_0, h_n and the outputs P wide\n"
                 "    per direction).",
    "device": "device : torch.device, str or None, default None\n"
              "    Only the CPU (or None) is accepted: the kernels run on CPU tensors.",
    "dtype": "dtype : torch.dtype or None, default None\n"
             "    torch.float32 or torch.float64; None: ``torch.get_default_dtype()``.",
    "n_threads": "n_threads : int or None, default None\n"
                 "    Threads of every kernel call (see :func:`fastgates.lstm_forward`).",
    "peephole": "peephole : bool, default False\n"
                "    ONNX's peephole connections (a fastgates extension) as\n"
                "    ``weight_peep_l{k}[_reverse]`` (3, H), rows i, f, o, last in each\n"
                "    layer's parameter order and initialised like the other weights; such a\n"
                "    module has no ``torch.nn`` twin (:func:`to_torch` refuses it).",
    "**kwargs": "**kwargs\n"
                "    ``proj_size`` and ``peephole``, accepted for torch.nn's signature: only\n"
                "    0 and False (others raise ValueError).",
}


class RNN(_RNNBase):
    _layer = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, n_threads=None, **kwargs):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, nonlinearity=nonlinearity,
                         n_threads=n_threads, **kwargs)
        self.mode = "RNN_" + self.nonlinearity.upper()


class LSTM(_RNNBase):
    _layer = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 n_threads=None, peephole=False):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, n_threads=n_threads, proj_size=proj_size,
                         peephole=peephole)


def _doc(cls):
    """The docstring of the module class ``cls`` (see ``_DOC``)."""
    c = next(c for c in cells.CELLS.values() if c.layer == cls._layer)
    twin = c.torch or ("LSTM" if "c" in c.states else "GRU")
    title = (f"Drop-in ``torch.nn.{c.torch}`` running on the fastgates CPU kernels." if c.torch
             else f"``torch.nn`` module of the fastgates cell family {c.layer} (gates "
                  f"{', '.join(c.gates)}), with ``torch.nn.{twin}``'s conventions.")
    state = "``hx = (" + ", ".join(s + "_0" for s in c.states) + ")``" if len(c.states) > 1 \
        else "``hx``"
    st = "h_n" if len(c.states) == 1 else "(" + ", ".join(s + "_n" for s in c.states) + ")"
    examples = f"""    >>> import torch, fastgates.torch
    >>> _ = torch.manual_seed(0)
    >>> m = fastgates.torch.{cls.__name__}(4, 8, num_layers=2)
    >>> x = torch.randn(5, 3, 4)                              # (T, B, D)
    >>> y, {st} = m(x)
    >>> tuple(y.shape), tuple(h_n.shape)
    ((5, 3, 8), (2, 3, 8))"""
    if c.torch:
        examples += f"""
    >>> net = torch.nn.{c.torch}(4, 8, num_layers=2)          # its twin's weights load as they are
    >>> m.load_state_dict(net.state_dict())
    <All keys matched successfully>
    >>> torch.allclose(m(x)[0], net(x)[0], atol=1e-6)
    True"""
    see = [f"fastgates.{cls.__name__} : The NumPy layer of the same cell."]
    if c.torch:
        see.append("to_torch : The ``torch.nn`` twin of a model's fastgates modules.")
    whens = {p.when for d in cells.CELLS.values() if d.layer == cls._layer for p in d.params}
    value_errors = (";\n        ``proj_size`` outside [0, hidden_size)" if "proj" in whens else
                    ";\n        a nonzero ``proj_size`` or ``peephole=True`` (the LSTM's options)")
    notes = ""
    if "proj" in whens:
        notes = ("\n\n    With ``proj_size = P > 0`` h_0, h_n and the outputs are P wide per "
                 "direction, c stays H\n    wide.")
    return table_doc(_DOC, cls, MODULE_PARAMS, title=title, state=state, notes=notes,
                     value_errors=value_errors, see_also="\n    ".join(see), examples=examples)


RNN.__doc__ = _doc(RNN)
LSTM.__doc__ = _doc(LSTM)


#: Every module class, by name, as in fastgates.layers.CLASSES (the table's other classes
#: get the common constructor: torch.nn's, plus the keyword that picks the cell).
CLASSES = {"RNN": RNN, "LSTM": LSTM}
for _c in cells.CELLS.values():
    if _c.layer not in CLASSES:
        CLASSES[_c.layer] = table_class(_RNNBase, _c.layer, None, __name__)
        CLASSES[_c.layer].__doc__ = _doc(CLASSES[_c.layer])
globals().update(CLASSES)
__all__ += [name for name in CLASSES if name not in __all__]
GRU = CLASSES["GRU"]      # the same class, under a name linters and type checkers can see


from ._torch_convert import from_torch, to_torch, tracing as _tracing, traced_forward as _traced_forward  # noqa: E402,E501
__all__ += ["to_torch", "from_torch"]
