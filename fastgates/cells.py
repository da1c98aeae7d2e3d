"""One definition per cell: gates, parameters, states and layouts, in one table.

Design: every recurrent cell fastgates knows is one :class:`CellDef` in :data:`CELLS`.
The rest of the package reads the facts from here instead of restating them: how
many gates and in which order (PyTorch's: LSTM i, f, g, o; GRU r, z, n), which
parameters a layer of the cell has (PyTorch's names, shapes, initialisation, and
which of them vanish with ``bias=False``), which states it carries, the code of its
compiled kernels, and how its gates map onto other layouts (ONNX's operators order
the gates differently: LSTM i, o, f, c; GRU z, r, h).

Shapes are written with symbols, resolved by :func:`param_shapes`:
``G`` gates, ``H`` hidden units, ``D`` the layer's input width, ``R`` the width of
the recurrent state h (``H``, or ``P = proj_size`` for a projected LSTM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["Param", "OnnxLayout", "CellDef", "CELLS", "get", "param_specs", "param_shapes",
           "param_names", "to_onnx_gates", "from_onnx_gates"]


@dataclass(frozen=True)
class Param:
    """One parameter of one (layer, direction).

    stem   PyTorch's name without the layer suffix: ``weight_ih`` -> ``weight_ih_l0``,
           ``weight_ih_l1_reverse``
    shape  symbols and ints, see the module docstring
    init   "uniform" (U(-1/sqrt(H), 1/sqrt(H)), PyTorch's RNN default), "ones", "zeros"
    bias   True: absent when the layer has ``bias=False``
    when   None (always), "proj" (only with proj_size > 0), "peephole" (only with peepholes)
    """

    stem: str
    shape: tuple
    init: str = "uniform"
    bias: bool = False
    when: Optional[str] = None


@dataclass(frozen=True)
class OnnxLayout:
    """How the cell maps onto an ONNX recurrent operator.

    op          "RNN", "GRU" or "LSTM"
    gate_order  ONNX's gate k is fastgates' gate ``gate_order[k]``
    attrs       the operator attributes that select this cell's math
    peep_order  ONNX's peephole k is fastgates' peephole row ``peep_order[k]`` (LSTM)
    """

    op: str
    gate_order: tuple
    attrs: dict = field(default_factory=dict)
    peep_order: Optional[tuple] = None


@dataclass(frozen=True)
class CellDef:
    """What a cell is.

    name     the key in :data:`CELLS`
    kernel   the public kernel family: ``fastgates.<kernel>_forward``
    variant  the kernel variant ("tanh"/"relu" rnn, "lbr"/"rb" gru, "" otherwise)
    gates    gate names in the order of the rows of ``weight_ih`` / ``weight_hh``
    states   the states carried between steps ("h",) or ("h", "c")
    params   the parameters of one (layer, direction), in PyTorch's order
    onnx     the ONNX layout, or None when ONNX has no operator for the cell
    torch    the ``torch.nn`` class with the same math, or None
    """

    name: str
    kernel: str
    variant: str
    gates: tuple
    states: tuple
    params: tuple
    onnx: Optional[OnnxLayout] = None
    torch: Optional[str] = None

    @property
    def G(self) -> int:
        """Number of gates."""
        return len(self.gates)


_W = (Param("weight_ih", ("G*H", "D")), Param("weight_hh", ("G*H", "R")),
      Param("bias_ih", ("G*H",), bias=True), Param("bias_hh", ("G*H",), bias=True))
_LSTM_EXTRA = (Param("weight_hr", ("R", "H"), when="proj"),
               Param("weight_peep", (3, "H"), when="peephole"))

CELLS = {
    "rnn_tanh": CellDef("rnn_tanh", "rnn", "tanh", ("h",), ("h",), _W,
                        OnnxLayout("RNN", (0,), {"activations": ["Tanh"]}), "RNN"),
    "rnn_relu": CellDef("rnn_relu", "rnn", "relu", ("h",), ("h",), _W,
                        OnnxLayout("RNN", (0,), {"activations": ["Relu"]}), "RNN"),
    "gru": CellDef("gru", "gru", "lbr", ("r", "z", "n"), ("h",), _W,
                   OnnxLayout("GRU", (1, 0, 2), {"linear_before_reset": 1}), "GRU"),
    "gru_rb": CellDef("gru_rb", "gru", "rb", ("r", "z", "n"), ("h",), _W,
                      OnnxLayout("GRU", (1, 0, 2), {"linear_before_reset": 0}), None),
    "lstm": CellDef("lstm", "lstm", "", ("i", "f", "g", "o"), ("h", "c"), _W + _LSTM_EXTRA,
                    OnnxLayout("LSTM", (0, 3, 1, 2), {}, peep_order=(0, 2, 1)), "LSTM"),
}


def get(name: str) -> CellDef:
    """The :class:`CellDef` called ``name`` (a clear error for an unknown one)."""
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; fastgates knows {sorted(CELLS)}") from None


def param_specs(cell: CellDef, *, bias: bool = True, proj_size: int = 0,
                peephole: bool = False) -> list:
    """The :class:`Param` entries a layer of ``cell`` has, in PyTorch's order."""
    on = {None: True, "proj": proj_size > 0, "peephole": bool(peephole)}
    return [p for p in cell.params if on[p.when] and (bias or not p.bias)]


def param_shapes(cell: CellDef, D: int, H: int, *, bias: bool = True, proj_size: int = 0,
                 peephole: bool = False) -> dict:
    """stem -> shape of every parameter of one (layer, direction) with input width ``D``."""
    sym = {"G*H": cell.G * H, "H": H, "D": D, "R": proj_size or H, "P": proj_size}
    return {p.stem: tuple(sym[s] if isinstance(s, str) else s for s in p.shape)
            for p in param_specs(cell, bias=bias, proj_size=proj_size, peephole=peephole)}


def param_names(stems, layer: int, reverse: bool = False) -> list:
    """PyTorch's names of ``stems`` in ``layer``: ``weight_ih_l0``, ``bias_hh_l1_reverse``."""
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    return [s + sfx for s in stems]


def to_onnx_gates(a: np.ndarray, cell: CellDef, axis: int = 0) -> np.ndarray:
    """Reorder the G gate blocks of ``a`` along ``axis`` from fastgates' order to ONNX's."""
    return _permute_blocks(a, cell.G, cell.onnx.gate_order, axis)


def from_onnx_gates(a: np.ndarray, cell: CellDef, axis: int = 0) -> np.ndarray:
    """Reorder the G gate blocks of ``a`` along ``axis`` from ONNX's order to fastgates'."""
    inverse = tuple(int(i) for i in np.argsort(cell.onnx.gate_order))
    return _permute_blocks(a, cell.G, inverse, axis)


def _permute_blocks(a, G, order, axis):
    blocks = np.split(np.asarray(a), G, axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


# ONNX layouts of whole operator inputs (fastgates.onnx): biases, peepholes, directions.
#
# An ONNX recurrent operator keeps both directions in one tensor (axis 0: forward, then
# reverse), its two biases as one vector [Wb, Rb] per direction, and the LSTM peepholes as
# one vector in the order i, o, f; fastgates keeps one (layer, direction) per parameter
# set, PyTorch's two biases, and the peepholes as (3, H) rows i, f, o.

ONNX_DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"),
                            "LSTM": ("Sigmoid", "Tanh", "Tanh")}


def onnx_activations(cell: CellDef, num_dirs: int = 1) -> list:
    """The ``activations`` attribute of ``cell``'s ONNX operator, one set per direction."""
    acts = cell.onnx.attrs.get("activations", ONNX_DEFAULT_ACTIVATIONS[cell.onnx.op])
    return list(acts) * num_dirs


def to_onnx_bias(b_ih: np.ndarray, b_hh: np.ndarray, cell: CellDef) -> np.ndarray:
    """ONNX's bias row ``[Wb, Rb]`` (2 G H,) of one direction from PyTorch's two biases."""
    return np.concatenate([to_onnx_gates(b_ih, cell), to_onnx_gates(b_hh, cell)])


def from_onnx_bias(b: np.ndarray, cell: CellDef) -> tuple:
    """PyTorch's ``(b_ih, b_hh)`` from ONNX's bias row ``[Wb, Rb]`` (2 G H,) of one direction."""
    wb, rb = np.split(np.asarray(b), 2)
    return from_onnx_gates(wb, cell), from_onnx_gates(rb, cell)


def to_onnx_peepholes(w_peep: np.ndarray, cell: CellDef) -> np.ndarray:
    """ONNX's peephole vector (3 H,) (i, o, f) from fastgates' ``weight_peep`` (3, H) (i, f, o)."""
    w_peep = np.asarray(w_peep)
    return np.concatenate([w_peep[k] for k in cell.onnx.peep_order])


def from_onnx_peepholes(p: np.ndarray, cell: CellDef) -> np.ndarray:
    """fastgates' ``weight_peep`` (3, H) (i, f, o) from ONNX's peephole vector (3 H,) (i, o, f)."""
    rows = np.split(np.asarray(p), 3)
    out = [None] * 3
    for k, row in zip(cell.onnx.peep_order, rows):
        out[k] = row
    return np.stack(out)


def stack_directions(per_direction: list) -> np.ndarray:
    """One ONNX operator input (num_dirs, ...) from one array per direction (forward first)."""
    return np.stack(per_direction)


def split_directions(a: np.ndarray) -> list:
    """One array per direction (forward first) from an ONNX operator input (num_dirs, ...)."""
    return [a[d] for d in range(a.shape[0])]
