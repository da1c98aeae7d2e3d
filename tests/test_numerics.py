"""Numerical edge cases: saturated gates, long float32 sequences, NaN in the LM trainer,
and both backends' gradients against finite differences at random points (hypothesis).
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgates
from conftest import (CELL_IDS, CELLS, DTYPE_IDS, DTYPES, GATES, assert_close, backward, case_id,
                      forward, make_params)


@pytest.mark.parametrize("magnitude", [1e4, 1e30])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_huge_preactivations_saturate_without_warnings(fast, ref, cell, variant, dtype, magnitude,
                                                       monkeypatch):
    """Pre-activations of +-1e4 (and +-1e30): gates exactly 0/1 (sigmoid) or -1/1 (tanh),
    finite outputs and gradients, no warning, both backends alike.  The reference's
    arithmetic must not overflow either: its silencing of floating-point errors (there for
    NaN/Inf inputs) is switched to "raise" here (underflow to 0 is fine), so an overflowing
    sigmoid would fail.  The
    compiled kernels never report to NumPy (float32 ones do set the CPU's overflow flag on
    these inputs, harmlessly): for them the exact saturation is what is checked."""
    monkeypatch.setattr(ref, "_FP_ERRORS", {"over": "raise", "invalid": "raise",
                                            "divide": "raise", "under": "ignore"})
    T, B, D, H = 5, 3, 4, 6
    G = GATES[cell]
    rng = np.random.default_rng(3)
    p = make_params(rng, cell, D, H, dtype)
    signs = np.where(rng.random(G * H) < 0.5, -1.0, 1.0)
    b_ih = (signs * magnitude).astype(dtype)          # dominates x w_ih^T and h w_hh^T
    p = p._replace(b_ih=b_ih, b_hh=np.zeros(G * H, dtype))
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    relu = variant == "relu"
    results = {}
    for mod in (fast, ref):
        case = case_id(backend=mod.__name__, cell=cell, variant=variant, dtype=dtype, m=magnitude)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = forward(mod, cell, variant, x, None, None, p)
            g = backward(mod, cell, dy, None, None, out.cache)
        if not relu:
            assert np.isfinite(out.y).all() and np.abs(out.y).max() <= (2 if cell == "lstm" else 1), case
            for name, v in g.items():
                assert v is None or np.isfinite(v).all(), f"{name} not finite [{case}]"
        gates = out.cache.gates
        if gates is not None:
            sat = gates.reshape(T, B, G, H)
            # every gate is saturated (the gru n gate also sees r * (h W_hn + b_hn), still tiny)
            assert np.isin(np.abs(sat[:, :, :2 if cell == "gru" else G]), (0, 1)).all(), case
        if cell == "rnn" and not relu:
            assert np.isin(out.y, (-1, 1)).all(), case
        results[mod.__name__] = (out, g)
    (fo, fg), (ro, rg) = results["fastgates"], results["fastgates.reference"]
    case = case_id(cell=cell, variant=variant, dtype=dtype, m=magnitude)
    for name in ("y", "h_n", "c_n"):
        assert_close(getattr(fo, name), getattr(ro, name), dtype, f"{name} [{case}]")
    if not relu:
        for name in fg:
            assert_close(fg[name], rg[name], dtype, f"{name} [{case}]")


@pytest.mark.parametrize("cell,variant", [c for c in CELLS if c[1] != "relu"],
                         ids=[i for c, i in zip(CELLS, CELL_IDS) if c[1] != "relu"])
def test_float32_sequence_of_10000_steps_stays_finite(fast, cell, variant):
    """T = 10,000 in float32: finite y and gradients, and close to the float64 run
    (PyTorch's default init is contractive, so rounding errors do not accumulate)."""
    T, B, D, H = 10_000, 2, 4, 16
    rng = np.random.default_rng(11)
    p64 = make_params(rng, cell, D, H, np.float64)
    x64 = rng.standard_normal((T, B, D))
    dy64 = rng.standard_normal((T, B, H)) * 1e-2
    outs = {}
    for dtype in (np.float32, np.float64):
        p = type(p64)(*(a.astype(dtype) for a in p64))
        out = forward(fast, cell, variant, x64.astype(dtype), None, None, p, n_threads=1)
        g = backward(fast, cell, dy64.astype(dtype), None, None, out.cache, n_threads=1)
        outs[dtype] = (out, g)
    out32, g32 = outs[np.float32]
    out64, g64 = outs[np.float64]
    assert np.isfinite(out32.y).all() and np.isfinite(out32.h_n).all()
    for name, v in g32.items():
        assert v is None or np.isfinite(v).all(), name
    assert np.abs(out32.y - out64.y).max() < 1e-3
    scale = np.abs(g64["dw_hh"]).max()
    assert np.abs(g32["dw_hh"] - g64["dw_hh"]).max() < 1e-3 * max(scale, 1.0)


# -- the LM trainer and non-finite values ---------------------------------------------------------

def _trainer(optimizer="adam"):
    from fastgates.lm.data import Vocab
    from fastgates.lm.model import CharRNN, ModelConfig
    from fastgates.lm.training import Trainer

    vocab = Vocab(["<unk>"] + list(" abcdefgh"))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, len(vocab), 2000)
    model = CharRNN(ModelConfig(len(vocab), cell="lstm", hidden=12), rng=rng, n_threads=1)
    return Trainer(model, ids, ids[:300], batch=4, steps=10, optimizer=optimizer, seed=0)


def _snapshot(tr):
    return ({k: v.copy() for k, v in tr.model.params.items()},
            {k: np.array(v, copy=True) for k, v in tr.optimizer.state_dict().items()})


def _assert_same(a, b, what):
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), f"{what} {k} changed"


def test_nan_in_the_carried_state_skips_the_step_and_keeps_the_weights():
    """A NaN that enters through the kernels (the carried hidden state) makes the loss and
    the gradient NaN: the step is skipped with a warning, weights and optimizer state stay
    bit for bit, the bad state is dropped, and the next step trains normally."""
    tr = _trainer()
    plan = tr._plan(0)
    tr.train_step(*plan.batch(0))
    tr.train_step(*plan.batch(1))
    tr.state[0][0][1, 3] = np.nan              # h of layer 0, row 1
    before = _snapshot(tr)
    with pytest.warns(RuntimeWarning, match=r"step 2: gradient norm is nan.*update skipped"):
        loss, norm = tr.train_step(*plan.batch(2))
    assert math.isnan(loss) and math.isnan(norm)
    after = _snapshot(tr)
    _assert_same(before[0], after[0], "parameter")
    _assert_same(before[1], after[1], "optimizer state")
    assert tr.skipped == 1 and tr.step == 3 and tr.state is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, norm = tr.train_step(*plan.batch(3))
    assert math.isfinite(loss) and math.isfinite(norm)
    assert all(np.isfinite(p).all() for p in tr.model.params.values())
    assert not np.array_equal(tr.model.params["fc.weight"], before[0]["fc.weight"])
    assert tr.state_meta()["progress"]["skipped"] == 1        # recorded in the checkpoint


def test_overflowing_gradients_are_skipped_not_applied():
    """Gradients that overflow float32 (inf norm) are skipped the same way."""
    tr = _trainer(optimizer="sgd")
    plan = tr._plan(0)
    real = tr.model.loss_and_grads

    def overflowing(*a, **kw):
        loss, grads, state = real(*a, **kw)
        grads["rnn.weight_hh_l0"][0, 0] = np.float32(np.inf)
        return loss, grads, state

    tr.model.loss_and_grads = overflowing
    before = _snapshot(tr)
    with pytest.warns(RuntimeWarning, match=r"gradient norm is inf.*update skipped, weights unchanged"):
        tr.train_step(*plan.batch(0))
    _assert_same(before[0], _snapshot(tr)[0], "parameter")
    assert tr.skipped == 1


# -- gradients against finite differences at random points ---------------------------------------

EPS = 1e-6
SMOOTH = [c for c in CELLS if c[1] != "relu"]    # relu's kink defeats differences at random points


def _loss(mod, cell, variant, x, h0, c0, p, dy, dh_n, dc_n):
    out = forward(mod, cell, variant, x, h0, c0, p, n_threads=1)
    s = np.sum(dy * out.y) + np.sum(dh_n * out.h_n)
    return s + (np.sum(dc_n * out.c_n) if cell == "lstm" else 0.0)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cv=st.sampled_from(SMOOTH), T=st.integers(1, 4), B=st.integers(1, 3), D=st.integers(1, 4),
       H=st.integers(1, 5), scale=st.sampled_from([0.3, 1.0, 3.0]), seed=st.integers(0, 2**31),
       tokens=st.booleans())
def test_gradients_match_finite_differences_at_random_points(fast, ref, cv, T, B, D, H, scale,
                                                             seed, tokens):
    """Random shapes, weight scales (3.0 drives gates towards saturation) and points; 12
    random entries of every input checked by central differences, for both backends."""
    cell, variant = cv
    rng = np.random.default_rng(seed)
    p = type(make_params(rng, cell, D, H, np.float64))(
        *(scale * a for a in make_params(rng, cell, D, H, np.float64)))
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dy, dh_n, dc_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    case = case_id(cell=cell, variant=variant, T=T, B=B, D=D, H=H, scale=scale, seed=seed, tokens=tokens)
    inputs = {"w_ih": p.w_ih, "w_hh": p.w_hh, "b_ih": p.b_ih, "b_hh": p.b_hh, "h0": h0}
    if cell == "lstm":
        inputs["c0"] = c0
    if not tokens:
        inputs["x"] = x
    for mod in (fast, ref):
        out = forward(mod, cell, variant, x, h0, c0, p)
        g = backward(mod, cell, dy, dh_n, dc_n if cell == "lstm" else None, out.cache)
        for name, arr in inputs.items():
            analytic = g["d" + name]
            for _ in range(12):
                idx = tuple(int(rng.integers(0, n)) for n in arr.shape)
                old = arr[idx]
                arr[idx] = old + EPS
                up = _loss(mod, cell, variant, x, h0, c0, p, dy, dh_n, dc_n)
                arr[idx] = old - EPS
                down = _loss(mod, cell, variant, x, h0, c0, p, dy, dh_n, dc_n)
                arr[idx] = old
                numeric = (up - down) / (2 * EPS)
                tol = 1e-5 * max(1.0, abs(numeric))
                assert abs(numeric - analytic[idx]) <= tol, (
                    f"d{name}{idx}: finite difference {numeric:.9g} vs {mod.__name__} "
                    f"{analytic[idx]:.9g} [{case}]")
