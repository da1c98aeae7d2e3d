"""PyTorch drop-in modules over the fastgates kernels: ``fastgates.torch.RNN / GRU / LSTM``.

Design: each module is a ``torch.nn.Module`` with ``torch.nn.RNN/GRU/LSTM``'s constructor,
forward signature, parameter names, parameter order and initialisation (so, under the same
``torch.manual_seed``, it starts from the same weights and their ``state_dict``s are
interchangeable).  The whole stack -- every layer and direction -- is one
``torch.autograd.Function`` around :func:`fastgates.layers.stack_forward` /
:func:`~fastgates.layers.stack_backward`: tensors cross into NumPy as views (no copy for
CPU tensors) and the results come back through ``torch.from_numpy``.  Dropout masks are
drawn with torch's generator, so ``torch.manual_seed`` governs them.  Packed sequences
are unpacked to a padded batch plus lengths, which the kernels take as they are.

PyTorch is imported when this module is, never by ``import fastgates``.  Supported: CPU
float32/float64 tensors, every constructor option except ``proj_size``; GRU additionally
takes ``linear_before_reset`` (default True, PyTorch's form).
"""

from __future__ import annotations

import math

try:
    import torch
except ImportError as exc:  # torch is an optional extra
    raise ImportError("fastgates.torch needs PyTorch: pip install torch "
                      "(or pip install 'fastgates[torch]')") from exc

import numpy as np
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import _checks
from .layers import StackSpec, check_dropout, parameter_names, stack_backward, stack_forward

__all__ = ["RNN", "GRU", "LSTM"]

_DTYPES = (torch.float32, torch.float64)


def _np(t):
    """A NumPy view of a CPU tensor (no copy), or None."""
    return None if t is None else t.detach().numpy()


def _weights(spec, params):
    """Group the flat parameter list per (layer, direction), zeros for absent biases."""
    arrays = [_np(p) for p in params]
    n = 4 if spec.bias else 2
    groups = [tuple(arrays[i:i + n]) for i in range(0, len(arrays), n)]
    if spec.bias:
        return groups
    zeros = np.zeros(_checks.GATES[spec.cell] * spec.hidden_size, arrays[0].dtype)
    return [g + (zeros, zeros) for g in groups]


class _Stack(torch.autograd.Function):
    """The stack as one autograd node: inputs x, h0, c0 and the flat parameters."""

    @staticmethod
    def forward(ctx, spec, n_threads, lengths, masks, x, h0, c0, *params):
        y, h_n, c_n, tape = stack_forward(spec, _weights(spec, params), _np(x), _np(h0),
                                          _np(c0), lengths=lengths, masks=masks,
                                          training=True, n_threads=n_threads)
        ctx.tape, ctx.n_threads = tape, n_threads
        ctx.has_h0, ctx.has_c0 = h0 is not None, c0 is not None
        ctx.set_materialize_grads(False)        # unused outputs give None, not zeros
        out = (torch.from_numpy(y), torch.from_numpy(h_n))
        return out + (torch.from_numpy(c_n),) if c_n is not None else out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, dh_n, dc_n=None):
        dx, dh0, dc0, grads = stack_backward(ctx.tape, _np(dy), _np(dh_n), _np(dc_n),
                                             n_threads=ctx.n_threads)
        n = 4 if ctx.tape.spec.bias else 2
        dparams = [torch.from_numpy(g) for per in grads for g in per[:n]]
        return (None, None, None, None,
                None if dx is None else torch.from_numpy(dx),
                torch.from_numpy(dh0) if ctx.has_h0 else None,
                torch.from_numpy(dc0) if ctx.has_c0 else None,
                *dparams)


class _RNNBase(torch.nn.Module):
    """What RNN, GRU and LSTM share; see their docstrings."""

    _cell = ""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, variant,
                 n_threads=None):
        super().__init__()
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"device={device!r} is not supported: fastgates.torch runs on CPU "
                             "tensors only (use torch.nn for other devices)")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in _DTYPES:
            raise TypeError(f"dtype={dtype} is not supported: fastgates.torch needs "
                            "torch.float32 or torch.float64")
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.mode = self._cell.upper()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout = check_dropout(dropout, num_layers)
        self.bidirectional = bool(bidirectional)
        self.proj_size = 0
        self.n_threads = _checks.check_n_threads(n_threads)
        self._spec = StackSpec(self._cell, variant, input_size, hidden_size, num_layers,
                               2 if bidirectional else 1, self.bias)
        G = _checks.GATES[self._cell]
        self._flat_weights_names = []
        self._all_weights = []
        for k, names in enumerate(parameter_names(self._spec)):
            D = self._spec.layer_input_size(k // self._spec.num_dirs)
            shapes = [(G * hidden_size, D), (G * hidden_size, hidden_size),
                      (G * hidden_size,), (G * hidden_size,)]
            for name, shape in zip(names, shapes):
                setattr(self, name, torch.nn.Parameter(torch.empty(shape, dtype=dtype)))
            self._flat_weights_names.extend(names)
            self._all_weights.append(list(names))
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's initialisation: every parameter uniform(-1/sqrt(H), 1/sqrt(H)), in order."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            torch.nn.init.uniform_(w, -stdv, stdv)

    @property
    def all_weights(self):
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self):
        """No-op, for code written against torch.nn (there is no cuDNN buffer to compact)."""

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += self._extra_repr()
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    def _extra_repr(self):
        return ""

    def _flat(self):
        params = [getattr(self, n) for n in self._flat_weights_names]
        dtype = params[0].dtype
        for name, p in zip(self._flat_weights_names, params):
            if p.device.type != "cpu":
                raise ValueError(f"parameter {name} is on device {p.device}: fastgates.torch runs "
                                 "on CPU tensors only")
            if p.dtype not in _DTYPES or p.dtype != dtype:
                raise TypeError(f"parameter {name} has dtype {p.dtype}; fastgates.torch needs all "
                                f"parameters float32 or all float64 (the first is {dtype})")
        return params, dtype

    def _check_state(self, name, s, shape, dtype, batched):
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
                             f"{'B, ' if batched else ''}hidden_size), got {tuple(s.shape)}")
        return s if batched else s.unsqueeze(1)

    def _split_hx(self, hx):
        return hx, None

    def forward(self, input, hx=None):
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
        if x.device.type != "cpu":
            raise ValueError(f"input is on device {x.device}: fastgates.torch runs on CPU "
                             "tensors only")
        if x.dtype != dtype:
            raise TypeError(f"input has dtype {x.dtype} but the parameters are {dtype}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"input has {x.shape[2]} features, expected input_size="
                             f"{self.input_size}")
        T, B = x.shape[:2]
        shape = (self.num_layers * self._spec.num_dirs, B, self.hidden_size)
        h0, c0 = self._split_hx(hx)
        h0 = self._check_state("hx" if self._cell != "lstm" else "hx[0] (h_0)", h0, shape,
                               dtype, batched)
        c0 = self._check_state("hx[1] (c_0)", c0, shape, dtype, batched)

        masks = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            p = self.dropout
            size = (T, B, self._spec.num_dirs * self.hidden_size)
            masks = [_np(torch.zeros(size, dtype=dtype) if p == 1
                         else torch.empty(size, dtype=dtype).bernoulli_(1 - p).div_(1 - p))
                     for _ in range(self.num_layers - 1)]

        inputs = (x, h0, c0, *params)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
            out = _Stack.apply(self._spec, self.n_threads, lengths, masks, *inputs)
        else:
            # inference: no tape, no autograd node
            y, h_n, c_n, _ = stack_forward(self._spec, _weights(self._spec, params), _np(x),
                                           _np(h0), _np(c0), lengths=lengths, masks=masks,
                                           training=False, n_threads=self.n_threads)
            out = tuple(torch.from_numpy(a) for a in (y, h_n, c_n) if a is not None)
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
        return y, self._join_hx(states)

    def _join_hx(self, states):
        return states[0]


_DOC = """Drop-in ``torch.nn.{cls}`` running on the fastgates CPU kernels.

    Same constructor, forward signature (tensor or PackedSequence input, {state}),
    parameter names, order and initialisation as ``torch.nn.{cls}``{extra}.  CPU
    float32/float64 only; ``n_threads`` (keyword) sets the kernels' OpenMP threads.
    Gradients flow through one autograd node per call (not twice differentiable).
"""


class RNN(_RNNBase):
    __doc__ = _DOC.format(cls="RNN", state="``hx``", extra="")
    _cell = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None,
                 *, n_threads=None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size is not supported: PyTorch itself supports it only for "
                             "LSTM, and fastgates.torch not at all")
        if kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
        self.nonlinearity = _checks.check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, variant=nonlinearity, n_threads=n_threads)
        self.mode = "RNN_" + nonlinearity.upper()

    def _extra_repr(self):
        return "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity}"


class GRU(_RNNBase):
    __doc__ = _DOC.format(
        cls="GRU", state="``hx``",
        extra=", plus the keyword ``linear_before_reset`` (default True, PyTorch's form; "
              "False: the textbook form, which torch.nn has no counterpart of)")
    _cell = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *,
                 linear_before_reset=True, n_threads=None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size is not supported: PyTorch itself supports it only for "
                             "LSTM, and fastgates.torch not at all")
        if kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
        self.linear_before_reset = bool(linear_before_reset)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype,
                         variant=_checks.gru_variant(linear_before_reset), n_threads=n_threads)

    def _extra_repr(self):
        return "" if self.linear_before_reset else ", linear_before_reset=False"


class LSTM(_RNNBase):
    __doc__ = _DOC.format(cls="LSTM", state="``hx = (h_0, c_0)``; ``proj_size`` is not supported",
                          extra="")
    _cell = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *,
                 n_threads=None):
        if proj_size != 0:
            raise ValueError(f"proj_size={proj_size} is not supported by fastgates.torch.LSTM "
                             "(use torch.nn.LSTM for projections)")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, variant="", n_threads=n_threads)

    def _split_hx(self, hx):
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx of an LSTM must be a tuple (h_0, c_0) of tensors, got "
                            f"{type(hx).__name__}")
        return hx[0], hx[1]

    def _join_hx(self, states):
        return states[0], states[1]


from ._torch_convert import from_torch, to_torch, tracing as _tracing, traced_forward as _traced_forward  # noqa: E402,E501
__all__ += ["to_torch", "from_torch"]
