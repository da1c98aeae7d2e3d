"""fastgates.lm: the model (parameters, loss, gradients), clipping, optimizers, perplexity."""

import math
import warnings

import numpy as np
import pytest

from fastgates.lm import model as model_mod
from fastgates.lm.model import CharRNN, ModelConfig, init_params, param_shapes, softmax_cross_entropy
from fastgates.lm.optim import SGD, Adam, make_optimizer
from fastgates.lm.training import Trainer, clip_grad_norm, evaluate, grad_norm, perplexity

CELL_CONFIGS = [
    dict(cell="lstm"), dict(cell="gru", gru_reset="after"), dict(cell="gru", gru_reset="before"),
    dict(cell="rnn"),
]
CELL_IDS = ["lstm", "gru-after", "gru-before", "rnn"]


def batch(V, T, B, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))


# -- parameters ---------------------------------------------------------------------------------

def test_parameter_names_shapes_and_init_follow_pytorch():
    cfg = ModelConfig(vocab_size=11, cell="lstm", hidden=8, layers=2, embedding=5)
    p = init_params(cfg, np.random.default_rng(0))
    assert list(p) == ["embedding.weight",
                       "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
                       "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
                       "fc.weight", "fc.bias"]
    assert p["rnn.weight_ih_l0"].shape == (32, 5) and p["rnn.weight_ih_l1"].shape == (32, 8)
    assert p["fc.weight"].shape == (11, 8) and p["fc.bias"].shape == (11,)
    bound = 1 / math.sqrt(8)
    for k, v in p.items():
        assert v.dtype == np.float32
        if k != "embedding.weight":
            assert np.abs(v).max() <= bound
    no_emb = param_shapes(ModelConfig(vocab_size=11, cell="gru", hidden=8))
    assert "embedding.weight" not in no_emb and no_emb["rnn.weight_ih_l0"] == (24, 11)


@pytest.mark.parametrize("kw, match", [
    (dict(cell="transformer"), "cell must be one of"),
    (dict(hidden=0), "hidden must be a positive integer"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (dict(dtype="float16"), "dtype must be one of"),
    (dict(gru_reset="middle"), "gru_reset must be one of"),
])
def test_model_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(vocab_size=5, **kw)


def test_unknown_backend_and_mismatched_params():
    cfg = ModelConfig(vocab_size=5, hidden=4)
    with pytest.raises(ValueError, match="backend must be one of"):
        CharRNN(cfg, backend="gpu")
    p = init_params(cfg, np.random.default_rng(0))
    p["fc.weight"] = p["fc.weight"][:, :3]
    with pytest.raises(ValueError, match=r"fc.weight has shape \(5, 3\), expected \(5, 4\)"):
        CharRNN(cfg, p)


# -- loss ---------------------------------------------------------------------------------------

def test_softmax_cross_entropy_is_stable_and_correct():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    ref = -np.log(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[np.arange(6), t]
    total, d = softmax_cross_entropy(logits.copy(), t)
    assert total == pytest.approx(ref.sum(), rel=1e-13)
    soft = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    soft[np.arange(6), t] -= 1
    np.testing.assert_allclose(d, soft / 6, rtol=1e-12, atol=1e-15)
    # huge logits do not overflow
    big = np.array([[1e4, 0.0, -1e4], [500.0, 500.0, 500.0]], dtype=np.float32)
    total, d = softmax_cross_entropy(big, np.array([1, 2]))
    assert math.isfinite(total) and np.isfinite(d).all()
    assert total == pytest.approx(1e4 + math.log(3), rel=1e-6)


def full_loss(model, X, Y, seed):
    loss, grads, _ = model.loss_and_grads(X, Y, None, rng=np.random.default_rng(seed))
    return loss, grads


@pytest.mark.parametrize("kw", CELL_CONFIGS + [dict(cell="lstm", embedding=3)],
                         ids=CELL_IDS + ["lstm-embedding"])
def test_model_gradients_by_finite_differences(kw):
    """Whole model (2 layers, dropout between them, output layer) in float64, reference kernels."""
    V, T, B = 6, 4, 3
    cfg = ModelConfig(vocab_size=V, hidden=5, layers=2, dropout=0.3, dtype="float64", **kw)
    model = CharRNN(cfg, backend="reference", rng=np.random.default_rng(1))
    X, Y = batch(V, T, B, 2)
    loss, grads = full_loss(model, X, Y, seed=3)
    rng = np.random.default_rng(4)
    eps = 1e-6
    for name, p in model.params.items():
        for idx in rng.choice(p.size, size=min(4, p.size), replace=False):
            flat = p.reshape(-1)
            old = flat[idx]
            flat[idx] = old + eps
            lp, _ = full_loss(model, X, Y, seed=3)
            flat[idx] = old - eps
            lm, _ = full_loss(model, X, Y, seed=3)
            flat[idx] = old
            num = (lp - lm) / (2 * eps)
            got = grads[name].reshape(-1)[idx]
            assert got == pytest.approx(num, rel=1e-5, abs=1e-9), f"{name}[{idx}]"


def test_loss_and_grads_match_torch():
    torch = pytest.importorskip("torch")
    V, H, T, B = 7, 6, 5, 3
    X, Y = batch(V, T, B, 0)
    for kw, mod in [(dict(cell="lstm"), torch.nn.LSTM), (dict(cell="gru"), torch.nn.GRU),
                    (dict(cell="rnn"), torch.nn.RNN)]:
        cfg = ModelConfig(vocab_size=V, hidden=H, layers=2, dtype="float64", **kw)
        model = CharRNN(cfg, backend="reference", rng=np.random.default_rng(0))
        h0 = [tuple(np.random.default_rng(9).standard_normal((B, H)) * 0.5 for _ in s)
              for s in model.zero_state(B)]
        loss, grads, state = model.loss_and_grads(X, Y, h0)
        rnn, fc = mod(V, H, num_layers=2).double(), torch.nn.Linear(H, V).double()
        with torch.no_grad():
            for name, p in list(rnn.named_parameters()) + [("fc." + n, q) for n, q in fc.named_parameters()]:
                key = name if name.startswith("fc.") else "rnn." + name
                p.copy_(torch.from_numpy(model.params[key]))
        x = torch.nn.functional.one_hot(torch.from_numpy(X), V).double()
        if kw["cell"] == "lstm":
            hx = tuple(torch.from_numpy(np.stack([s[i] for s in h0])) for i in range(2))
        else:
            hx = torch.from_numpy(np.stack([s[0] for s in h0]))
        y, hn = rnn(x, hx)
        tl = torch.nn.functional.cross_entropy(fc(y).reshape(-1, V), torch.from_numpy(Y).reshape(-1))
        tl.backward()
        assert loss == pytest.approx(tl.item(), rel=1e-12)
        for name, p in list(rnn.named_parameters()) + [("fc." + n, q) for n, q in fc.named_parameters()]:
            key = name if name.startswith("fc.") else "rnn." + name
            np.testing.assert_allclose(grads[key], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=key)
        hn0 = hn[0] if kw["cell"] == "lstm" else hn
        np.testing.assert_allclose(np.stack([s[0] for s in state]), hn0.detach().numpy(), rtol=1e-12)


# -- clipping and optimizers -------------------------------------------------------------------

def test_clip_grad_norm_formula():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5).astype(np.float32)}
    orig = {k: v.copy() for k, v in grads.items()}
    norm = math.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in orig.values()))
    assert grad_norm(grads) == pytest.approx(norm, rel=1e-6)     # float32 parts summed in float32
    # below the threshold: untouched (min(1, θ/‖g‖) = 1)
    assert clip_grad_norm(grads, norm * 2) == pytest.approx(norm)
    for k in grads:
        assert (grads[k] == orig[k]).all()
    # above: every gradient scaled by θ/‖g‖, so the joint norm becomes θ
    theta = norm / 3
    assert clip_grad_norm(grads, theta) == pytest.approx(norm)
    for k in grads:
        np.testing.assert_allclose(grads[k], orig[k] * (theta / norm), rtol=1e-6)
    assert grad_norm(grads) == pytest.approx(theta, rel=1e-6)
    # non-finite: reported, gradients untouched
    bad = {"a": np.array([1.0, np.inf]), "b": np.array([np.nan])}
    assert not math.isfinite(clip_grad_norm(bad, 1.0))
    assert bad["a"][0] == 1.0
    with pytest.raises(ValueError, match="max_norm must be positive"):
        clip_grad_norm(grads, 0)
    # a float32 sum of squares that overflows is redone in float64: finite, and clipped
    huge = {"a": np.full(4, 1e30, dtype=np.float32)}
    assert clip_grad_norm(huge, 1.0) == pytest.approx(2e30, rel=1e-6)
    np.testing.assert_allclose(huge["a"], 0.5, rtol=1e-6)


def test_non_finite_gradient_skips_the_update(monkeypatch):
    cfg = ModelConfig(vocab_size=5, hidden=4, dtype="float64")
    model = CharRNN(cfg, backend="reference", rng=np.random.default_rng(0))
    ids = np.random.default_rng(0).integers(0, 5, 400)
    tr = Trainer(model, ids, batch=2, steps=5)
    before = {k: v.copy() for k, v in model.params.items()}
    real = model.loss_and_grads

    def poisoned(*a, **k):
        loss, grads, state = real(*a, **k)
        grads["fc.bias"][0] = np.nan
        return loss, grads, state

    monkeypatch.setattr(model, "loss_and_grads", poisoned)
    X, Y = tr._plan(0).batch(0)
    with pytest.warns(RuntimeWarning, match="update skipped, weights unchanged"):
        loss, norm = tr.train_step(X, Y)
    assert math.isnan(norm) and tr.skipped == 1
    for k in before:
        assert (model.params[k] == before[k]).all()


def test_sgd_and_adam_steps():
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    SGD(p, lr=0.1).step(p, g)
    np.testing.assert_allclose(p["w"], [0.95, -2.025])
    p = {"w": np.array([1.0, -2.0])}
    opt = Adam(p, lr=0.1)
    opt.step(p, g)                    # first Adam step moves each weight by ~lr
    np.testing.assert_allclose(p["w"], [0.9, -2.1], rtol=1e-6)
    assert opt.t == 1 and set(opt.state_dict()) == {"m/w", "v/w"}
    assert make_optimizer("adam", p).lr == 2e-3 and make_optimizer("sgd", p).lr == 1.0
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("rmsprop", p)


# -- perplexity and learning ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_uniform_model_has_perplexity_vocab_size(backend):
    V = 13
    cfg = ModelConfig(vocab_size=V, hidden=8, layers=2)
    model = CharRNN(cfg, backend=backend, rng=np.random.default_rng(0))
    model.params["fc.weight"][...] = 0
    model.params["fc.bias"][...] = 0
    ids = np.random.default_rng(1).integers(0, V, 1001)
    ev = evaluate(model, ids, streams=7, chunk=16)
    assert ev.tokens == 1000
    assert ev.ppl == pytest.approx(V, rel=1e-6)
    assert ev.bpc == pytest.approx(math.log2(V), rel=1e-6)
    assert perplexity(model, ids) == pytest.approx(V, rel=1e-6)


def test_evaluate_carries_state_across_the_text():
    """Streams and chunking change only how the work is split, not the answer (float64)."""
    V = 9
    cfg = ModelConfig(vocab_size=V, hidden=6, cell="gru", dtype="float64")
    model = CharRNN(cfg, backend="reference", rng=np.random.default_rng(0))
    ids = np.random.default_rng(2).integers(0, V, 120)
    one = evaluate(model, ids, streams=1, chunk=1000)
    assert evaluate(model, ids, streams=1, chunk=7).ce == pytest.approx(one.ce, rel=1e-13)
    # the straightforward B=1 loop over every token
    total, state = 0.0, None
    for t in range(len(ids) - 1):
        s, state = model.loss_sum(ids[t:t + 1, None], ids[t + 1:t + 2, None], state)
        total += s
    assert one.ce == pytest.approx(total / (len(ids) - 1), rel=1e-12)
    # several streams: every prediction still counted once (the leftover continues the last stream)
    assert evaluate(model, ids, streams=8, chunk=5).tokens == len(ids) - 1


@pytest.mark.parametrize("kw", CELL_CONFIGS, ids=CELL_IDS)
def test_loss_decreases_over_a_few_steps(kw):
    text = np.tile(np.array([1, 2, 3, 4, 2, 3, 1, 4, 4, 2]), 60)
    cfg = ModelConfig(vocab_size=5, hidden=16, **kw)
    model = CharRNN(cfg, rng=np.random.default_rng(0))
    tr = Trainer(model, text, batch=4, steps=10, lr=1.0, clip=1.0)
    plan = tr._plan(0)
    losses = [tr.train_step(*plan.batch(i % len(plan)))[0] for i in range(40)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


@pytest.mark.parametrize("kw", CELL_CONFIGS + [dict(cell="lstm", layers=2, dropout=0.2, embedding=4)],
                         ids=CELL_IDS + ["lstm-2layer-dropout-emb"])
@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_fast_backend_equals_reference(kw, sampling):
    """Same training on the compiled and the NumPy kernels: float64 losses agree to 1e-8."""
    ids = np.random.default_rng(3).integers(0, 11, 3000)
    losses, params = {}, {}
    for backend in ("fast", "reference"):
        cfg = ModelConfig(vocab_size=11, hidden=12, dtype="float64", **kw)
        model = CharRNN(cfg, backend=backend, rng=np.random.default_rng(0))
        tr = Trainer(model, ids, batch=5, steps=8, sampling=sampling, seed=1)
        plan = tr._plan(0)
        losses[backend] = [tr.train_step(*plan.batch(i))[0] for i in range(6)]
        params[backend] = model.params
    np.testing.assert_allclose(losses["fast"], losses["reference"], rtol=1e-8, atol=0)
    for k in params["fast"]:
        np.testing.assert_allclose(params["fast"][k], params["reference"][k], rtol=1e-8, atol=1e-10)


def test_kernels_go_through_the_public_api():
    assert model_mod.kernels("fast").__name__ == "fastgates"
    assert model_mod.kernels("reference").__name__ == "fastgates.reference"


def test_float32_training_runs_and_stays_float32():
    cfg = ModelConfig(vocab_size=6, hidden=8, cell="lstm")
    model = CharRNN(cfg, rng=np.random.default_rng(0))
    ids = np.random.default_rng(0).integers(0, 6, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = Trainer(model, ids, batch=3, steps=6)
        tr.train_step(*tr._plan(0).batch(0))
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert all(a.dtype == np.float32 for st in tr.state for a in st)
