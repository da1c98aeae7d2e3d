"""fastgates.onnx.load: models written by torch.onnx.export, and hostile files.

torch.nn.LSTM/GRU/RNN (stacked, bidirectional) -> torch.onnx.export(dynamo=False) ->
load -> the layers chained give torch's outputs.  Truncated or corrupted protobuf, wrong
initializer shapes and byte counts, unsupported attributes, weights computed in the
graph, external data outside the model's folder (paths, symlinks, FIFOs): each a clear
OnnxModelError, never a crash, and no file opened outside the model's folder.
"""

import os
import sys
import warnings

import numpy as np
import pytest

import fastgates

onnx = pytest.importorskip("onnx")
fo = pytest.importorskip("fastgates.onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


# -- models written by torch ---------------------------------------------------------------

TORCH_CASES = [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("name,kw", TORCH_CASES, ids=["lstm", "gru", "rnn-tanh", "rnn-relu"])
def test_torch_onnx_export_then_load_reproduces_torch(tmp_path, name, kw, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    L, D, H = 3, 5, 12
    net = getattr(torch.nn, name)(D, H, num_layers=L, bidirectional=bidirectional, **kw).eval()
    dirs = 2 if bidirectional else 1
    x = torch.randn(7, 4, D)
    h0 = torch.randn(L * dirs, 4, H)
    c0 = torch.randn(L * dirs, 4, H)
    hx = (h0, c0) if name == "LSTM" else h0
    path = tmp_path / "torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the exporter's deprecation and tracer warnings
        torch.onnx.export(net, (x, hx), str(path), dynamo=False, input_names=["x", "hx"],
                          dynamic_axes={"x": {0: "T", 1: "B"}})
    layers = fo.load(path)
    assert len(layers) == L
    expected = getattr(fastgates, name)
    assert all(type(p) is expected and p.bidirectional == bidirectional for p in layers)
    with torch.no_grad():
        out = net(x, hx)
    y = x.numpy()
    hs, cs = [], []
    for k, part in enumerate(layers):
        part.eval()
        sl = slice(k * dirs, (k + 1) * dirs)
        state = (h0[sl].numpy(), c0[sl].numpy()) if name == "LSTM" else h0[sl].numpy()
        y, st = part.forward(y, state)
        hs.append(st[0] if name == "LSTM" else st)
        if name == "LSTM":
            cs.append(st[1])
    case = f"torch.nn.{name}({kw}, bidirectional={bidirectional})"
    assert np.abs(y - out[0].numpy()).max() < 1e-4, case
    h_t = out[1][0] if name == "LSTM" else out[1]
    assert np.abs(np.concatenate(hs) - h_t.numpy()).max() < 1e-4, case
    if name == "LSTM":
        assert np.abs(np.concatenate(cs) - out[1][1].numpy()).max() < 1e-4, case


def test_torch_model_with_other_nodes_and_batch_first(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(20, 6)
            self.rnn = torch.nn.GRU(6, 8, num_layers=2, batch_first=True, bidirectional=True)
            self.out = torch.nn.Linear(16, 3)

        def forward(self, ids):
            return self.out(self.rnn(self.emb(ids))[0])

    net = Tagger().eval()
    ids = torch.randint(0, 20, (3, 9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (ids,), str(tmp_path / "t.onnx"), dynamo=False)
    layers = fo.load(tmp_path / "t.onnx")
    assert [repr(p) for p in layers] == ["fastgates.layers.GRU(6, 8, bidirectional=True)",
                                         "fastgates.layers.GRU(16, 8, bidirectional=True)"]
    with torch.no_grad():
        x = net.emb(ids).numpy().swapaxes(0, 1)
        want = net.rnn(net.emb(ids))[0].numpy()
    for p in layers:
        x, _ = p.eval().forward(x)
    assert np.abs(x.swapaxes(0, 1) - want).max() < 1e-4


def test_layout_1_maps_to_batch_first(tmp_path):
    """ONNX Runtime does not run layout=1; onnx's reference evaluator does."""
    from onnx.reference import ReferenceEvaluator
    layer = fastgates.GRU(3, 4, bidirectional=True, seed=0).eval()
    fo.export(layer, tmp_path / "m.onnx", initial_state=False)
    m = onnx.load(str(tmp_path / "m.onnx"))
    gru = next(n for n in m.graph.node if n.op_type == "GRU")
    gru.attribute.append(helper.make_attribute("layout", 1))
    single = helper.make_graph([gru], "g", [helper.make_tensor_value_info(
        gru.input[0], TensorProto.FLOAT, ["B", "T", 3])], [helper.make_tensor_value_info(
            gru.output[0], TensorProto.FLOAT, None)], m.graph.initializer)
    onnx.save(helper.make_model(single, opset_imports=m.opset_import), str(tmp_path / "l1.onnx"))
    (loaded,) = fo.load(tmp_path / "l1.onnx")
    assert loaded.batch_first
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)   # (B, T, D)
    Y = ReferenceEvaluator(str(tmp_path / "l1.onnx")).run(None, {gru.input[0]: x})[0]
    y, _ = loaded.eval().forward(x)                                  # (B, T, 2H)
    assert np.abs(y - Y.reshape(2, 5, 8)).max() < 1e-5


# -- hostile files -------------------------------------------------------------------------

def small_model(tmp_path, **export_kw):
    layer = fastgates.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    path = tmp_path / "good.onnx"
    fo.export(layer, path, **export_kw)
    return path, onnx.load(str(path))


def node_of(model, op="LSTM"):
    return next(n for n in model.graph.node if n.op_type == op)


def save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def test_missing_directory_and_non_files(tmp_path):
    with pytest.raises(fo.OnnxModelError, match="does not exist"):
        fo.load(tmp_path / "nope.onnx")
    with pytest.raises(fo.OnnxModelError, match="directory"):
        fo.load(tmp_path)
    with pytest.raises(TypeError, match="path"):
        fo.load(3)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(fo.OnnxModelError, match="no ONNX graph"):
        fo.load(tmp_path / "empty.onnx")
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    with pytest.raises(fo.OnnxModelError, match="truncated or corrupted|no ONNX graph"):
        fo.load(tmp_path / "text.onnx")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.onnx")      # opening it for reading must not block
        with pytest.raises(fo.OnnxModelError, match="not a regular file"):
            fo.load(tmp_path / "fifo.onnx")


def test_truncated_files_give_a_clear_error(tmp_path):
    path, _ = small_model(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    for n in sorted({1, 2, 7, 64, len(data) // 3, len(data) // 2, len(data) - 100,
                     len(data) - 7, len(data) - 1}):
        cut.write_bytes(data[:n])
        with pytest.raises(fo.OnnxModelError) as info:
            fo.load(cut)
        assert "cut.onnx" in str(info.value), f"truncated at {n}: {info.value}"


def test_corrupted_files_load_or_give_a_clear_error(tmp_path):
    """Random byte flips: a flip in the weights' bytes may load (other weights), anything
    else must be an OnnxModelError -- never another exception, never a crash."""
    path, _ = small_model(tmp_path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.onnx"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(300):
        b = bytearray(data)
        for i in rng.integers(0, len(b), rng.integers(1, 4)):
            b[i] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(b))
        try:
            fo.load(bad)
            outcomes["loaded"] += 1
        except fo.OnnxModelError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 300, outcomes
    bad.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(fo.OnnxModelError):
        fo.load(bad)


@pytest.mark.parametrize("attr,value,match", [
    ("clip", 3.0, "clip=3.0"),
    ("input_forget", 1, "input_forget=1"),
    ("activations", ["Sigmoid", "Tanh", "Relu"] * 2, "activations="),
    ("activations", ["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Relu"], "activations="),
    ("activation_alpha", [0.5], "activation_alpha"),
    ("activation_beta", [0.5], "activation_beta"),
    ("direction", "reverse", "direction='reverse'"),
    ("layout", 2, "layout=2"),
    ("hidden_size", 5, "hidden_size=5"),
    ("frobnicate", 1, "frobnicate"),
])
def test_unsupported_attributes_are_refused_by_name(tmp_path, attr, value, match):
    path, m = small_model(tmp_path)
    node = node_of(m)
    keep = [a for a in node.attribute if a.name != attr]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(attr, value)])
    with pytest.raises(fo.OnnxModelError, match=match) as info:
        fo.load(save(m, tmp_path / "attr.onnx"))
    assert "LSTM" in str(info.value)


def test_malformed_attribute(tmp_path):
    path, m = small_model(tmp_path)
    a = node_of(m).attribute.add()
    a.name = "direction"                  # no type, no value
    with pytest.raises(fo.OnnxModelError, match="attribute 'direction' is malformed"):
        fo.load(save(m, tmp_path / "malformed.onnx"))


@pytest.mark.parametrize("op,attr,value,match", [
    ("GRU", "linear_before_reset", 2, "linear_before_reset=2"),
    ("RNN", "activations", ["Sigmoid"], "activations="),
    ("RNN", "activations", ["LeakyRelu"], "LeakyRelu"),
])
def test_unsupported_attributes_of_gru_and_rnn(tmp_path, op, attr, value, match):
    layer = getattr(fastgates, op)(3, 4, seed=0)
    fo.export(layer, tmp_path / "m.onnx")
    m = onnx.load(str(tmp_path / "m.onnx"))
    node = node_of(m, op)
    keep = [a for a in node.attribute if a.name != attr]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(attr, value)])
    with pytest.raises(fo.OnnxModelError, match=match):
        fo.load(save(m, tmp_path / "attr.onnx"))


def replace_initializer(model, name, tensor):
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(tensor)
            return
    raise KeyError(name)


def test_wrong_shapes_byte_counts_and_types(tmp_path):
    path, m = small_model(tmp_path)
    W, R = node_of(m).input[1], node_of(m).input[2]
    w = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == W))

    replace_initializer(m, W, numpy_helper.from_array(w[:, :-4], W))         # (2, 12, 3)
    with pytest.raises(fo.OnnxModelError, match=r"input W .*shape \(2, 12, 3\)"):
        fo.load(save(m, tmp_path / "w.onnx"))

    _, m = small_model(tmp_path)
    t = numpy_helper.from_array(w, W)
    t.raw_data = t.raw_data[:-8]                               # shape says more than the data
    replace_initializer(m, W, t)
    with pytest.raises(fo.OnnxModelError, match="bytes of data but its shape"):
        fo.load(save(m, tmp_path / "bytes.onnx"))

    _, m = small_model(tmp_path)
    t = numpy_helper.from_array(w, W)
    del t.dims[:]
    t.dims.extend([2, 16, 2**40])                              # a huge claim, tiny data
    replace_initializer(m, W, t)
    with pytest.raises(fo.OnnxModelError, match="bytes of data but its shape"):
        fo.load(save(m, tmp_path / "huge.onnx"))

    _, m = small_model(tmp_path)
    replace_initializer(m, R, numpy_helper.from_array(np.zeros((2, 16, 5), np.float32), R))
    with pytest.raises(fo.OnnxModelError, match=r"input R .*\(2, 16, 5\)"):
        fo.load(save(m, tmp_path / "r.onnx"))

    _, m = small_model(tmp_path)
    replace_initializer(m, W, numpy_helper.from_array(w.astype(np.int32), W))
    with pytest.raises(fo.OnnxModelError, match="INT32 values"):
        fo.load(save(m, tmp_path / "int.onnx"))

    _, m = small_model(tmp_path)
    B = node_of(m).input[3]
    replace_initializer(m, B, numpy_helper.from_array(np.zeros((2, 31), np.float32), B))
    with pytest.raises(fo.OnnxModelError, match=r"input B .*\(2, 31\)"):
        fo.load(save(m, tmp_path / "b.onnx"))


def test_weights_stored_as_float_data_and_float16(tmp_path):
    layer = fastgates.RNN(3, 4, seed=0)
    fo.export(layer, tmp_path / "m.onnx")
    m = onnx.load(str(tmp_path / "m.onnx"))
    W = node_of(m, "RNN").input[1]
    w = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == W))
    replace_initializer(m, W, helper.make_tensor(W, TensorProto.FLOAT, w.shape, w.ravel().tolist()))
    (got,) = fo.load(save(m, tmp_path / "fd.onnx"))
    np.testing.assert_array_equal(got.state_dict()["weight_ih_l0"],
                                  layer.state_dict()["weight_ih_l0"])
    replace_initializer(m, W, numpy_helper.from_array(w.astype(np.float16), W))
    (got,) = fo.load(save(m, tmp_path / "f16.onnx"))
    np.testing.assert_array_equal(got.state_dict()["weight_ih_l0"],
                                  w[0].astype(np.float16).astype(np.float32))


def test_weights_computed_in_the_graph_and_missing_operators(tmp_path):
    path, m = small_model(tmp_path)
    node = node_of(m)
    m.graph.node.insert(0, helper.make_node("Identity", [node.input[1]], ["W_computed"]))
    node.input[1] = "W_computed"
    with pytest.raises(fo.OnnxModelError, match="computed in the graph"):
        fo.load(save(m, tmp_path / "computed.onnx"))
    _, m = small_model(tmp_path)
    node = node_of(m)
    m.graph.input.append(helper.make_tensor_value_info("W_in", TensorProto.FLOAT, [2, 16, 3]))
    node.input[1] = "W_in"
    with pytest.raises(fo.OnnxModelError, match="input of the graph.*export_params=True"):
        fo.load(save(m, tmp_path / "input.onnx"))
    _, m = small_model(tmp_path)
    keep = [n for n in m.graph.node if n.op_type != "LSTM"]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    with pytest.raises(fo.OnnxModelError, match="no ONNX LSTM, GRU or RNN operator"):
        fo.load(save(m, tmp_path / "none.onnx"))


def test_weights_in_constant_nodes(tmp_path):
    path, m = small_model(tmp_path)
    node = node_of(m)
    W = node.input[1]
    t = next(t for t in m.graph.initializer if t.name == W)
    m.graph.node.insert(0, helper.make_node("Constant", [], ["W_const"], value=t))
    node.input[1] = "W_const"
    a = fo.load(save(m, tmp_path / "const.onnx"))
    b = fo.load(path)
    for x, y in zip(a, b):
        for n, v in x.state_dict().items():
            np.testing.assert_array_equal(v, y.state_dict()[n])


def test_zero_peepholes_load_as_a_plain_lstm(tmp_path):
    path, m = small_model(tmp_path, initial_state=False)
    node = node_of(m)
    while len(node.input) < 7:
        node.input.append("")
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((2, 12), np.float32), "P0"))
    node.input.append("P0")
    (first, second) = fo.load(save(m, tmp_path / "p0.onnx"))
    assert type(first) is fastgates.LSTM and "weight_peep_l0" not in first.state_dict()


# -- external data -------------------------------------------------------------------------

def external_model(tmp_path, location, data=b"\0" * 4096, offset=0):
    """good.onnx whose first W points at ``location`` (external data)."""
    path, m = small_model(tmp_path)
    W = node_of(m).input[1]
    t = next(t for t in m.graph.initializer if t.name == W)
    nbytes = len(t.raw_data)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return save(m, tmp_path / "ext.onnx")


class OpenedFiles:
    """Records every file Python opens while active (an audit hook; hooks stay installed)."""

    active = None

    @classmethod
    def install(cls):
        if not getattr(sys, "_fastgates_open_hook", False):
            def hook(event, args):
                if (cls.active is not None and event == "open"
                        and isinstance(args[0], (str, bytes, os.PathLike))):
                    cls.active.append(os.fsdecode(args[0]))
            sys.addaudithook(hook)
            sys._fastgates_open_hook = True

    def __enter__(self):
        self.install()
        OpenedFiles.active = self.paths = []
        return self

    def __exit__(self, *exc):
        OpenedFiles.active = None


@pytest.fixture
def outside(tmp_path):
    """A secret file next to (outside) the model's folder."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x01" * 4096)
    folder = tmp_path / "model"
    folder.mkdir()
    return folder, secret


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "symlinked_dir"])
def test_external_data_outside_the_folder_is_refused_and_never_opened(outside, how):
    folder, secret = outside
    if how == "dotdot":
        location = "../secret.bin"
    elif how == "absolute":
        location = str(secret)
    elif how == "symlink":
        os.symlink(secret, folder / "link.bin")
        location = "link.bin"
    else:
        os.symlink(secret.parent, folder / "up")
        location = "up/secret.bin"
    path = external_model(folder, location)
    with OpenedFiles() as opened:
        with pytest.raises(fo.OnnxModelError, match="outside the model's folder|absolute path"):
            fo.load(path)
    real_folder = os.path.realpath(folder)
    assert opened.paths, "the audit hook saw no open at all"
    for p in opened.paths:
        assert os.path.realpath(p).startswith(real_folder + os.sep), f"opened {p}"


def test_external_data_inside_the_folder_is_read(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    layer = fastgates.GRU(5, 6, num_layers=2, seed=0)
    fo.export(layer, folder / "gru.onnx")
    m = onnx.load(str(folder / "gru.onnx"))
    (folder / "weights").mkdir()
    onnx.save_model(m, str(folder / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights/gru.bin", size_threshold=0)
    assert (folder / "weights" / "gru.bin").exists()
    with OpenedFiles() as opened:
        parts = fo.load(folder / "ext.onnx")
    assert {os.path.basename(p) for p in opened.paths} >= {"ext.onnx", "gru.bin"}
    sd = layer.state_dict()
    for k, part in enumerate(parts):
        for n, v in part.state_dict().items():
            np.testing.assert_array_equal(v, sd[n.replace("_l0", f"_l{k}")])


def test_external_data_bad_files_and_ranges(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    path = external_model(folder, "missing.bin")
    with pytest.raises(fo.OnnxModelError, match="does not exist"):
        fo.load(path)
    (folder / "short.bin").write_bytes(b"\0" * 10)
    with pytest.raises(fo.OnnxModelError, match="has 10 bytes"):
        fo.load(external_model(folder, "short.bin"))
    (folder / "w.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(fo.OnnxModelError, match="has 4096 bytes"):
        fo.load(external_model(folder, "w.bin", offset=4000))
    with pytest.raises(fo.OnnxModelError, match="not integers"):
        fo.load(external_model(folder, "w.bin", offset="x"))
    (folder / "sub").mkdir()
    with pytest.raises(fo.OnnxModelError, match="directory"):
        fo.load(external_model(folder, "sub"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.bin")
        with pytest.raises(fo.OnnxModelError, match="not a regular file"):
            fo.load(external_model(folder, "fifo.bin"))
