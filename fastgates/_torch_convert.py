"""Converting between fastgates modules and their ``torch.nn`` twins (``fastgates.torch.to_torch``).

Design: a fastgates module and its twin (``fastgates.torch.LSTM`` <-> ``torch.nn.LSTM``,
and so on) have the same constructor, parameter names and state_dict, so a conversion
builds the other class from the module's configuration and loads the state_dict.
Models are deep-copied first and converted module by module (shared submodules stay
shared); the original is never modified.  A module whose cell has no ``torch.nn`` twin
-- the textbook GRU, a peephole LSTM, any parameter torch.nn does not have (LayerNorm
cells) -- is refused by its path in the model, before anything is converted.

:func:`traced_forward` is what a fastgates module runs while ``torch.jit.trace``,
``torch.onnx.export`` or ``torch.export`` records it: the compiled kernels are opaque
to those tracers (they would record the outputs as constants), so the twin's operators
run instead, on the module's own parameters.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

__all__ = ["to_torch", "from_torch"]

_TORCH_NN = (torch.nn.RNN, torch.nn.GRU, torch.nn.LSTM)


def _ft():
    from . import torch as ft     # the modules this file converts; imported when first used
    return ft


def _numpy_layer_classes():
    from . import layers
    return (layers.RNN, layers.GRU, layers.LSTM)


def _why_no_twin(m):
    """Why the fastgates module/layer ``m`` has no torch.nn twin, or None."""
    if hasattr(m, "linear_before_reset") and not m.linear_before_reset:
        return ("the textbook GRU (linear_before_reset=False) has no torch.nn twin "
                "(torch.nn.GRU is the linear-before-reset form)")
    names = list(m.state_dict())
    if getattr(m, "peephole", False) or any(n.startswith("weight_peep_") for n in names):
        return "an LSTM with peepholes has no torch.nn twin"
    extra = [n for n in names if not n.startswith(("weight_ih_", "weight_hh_", "bias_ih_",
                                                   "bias_hh_", "weight_hr_"))]
    if extra:
        return f"parameters {extra} have no counterpart in torch.nn.{type(m).__name__}"
    return None


def _config(m):
    cfg = dict(input_size=m.input_size, hidden_size=m.hidden_size, num_layers=m.num_layers,
               bias=m.bias, batch_first=m.batch_first, dropout=m.dropout,
               bidirectional=m.bidirectional)
    if hasattr(m, "nonlinearity"):
        cfg["nonlinearity"] = m.nonlinearity
    if getattr(m, "proj_size", 0):
        cfg["proj_size"] = m.proj_size
    return cfg


def _torch_twin(m, share=False):
    """The torch.nn twin of a fastgates.torch module or fastgates layer ``m``."""
    cls = getattr(torch.nn, type(m).__name__)
    if isinstance(m, torch.nn.Module):
        dtype = next(m.parameters()).dtype
    else:                                           # a NumPy layer
        dtype = torch.float64 if np.dtype(m.dtype) == np.float64 else torch.float32
    twin = cls(**_config(m), device="meta" if share else "cpu", dtype=dtype)
    if share:      # the module's own Parameters (RNNBase.__setattr__ updates _flat_weights)
        for name in twin._flat_weights_names:
            setattr(twin, name, getattr(m, name))
    else:
        state = m.state_dict()
        twin.load_state_dict({k: torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v)
                              else v for k, v in state.items()})
        if isinstance(m, torch.nn.Module):
            for name, p in m.named_parameters():
                getattr(twin, name).requires_grad_(p.requires_grad)
    twin.train(m.training)
    return twin


def _fastgates_twin(m, n_threads):
    ft = _ft()
    dtype = next(m.parameters()).dtype
    twin = getattr(ft, type(m).__name__)(**_config(m), dtype=dtype, n_threads=n_threads)
    twin.load_state_dict(m.state_dict())
    for name, p in m.named_parameters():
        getattr(twin, name).requires_grad_(p.requires_grad)
    twin.train(m.training)
    return twin


def _replace(model, match, convert):
    """A deep copy of ``model`` with every submodule ``m`` where ``match(m)`` converted.

    ``match`` returns None (leave ``m``), True (convert it) or a reason to refuse it;
    every refusal is collected and reported together, by path, before converting.
    """
    refused = []
    for path, m in model.named_modules(remove_duplicate=False):
        why = match(m)
        if isinstance(why, str):
            refused.append(f"{path or '(the model itself)'} ({type(m).__module__}."
                           f"{type(m).__qualname__}): {why}")
    if refused:
        raise ValueError("cannot convert: " + "; ".join(refused))
    model = copy.deepcopy(model)
    if match(model):
        return convert(model)
    done = {}

    def walk(parent):
        for name, child in list(parent._modules.items()):   # named_children() skips repeats
            if child is None:
                continue
            if match(child):
                if id(child) not in done:
                    done[id(child)] = convert(child)
                setattr(parent, name, done[id(child)])
            else:
                walk(child)

    walk(model)
    return model


def to_torch(module):
    """A copy of a model with every fastgates module replaced by its ``torch.nn`` twin.

    ``fastgates.torch.LSTM`` becomes ``torch.nn.LSTM`` (``GRU``, ``RNN`` likewise) with
    the same configuration, weights, ``requires_grad`` flags and train/eval mode, so that
    TorchScript (``torch.jit.script``), ``torch.onnx.export``, CUDA and everything else
    torch offers work on the result.  A NumPy layer (``fastgates.LSTM``, ...) converts
    to its twin too.  The original is not modified; hooks registered on the converted
    modules are not carried over.

    Parameters
    ----------
    module : torch.nn.Module or fastgates.RNN / GRU / LSTM
        A fastgates module, a NumPy layer, or any model containing fastgates modules.

    Returns
    -------
    torch.nn.Module
        The converted copy (the twin itself when ``module`` is a fastgates module).

    Raises
    ------
    ValueError
        A fastgates module without a ``torch.nn`` twin -- the textbook GRU
        (``linear_before_reset=False``), an LSTM with peepholes, a cell with parameters
        ``torch.nn`` does not have (LayerNorm cells) -- named by its path in the model.
    TypeError
        ``module`` is neither a torch module nor a fastgates layer.

    Examples
    --------
    >>> import torch, fastgates.torch
    >>> model = torch.nn.Sequential(fastgates.torch.LSTM(8, 16))
    >>> fastgates.torch.to_torch(model)[0]
    LSTM(8, 16)
    """
    ft = _ft()
    fg = (ft.RNN, ft.GRU, ft.LSTM)
    if isinstance(module, _numpy_layer_classes()):
        why = _why_no_twin(module)
        if why:
            raise ValueError(f"cannot convert {module!r}: {why}")
        return _torch_twin(module)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"to_torch takes a torch.nn.Module or a fastgates layer, got "
                        f"{type(module).__name__}")

    def match(m):
        if not isinstance(m, fg):
            return None
        return _why_no_twin(m) or True

    return _replace(module, match, _torch_twin)


def from_torch(module, *, n_threads=None):
    """A copy of a model with every ``torch.nn.RNN/GRU/LSTM`` replaced by its fastgates twin.

    The inverse of :func:`to_torch`: ``torch.nn.LSTM`` becomes ``fastgates.torch.LSTM``
    (``GRU``, ``RNN`` likewise) with the same configuration, weights, ``requires_grad``
    flags and train/eval mode.  Only modules of exactly those classes are converted.

    Parameters
    ----------
    module : torch.nn.Module
        A ``torch.nn.RNN/GRU/LSTM`` or any model containing them, on the CPU, float32
        or float64.
    n_threads : int or None
        ``n_threads`` of every new fastgates module.

    Returns
    -------
    torch.nn.Module
        The converted copy.

    Raises
    ------
    ValueError
        A module fastgates cannot run -- parameters off the CPU or of another dtype
        than float32/float64, a subclass of ``torch.nn.RNN/GRU/LSTM`` (its ``forward``
        may differ) -- named by its path in the model.
    TypeError
        ``module`` is not a torch module.

    Examples
    --------
    >>> import torch, fastgates.torch
    >>> fastgates.torch.from_torch(torch.nn.GRU(8, 16, num_layers=2))
    GRU(8, 16, num_layers=2)
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")

    def match(m):
        if not isinstance(m, _TORCH_NN):
            return None
        if type(m) not in _TORCH_NN:
            return (f"a subclass of torch.nn.{type(m).__mro__[1].__name__} may override its "
                    "forward; convert it yourself")
        for name, p in m.named_parameters():
            if p.device.type != "cpu":
                return f"parameter {name} is on {p.device}; fastgates runs on the CPU"
            if p.dtype not in (torch.float32, torch.float64):
                return f"parameter {name} is {p.dtype}; fastgates needs float32 or float64"
        return True

    return _replace(module, match, lambda m: _fastgates_twin(m, n_threads))


def tracing():
    """True while ``torch.jit.trace``, ``torch.onnx.export`` or ``torch.export`` records."""
    exporting = getattr(getattr(torch, "compiler", None), "is_exporting", None)
    return torch.jit.is_tracing() or bool(exporting and exporting())


def traced_forward(module, input, hx=None):
    """The forward of a fastgates module in torch operators, for tracers and exporters."""
    why = _why_no_twin(module)
    if why:
        raise RuntimeError(f"{type(module).__name__} cannot be traced or exported by torch: {why}; "
                           "export the layer with fastgates.onnx.export instead")
    return _torch_twin(module, share=True)(input, hx)
