"""fastgates.layers (RNN, GRU, LSTM over NumPy arrays) without PyTorch.

The layers are checked against independent compositions of the kernels (one row at a
time for ragged batches, an explicit flip for the reverse direction), by central finite
differences in float64 (stacked, bidirectional, ragged, with dropout), and for their
naming, serialisation, modes and error messages.  Parity with torch.nn lives in
test_layers_torch.py.
"""

import copy
import os

import numpy as np
import pytest

import fastgates
from fastgates import layers
from conftest import KIND_ARGS, KIND_IDS, assert_close, case_id



def make_layer(cls, kw, D=5, H=6, **more):
    more.setdefault("dtype", np.float64)
    return cls(D, H, **kw, **more)


def is_lstm(layer):
    return isinstance(layer, fastgates.LSTM)


def random_state(rng, layer, B):
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), B, layer.hidden_size)
    h = (0.5 * rng.standard_normal(shape)).astype(layer.dtype)
    c = (0.5 * rng.standard_normal(shape)).astype(layer.dtype)
    return (h, c) if is_lstm(layer) else h


def states(s):
    """A state as a tuple of arrays (h,) or (h, c)."""
    return s if isinstance(s, tuple) else (s,)


def loss_weights(rng, y, s):
    return rng.standard_normal(y.shape), tuple(rng.standard_normal(a.shape) for a in states(s))


def weighted_loss(y, s, wy, ws):
    return float(np.sum(y * wy) + sum(np.sum(a * w) for a, w in zip(states(s), ws)))


# Names, initialisation, parameters.

def test_parameter_names_are_pytorchs():
    lstm = fastgates.LSTM(3, 4, num_layers=2, bidirectional=True)
    expected = []
    for layer in range(2):
        for sfx in ("", "_reverse"):
            expected += [f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}",
                         f"bias_ih_l{layer}{sfx}", f"bias_hh_l{layer}{sfx}"]
    assert list(lstm.parameters()) == expected
    shapes = {k: v.shape for k, v in lstm.parameters().items()}
    assert shapes["weight_ih_l0"] == (16, 3) and shapes["weight_ih_l1"] == (16, 8)
    assert shapes["weight_hh_l1_reverse"] == (16, 4) and shapes["bias_hh_l0"] == (16,)
    gru = fastgates.GRU(3, 4, bias=False)
    assert list(gru.parameters()) == ["weight_ih_l0", "weight_hh_l0"]
    assert gru.parameters()["weight_hh_l0"].shape == (12, 4)


@pytest.mark.parametrize("cls,kw", KIND_ARGS, ids=KIND_IDS)
def test_seeded_uniform_init(cls, kw):
    a, b, c = (cls(5, 9, num_layers=2, seed=s, **kw) for s in (3, 3, 4))
    k = 1 / 3
    for name, p in a.parameters().items():
        assert p.dtype == np.float32 and np.abs(p).max() <= k, name
        np.testing.assert_array_equal(p, b.parameters()[name])
        assert not np.array_equal(p, c.parameters()[name]), name
    every = np.concatenate([p.ravel() for p in a.parameters().values()])
    assert np.abs(every).max() > 0.99 * k                      # uniform(-k, k): std k / sqrt(3)
    assert abs(every.mean()) < 0.03 and abs(every.std() - k / np.sqrt(3)) < 0.02


def test_parameters_are_live_and_state_dict_copies():
    layer = fastgates.RNN(2, 3, seed=0, dtype=np.float64)
    x = np.ones((4, 1, 2))
    y0, _ = layer.forward(x)
    sd = layer.state_dict()
    layer.parameters()["bias_ih_l0"][:] += 1.0          # an optimizer updates in place
    y1, _ = layer.forward(x)
    assert not np.allclose(y0, y1)
    assert not np.shares_memory(sd["bias_ih_l0"], layer.parameters()["bias_ih_l0"])
    layer.load_state_dict(sd)
    np.testing.assert_array_equal(layer.forward(x)[0], y0)


# Composition checks against the kernels.

@pytest.mark.parametrize("cls,kw", KIND_ARGS, ids=KIND_IDS)
def test_stack_is_composition_of_kernels(cls, kw, rng):
    """Two bidirectional layers equal four explicit kernel calls with flips and concatenations."""
    layer = make_layer(cls, kw, num_layers=2, bidirectional=True, seed=1)
    T, B = 7, 3
    x = rng.standard_normal((T, B, 5))
    s0 = random_state(rng, layer, B)
    y, s = layer.forward(x, s0)

    p = layer.parameters()
    lstm = is_lstm(layer)
    fwd = getattr(fastgates, {fastgates.RNN: "rnn", fastgates.GRU: "gru", fastgates.LSTM: "lstm"}[cls]
                  + "_forward")
    inp, hs, cs = x, [], []
    for layer_i in range(2):
        outs = []
        for d, sfx in enumerate(("", "_reverse")):
            k = 2 * layer_i + d
            w = [p[f"{n}_l{layer_i}{sfx}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            xi = inp if d == 0 else inp[::-1].copy()
            if lstm:
                yi, h, c, _ = fwd(xi, s0[0][k], s0[1][k], *w)
                cs.append(c)
            else:
                yi, h, _ = fwd(xi, s0[k], *w, **kw)
            outs.append(yi if d == 0 else yi[::-1])
            hs.append(h)
        inp = np.concatenate(outs, axis=2)
    np.testing.assert_array_equal(y, inp)
    np.testing.assert_array_equal(states(s)[0], np.stack(hs))
    if lstm:
        np.testing.assert_array_equal(s[1], np.stack(cs))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("cls,kw", KIND_ARGS, ids=KIND_IDS)
def test_ragged_batch_equals_rows_alone(cls, kw, bidirectional, rng):
    """Each row of a ragged batch behaves as that row alone, truncated to its length:
    outputs, final states, input and state gradients, and the summed weight gradients."""
    layer = make_layer(cls, kw, num_layers=2, bidirectional=bidirectional, seed=2)
    T, B = 8, 5
    lengths = np.array([3, 8, 0, 5, 1])               # unsorted, with an empty row
    x = rng.standard_normal((T, B, 5))
    s0 = random_state(rng, layer, B)
    y, s = layer.forward(x, s0, lengths=lengths)
    wy, ws = loss_weights(rng, y, s)
    dx = layer.backward(wy, ws if is_lstm(layer) else ws[0])
    grads, sgrad = dict(layer.grads), states(layer.state_grad)

    summed = {k: np.zeros_like(v) for k, v in grads.items()}
    for b, n in enumerate(lengths):
        case = case_id(row=b, length=n, bidirectional=bidirectional)
        sb = tuple(a[:, b:b + 1] for a in states(s0))
        yb, stb = layer.forward(x[:n, b:b + 1], sb if is_lstm(layer) else sb[0])
        assert_close(y[:n, b:b + 1], yb, np.float64, f"y [{case}]")
        assert not y[n:, b].any(), f"y past the end is not zero [{case}]"
        for a, ab in zip(states(s), states(stb)):
            assert_close(a[:, b:b + 1], ab, np.float64, f"state [{case}]")
        dxb = layer.backward(wy[:n, b:b + 1], tuple(w[:, b:b + 1] for w in ws)
                             if is_lstm(layer) else ws[0][:, b:b + 1])
        assert_close(dx[:n, b:b + 1], dxb, np.float64, f"dx [{case}]")
        assert not dx[n:, b].any(), f"dx past the end is not zero [{case}]"
        for a, ab in zip(sgrad, states(layer.state_grad)):
            assert_close(a[:, b:b + 1], ab, np.float64, f"state_grad [{case}]")
        for k in summed:
            summed[k] += layer.grads[k]
    for k in grads:
        assert_close(grads[k], summed[k], np.float64, f"{k} summed over rows")


@pytest.mark.parametrize("cls,kw", KIND_ARGS, ids=KIND_IDS)
def test_full_lengths_equal_no_lengths(cls, kw, rng):
    layer = make_layer(cls, kw, num_layers=2, bidirectional=True, seed=3)
    x = rng.standard_normal((6, 4, 5))
    y0, s0 = layer.forward(x)
    dx0 = layer.backward(np.ones_like(y0))
    g0 = dict(layer.grads)
    y1, s1 = layer.forward(x, lengths=np.full(4, 6))
    dx1 = layer.backward(np.ones_like(y1))
    assert_close(y1, y0, np.float64, "y")
    for a, b in zip(states(s1), states(s0)):
        assert_close(a, b, np.float64, "state")
    assert_close(dx1, dx0, np.float64, "dx")
    for k in g0:
        assert_close(layer.grads[k], g0[k], np.float64, k)


# Gradients by finite differences.

@pytest.mark.parametrize("cls,kw", KIND_ARGS, ids=KIND_IDS)
def test_gradients_by_finite_differences(cls, kw, rng):
    """Stacked, bidirectional, ragged, batch_first, with dropout, in float64."""
    layer = make_layer(cls, kw, D=3, H=4, num_layers=2, bidirectional=True, dropout=0.3,
                       batch_first=True, seed=5)
    B, T = 3, 5
    lengths = np.array([5, 2, 4])
    x = rng.standard_normal((B, T, 3))
    s0 = random_state(rng, layer, B)
    probe = copy.deepcopy(layer)       # the same generator state, hence the same dropout masks
    y, s = probe.forward(x, s0, lengths=lengths)
    wy, ws = loss_weights(rng, y, s)
    dx = probe.backward(wy, ws if is_lstm(layer) else ws[0])

    def loss(x=x, s0=s0, param=None, idx=None, eps=0.0):
        net = copy.deepcopy(layer)
        if param is not None:
            net.parameters()[param][idx] += eps
        yy, ss = net.forward(x, s0, lengths=lengths)
        return weighted_loss(yy, ss, wy, ws)

    eps = 1e-6

    def central(f):
        return (f(eps) - f(-eps)) / (2 * eps)

    for name, g in probe.grads.items():
        for idx in [tuple(rng.integers(0, n) for n in g.shape) for _ in range(3)]:
            num = central(lambda e: loss(param=name, idx=idx, eps=e))
            assert abs(g[idx] - num) <= 1e-6 * max(1.0, abs(num)), (name, idx, g[idx], num)
    for b, t in [(0, 4), (1, 1), (2, 0), (1, 3)]:
        for dfeat in range(3):
            def fx(e):
                xx = x.copy()
                xx[b, t, dfeat] += e
                return loss(x=xx)
            num = central(fx)
            assert abs(dx[b, t, dfeat] - num) <= 1e-6 * max(1.0, abs(num)), ("dx", b, t, num)
    for i, (sg, s0i) in enumerate(zip(states(probe.state_grad), states(s0))):
        for idx in [(0, 1, 2), (3, 2, 0), (2, 0, 3)]:
            def fs(e):
                ss = [a.copy() for a in states(s0)]
                ss[i][idx] += e
                return loss(s0=tuple(ss) if is_lstm(layer) else ss[0])
            num = central(fs)
            assert abs(sg[idx] - num) <= 1e-6 * max(1.0, abs(num)), ("state", i, idx, num)


# Modes, dropout, layouts, inputs.

def test_dropout_training_only_and_seeded(rng):
    x = rng.standard_normal((6, 3, 4))
    a = fastgates.GRU(4, 5, num_layers=3, dropout=0.5, dtype=np.float64, seed=9)
    b = fastgates.GRU(4, 5, num_layers=3, dropout=0.5, dtype=np.float64, seed=9)
    plain = fastgates.GRU(4, 5, num_layers=3, dtype=np.float64)
    plain.load_state_dict(a.state_dict())
    ya, yb = a.forward(x)[0], b.forward(x)[0]
    np.testing.assert_array_equal(ya, yb)                     # seeded masks
    assert not np.allclose(ya, plain.forward(x)[0])           # dropout acted
    assert not np.allclose(a.forward(x)[0], ya)               # fresh masks per call
    a.eval()
    np.testing.assert_array_equal(a.forward(x)[0], plain.forward(x)[0])
    # p = 1 zeroes the inputs of the upper layers: every row of layer 3 sees the same inputs
    ones = fastgates.RNN(4, 5, num_layers=2, dropout=1.0, dtype=np.float64, seed=0)
    y1 = ones.forward(x)[0]
    np.testing.assert_allclose(y1, np.broadcast_to(y1[:, :1], y1.shape), rtol=0, atol=1e-15)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="dropout=0.2 has no effect with num_layers=1"):
        fastgates.LSTM(3, 4, dropout=0.2)


def test_eval_mode_keeps_no_tape(rng):
    layer = fastgates.LSTM(3, 4, dtype=np.float64).eval()
    y, _ = layer.forward(rng.standard_normal((5, 2, 3)))
    with pytest.raises(ValueError, match="backward needs a forward pass in training mode"):
        layer.backward(np.ones_like(y))
    assert layer.train() is layer and layer.training


@pytest.mark.parametrize("cls,kw", KIND_ARGS, ids=KIND_IDS)
def test_batch_first_is_a_transpose(cls, kw, rng):
    seq = make_layer(cls, kw, num_layers=2, bidirectional=True, seed=4)
    bf = make_layer(cls, kw, num_layers=2, bidirectional=True, batch_first=True, seed=4)
    x = rng.standard_normal((6, 3, 5))
    lengths = np.array([6, 2, 4])
    y, s = seq.forward(x, lengths=lengths)
    ybf, sbf = bf.forward(x.transpose(1, 0, 2), lengths=lengths)
    assert ybf.shape == (3, 6, 12)
    np.testing.assert_array_equal(ybf, y.transpose(1, 0, 2))
    for a, b in zip(states(s), states(sbf)):
        np.testing.assert_array_equal(a, b)
    dy = rng.standard_normal(y.shape)
    dx = seq.backward(dy)
    dxbf = bf.backward(dy.transpose(1, 0, 2))
    np.testing.assert_array_equal(dxbf, dx.transpose(1, 0, 2))
    for k in seq.grads:
        np.testing.assert_array_equal(bf.grads[k], seq.grads[k])


@pytest.mark.parametrize("cls,kw", KIND_ARGS, ids=KIND_IDS)
def test_token_ids_equal_one_hot(cls, kw, rng):
    layer = make_layer(cls, kw, D=7, num_layers=2, bidirectional=True, seed=6)
    tokens = rng.integers(0, 7, (5, 3))
    lengths = np.array([5, 3, 1])
    onehot = np.eye(7)[tokens]
    y, s = layer.forward(onehot, lengths=lengths)
    dy = rng.standard_normal(y.shape)
    assert layer.backward(dy) is not None
    g = dict(layer.grads)
    yt, st = layer.forward(tokens, lengths=lengths)
    assert layer.backward(dy) is None
    assert_close(yt, y, np.float64, "y")
    for a, b in zip(states(st), states(s)):
        assert_close(a, b, np.float64, "state")
    for k in g:
        assert_close(layer.grads[k], g[k], np.float64, k)


def test_bias_false_equals_zero_biases(rng):
    nb = fastgates.LSTM(3, 4, num_layers=2, bias=False, dtype=np.float64, seed=1)
    zb = fastgates.LSTM(3, 4, num_layers=2, dtype=np.float64)
    sd = nb.state_dict()
    sd.update({k: np.zeros_like(v) for k, v in zb.parameters().items() if k.startswith("bias")})
    zb.load_state_dict(sd)
    x = rng.standard_normal((4, 2, 3))
    np.testing.assert_array_equal(nb.forward(x)[0], zb.forward(x)[0])
    nb.backward(np.ones((4, 2, 4)))
    zb.backward(np.ones((4, 2, 4)))
    assert list(nb.grads) == list(nb.parameters())
    for k in nb.grads:
        np.testing.assert_array_equal(nb.grads[k], zb.grads[k])


def test_float32_layer_matches_float64(rng):
    l64 = fastgates.GRU(5, 8, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    l32 = fastgates.GRU(5, 8, num_layers=2, bidirectional=True, seed=0)
    l32.load_state_dict(l64.state_dict())
    x = rng.standard_normal((9, 4, 5))
    lengths = np.array([9, 4, 7, 2])
    y64, h64 = l64.forward(x, lengths=lengths)
    y32, h32 = l32.forward(x.astype(np.float32), lengths=lengths)
    assert y32.dtype == h32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=1e-5)
    dx64 = l64.backward(np.ones_like(y64))
    dx32 = l32.backward(np.ones_like(y32))
    np.testing.assert_allclose(dx32, dx64, atol=1e-4)
    for k in l64.grads:
        assert l32.grads[k].dtype == np.float32
        np.testing.assert_allclose(l32.grads[k], l64.grads[k], rtol=1e-4, atol=1e-4, err_msg=k)


def test_backward_overwrites_and_inputs_unmodified(rng):
    layer = fastgates.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    x = rng.standard_normal((5, 2, 3))
    s0 = random_state(rng, layer, 2)
    lengths = np.array([5, 3])
    dy = rng.standard_normal((5, 2, 8))
    ds = random_state(rng, layer, 2)
    saved = [a.copy() for a in (x, *s0, lengths, dy, *ds)]
    params = {k: v.copy() for k, v in layer.parameters().items()}
    layer.forward(x, s0, lengths=lengths)
    layer.backward(dy, ds)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.backward(dy, ds)
    for k in first:
        np.testing.assert_array_equal(layer.grads[k], first[k])      # not accumulated
    for a, b in zip((x, *s0, lengths, dy, *ds), saved):
        np.testing.assert_array_equal(a, b)
    for k in params:
        np.testing.assert_array_equal(layer.parameters()[k], params[k])


def test_dy_none_takes_gradient_from_state_only(rng):
    layer = fastgates.GRU(3, 4, num_layers=2, dtype=np.float64, seed=0)
    x = rng.standard_normal((5, 2, 3))
    y, h = layer.forward(x)
    ds = rng.standard_normal(h.shape)
    dx = layer.backward(None, ds)
    g = dict(layer.grads)
    dx0 = layer.backward(np.zeros_like(y), ds)
    np.testing.assert_array_equal(dx, dx0)
    for k in g:
        np.testing.assert_array_equal(layer.grads[k], g[k])


# Serialisation.

def test_state_dict_npz_round_trip(tmp_path, rng):
    a = fastgates.LSTM(3, 4, num_layers=2, bidirectional=True, seed=1)
    b = fastgates.LSTM(3, 4, num_layers=2, bidirectional=True, seed=2)
    path = os.path.join(tmp_path, "lstm.npz")
    np.savez(path, **a.state_dict())
    assert b.load_state_dict(path) == ([], [])
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.forward(x)[0], b.forward(x)[0])
    c = fastgates.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=3)
    with np.load(path) as f:
        c.load_state_dict(f)                                 # an NpzFile, cast to float64
    assert c.parameters()["weight_hh_l1_reverse"].dtype == np.float64
    np.testing.assert_array_equal(c.parameters()["weight_hh_l1_reverse"],
                                  a.parameters()["weight_hh_l1_reverse"])


def test_load_state_dict_errors_write_nothing():
    layer = fastgates.GRU(3, 4, num_layers=2, seed=0)
    before = layer.state_dict()
    sd = layer.state_dict()
    sd["weight_ih_l0"] = sd["weight_ih_l0"] + 1
    del sd["bias_hh_l1"]
    sd["weight_hr_l0"] = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1'\], unexpected \['weight_hr_l0'\]"):
        layer.load_state_dict(sd)
    bad = layer.state_dict()
    bad["weight_ih_l0"] = bad["weight_ih_l0"] + 1
    bad["weight_hh_l1"] = np.zeros((12, 5), np.float32)
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l1'\] has shape \(12, 5\), "
                                         r"expected \(12, 4\)"):
        layer.load_state_dict(bad)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    missing, unexpected = layer.load_state_dict(sd, strict=False)
    assert missing == ["bias_hh_l1"] and unexpected == ["weight_hr_l0"]
    np.testing.assert_array_equal(layer.parameters()["weight_ih_l0"], before["weight_ih_l0"] + 1)
    with pytest.raises(TypeError, match="must be a float array"):
        layer.load_state_dict({**layer.state_dict(), "bias_ih_l0": np.zeros(12, int)})
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        layer.load_state_dict([1, 2])


# Bad input.

@pytest.mark.parametrize("make,exc,match", [
    (lambda: fastgates.LSTM(0, 4), ValueError, "input_size must be >= 1, got 0"),
    (lambda: fastgates.LSTM(3, 4.0), TypeError, "hidden_size must be an int, got float"),
    (lambda: fastgates.GRU(3, 4, num_layers=0), ValueError, "num_layers must be >= 1"),
    (lambda: fastgates.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "nonlinearity must be"),
    (lambda: fastgates.RNN(3, 4, dtype=np.int32), TypeError, "dtype must be float32 or float64"),
    (lambda: fastgates.GRU(3, 4, num_layers=2, dropout=1.5), ValueError, r"dropout must be a probability in \[0, 1\]"),
    (lambda: fastgates.GRU(3, 4, bidirectional="yes"), TypeError, "bidirectional must be True or False"),
    (lambda: fastgates.LSTM(3, 4, n_threads=0), ValueError, "n_threads must be None"),
])
def test_bad_constructor(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_forward_and_backward_arguments(rng):
    lstm = fastgates.LSTM(3, 4, num_layers=2)          # float32
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    h = np.zeros((2, 2, 4), np.float32)
    cases = [
        (dict(x=x.astype(np.float64)), TypeError, "x has dtype float64 but the layer's parameters are float32"),
        (dict(x=x[0]), ValueError, r"x must be 3-D \(T, B, D\), got shape \(2, 3\)"),
        (dict(x=x[..., :2]), ValueError, "x has 2 features .* expected input_size=3"),
        (dict(x=x.astype(bool)), TypeError, "x must be a float array or integer token ids"),
        (dict(x=x, state=h), TypeError, r"state of an LSTM must be a pair \(h, c\)"),
        (dict(x=x, state=(h, h[:1])), ValueError, r"state\[1\] \(c\) must have shape .* = \(2, 2, 4\), got \(1, 2, 4\)"),
        (dict(x=x, state=(h.astype(np.float64), h)), TypeError, r"state\[0\] \(h\) has dtype float64"),
        (dict(x=x, lengths=[5, 6]), ValueError, r"lengths must lie in \[0, T\] = \[0, 5\]; got lengths\[1\] = 6"),
        (dict(x=x, lengths=[5, -1]), ValueError, r"got lengths\[1\] = -1"),
        (dict(x=x, lengths=[5]), ValueError, r"lengths must have shape \(B,\) = \(2,\)"),
        (dict(x=x, lengths=[5.0, 2.0]), TypeError, "lengths must be an integer array"),
    ]
    for kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            lstm.forward(**kw)
    with pytest.raises(ValueError, match="backward needs a forward pass"):
        fastgates.GRU(3, 4).backward(np.zeros((5, 2, 4), np.float32))
    y, _ = lstm.forward(x)
    with pytest.raises(ValueError, match=r"dy must have the shape of y \(5, 2, 4\), got \(5, 2, 3\)"):
        lstm.backward(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(TypeError, match="dy has dtype float64, expected float32"):
        lstm.backward(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match=r"dstate\[0\] \(h\) must have shape"):
        lstm.backward(None, (h[:1], h))
    gru = fastgates.GRU(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"x must be 3-D \(B, T, D\) \(batch_first\)"):
        gru.forward(x[0])
    with pytest.raises(ValueError, match=r"token ids must be 2-D \(B, T\)"):
        gru.forward(np.zeros((2, 3, 1), int))
    with pytest.raises(ValueError, match=r"state must have shape .* = \(1, 5, 4\)"):
        gru.forward(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"x holds token ids in \[0, D\) = \[0, 3\)"):
        gru.forward(np.full((2, 4), 3))


def test_repr():
    assert repr(fastgates.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)) == \
        "fastgates.layers.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)"
    assert repr(fastgates.GRU(3, 4, linear_before_reset=False, dtype=np.float64)) == \
        "fastgates.layers.GRU(3, 4, linear_before_reset=False, dtype=float64)"
    assert layers.RNN is fastgates.RNN
