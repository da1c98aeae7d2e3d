"""fastgates.onnx.export: ONNX Runtime runs the exported layers as fastgates does.

Every cell (both GRU forms), stacked, bidirectional, batch_first, bias=False, ragged
with lengths (length-0 rows included), with and without state inputs, to 1e-4 in
float32; the export -> load round trip gives back every weight bit for bit; what ONNX
cannot express is refused.  Skips cleanly without onnx / onnxruntime.
"""

import warnings

import numpy as np
import pytest

import fastgates
from fastgates import cells

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
fo = pytest.importorskip("fastgates.onnx")

TOL = 1e-4      # float32; ONNX Runtime uses approximate activations

LAYERS = [
    ("rnn-tanh", fastgates.RNN, {}),
    ("rnn-relu", fastgates.RNN, {"nonlinearity": "relu"}),
    ("gru-lbr", fastgates.GRU, {}),
    ("gru-rb", fastgates.GRU, {"linear_before_reset": False}),
    ("lstm", fastgates.LSTM, {}),
]
SHAPES = [  # num_layers, bidirectional, batch_first, bias
    (1, False, False, True),
    (2, True, False, True),
    (3, True, True, False),
    (2, False, True, True),
]


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def states_of(layer, rng, B):
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), B, layer.hidden_size)
    h0 = rng.standard_normal(shape).astype(np.float32)
    if isinstance(layer, fastgates.LSTM):
        return (h0, rng.standard_normal(shape).astype(np.float32))
    return h0


def run_both(layer, sess, x, state=None, lengths=None):
    """(fastgates outputs, ONNX Runtime outputs) as lists [y, h_n(, c_n)]."""
    layer.eval()
    y, st = layer.forward(x, state, lengths=lengths)
    ours = [y] + (list(st) if isinstance(st, tuple) else [st])
    feeds = {"x": x}
    if state is not None:
        feeds.update(zip(("h0", "c0"), state if isinstance(state, tuple) else (state,)))
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths, np.int64)
    return ours, sess.run(None, feeds)


def assert_close(ours, theirs, case):
    for name, a, b in zip(("y", "h_n", "c_n"), ours, theirs):
        assert a.shape == b.shape, f"{case}: {name} shape {b.shape}, expected {a.shape}"
        err = float(np.abs(a - b).max()) if a.size else 0.0
        assert err <= TOL, f"{case}: {name} differs by {err:.3g} (> {TOL})"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "L{}-{}-{}-{}".format(
    s[0], "bi" if s[1] else "uni", "bf" if s[2] else "tf", "bias" if s[3] else "nobias"))
@pytest.mark.parametrize("name,cls,kw", LAYERS, ids=[c[0] for c in LAYERS])
def test_onnxruntime_matches_fastgates(tmp_path, name, cls, kw, shape):
    L, bi, bf, bias = shape
    T, B, D, H = 9, 6, 5, 16
    rng = np.random.default_rng(0)
    layer = cls(D, H, num_layers=L, bidirectional=bi, batch_first=bf, bias=bias, seed=1, **kw)
    x = rng.standard_normal((B, T, D) if bf else (T, B, D)).astype(np.float32)
    lengths = np.array([9, 0, 4, 1, 9, 6])
    state = states_of(layer, rng, B)

    path = tmp_path / "full.onnx"
    model = fo.export(layer, path, lengths=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert [i.name for i in model.graph.input] == (
        ["x", "h0", "c0", "lengths"] if cls is fastgates.LSTM else ["x", "h0", "lengths"])
    ops = [n.op_type for n in model.graph.node if n.op_type in ("RNN", "GRU", "LSTM")]
    assert ops == [cells.get(layer_cell_name(layer)).onnx.op] * L, "one operator per layer"
    sess = session(path)
    case = f"{layer!r}"
    assert_close(*run_both(layer, sess, x, state, lengths), case + " ragged, with state")
    assert_close(*run_both(layer, sess, x, state, np.full(B, T)), case + " full lengths")
    # dynamic T and B: another shape through the same session
    x2 = np.ascontiguousarray(x[:4, :5] if bf else x[:5, :4])
    st2 = tuple(s[:, :4].copy() for s in state) if isinstance(state, tuple) else state[:, :4].copy()
    assert_close(*run_both(layer, sess, x2, st2, np.array([5, 0, 2, 3])), case + " T=5 B=4")

    plain = tmp_path / "plain.onnx"
    m2 = fo.export(layer, plain, initial_state=False)
    assert [i.name for i in m2.graph.input] == ["x"]
    assert_close(*run_both(layer, session(plain), x), case + " no state, no lengths")
    stateless = tmp_path / "stateless.onnx"
    fo.export(layer, stateless, initial_state=False, lengths=True)
    assert_close(*run_both(layer, session(stateless), x, None, lengths), case + " no state, ragged")


def layer_cell_name(layer):
    from fastgates.onnx._export import layer_cell
    return layer_cell(layer).name


@pytest.mark.parametrize("name,cls,kw", LAYERS, ids=[c[0] for c in LAYERS])
def test_round_trip_is_bit_exact(tmp_path, name, cls, kw):
    for L, bi, bf, bias in SHAPES:
        layer = cls(7, 5, num_layers=L, bidirectional=bi, batch_first=bf, bias=bias, seed=3, **kw)
        fo.export(layer, tmp_path / "m.onnx")
        loaded = fo.load(tmp_path / "m.onnx")
        assert len(loaded) == L, repr(layer)
        sd = layer.state_dict()
        for k, part in enumerate(loaded):
            assert type(part) is cls and part.num_layers == 1 and part.bidirectional == bi
            assert part.bias == bias
            assert not part.batch_first      # the operators are time-major (layout 0)
            for attr in ("linear_before_reset", "nonlinearity"):
                assert getattr(part, attr, None) == getattr(layer, attr, None), attr
            for n, v in part.state_dict().items():
                src = sd[n.replace("_l0", f"_l{k}")]
                assert v.dtype == np.float32 and v.shape == src.shape
                assert v.tobytes() == src.tobytes(), f"{layer!r}: {n} of layer {k} changed"


def test_chained_loaded_layers_reproduce_the_stack(tmp_path):
    layer = fastgates.LSTM(6, 8, num_layers=3, bidirectional=True, seed=0).eval()
    fo.export(layer, tmp_path / "m.onnx")
    parts = [p.eval() for p in fo.load(tmp_path / "m.onnx")]
    x = np.random.default_rng(0).standard_normal((7, 3, 6)).astype(np.float32)
    y, (h, c) = layer.forward(x)
    z, hs, cs = x, [], []
    for p in parts:
        z, (hk, ck) = p.forward(z)
        hs.append(hk)
        cs.append(ck)
    np.testing.assert_array_equal(z, y)
    np.testing.assert_array_equal(np.concatenate(hs), h)
    np.testing.assert_array_equal(np.concatenate(cs), c)


def test_float64_layer_exports_float32_and_says_so(tmp_path):
    layer = fastgates.GRU(4, 6, num_layers=2, dtype=np.float64, seed=0).eval()
    with pytest.warns(UserWarning, match="float32"):
        model = fo.export(layer, tmp_path / "m.onnx")
    props = {p.key: p.value for p in model.metadata_props}
    assert "float64" in props["fastgates.weights"] and "float32" in model.doc_string
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    y, h = layer.forward(x)
    yo, ho = session(tmp_path / "m.onnx").run(None, {"x": x.astype(np.float32),
                                                      "h0": np.zeros((2, 3, 6), np.float32)})
    assert np.abs(yo - y).max() < TOL and np.abs(ho - h).max() < TOL
    loaded = fo.load(tmp_path / "m.onnx", dtype=np.float64)
    assert loaded[0].dtype == np.float64
    np.testing.assert_array_equal(loaded[0].state_dict()["weight_hh_l0"],
                                  layer.state_dict()["weight_hh_l0"].astype(np.float32))


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_opsets(tmp_path, opset):
    layer = fastgates.LSTM(3, 4, bidirectional=True, seed=0)
    model = fo.export(layer, tmp_path / "m.onnx", opset=opset, lengths=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == opset
    x = np.ones((2, 1, 3), np.float32)
    st = (np.zeros((2, 1, 4), np.float32),) * 2
    assert_close(*run_both(layer, session(tmp_path / "m.onnx"), x, st, np.array([2])),
                 f"opset {opset}")


def test_export_refuses_what_onnx_cannot_express(tmp_path):
    with pytest.raises(ValueError, match=r"opset must lie in \[14"):
        fo.export(fastgates.RNN(2, 3), tmp_path / "m.onnx", opset=13)
    with pytest.raises(TypeError, match="fastgates.RNN, GRU or LSTM"):
        fo.export(object(), tmp_path / "m.onnx")

    with pytest.raises(fo.ExportError, match="projected LSTM.*proj_size=2"):
        fo.export(fastgates.LSTM(3, 4, proj_size=2), tmp_path / "m.onnx")
    lstm = fastgates.LSTM(3, 4)
    lstm._params["weight_hr_l0"] = np.zeros((2, 4), np.float32)
    with pytest.raises(fo.ExportError, match="projected LSTM"):
        fo.export(lstm, tmp_path / "m.onnx")
    gru = fastgates.GRU(3, 4)
    gru._params["ln_gamma_l0"] = np.ones(4, np.float32)   # a LayerNorm cell's extra weights
    with pytest.raises(fo.ExportError, match="no counterpart.*ln_gamma_l0"):
        fo.export(gru, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_peephole_export_path(tmp_path):
    """A peephole LSTM (weight_peep_l{k}, rows i, f, o) exports with ONNX's P (i, o, f);
    the kernels arrive with issue 13, the layout is checked here."""
    lstm = fastgates.LSTM(3, 4, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    peeps = {n: rng.standard_normal((3, 4)).astype(np.float32)
             for n in ("weight_peep_l0", "weight_peep_l0_reverse")}
    lstm._params.update(peeps)
    model = fo.export(lstm, tmp_path / "p.onnx")
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    assert len(node.input) == 8 and node.input[7]
    P = next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer
             if t.name == node.input[7])
    assert P.shape == (2, 12)
    for d, n in enumerate(("weight_peep_l0", "weight_peep_l0_reverse")):
        i, f, o = peeps[n]
        np.testing.assert_array_equal(P[d], np.concatenate([i, o, f]))
    if "peephole" not in fastgates.LSTM.__init__.__code__.co_varnames:
        with pytest.raises(fo.OnnxModelError, match=r"input P .*peephole=True"):
            fo.load(tmp_path / "p.onnx")


def test_peephole_and_bias_helpers():
    lstm = cells.get("lstm")
    w = np.arange(12.0).reshape(3, 4)                      # rows i, f, o
    p = cells.to_onnx_peepholes(w, lstm)
    np.testing.assert_array_equal(p, np.concatenate([w[0], w[2], w[1]]))   # i, o, f
    np.testing.assert_array_equal(cells.from_onnx_peepholes(p, lstm), w)
    for name in cells.CELLS:
        c = cells.get(name)
        if c.onnx is None:        # no ONNX operator for the cell (the LayerNorm cells)
            continue
        b_ih, b_hh = np.arange(c.G * 3.0), 100 + np.arange(c.G * 3.0)
        row = cells.to_onnx_bias(b_ih, b_hh, c)
        np.testing.assert_array_equal(row[:c.G * 3], cells.to_onnx_gates(b_ih, c))
        back = cells.from_onnx_bias(row, c)
        np.testing.assert_array_equal(back[0], b_ih)
        np.testing.assert_array_equal(back[1], b_hh)
    gru = cells.get("gru")
    r, z, n = np.zeros(2), np.ones(2), np.full(2, 2.0)
    np.testing.assert_array_equal(cells.to_onnx_gates(np.concatenate([r, z, n]), gru),
                                  np.concatenate([z, r, n]))                     # z, r, h
    assert cells.onnx_activations(cells.get("rnn_relu"), 2) == ["Relu", "Relu"]
    a = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(cells.stack_directions(cells.split_directions(a)), a)


def test_the_operators_never_see_a_length_0(tmp_path):
    model = fo.export(fastgates.GRU(3, 4, num_layers=2), tmp_path / "m.onnx", lengths=True)
    made_by = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "GRU":
            cast = made_by[node.input[4]]
            assert cast.op_type == "Cast" and made_by[cast.input[0]].op_type == "Max"


def test_what_length_0_rows_need_in_onnxruntime():
    """ONNX Runtime gives a length-0 row zeros in Y (like fastgates) but also zeros in Y_h and
    Y_c, where fastgates keeps the initial state.  (The exported graphs do not depend on
    this: they clamp the lengths to 1 and select zeros / h0 / c0 for those rows.)"""
    from onnx import TensorProto, helper, numpy_helper
    H, D = 3, 2
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (1, 4 * H, D)), ("R", (1, 4 * H, H)))]
    node = helper.make_node("LSTM", ["X", "W", "R", "", "L", "h0", "c0"], ["Y", "Yh", "Yc"],
                            hidden_size=H)
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node], "g", [vi("X", TensorProto.FLOAT, [4, 2, D]), vi("L", TensorProto.INT32, [2]),
                      vi("h0", TensorProto.FLOAT, [1, 2, H]),
                      vi("c0", TensorProto.FLOAT, [1, 2, H])],
        [vi(n, TensorProto.FLOAT, None) for n in ("Y", "Yh", "Yc")], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ones = np.ones((1, 2, H), np.float32)
    Y, Yh, Yc = sess.run(None, {"X": np.ones((4, 2, D), np.float32),
                                "L": np.array([4, 0], np.int32), "h0": ones, "c0": ones})
    assert not Y[:, :, 1].any()
    assert not Yh[:, 1].any() and not Yc[:, 1].any(), "ORT now keeps h0 for length-0 rows"
    assert Yh[:, 0].any()


def test_export_is_atomic_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(fo.ExportError):
        lstm = fastgates.LSTM(3, 4)
        lstm._params["weight_hr_l0"] = np.zeros((2, 4), np.float32)
        fo.export(lstm, target)
    assert target.read_bytes() == b"previous"
    fo.export(fastgates.RNN(3, 4), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_no_warnings_for_float32(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fo.export(fastgates.GRU(3, 4, num_layers=2, bidirectional=True), tmp_path / "m.onnx")
        fo.load(tmp_path / "m.onnx")


@pytest.mark.parametrize("name,cls,kw", [c for c in LAYERS if c[0] != "rnn-relu"],
                         ids=[c[0] for c in LAYERS if c[0] != "rnn-relu"])
def test_onnx_reference_evaluator_agrees(tmp_path, name, cls, kw):
    """A second runtime: onnx's own reference implementation of the operators (it knows no
    Relu activation for RNN and ignores sequence_lens, so full batches of the others)."""
    from onnx.reference import ReferenceEvaluator
    layer = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=0, **kw).eval()
    fo.export(layer, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    state = states_of(layer, rng, 3)
    y, st = layer.forward(x, state)
    feeds = dict(zip(("x", "h0", "c0"), (x,) + (state if isinstance(state, tuple) else (state,))))
    got = ReferenceEvaluator(str(tmp_path / "m.onnx")).run(None, feeds)
    assert_close([y] + (list(st) if isinstance(st, tuple) else [st]), got, repr(layer))
