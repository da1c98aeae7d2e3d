"""One definition per cell: gates, parameters, states, codes and layouts, in one table.

Design: every recurrent cell fastgates knows is one :class:`CellDef` in :data:`CELLS`.
The rest of the package reads the facts from here instead of restating them: how
many gates and in which order (PyTorch's: LSTM i, f, g, o; GRU r, z, n), which
parameters a layer of the cell has (PyTorch's names, shapes, initialisation, and
which of them vanish with ``bias=False``), which states it carries, the code of its
compiled kernels, the reference's step functions, how the public API selects it, and
how its gates map onto other layouts (ONNX's operators order the gates differently:
LSTM i, o, f, c; GRU z, r, h).

Who reads what:

* ``_checks`` (validation), ``_fast`` and ``reference``: gates, states, parameters
  (their kernel argument names), ``kernel``/``variant`` (the fields of ``Forward`` and
  ``Cache``), ``code`` (the compiled core), ``step`` (the reference's step functions
  ``reference._<step>_step`` / ``_<step>_step_backward``).
* ``layers`` and ``torch``: ``layer`` names the class, ``option`` the keyword that picks
  one cell among the cells of that class (``RNN(nonlinearity=...)``,
  ``GRU(linear_before_reset=...)``); parameters, their shapes and initialisation.
  A class named here that the module does not write by hand is made from the table with
  the common constructor (``input_size, hidden_size, num_layers, *, bias, ...``).
* ``lm``: ``--cell`` takes the ``kernel`` names; checkpoints store parameters by name.
* tests and bench: :data:`CELLS` is the list of cells to sweep.

A new cell is a new entry here, plus its compiled kernels and its reference step.
Parameters beyond the four of PyTorch's RNNs are declared here with their shape and
initialisation (``init="ones"`` for a LayerNorm gain, ``bias=False`` keeps them with
``bias=False``) and reach the kernels by their stem (``Forward.params``); layers,
torch modules and the LM handle them without knowing them.

Shapes are written with symbols, resolved by :func:`param_shapes`:
``G`` gates, ``H`` hidden units, ``D`` the layer's input width, ``R`` the width of
the recurrent state h (``H``, or ``P = proj_size`` for a projected LSTM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["Param", "OnnxLayout", "CellDef", "CELLS", "get", "by_kernel", "select", "families",
           "param_specs", "param_shapes", "param_names", "init_spec", "to_onnx_gates",
           "from_onnx_gates"]


@dataclass(frozen=True)
class Param:
    """One parameter of one (layer, direction).

    stem   PyTorch's name without the layer suffix: ``weight_ih`` -> ``weight_ih_l0``,
           ``weight_ih_l1_reverse``
    shape  symbols and ints, see the module docstring
    init   "uniform" (U(-1/sqrt(H), 1/sqrt(H)), PyTorch's RNN default), "ones", "zeros"
    bias   True: absent when the layer has ``bias=False``
    when   None (always), "proj" (only with proj_size > 0), "peephole" (only with peepholes)
    arg    the functional kernels' name of it (``w_ih``); its gradient is ``"d" + arg``.
           Default: ``weight_*`` -> ``w_*``, ``bias_*`` -> ``b_*``, otherwise the stem.
    """

    stem: str
    shape: tuple
    init: str = "uniform"
    bias: bool = False
    when: Optional[str] = None
    arg: str = ""

    def __post_init__(self):
        if not self.arg:
            head, sep, tail = self.stem.partition("_")
            prefix = {"weight": "w_", "bias": "b_"}.get(head)
            object.__setattr__(self, "arg", prefix + tail if prefix and sep else self.stem)


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

    name     the key in :data:`CELLS`: the one internal spelling of the cell
    code     the compiled core's cell code (``FG_*`` in src_c: the C enum has these numbers)
    kernel   the kernel family: ``fastgates.<kernel>_forward``, ``Cache.cell``, the LM's
             ``--cell``; several cells may share one family (told apart by ``option``)
    variant  the kernels' variant field (``Forward.variant``, ``Cache.variant``)
    gates    gate names in the order of the rows of ``weight_ih`` / ``weight_hh``
    states   the states carried between steps ("h",) or ("h", "c")
    params   the parameters of one (layer, direction), in PyTorch's order
    step     the reference's step functions: ``_<step>_step``, ``_<step>_step_backward``
    layer    the class of ``fastgates.layers`` and ``fastgates.torch`` that runs the cell
    option   (keyword, value): the keyword of the kernel function and the layer class that
             selects this cell within its family; None for the only cell of a family.
             The first cell of a family in :data:`CELLS` is the family's default.
    onnx     the ONNX layout, or None when ONNX has no operator for the cell
    torch    the ``torch.nn`` class with the same math, or None
    """

    name: str
    code: int
    kernel: str
    variant: str
    gates: tuple
    states: tuple
    params: tuple
    step: str
    layer: str
    option: Optional[tuple] = None
    onnx: Optional[OnnxLayout] = None
    torch: Optional[str] = None

    @property
    def G(self) -> int:
        """Number of gates."""
        return len(self.gates)

    def __repr__(self):
        return f"<fastgates cell {self.name!r} ({self.kernel} {self.variant or '-'}, G={self.G})>"


_W = (Param("weight_ih", ("G*H", "D")), Param("weight_hh", ("G*H", "R")),
      Param("bias_ih", ("G*H",), bias=True), Param("bias_hh", ("G*H",), bias=True))
_LSTM_EXTRA = (Param("weight_hr", ("R", "H"), when="proj"),
               Param("weight_peep", (3, "H"), when="peephole"))
# LayerNorm gains of the input and recurrent projections (G*H,), and the LSTM's LayerNorm
# of c_t (H,): they stay with bias=False (only the two biases go).
_LN = (Param("ln_ih_weight", ("G*H",), "ones"), Param("ln_hh_weight", ("G*H",), "ones"))
_LN_C = (Param("ln_c_weight", ("H",), "ones"), Param("ln_c_bias", ("H",), "zeros"))

#: Every cell, by name, in the order tests and reports list them.
CELLS = {c.name: c for c in (
    CellDef("rnn_tanh", 0, "rnn", "tanh", ("h",), ("h",), _W, "rnn", "RNN",
            ("nonlinearity", "tanh"), OnnxLayout("RNN", (0,), {"activations": ["Tanh"]}), "RNN"),
    CellDef("rnn_relu", 1, "rnn", "relu", ("h",), ("h",), _W, "rnn", "RNN",
            ("nonlinearity", "relu"), OnnxLayout("RNN", (0,), {"activations": ["Relu"]}), "RNN"),
    CellDef("gru", 2, "gru", "lbr", ("r", "z", "n"), ("h",), _W, "gru", "GRU",
            ("linear_before_reset", True),
            OnnxLayout("GRU", (1, 0, 2), {"linear_before_reset": 1}), "GRU"),
    CellDef("gru_rb", 3, "gru", "rb", ("r", "z", "n"), ("h",), _W, "gru", "GRU",
            ("linear_before_reset", False),
            OnnxLayout("GRU", (1, 0, 2), {"linear_before_reset": 0}), None),
    CellDef("lstm", 4, "lstm", "", ("i", "f", "g", "o"), ("h", "c"), _W + _LSTM_EXTRA, "lstm",
            "LSTM", None, OnnxLayout("LSTM", (0, 3, 1, 2), {}, peep_order=(0, 2, 1)), "LSTM"),
    CellDef("lnlstm", 5, "lnlstm", "", ("i", "f", "g", "o"), ("h", "c"), _W + _LN + _LN_C,
            "lnlstm", "LayerNormLSTM"),
    CellDef("lngru", 6, "lngru", "", ("r", "z", "n"), ("h",), _W + _LN, "lngru", "LayerNormGRU"),
)}

_BY_KERNEL = {(c.kernel, c.variant): c for c in CELLS.values()}


def get(name) -> CellDef:
    """The :class:`CellDef` called ``name`` (a CellDef passes through; a clear error otherwise)."""
    if isinstance(name, CellDef):
        return name
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell {name!r}; fastgates knows {sorted(CELLS)}") from None


def by_kernel(kernel: str, variant: str) -> CellDef:
    """The cell of a ``(Forward.cell, Forward.variant)`` / ``(Cache.cell, Cache.variant)`` pair."""
    return _BY_KERNEL[kernel, variant]


def _group_families() -> dict:
    out: dict = {}
    for c in CELLS.values():
        out.setdefault(c.kernel, []).append(c)
    return {kernel: tuple(defs) for kernel, defs in out.items()}


# built once: the table is fixed at import, and every public call selects through it
_FAMILIES = _group_families()


def families() -> dict:
    """kernel family -> its cells (the default first), in table order (a fresh dict of
    tuples: the caller may change it)."""
    return dict(_FAMILIES)


def option_keywords(kernel: str) -> frozenset:
    """The keywords that tell the cells of family ``kernel`` apart (empty for one cell)."""
    return _OPTION_KEYWORDS.get(kernel, frozenset())


_OPTION_KEYWORDS = {kernel: frozenset(c.option[0] for c in defs if c.option is not None)
                    for kernel, defs in _FAMILIES.items()}


def select(kernel: str, **options) -> CellDef:
    """The cell of family ``kernel`` whose ``option`` matches ``options``.

    Only the keyword the family's cells are told apart by is looked at; others are
    ignored (so one call can serve every family).  Without it: the family's default.
    ``options`` are expected validated (``_checks`` gives the public error messages).
    """
    cells = _FAMILIES.get(kernel)
    if not cells:
        raise ValueError(f"unknown cell {kernel!r}; fastgates knows {sorted(families())}")
    for c in cells:
        if c.option is not None and c.option[0] in options and options[c.option[0]] == c.option[1]:
            return c
    keyword = cells[0].option[0] if cells[0].option else None
    if keyword is not None and keyword in options:
        raise ValueError(f"{keyword} must be one of {[c.option[1] for c in cells]}, "
                         f"got {options[keyword]!r}")
    return cells[0]


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


def init_spec(param: Param, H: int) -> tuple:
    """How to initialise ``param`` of a layer with H units: ("uniform", bound) or ("constant", v).

    "uniform" is PyTorch's RNN initialisation U(-1/sqrt(H), 1/sqrt(H)); every front end
    draws it with its own generator (NumPy's in ``layers``, torch's in ``fastgates.torch``).
    """
    if param.init == "uniform":
        return "uniform", 1.0 / math.sqrt(H)
    return "constant", {"ones": 1.0, "zeros": 0.0}[param.init]


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
