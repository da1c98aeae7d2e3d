"""``fastgates.onnx.export``: a fastgates layer as an ONNX model (see the package docstring)."""

from __future__ import annotations

import warnings

import numpy as np

from .. import cells
from .._io import atomic_write
from ._graph import Graph, add_stack, float_input, int_input

#: Opsets ``export`` writes: 14 added the ``layout`` attribute of the recurrent operators
#: (the oldest set whose recurrent operators match today's); the newest is onnx's.
MIN_OPSET = 14
DEFAULT_OPSET = 17


class ExportError(ValueError):
    """A layer that ONNX's recurrent operators cannot express."""


def layer_cell(layer):
    """The :data:`fastgates.cells.CELLS` entry of a ``fastgates.RNN/GRU/LSTM`` layer."""
    from .. import layers

    if isinstance(layer, layers.LSTM):
        return cells.get("lstm")
    if isinstance(layer, layers.GRU):
        return cells.get("gru" if layer.linear_before_reset else "gru_rb")
    if isinstance(layer, layers.RNN):
        return cells.get("rnn_" + layer.nonlinearity)
    raise TypeError("fastgates.onnx.export takes a fastgates.RNN, GRU or LSTM layer, got "
                    f"{type(layer).__module__}.{type(layer).__qualname__}"
                    + (" (convert a torch module with torch.onnx.export, or a fastgates.torch "
                       "module with fastgates.torch.to_torch first)"
                       if type(layer).__module__.startswith(("torch", "fastgates.torch")) else ""))


def layer_params(layer, cell, what="layer"):
    """Per (layer, direction) dict stem -> array, after refusing what ONNX cannot express.

    Peepholes are detected from the parameters (``weight_peep_l{k}``); a projection
    (``weight_hr_l{k}`` or ``proj_size > 0``) is refused, as is any parameter the cell
    table does not know.
    """
    params = layer.parameters()
    proj = int(getattr(layer, "proj_size", 0) or 0)
    if proj or any(n.startswith("weight_hr_") for n in params):
        raise ExportError(f"{what} is a projected LSTM (proj_size={proj}): ONNX's LSTM operator "
                          "has no projection (h_t = W_hr (o * tanh(c_t))), so it cannot be "
                          "exported")
    peephole = any(n.startswith("weight_peep_") for n in params)
    if peephole and cell.onnx.peep_order is None:
        raise ExportError(f"{what} has peephole weights but ONNX's {cell.onnx.op} has none")
    stems = [p.stem for p in cells.param_specs(cell, bias=layer.bias, peephole=peephole)]
    dirs = 2 if layer.bidirectional else 1
    out, known = [], set()
    for layer_k in range(layer.num_layers):
        for d in range(dirs):
            names = cells.param_names(stems, layer_k, reverse=d == 1)
            missing = [n for n in names if n not in params]
            if missing:
                raise ExportError(f"{what} lacks the parameters {missing}")
            out.append({s: params[n] for s, n in zip(stems, names)})
            known.update(names)
    extra = sorted(set(params) - known)
    if extra:
        raise ExportError(f"{what} has parameters with no counterpart in ONNX's "
                          f"{cell.onnx.op} operator: {extra}")
    return out


def check_opset(opset):
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int, got {type(opset).__name__} {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must lie in [{MIN_OPSET}, {newest}] (14 is the first with "
                         f"today's recurrent operators; {newest} is the newest this onnx "
                         f"{onnx.__version__} knows), got {opset}")
    return int(opset)


def float32_note(dtype, what):
    """Warn that a float64 model is written in float32; the note for the model's metadata."""
    if np.dtype(dtype) == np.float32:
        return "float32"
    warnings.warn(f"{what} is {np.dtype(dtype).name}: its ONNX model holds float32 weights and "
                  "takes float32 inputs (ONNX Runtime runs its recurrent operators in float32)",
                  UserWarning, stacklevel=3)
    return f"float32 (rounded from the {np.dtype(dtype).name} parameters)"


def save_model(model, path):
    """Write ``model`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    data = model.SerializeToString()
    with atomic_write(path, prefix=".fastgates-", suffix=".onnx.tmp") as f:
        f.write(data)


def export(layer, path, *, opset=DEFAULT_OPSET, initial_state=True, lengths=False):
    """Write a fastgates layer to an ONNX file: one recurrent operator per stacked layer.

    The model has the layer's interface: input ``x`` (T, B, D), or (B, T, D) for a
    ``batch_first`` layer; with ``initial_state`` the inputs ``h0`` (and ``c0`` for an
    LSTM) in the layer's state layout (num_layers * num_directions, B, H); with
    ``lengths`` an int64 input ``lengths`` (B,) of valid steps per row.  Outputs: ``y``
    in the layer's layout, ``h_n`` (and ``c_n``), with fastgates' semantics for ragged
    batches (zeros past a row's end, each row's state at its last valid step, the
    initial state for a row of length 0).  T and B are dynamic.  Stacked layers chain
    ONNX ``LSTM`` / ``GRU`` / ``RNN`` operators (gate orders converted, both directions
    in one operator, ``linear_before_reset`` 1 or 0 for the two GRU forms) with
    Squeeze/Transpose/Reshape/Slice/Concat/Where between them; the model passes
    ``onnx.checker.check_model(full_check=True)``.

    Parameters
    ----------
    layer : fastgates.RNN, fastgates.GRU or fastgates.LSTM
        Any ``num_layers``, ``bidirectional``, ``bias``, ``batch_first``; dropout is
        an inference no-op and is left out.  Peephole LSTMs (a ``weight_peep_l{k}``
        parameter) export with ONNX's input ``P``.
    path : str or path-like
        The ``.onnx`` file to write (atomically: a crash leaves no partial file).
    opset : int, default 17
        ONNX opset, 14 or later.
    initial_state : bool, default True
        Give the model ``h0`` / ``c0`` inputs (False: the states start at zero).
    lengths : bool, default False
        Give the model a ``lengths`` input (B,) int64 with values in [0, T].

    Returns
    -------
    onnx.ModelProto
        The model that was written.

    Raises
    ------
    TypeError
        ``layer`` is not a fastgates layer (a torch module: see ``fastgates.torch.to_torch``).
    fastgates.onnx.ExportError
        What ONNX cannot express: a projected LSTM, parameters unknown to ONNX's operator.
    ValueError
        ``opset`` outside [14, the newest onnx knows].

    Warns
    -----
    UserWarning
        For a float64 layer: the model holds float32 weights and takes float32 inputs,
        as ONNX Runtime runs its recurrent operators in float32.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, fastgates, fastgates.onnx
    >>> path = os.path.join(tempfile.mkdtemp(), "lstm.onnx")
    >>> lstm = fastgates.LSTM(8, 16, num_layers=2, bidirectional=True, seed=0)
    >>> model = fastgates.onnx.export(lstm, path, lengths=True)
    >>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    (['x', 'h0', 'c0', 'lengths'], ['y', 'h_n', 'c_n'])
    >>> import onnxruntime as ort                                  # doctest: +SKIP
    >>> sess = ort.InferenceSession(path)                          # doctest: +SKIP
    >>> y, h_n, c_n = sess.run(None, {"x": x, "h0": h0, "c0": c0,  # doctest: +SKIP
    ...                               "lengths": lengths})
    """
    cell = layer_cell(layer)
    opset = check_opset(opset)
    params = layer_params(layer, cell, repr(layer))
    precision = float32_note(layer.dtype, repr(layer))
    dirs = 2 if layer.bidirectional else 1
    H, L, D = layer.hidden_size, layer.num_layers, layer.input_size
    lstm = cell.onnx.op == "LSTM"

    g = Graph()
    tb = ["B", "T"] if layer.batch_first else ["T", "B"]
    inputs = [float_input("x", tb + [D])]
    x = "x" if not layer.batch_first else g.op("Transpose", ["x"], name="x_time_major",
                                                perm=[1, 0, 2])
    h0 = c0 = lens = None
    if initial_state:
        inputs.append(float_input("h0", [L * dirs, "B", H]))
        h0 = "h0"
        if lstm:
            inputs.append(float_input("c0", [L * dirs, "B", H]))
            c0 = "c0"
    if lengths:
        inputs.append(int_input("lengths", ["B"]))
        lens = "lengths"
    y, h_n, c_n = add_stack(g, cell, params, x, num_layers=L, num_dirs=dirs, hidden_size=H,
                            h0=h0, c0=c0, lengths=lens)
    if layer.batch_first:
        g.op("Transpose", [y], name="y_batch_major", outputs=["y"], perm=[1, 0, 2])
    else:
        g.op("Identity", [y], name="y", outputs=["y"])
    g.op("Identity", [h_n], name="h_n", outputs=["h_n"])
    outputs = [float_input("y", tb + [dirs * H]), float_input("h_n", [L * dirs, "B", H])]
    if lstm:
        g.op("Identity", [c_n], name="c_n", outputs=["c_n"])
        outputs.append(float_input("c_n", [L * dirs, "B", H]))
    doc = (f"{layer!r} exported by fastgates.onnx: inputs {[i.name for i in inputs]}, outputs "
           f"{[o.name for o in outputs]}; states (num_layers * num_directions, B, H); "
           f"weights {precision}.")
    model = g.model(inputs, outputs, opset=opset, name=f"fastgates_{cell.name}", doc=doc,
                    metadata={"fastgates.layer": repr(layer), "fastgates.cell": cell.name,
                              "fastgates.weights": precision})
    save_model(model, path)
    return model
