"""``fastgates.onnx.load``: the recurrent operators of an ONNX model as fastgates layers.

Design: the file is read once, by us (a regular file of at most 2 GiB, opened without
blocking, so a FIFO or a device is refused rather than waited on), and parsed with
``ModelProto.ParseFromString``; ``onnx.load`` is not used, because it follows external
data references on its own.  Only what the recurrent operators need is decoded: their
attributes (every one checked against what fastgates can run; anything else is refused
by name) and their weight tensors, from initializers or ``Constant`` nodes.  A tensor's
byte count is checked against its shape before anything is allocated, and external data
is read only from regular files inside the model's folder (the real path, after
symlinks), within the file's size.  Every failure is an :class:`OnnxModelError` naming
the file, the node and the input or attribute.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import onnx
from onnx import TensorProto, helper

from .. import cells

#: Protobuf files cannot exceed 2 GiB (larger models keep their weights in external data).
MAX_PROTO_BYTES = 2**31

_RECURRENT = ("LSTM", "GRU", "RNN")
_COMMON_ATTRS = {"activations", "activation_alpha", "activation_beta", "clip", "direction",
                 "hidden_size", "layout"}
_OP_ATTRS = {"LSTM": _COMMON_ATTRS | {"input_forget"},
             "GRU": _COMMON_ATTRS | {"linear_before_reset"}, "RNN": _COMMON_ATTRS}
_INPUTS = {"LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
           "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
           "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h")}
_FLOAT_TYPES = {TensorProto.FLOAT: np.dtype("<f4"), TensorProto.DOUBLE: np.dtype("<f8"),
                TensorProto.FLOAT16: np.dtype("<f2")}


class OnnxModelError(ValueError):
    """An ONNX file that fastgates cannot read or whose operators it cannot run as they are."""


# Reading the file.

def _open_regular(path, what):
    """A file descriptor of the regular file ``path`` (never blocks on a FIFO or device)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise OnnxModelError(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise OnnxModelError(f"{what} {path!r} is a directory, not a file") from None
    except OSError as exc:
        raise OnnxModelError(f"{what} {path!r} cannot be opened ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise OnnxModelError(f"{what} {path!r} is {kind}")
    return fd, st.st_size


def _read_exactly(fd, offset, n, what):
    chunks, got = [], 0
    while got < n:
        b = os.pread(fd, n - got, offset + got) if hasattr(os, "pread") else None
        if b is None:
            os.lseek(fd, offset + got, os.SEEK_SET)
            b = os.read(fd, n - got)
        if not b:
            raise OnnxModelError(f"{what} ended after {got} of {n} bytes")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def read_model(path):
    """Parse the ONNX file at ``path`` (no external data followed)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    path = os.fspath(path)
    fd, size = _open_regular(path, "ONNX model")
    try:
        if size > MAX_PROTO_BYTES:
            raise OnnxModelError(f"{path!r} has {size} bytes, more than an ONNX protobuf can hold "
                                 f"(2 GiB); it is not an ONNX model")
        data = _read_exactly(fd, 0, size, f"ONNX model {path!r}")
    finally:
        os.close(fd)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:   # DecodeError, RuntimeError from the C++ parser, ...
        raise OnnxModelError(f"{path!r} is truncated or corrupted: not a valid ONNX protobuf "
                             f"({type(exc).__name__}: {exc})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise OnnxModelError(f"{path!r} holds no ONNX graph (an empty or non-ONNX file?)")
    return model


# Tensors.

def _describe_type(t):
    try:
        return TensorProto.DataType.Name(t)
    except ValueError:
        return f"data type {t}"


def _external_bytes(t, nbytes, base_dir, what):
    """The ``nbytes`` of an external-data tensor, from a regular file inside ``base_dir``."""
    if base_dir is None:
        raise OnnxModelError(f"{what} keeps its data in an external file, which needs the "
                             "model's folder")
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location:
        raise OnnxModelError(f"{what} refers to external data without a location")
    if os.path.isabs(location) or os.path.splitdrive(location)[0] or "\0" in location:
        raise OnnxModelError(f"{what} refers to external data at the absolute path {location!r}; "
                             "only files inside the model's folder are read")
    base = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(base, location))
    if os.path.commonpath([base, target]) != base:
        raise OnnxModelError(f"{what} refers to external data {location!r} outside the model's "
                             f"folder {base!r}; refused")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise OnnxModelError(f"{what}: external data offset/length are not integers "
                             f"({info.get('offset')!r}, {info.get('length')!r})") from None
    if offset < 0 or (length is not None and length != nbytes):
        raise OnnxModelError(f"{what}: external data of {length} bytes at offset {offset}, but "
                             f"its shape needs {nbytes} bytes")
    fd, size = _open_regular(target, f"external data of {what}:")
    try:
        if offset + nbytes > size:
            raise OnnxModelError(f"{what}: external data {location!r} has {size} bytes, the "
                                 f"tensor needs bytes {offset}..{offset + nbytes}")
        return _read_exactly(fd, offset, nbytes, f"external data {location!r}")
    finally:
        os.close(fd)


def tensor_array(t, what, base_dir):
    """A float TensorProto as an ndarray, its byte count checked before any allocation."""
    dtype = _FLOAT_TYPES.get(t.data_type)
    if dtype is None:
        raise OnnxModelError(f"{what} has {_describe_type(t.data_type)} values; fastgates reads "
                             "FLOAT, DOUBLE or FLOAT16 weights")
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise OnnxModelError(f"{what} has a negative dimension in its shape {tuple(dims)}")
    if t.HasField("segment"):
        raise OnnxModelError(f"{what} is a segmented tensor, which fastgates does not read")
    n = int(np.prod(dims, dtype=object)) if dims else 1
    nbytes = n * dtype.itemsize
    if t.data_location == TensorProto.EXTERNAL:
        raw = _external_bytes(t, nbytes, base_dir, what)
    elif t.HasField("raw_data"):
        raw = t.raw_data
        if len(raw) != nbytes:
            raise OnnxModelError(f"{what} has {len(raw)} bytes of data but its shape "
                                 f"{tuple(dims)} needs {nbytes}")
    else:
        field = {TensorProto.FLOAT: t.float_data, TensorProto.DOUBLE: t.double_data,
                 TensorProto.FLOAT16: t.int32_data}[t.data_type]
        if len(field) != n:
            raise OnnxModelError(f"{what} has {len(field)} values but its shape {tuple(dims)} "
                                 f"needs {n}")
        if t.data_type == TensorProto.FLOAT16:
            return np.array(field, np.uint16).view(np.float16).reshape(dims)
        return np.array(field, dtype).reshape(dims)
    return np.frombuffer(raw, dtype).reshape(dims).copy()


# Operators.

def _attrs(node, where):
    out = {}
    for a in node.attribute:
        try:
            out[a.name] = helper.get_attribute_value(a)
        except Exception as exc:      # an attribute of an unknown type
            raise OnnxModelError(f"{where}: attribute {a.name!r} is malformed ({exc})") from None
        if out[a.name] is None:
            raise OnnxModelError(f"{where}: attribute {a.name!r} is malformed (no type)")
    return out


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _check_attrs(node, where):
    """Map the node's attributes to (cell, num_dirs, batch_first, hidden_size) or refuse them."""
    op = node.op_type
    attrs = _attrs(node, where)
    unknown = sorted(set(attrs) - _OP_ATTRS[op])
    if unknown:
        raise OnnxModelError(f"{where}: unknown attribute(s) {unknown} of {op}; refused rather "
                             "than ignored")
    if "clip" in attrs:
        raise OnnxModelError(f"{where}: attribute clip={attrs['clip']} is not supported "
                             "(fastgates does not clip the cell's pre-activations)")
    if attrs.get("input_forget", 0) != 0:
        raise OnnxModelError(f"{where}: attribute input_forget={attrs['input_forget']} is not "
                             "supported (fastgates' LSTM has no coupled input-forget gate)")
    for name in ("activation_alpha", "activation_beta"):
        if list(attrs.get(name, [])):
            raise OnnxModelError(f"{where}: attribute {name}={list(attrs[name])} is not "
                                 "supported (fastgates' activations have no parameters)")
    direction = _text(attrs.get("direction", "forward"))
    if direction not in ("forward", "bidirectional"):
        raise OnnxModelError(f"{where}: attribute direction={direction!r} is not supported "
                             "(fastgates layers run forward or bidirectional; "
                             "reverse the input of a forward layer instead)")
    dirs = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise OnnxModelError(f"{where}: attribute layout={layout} is not 0 or 1")
    acts = [_text(a) for a in attrs.get("activations", [])]
    default = list(cells.ONNX_DEFAULT_ACTIVATIONS[op])
    per_dir = acts[:len(acts) // dirs] if acts else default
    if acts and (len(acts) != dirs * len(default) or acts != per_dir * dirs):
        raise OnnxModelError(f"{where}: attribute activations={acts} is not supported "
                             f"(one set of {len(default)} per direction, the same for both)")
    lbr = attrs.get("linear_before_reset", 0)
    if op == "GRU" and lbr not in (0, 1):
        raise OnnxModelError(f"{where}: attribute linear_before_reset={lbr} is not 0 or 1")
    for cell in cells.CELLS.values():
        lay = cell.onnx
        if lay is None or lay.op != op:
            continue
        want = [a.lower() for a in lay.attrs.get("activations", default)]
        if ([a.lower() for a in per_dir] == want
                and (op != "GRU" or lbr == lay.attrs.get("linear_before_reset", 0))):
            return cell, dirs, layout == 1, attrs.get("hidden_size")
    raise OnnxModelError(f"{where}: attribute activations={acts} is not supported (fastgates "
                         f"runs {op} with " + " or ".join(
                             str(list(c.onnx.attrs.get('activations', default)))
                             for c in cells.CELLS.values() if c.onnx and c.onnx.op == op) + ")")


class _Constants(dict):
    """name -> TensorProto of every initializer and Constant-node value (and the graph's
    input names, to say why a weight is missing)."""

    inputs = frozenset()


def _constants(graph):
    out = _Constants((t.name, t) for t in graph.initializer)
    out.inputs = frozenset(i.name for i in graph.input)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    out[node.output[0]] = a.t
    return out


def _stored(consts, name, what):
    """The TensorProto of a weight input; weights computed in the graph are refused."""
    if name not in consts and name in consts.inputs:
        raise OnnxModelError(f"{what} ({name!r}) is an input of the graph, not stored in the "
                             "model (exported without its weights? torch.onnx.export(..., "
                             "export_params=True) stores them)")
    if name not in consts:
        raise OnnxModelError(f"{what} ({name!r}) is computed in the graph, not stored: fastgates "
                             "reads weights from initializers or Constant nodes (fold the "
                             "graph's constants first, e.g. torch.onnx.export(..., "
                             "do_constant_folding=True))")
    return consts[name]


def _weight(consts, name, what, base_dir, shape):
    a = tensor_array(_stored(consts, name, what), f"{what} ({name!r})", base_dir)
    if a.shape != shape:
        raise OnnxModelError(f"{what} ({name!r}) has shape {a.shape}, expected {shape}")
    return a


def _node_layer(node, index, consts, path, base_dir, dtype, n_threads):
    from .. import layers

    where = f"{path!r}: node {node.name or '#' + str(index)!r} ({node.op_type})"
    cell, dirs, batch_first, hidden_attr = _check_attrs(node, where)
    names = dict(zip(_INPUTS[node.op_type], list(node.input)))
    if len(node.input) > len(_INPUTS[node.op_type]):
        raise OnnxModelError(f"{where}: {len(node.input)} inputs, {node.op_type} has at most "
                             f"{len(_INPUTS[node.op_type])}")
    for key in ("X", "W", "R"):
        if not names.get(key):
            raise OnnxModelError(f"{where}: the required input {key} is missing")
    G = cell.G
    R_dims = tuple(int(d) for d in _stored(consts, names["R"], f"{where}: input R").dims)
    if len(R_dims) != 3 or R_dims[0] != dirs or R_dims[1] != G * R_dims[2] or R_dims[2] < 1:
        raise OnnxModelError(f"{where}: input R ({names['R']!r}) has shape {R_dims}, expected "
                             f"(num_directions, {G} * hidden_size, hidden_size) with "
                             f"num_directions = {dirs}")
    H = R_dims[2]
    if hidden_attr is not None and hidden_attr != H:
        raise OnnxModelError(f"{where}: attribute hidden_size={hidden_attr} but input R has "
                             f"shape {R_dims} (hidden size {H})")
    R = _weight(consts, names["R"], f"{where}: input R", base_dir, (dirs, G * H, H))
    W_dims = tuple(int(d) for d in _stored(consts, names["W"], f"{where}: input W").dims)
    if len(W_dims) != 3 or W_dims[:2] != (dirs, G * H) or W_dims[2] < 1:
        raise OnnxModelError(f"{where}: input W ({names['W']!r}) has shape {W_dims}, expected "
                             f"({dirs}, {G * H}, input_size)")
    D = W_dims[2]
    W = _weight(consts, names["W"], f"{where}: input W", base_dir, W_dims)
    B = None
    if names.get("B"):
        B = _weight(consts, names["B"], f"{where}: input B", base_dir, (dirs, 2 * G * H))
    P = None
    if names.get("P"):
        P = _weight(consts, names["P"], f"{where}: input P (peepholes)", base_dir, (dirs, 3 * H))
        if not P.any():
            P = None           # all-zero peepholes are a plain LSTM
    kw = dict(bias=B is not None, batch_first=batch_first, bidirectional=dirs == 2,
              dtype=dtype, n_threads=n_threads, seed=0)
    if cell.kernel == "rnn":
        layer = layers.RNN(D, H, nonlinearity=cell.variant, **kw)
    elif cell.kernel == "gru":
        layer = layers.GRU(D, H, linear_before_reset=cell.variant == "lbr", **kw)
    else:
        layer = layers.LSTM(D, H, peephole=P is not None, **kw)
    peephole = P is not None
    stems = [p.stem for p in cells.param_specs(cell, bias=B is not None, peephole=peephole)]
    sd = {}
    for d in range(dirs):
        v = {"weight_ih": cells.from_onnx_gates(W[d], cell),
             "weight_hh": cells.from_onnx_gates(R[d], cell)}
        if B is not None:
            v["bias_ih"], v["bias_hh"] = cells.from_onnx_bias(B[d], cell)
        if peephole:
            v["weight_peep"] = cells.from_onnx_peepholes(P[d], cell)
        sd.update(zip(cells.param_names(stems, 0, reverse=d == 1), (v[s] for s in stems)))
    layer.load_state_dict(sd)
    return layer


def load(path, *, dtype=np.float32, n_threads=None):
    """Read the recurrent operators of an ONNX model as fastgates layers.

    Every ONNX ``LSTM``, ``GRU`` and ``RNN`` node of the model's graph (the default
    domain, top-level graph) becomes one single-layer fastgates layer, in graph order:
    ``direction="bidirectional"`` gives a bidirectional layer, ``linear_before_reset``
    1 / 0 a ``fastgates.GRU`` with ``linear_before_reset=True`` / ``False``, RNN
    activations Tanh / Relu the ``nonlinearity``, ``layout=1`` ``batch_first=True`` (the
    layer's states stay (num_directions, B, H)), no input ``B`` ``bias=False``.  The
    weights are converted from ONNX's gate orders (LSTM i, o, f, c; GRU z, r, h) to
    fastgates' (i, f, g, o; r, z, n).  For a stacked model as ``torch.onnx.export``
    writes it for ``torch.nn.LSTM/GRU/RNN``, the returned layers chained (each one's
    ``y`` the next one's ``x``, its ``state`` slices of the stacked state) reproduce the
    model in inference.  The other nodes of the graph (embeddings, output layers,
    transposes) are not represented.

    Parameters
    ----------
    path : str or path-like
        An ``.onnx`` file.  External data is read only from regular files inside the
        file's folder.
    dtype : float32 (default) or float64
        dtype of the layers (weights are converted exactly from float32 or float16).
    n_threads : int or None
        ``n_threads`` of every layer.

    Returns
    -------
    list of fastgates.RNN / fastgates.GRU / fastgates.LSTM
        In training mode, like every new layer; call ``.eval()`` for inference.

    Raises
    ------
    fastgates.onnx.OnnxModelError
        A missing, truncated or corrupted file; no recurrent operator in the graph;
        an attribute fastgates cannot run (``clip``, ``input_forget=1``, custom
        ``activations`` or ``activation_alpha/beta``, ``direction="reverse"``, unknown
        ones), each refused by name; weights computed in the graph rather than stored,
        of a wrong shape or byte count, or of a non-float type; external data outside
        the model's folder or not a regular file.
    TypeError
        ``path`` is not a str or path-like, or ``dtype`` is not float32/float64.
    ValueError
        A bad ``n_threads`` (as the layer classes check it).

    Examples
    --------
    A model written by :func:`export` (``torch.onnx.export`` of a ``torch.nn.GRU``
    reads the same way):

    >>> import os, tempfile
    >>> import numpy as np, fastgates, fastgates.onnx
    >>> path = os.path.join(tempfile.mkdtemp(), "gru.onnx")
    >>> gru = fastgates.GRU(8, 16, num_layers=2, bidirectional=True, seed=0)
    >>> _ = fastgates.onnx.export(gru, path)
    >>> layers = fastgates.onnx.load(path)
    >>> layers
    [fastgates.layers.GRU(8, 16, bidirectional=True),
     fastgates.layers.GRU(32, 16, bidirectional=True)]
    >>> x = np.ones((5, 3, 8), np.float32)
    >>> y, _ = layers[1].eval()(layers[0].eval()(x)[0])          # chained: the stack
    >>> bool(np.allclose(y, gru.eval()(x)[0], atol=1e-6))
    True
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    model = read_model(path)
    path = os.fspath(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    graph = model.graph
    consts = _constants(graph)
    out = []
    for i, node in enumerate(graph.node):
        if node.op_type in _RECURRENT and node.domain in ("", "ai.onnx"):
            out.append(_node_layer(node, i, consts, path, base_dir, dt, n_threads))
    if not out:
        ops = sorted({n.op_type for n in graph.node})
        raise OnnxModelError(f"{path!r} has no ONNX LSTM, GRU or RNN operator in its graph "
                             f"(it has {ops[:12]}{' ...' if len(ops) > 12 else ''})")
    return out
