"""Building ONNX graphs of recurrent stacks: one ONNX operator per layer, and the glue.

Design: :class:`Graph` collects nodes and initializers under unique names;
:func:`add_stack` appends the nodes of a stacked (maybe bidirectional) recurrent network
and is shared by :func:`fastgates.onnx.export` (one layer object) and the language model's
export (:mod:`fastgates.lm.onnx_export`).  Weights arrive per (layer, direction) under
fastgates' parameter stems in fastgates' layout and are converted to ONNX's by the
helpers of :mod:`fastgates.cells` (gate order, the bias row [Wb, Rb], peepholes
i, o, f, directions stacked on axis 0).  Everything is float32: ONNX Runtime runs its
recurrent operators in float32 only.

Per layer, for an ONNX output ``Y`` (T, num_dirs, B, H) and states (num_dirs, B, H)::

    y     = Squeeze(Y, axis 1)                         one direction
          = Reshape(Transpose(Y, [0, 2, 1, 3]), (T, B, 2H))   two: [forward, reverse]
    h0_l  = Slice(h0, l * dirs, (l + 1) * dirs)        stacked layers share one h0 input

and, with a ``lengths`` input, for fastgates' rows of length 0::

    sequence_lens = Cast(Max(lengths, 1), int32)       the operators never see a 0
    h_n   = Where(lengths == 0, h0_l (or 0), Y_h)      per layer, likewise c_n
    y     = Where(lengths == 0, 0, y)                  once, on the last layer's output

ONNX Runtime 1.32 does accept ``sequence_lens`` of 0: it writes zeros to ``Y`` for such
a row, as fastgates does, but also zeros to ``Y_h`` / ``Y_c``, where fastgates returns
the initial state; the ONNX spec says nothing about 0, and other runtimes (and older
ONNX Runtimes) may refuse it.  Clamping to 1 and selecting the results makes the model
independent of that: a length-0 row runs one step whose results are all replaced.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import cells


class Graph:
    """Nodes and initializers of one ONNX graph under construction."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self._used = set()

    def fresh(self, stem):
        """A name not used before in this graph: ``stem``, else ``stem_2``, ``stem_3``, ..."""
        name, n = stem, 1
        while name in self._used:
            n += 1
            name = f"{stem}_{n}"
        self._used.add(name)
        return name

    def const(self, stem, array):
        """Add ``array`` as an initializer; returns its name."""
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, stem, values):
        return self.const(stem, np.asarray(values, np.int64))

    def op(self, op_type, inputs, n_out=1, *, name=None, outputs=None, **attrs):
        """Append a node; returns its output name (or the list of them when ``n_out > 1``)."""
        stem = name or op_type
        outputs = outputs or [self.fresh(f"{stem}_out{i}" if n_out > 1 else f"{stem}_out")
                              for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs),
                                           name=self.fresh(stem), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def model(self, inputs, outputs, *, opset, name, doc, metadata):
        """The finished, checked ModelProto."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model_gen_version(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fastgates",
            doc_string=doc)
        from .. import __version__
        model.producer_version = __version__
        helper.set_model_props(model, metadata)
        onnx.checker.check_model(model, full_check=True)
        return model


def float_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def int_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.INT64, shape)


def _onnx_weights(cell, per_dir):
    """The W, R, B, P initializer arrays of one operator (B, P None when absent)."""
    f32 = [{k: np.asarray(v, np.float32) for k, v in p.items()} for p in per_dir]
    W = cells.stack_directions([cells.to_onnx_gates(p["weight_ih"], cell) for p in f32])
    R = cells.stack_directions([cells.to_onnx_gates(p["weight_hh"], cell) for p in f32])
    B = P = None
    if "bias_ih" in f32[0]:
        B = cells.stack_directions([cells.to_onnx_bias(p["bias_ih"], p["bias_hh"], cell)
                                    for p in f32])
    if "weight_peep" in f32[0]:
        P = cells.stack_directions([cells.to_onnx_peepholes(p["weight_peep"], cell)
                                    for p in f32])
    return W, R, B, P


def add_layer(g, cell, per_dir, x, hidden_size, *, tag, h0=None, c0=None, seq_lens=None,
              zero_rows=None):
    """One ONNX recurrent operator and its output glue.

    Parameters
    ----------
    g : Graph
    cell : cells.CellDef
    per_dir : list of dict stem -> array, one per direction (forward first)
    x : name of the (T, B, D) float32 input
    hidden_size : int
    tag : str, used in the names of the node and its initializers ("l0", ...)
    h0, c0 : names of (num_dirs, B, H) states, or None (zeros)
    seq_lens : name of the (B,) int32 lengths, or None
    zero_rows : name of the (1, B, 1) bool "length is 0" mask, or None; where it is
        set, h_n / c_n are h0 / c0 (zeros without them)

    Returns
    -------
    y : name of (T, B, num_dirs * H);  h_n, c_n : names of (num_dirs, B, H) (c_n None
    unless LSTM)
    """
    lay = cell.onnx
    dirs = len(per_dir)
    lstm = lay.op == "LSTM"
    W, R, B, P = _onnx_weights(cell, per_dir)
    inputs = [x, g.const(f"W_{tag}", W), g.const(f"R_{tag}", R),
              "" if B is None else g.const(f"B_{tag}", B), seq_lens or "", h0 or ""]
    if lstm:
        inputs += [c0 or "", "" if P is None else g.const(f"P_{tag}", P)]
    while inputs[-1] == "":
        inputs.pop()
    attrs = {k: v for k, v in lay.attrs.items() if k != "activations"}
    if "activations" in lay.attrs:
        attrs["activations"] = cells.onnx_activations(cell, dirs)
    outs = g.op(lay.op, inputs, 3 if lstm else 2, name=f"{lay.op}_{tag}",
                hidden_size=int(hidden_size),
                direction="bidirectional" if dirs == 2 else "forward", **attrs)
    Y, Y_h = outs[0], outs[1]
    Y_c = outs[2] if lstm else None
    if dirs == 1:
        y = g.op("Squeeze", [Y, g.ints("axes_1", [1])], name=f"squeeze_{tag}")
    else:
        yt = g.op("Transpose", [Y], name=f"transpose_{tag}", perm=[0, 2, 1, 3])
        y = g.op("Reshape", [yt, g.ints("shape_TB_1", [0, 0, -1])], name=f"reshape_{tag}")
    if zero_rows is not None:
        zero = g.const("zero_f32", np.zeros((), np.float32))
        Y_h = g.op("Where", [zero_rows, h0 or zero, Y_h], name=f"h_len0_{tag}")
        if lstm:
            Y_c = g.op("Where", [zero_rows, c0 or zero, Y_c], name=f"c_len0_{tag}")
    return y, Y_h, Y_c


def add_stack(g, cell, params, x, *, num_layers, num_dirs, hidden_size, h0=None, c0=None,
              lengths=None):
    """A stack of ``num_layers`` operators; layer l reads the output of layer l - 1.

    ``params[l * num_dirs + d]`` holds the weights of (layer l, direction d); ``h0`` /
    ``c0`` name (num_layers * num_dirs, B, H) states, ``lengths`` a (B,) int64 input.
    Returns the names of y (T, B, num_dirs * H), h_n and c_n (num_layers * num_dirs, B, H).
    """
    seq_lens = zero_rows = None
    if lengths is not None:
        at_least_1 = g.op("Max", [lengths, g.const("one_i64", np.ones((), np.int64))],
                          name="lengths_at_least_1")
        seq_lens = g.op("Cast", [at_least_1], name="lengths_int32", to=TensorProto.INT32)
        is0 = g.op("Equal", [lengths, g.const("zero_i64", np.zeros((), np.int64))],
                   name="length_is_0")
        zero_rows = g.op("Unsqueeze", [is0, g.ints("axes_0_2", [0, 2])], name="length_is_0_b")
    hs, cs = [], []
    for layer in range(num_layers):
        def state(s):
            if s is None or num_layers == 1:
                return s
            lo, hi = layer * num_dirs, (layer + 1) * num_dirs
            return g.op("Slice", [s, g.ints("start", [lo]), g.ints("end", [hi]),
                                  g.ints("axes_0", [0])], name=f"slice_{s}_l{layer}")
        per_dir = params[layer * num_dirs:(layer + 1) * num_dirs]
        x, h, c = add_layer(g, cell, per_dir, x, hidden_size, tag=f"l{layer}", h0=state(h0),
                            c0=state(c0), seq_lens=seq_lens, zero_rows=zero_rows)
        hs.append(h)
        cs.append(c)
    if zero_rows is not None:
        x = g.op("Where", [zero_rows, g.const("zero_f32", np.zeros((), np.float32)), x],
                 name="y_len0")
    h_n = hs[0] if num_layers == 1 else g.op("Concat", hs, name="concat_h", axis=0)
    c_n = None
    if cs[0] is not None:
        c_n = cs[0] if num_layers == 1 else g.op("Concat", cs, name="concat_c", axis=0)
    return x, h_n, c_n
