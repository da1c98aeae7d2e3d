"""The LSTM variants of issue 13: projection (PyTorch's proj_size) and peepholes (ONNX's P).

* projection against ``torch.nn.LSTM(proj_size=...)``: outputs and every gradient, float64
  to 1e-10 and float32 to 1e-4, stacked, bidirectional, ragged (PackedSequence), batch_first,
  through ``fastgates.torch.LSTM`` (same seed, same weights) and the NumPy layer;
* peepholes against ONNX Runtime's LSTM operator with input P (skipped without it), and the
  reference's gradients by central finite differences in float64 (both variants);
* the compiled kernels against the reference for every combination at every instruction-set
  level this machine has, bit-identical across thread counts (a child per level);
* the streaming step, the language model (training, checkpoints, compiled generation, the
  command line), ONNX export/load, torch conversion, and bad input naming the argument.
"""

import json

import numpy as np
import pytest

import fastgates
from fastgates import _recurrence, cells, reference
from conftest import assert_close
from _helpers.subproc import child_env, run_python

LSTM = cells.get("lstm")
COMBOS = [(0, True), (3, False), (3, True)]         # (proj_size P, peephole)
COMBO_IDS = ["peep", "proj", "proj+peep"]


def params(rng, D, H, P, peep, dtype, scale=None):
    k = scale or 1 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    R = P or H
    w = [u(4 * H, D), u(4 * H, R), u(4 * H), u(4 * H)]
    return w, dict(w_hr=u(P, H) if P else None, w_peep=u(3, H) if peep else None)


# -- the functional API ------------------------------------------------------------------------

@pytest.mark.parametrize("P,peep", COMBOS, ids=COMBO_IDS)
def test_shapes_and_param_grads(P, peep, rng):
    T, B, D, H = 4, 3, 5, 8
    w, kw = params(rng, D, H, P, peep, np.float64)
    x = rng.standard_normal((T, B, D))
    R = P or H
    for mod in (fastgates, reference):
        y, h, c, cache = mod.lstm_forward(x, None, None, *w, **kw)
        assert y.shape == (T, B, R) and h.shape == (B, R) and c.shape == (B, H)
        assert cache.shape == (T, B, D, H) and cache.proj_size == P
        g = mod.lstm_backward(np.ones_like(y), None, None, cache)
        assert len(g) == 7 and g.dh0.shape == (B, R) and g.dc0.shape == (B, H)
        assert g.dw_hh.shape == (4 * H, R)
        stems = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (["weight_hr"] if P else []) \
            + (["weight_peep"] if peep else [])
        assert list(g.param_grads) == stems
        if P:
            assert g.param_grads["weight_hr"].shape == (P, H)
        if peep:
            assert g.param_grads["weight_peep"].shape == (3, H)


def test_plain_lstm_unchanged_by_the_new_keywords(rng):
    """w_hr=None, w_peep=None is the plain LSTM, bit for bit."""
    w, _ = params(rng, 5, 8, 0, False, np.float32)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    a = fastgates.lstm_forward(x, None, None, *w)
    b = fastgates.lstm_forward(x, None, None, *w, w_hr=None, w_peep=None)
    for u, v in zip(a[:3], b[:3]):
        assert np.array_equal(u, v)
    g = fastgates.lstm_backward(np.ones_like(a[0]), None, None, a[3])
    assert list(g.param_grads) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def test_zero_peepholes_equal_the_plain_lstm(rng):
    w, _ = params(rng, 5, 9, 0, False, np.float64)
    x = rng.standard_normal((4, 3, 5))
    a = fastgates.lstm_forward(x, None, None, *w)
    b = fastgates.lstm_forward(x, None, None, *w, w_peep=np.zeros((3, 9)))
    assert_close(b[0], a[0], np.float64, "y")


@pytest.mark.parametrize("P,peep", COMBOS, ids=COMBO_IDS)
def test_reference_gradients_by_finite_differences(P, peep, rng):
    """Central differences of the reference in float64 for every input and parameter."""
    T, B, D, H = 4, 2, 3, 5
    w, kw = params(rng, D, H, P, peep, np.float64, scale=0.6)
    R = P or H
    x = rng.standard_normal((T, B, D))
    h0, c0 = rng.standard_normal((B, R)) * 0.5, rng.standard_normal((B, H)) * 0.5
    dy, dh, dc = rng.standard_normal((T, B, R)), rng.standard_normal((B, R)), rng.standard_normal((B, H))
    lengths = np.array([4, 2])
    args = {"x": x, "h0": h0, "c0": c0, "w_ih": w[0], "w_hh": w[1], "b_ih": w[2], "b_hh": w[3],
            **{k: v for k, v in kw.items() if v is not None}}

    def loss(a):
        y, h, c, _ = reference.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"],
                                            a["b_ih"], a["b_hh"], w_hr=a.get("w_hr"),
                                            w_peep=a.get("w_peep"), lengths=lengths)
        return float(np.sum(y * dy) + np.sum(h * dh) + np.sum(c * dc))

    _, _, _, cache = reference.lstm_forward(x, h0, c0, *w, **kw, lengths=lengths)
    g = reference.lstm_backward(dy, dh, dc, cache)
    analytic = {"x": g.dx, "h0": g.dh0, "c0": g.dc0, "w_ih": g.dw_ih, "w_hh": g.dw_hh,
                "b_ih": g.db_ih, "b_hh": g.db_hh, "w_hr": g.param_grads.get("weight_hr"),
                "w_peep": g.param_grads.get("weight_peep")}
    eps = 1e-6
    for name in args:
        num = np.zeros_like(args[name])
        for i in np.ndindex(num.shape):
            a = {k: v.copy() for k, v in args.items()}
            a[name][i] += eps
            up = loss(a)
            a[name][i] -= 2 * eps
            num[i] = (up - loss(a)) / (2 * eps)
        assert np.abs(num).max() > 1e-3, f"{name}: the finite differences are all ~0"
        np.testing.assert_allclose(analytic[name], num, rtol=1e-6, atol=1e-8,
                                   err_msg=f"d{name} [P={P} peep={peep}]")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("P,peep", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("kind", ["float", "tokens", "ragged"])
def test_fast_matches_reference_and_is_bit_identical_across_threads(P, peep, dtype, kind, rng):
    T, B, D, H = 5, 9, 6, 21
    w, kw = params(rng, D, H, P, peep, dtype)
    R = P or H
    x = rng.integers(0, D, (T, B)) if kind == "tokens" else rng.standard_normal((T, B, D)).astype(dtype)
    lengths = np.array([5, 0, 3, 5, 1, 4, 2, 5, 1]) if kind == "ragged" else None
    h0, c0 = (rng.standard_normal((B, R)) * 0.5).astype(dtype), (rng.standard_normal((B, H)) * 0.5).astype(dtype)
    dy, dh = rng.standard_normal((T, B, R)).astype(dtype), rng.standard_normal((B, R)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    case = f"P={P} peep={peep} {np.dtype(dtype).name} {kind}"

    def run(mod, nt):
        y, h, c, cache = mod.lstm_forward(x, h0, c0, *w, **kw, lengths=lengths, n_threads=nt)
        g = mod.lstm_backward(dy, dh, dc, cache, n_threads=nt)
        yi, hi, ci, _ = mod.lstm_forward(x, h0, c0, *w, **kw, lengths=lengths, n_threads=nt,
                                         training=False)
        return {"y": y, "h_n": h, "c_n": c, "y_inference": yi, "h_inference": hi,
                "c_inference": ci, "dx": g.dx, "dh0": g.dh0, "dc0": g.dc0,
                **{"d" + k: v for k, v in g.param_grads.items()}}

    ref = run(reference, 1)
    fast = {nt: run(fastgates, nt) for nt in (1, 2, 3)}
    for name, want in ref.items():
        assert_close(fast[1][name], want, dtype, f"{name} [{case}]")
        if want is None:
            continue
        for nt in (2, 3):
            assert np.array_equal(fast[nt][name], fast[1][name], equal_nan=True), (
                f"{name} [{case}]: {nt} threads not bit-identical to 1")


def test_every_isa_level_in_a_child():
    """The sweep of _helpers/lstmvar_worker at every level this CPU and build offer."""
    levels = [lvl for lvl in _recurrence.ISA_LEVELS
              if lvl in _recurrence.isa_compiled() and lvl in _recurrence.isa_supported()]
    assert "generic" in levels
    for level in levels:
        r = run_python(["-m", "_helpers.lstmvar_worker"], timeout=600,
                       env=child_env(FASTGATES_ISA=level))
        assert r.returncode == 0, r.report()
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["isa"] == level, out
        assert out["cases"] >= 36 and out["failures"] == [], out


@pytest.mark.parametrize("B", [3, 13])
def test_streaming_step_equals_forward(B, rng):
    """T calls of the compiled step through a stacked projected peephole LSTM equal one
    forward call per layer, bit for bit (B = 13: full row tiles, where both sum the input
    projection inside the recurrent tiles)."""
    T, D, H, P = 5, 4, 11, 6
    code = cells.get("lstm").code
    layers, ws = [], []
    for k in range(2):
        w, kw = params(rng, D if k == 0 else P, H, P, True, np.float64)
        ws.append((w, kw))
        layers.append(_recurrence.pack_layer(code, *w, 2, w_hr=kw["w_hr"], w_peep=kw["w_peep"]))
    x = rng.standard_normal((T, B, D))
    h = np.zeros((2, B, P))
    c = np.zeros((2, B, H))
    ys = []
    for t in range(T):
        h, c = _recurrence.step(layers, np.ascontiguousarray(x[t]), h, c, 2)
        ys.append(h[1])
    inp = x
    for w, kw in ws:
        inp, h_n, c_n, _ = fastgates.lstm_forward(inp, None, None, *w, **kw, training=False,
                                                  n_threads=2)
    assert np.array_equal(np.stack(ys), inp)
    assert np.array_equal(c[1], c_n)


# -- against torch.nn.LSTM(proj_size) -----------------------------------------------------------

torch_cases = [
    dict(num_layers=1), dict(num_layers=2), dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True), dict(num_layers=2, bias=False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", torch_cases, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_projection_matches_torch(cfg, dtype, packed, single_threaded_torch):
    torch = pytest.importorskip("torch")
    import fastgates.torch as ft
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    D, H, P, T, B = 5, 9, 4, 6, 4
    torch.manual_seed(7)
    ref = torch.nn.LSTM(D, H, proj_size=P, dtype=tdtype, **cfg)
    torch.manual_seed(7)
    mine = ft.LSTM(D, H, proj_size=P, dtype=tdtype, **cfg)
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for (n, a), b in zip(mine.named_parameters(), ref.parameters()):
        assert torch.equal(a, b), f"{n}: initialisation differs under the same seed"
    assert repr(mine) == repr(ref)
    dirs = 2 if cfg.get("bidirectional") else 1
    L = cfg.get("num_layers", 1) * dirs
    gen = torch.Generator().manual_seed(3)
    shape = (B, T, D) if cfg.get("batch_first") else (T, B, D)
    x = torch.randn(shape, dtype=tdtype, generator=gen)
    h0 = torch.randn(L, B, P, dtype=tdtype, generator=gen) * 0.5
    c0 = torch.randn(L, B, H, dtype=tdtype, generator=gen) * 0.5
    lengths = torch.tensor([6, 2, 5, 1])
    outs = {}
    for name, m in (("torch", ref), ("fastgates", mine)):
        xs, hs, cs = (t.clone().requires_grad_() for t in (x, h0, c0))
        inp = pack_padded_sequence(xs, lengths, batch_first=bool(cfg.get("batch_first")),
                                   enforce_sorted=False) if packed else xs
        y, (h, c) = m(inp, (hs, cs))
        if packed:
            y = pad_packed_sequence(y, batch_first=bool(cfg.get("batch_first")))[0]
        assert h.shape == (L, B, P) and c.shape == (L, B, H)
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=tdtype).reshape(y.shape)).sum() \
            + (h ** 2).sum() + (c * 0.3).sum()
        loss.backward()
        outs[name] = {"y": y, "h_n": h, "c_n": c, "dx": xs.grad, "dh0": hs.grad, "dc0": cs.grad,
                      **{"d" + n: p.grad for n, p in m.named_parameters()}}
        m.zero_grad()
    for k, want in outs["torch"].items():
        got = outs["fastgates"][k]
        assert_close(got.detach().numpy(), want.detach().numpy(), dtype, f"{k} [{cfg} packed={packed}]")


def test_numpy_layer_round_trips_with_torch(rng):
    torch = pytest.importorskip("torch")
    layer = fastgates.LSTM(5, 8, num_layers=2, proj_size=3, bidirectional=True, dtype=np.float64,
                           seed=1)
    ref = torch.nn.LSTM(5, 8, num_layers=2, proj_size=3, bidirectional=True, dtype=torch.float64)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    assert list(layer.state_dict()) == list(ref.state_dict())
    x = rng.standard_normal((6, 2, 5))
    y, (h, c) = layer.forward(x)
    yt, (ht, ct) = ref(torch.from_numpy(x))
    assert_close(y, yt.detach().numpy(), np.float64, "y")
    assert_close(h, ht.detach().numpy(), np.float64, "h_n")
    back = fastgates.LSTM(5, 8, num_layers=2, proj_size=3, bidirectional=True, dtype=np.float64)
    back.load_state_dict(ref.state_dict())
    assert all(np.array_equal(a, b) for a, b in zip(back.state_dict().values(),
                                                   layer.state_dict().values()))
    # backward fills every gradient, weight_hr included
    layer.backward(np.ones_like(y))
    assert set(layer.grads) == set(layer.state_dict())


def test_layer_parameters_and_initialisation():
    layer = fastgates.LSTM(4, 6, num_layers=2, proj_size=2, peephole=True, bidirectional=True, seed=0)
    names = list(layer.state_dict())
    assert names[:6] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "weight_hr_l0", "weight_peep_l0"]
    assert names[6:12] == [n + "_reverse" for n in names[:6]]
    sd = layer.state_dict()
    assert sd["weight_ih_l1"].shape == (24, 4) and sd["weight_hh_l1"].shape == (24, 2)
    assert sd["weight_hr_l1_reverse"].shape == (2, 6) and sd["weight_peep_l1"].shape == (3, 6)
    bound = 1 / np.sqrt(6)
    for n in ("weight_hr_l0", "weight_peep_l0"):
        assert np.all(np.abs(sd[n]) <= bound) and np.abs(sd[n]).max() > bound / 2, n
    y, (h, c) = layer.forward(np.zeros((3, 5, 4), np.float32))
    assert y.shape == (3, 5, 4) and h.shape == (4, 5, 2) and c.shape == (4, 5, 6)
    assert repr(layer) == ("fastgates.layers.LSTM(4, 6, num_layers=2, bidirectional=True, "
                           "proj_size=2, peephole=True)")


def test_torch_peephole_module_matches_the_layer(rng):
    torch = pytest.importorskip("torch")
    import fastgates.torch as ft
    m = ft.LSTM(4, 7, num_layers=2, proj_size=3, dtype=torch.float64, peephole=True)
    assert [n for n, _ in m.named_parameters()][4:6] == ["weight_hr_l0", "weight_peep_l0"]
    assert "peephole=True" in repr(m)
    layer = fastgates.LSTM(4, 7, num_layers=2, proj_size=3, peephole=True, dtype=np.float64)
    layer.load_state_dict(m.state_dict())
    x = rng.standard_normal((5, 2, 4))
    y, _ = m(torch.from_numpy(x))
    assert_close(y.detach().numpy(), layer.forward(x)[0], np.float64, "y")


def test_torch_conversion(rng):
    torch = pytest.importorskip("torch")
    import fastgates.torch as ft
    m = ft.LSTM(4, 7, proj_size=3, num_layers=2, dtype=torch.float64)
    twin = ft.to_torch(m)
    assert type(twin) is torch.nn.LSTM and twin.proj_size == 3
    x = torch.from_numpy(rng.standard_normal((5, 2, 4)))
    assert_close(twin(x)[0].detach().numpy(), m(x)[0].detach().numpy(), np.float64, "y")
    back = ft.from_torch(torch.nn.LSTM(4, 7, proj_size=3))
    assert type(back) is ft.LSTM and back.proj_size == 3
    with pytest.raises(ValueError, match="peepholes"):
        ft.to_torch(ft.LSTM(4, 7, peephole=True))


# -- against ONNX Runtime's LSTM operator with peepholes ----------------------------------------

@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "ragged"])
def test_peepholes_match_onnxruntime(direction, ragged, rng):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    T, B, D, H = 6, 4, 5, 7
    dirs = 2 if direction == "bidirectional" else 1
    per = [params(rng, D, H, 0, True, np.float32, scale=0.5) for _ in range(dirs)]
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    h0 = (rng.standard_normal((dirs, B, H)) * 0.5).astype(np.float32)
    c0 = (rng.standard_normal((dirs, B, H)) * 0.5).astype(np.float32)
    lengths = np.array([6, 3, 1, 5] if ragged else [T] * B, np.int32)
    inits = {
        "W": np.stack([cells.to_onnx_gates(w[0], LSTM) for w, _ in per]),
        "R": np.stack([cells.to_onnx_gates(w[1], LSTM) for w, _ in per]),
        "B": np.stack([cells.to_onnx_bias(w[2], w[3], LSTM) for w, _ in per]),
        "P": np.stack([cells.to_onnx_peepholes(kw["w_peep"], LSTM) for _, kw in per]),
        "L": lengths, "h0": h0, "c0": c0}
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "L", "h0", "c0", "P"], ["Y", "Yh", "Yc"],
                            hidden_size=H, direction=direction)
    graph = helper.make_graph(
        [node], "peep", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, D])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Yh", "Yc")],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y, Yh, Yc = sess.run(None, {"X": x})
    for d, (w, kw) in enumerate(per):
        xd = x
        if d == 1:      # the reverse direction: each row's valid prefix reversed
            idx = np.array([[lengths[b] - 1 - t if t < lengths[b] else t for b in range(B)]
                            for t in range(T)])
            xd = x[idx, np.arange(B)]
        y, h, c, _ = fastgates.lstm_forward(xd, h0[d], c0[d], *w, **kw, training=False,
                                            lengths=lengths if ragged else None)
        if d == 1:
            y = y[idx, np.arange(B)]
        valid = np.arange(T)[:, None] < lengths[None, :]
        np.testing.assert_allclose(y[valid], Y[:, d][valid], rtol=1e-4, atol=1e-5,
                                   err_msg=f"y, direction {d}")
        np.testing.assert_allclose(h, Yh[d], rtol=1e-4, atol=1e-5, err_msg=f"h_n, direction {d}")
        np.testing.assert_allclose(c, Yc[d], rtol=1e-4, atol=1e-5, err_msg=f"c_n, direction {d}")


def test_onnx_export_and_load_of_a_peephole_layer(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime")
    import fastgates.onnx as fo
    layer = fastgates.LSTM(5, 6, num_layers=2, bidirectional=True, peephole=True, seed=2).eval()
    path = tmp_path / "peep.onnx"
    fo.export(layer, path)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    st = np.zeros((4, 3, 6), np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {"x": x, "h0": st, "c0": st})[0]
    y, _ = layer.forward(x)
    np.testing.assert_allclose(y_ort.reshape(y.shape), y, rtol=1e-4, atol=1e-5)
    loaded = fo.load(path)
    assert all(lay.peephole for lay in loaded)
    with pytest.raises(fo.ExportError, match="projected LSTM"):
        fo.export(fastgates.LSTM(5, 6, proj_size=2), tmp_path / "p.onnx")


# -- the language model -------------------------------------------------------------------------

@pytest.mark.parametrize("proj,peep", [(0, True), (5, False), (5, True)], ids=COMBO_IDS)
def test_lm_trains_checkpoints_and_generates(proj, peep, tmp_path):
    from fastgates import lm
    from fastgates.lm import checkpoint, generation
    cfg = lm.ModelConfig(20, cell="lstm", hidden=12, layers=2, proj=proj, peephole=peep)
    model = lm.CharRNN(cfg, rng=np.random.default_rng(0))
    assert model.params["fc.weight"].shape == (20, proj or 12)
    X = np.random.default_rng(1).integers(0, 20, (7, 3))
    loss, grads, state = model.loss_and_grads(X, np.roll(X, 1, axis=0))
    assert set(grads) == set(model.params) and state[0][0].shape == (3, proj or 12)
    ref = lm.CharRNN(cfg, model.params, backend="reference")
    loss_ref, grads_ref, _ = ref.loss_and_grads(X, np.roll(X, 1, axis=0))
    assert abs(loss - loss_ref) < 1e-5
    for k in grads:
        assert_close(grads[k], grads_ref[k], np.float32, k)
    a = generation.sample_compiled(model, [1, 2], 30, temperature=0.8, seed=3)
    b = generation.sample_numpy(model, [1, 2], 30, temperature=0.8, seed=3)
    assert np.array_equal(a, b)
    # a training step, a checkpoint and back: the variant and the weights survive
    from fastgates.lm.data import Vocab
    vocab = Vocab(["<unk>"] + [chr(97 + i) for i in range(19)])
    trainer = lm.Trainer(model, np.random.default_rng(2).integers(0, 20, 400), batch=3, steps=7)
    trainer.train_step(X, np.roll(X, 1, axis=0))
    a = generation.sample_compiled(model, [1, 2], 30, temperature=0.8, seed=3)
    path = tmp_path / "m.npz"
    checkpoint.save_training(path, trainer, vocab, {})
    back = checkpoint.load_model(path).model
    assert back.config.proj == proj and back.config.peephole == peep
    assert np.array_equal(generation.sample_compiled(back, [1, 2], 30, temperature=0.8, seed=3), a)


def test_lm_command_line(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    out = tmp_path / "run"
    args = ["-m", "fastgates.lm.cli", "train", "--text", str(text), "--hidden", "16", "--proj", "6",
            "--peephole", "--epochs", "1", "--steps", "10", "--batch", "4", "--out", str(out),
            "--sample-length", "10", "--json"]
    r = run_python(args, timeout=300)
    assert r.returncode == 0, r.report()
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert np.isfinite(result["val_ppl"]), result
    r = run_python(["-m", "fastgates.lm.cli", "generate", "--checkpoint", str(out / "checkpoint.npz"),
                    "--length", "12", "--seed", "1", "--prefix", "the"], timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("the"), r.report()
    for extra, msg in ((["--proj", "16"], "--proj must be smaller than --hidden=16"),
                       (["--cell", "gru", "--proj", "4"], "only the LSTM has a projection"),
                       (["--cell", "rnn", "--peephole"], "only the LSTM has peepholes")):
        r = run_python(["-m", "fastgates.lm.cli", "train", "--text", str(text), "--hidden", "16",
                        "--epochs", "1", "--out", str(tmp_path / "bad"), *extra], timeout=120)
        assert r.returncode != 0 and msg in r.stderr, r.report()


# -- bad input ----------------------------------------------------------------------------------

def test_bad_input_names_the_argument(rng):
    D, H, P, B, T = 3, 6, 2, 2, 4
    w, kw = params(rng, D, H, P, True, np.float64)
    x = rng.standard_normal((T, B, D))
    for mod in (fastgates, reference):
        def call(*a, **k):
            return mod.lstm_forward(*a, **k)
        with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2\) \(\(B, P\) state: a "
                                             r"projected h is P = 2 wide"):
            call(x, np.zeros((B, H)), None, *w, **kw)
        with pytest.raises(ValueError, match=r"c0 must have shape \(2, 6\)"):
            call(x, None, np.zeros((B, P)), *w, **kw)
        with pytest.raises(ValueError, match=r"w_peep must have shape \(3, 6\)"):
            call(x, None, None, *w, w_hr=kw["w_hr"], w_peep=np.zeros((4, H)))
        plain, _ = params(rng, D, H, 0, False, np.float64)
        with pytest.raises(ValueError, match=r"w_peep must be 2-D weight_peep \(3, H\), got 1-D"):
            call(x, None, None, *plain, w_peep=np.zeros(3 * H))
        with pytest.raises(ValueError, match=r"w_hr must have shape \(P, H\) with 0 < P < H"):
            call(x, None, None, w[0], np.zeros((4 * H, H)), *w[2:], w_hr=np.zeros((H, H)))
        with pytest.raises(ValueError, match=r"w_hh must have shape \(4\*H, P\) = \(24, 2\)"):
            call(x, None, None, w[0], np.zeros((4 * H, H)), *w[2:], **kw)
        with pytest.raises(ValueError, match=r"w_hh must have shape \(4\*H, H\).*pass w_hr"):
            call(x, None, None, *w)                      # w_hh (4H, P) without w_hr
        with pytest.raises(TypeError, match="w_hr is float32"):
            call(x, None, None, *w, w_hr=kw["w_hr"].astype(np.float32))
        _, _, _, cache = call(x, None, None, *w, **kw)
        with pytest.raises(ValueError, match=r"dy must have shape \(4, 2, 2\) \(\(T, B, P\) like y\)"):
            mod.lstm_backward(np.zeros((T, B, H)), None, None, cache)
        with pytest.raises(ValueError, match=r"dh_n must have shape \(2, 2\)"):
            mod.lstm_backward(None, np.zeros((B, H)), None, cache)


def test_bad_layer_arguments():
    for bad, err, msg in ((-1, ValueError, "proj_size must be 0 .* got -1"),
                          (6, ValueError, "proj_size must be smaller than hidden_size=6"),
                          (7, ValueError, "proj_size must be smaller than hidden_size=6"),
                          (2.0, TypeError, "proj_size must be an int")):
        with pytest.raises(err, match=msg):
            fastgates.LSTM(3, 6, proj_size=bad)
    with pytest.raises(TypeError, match="peephole must be True or False"):
        fastgates.LSTM(3, 6, peephole=1)
    with pytest.raises(ValueError, match="proj_size=2: only the LSTM has a projection"):
        fastgates.GRU(3, 6, proj_size=2)
    layer = fastgates.LSTM(3, 6, proj_size=2, dtype=np.float64)
    with pytest.raises(ValueError, match=r"state\[0\] \(h\) must have shape .* = \(1, 4, 2\)"):
        layer.forward(np.zeros((5, 4, 3)), (np.zeros((1, 4, 6)), None))
    with pytest.raises(ValueError, match=r"state\[1\] \(c\) must have shape .* = \(1, 4, 6\)"):
        layer.forward(np.zeros((5, 4, 3)), (None, np.zeros((1, 4, 2))))


def test_bad_torch_arguments():
    torch = pytest.importorskip("torch")
    import fastgates.torch as ft
    with pytest.raises(ValueError, match="proj_size must be 0"):
        ft.LSTM(3, 6, proj_size=-1)
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size=6"):
        ft.LSTM(3, 6, proj_size=6)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        ft.RNN(3, 6, proj_size=2)
    with pytest.raises(ValueError, match="only the LSTM has peepholes"):
        ft.GRU(3, 6, peephole=True)
    m = ft.LSTM(3, 6, proj_size=2)
    with pytest.raises(ValueError, match=r"hx\[0\] \(h_0\) must have shape \(1, 4, 2\) .*proj_size"):
        m(torch.zeros(5, 4, 3), (torch.zeros(1, 4, 6), torch.zeros(1, 4, 6)))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\) must have shape \(1, 4, 6\) .*hidden_size"):
        m(torch.zeros(5, 4, 3), (torch.zeros(1, 4, 2), torch.zeros(1, 4, 2)))
