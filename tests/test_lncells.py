"""The LayerNorm LSTM and LayerNorm GRU (issue 14) against an oracle written here.

The oracle is a plain PyTorch implementation of the issue's equations (a Python loop
over steps, ``F.layer_norm`` without affine parameters, autograd for every gradient),
in float64.  Both fastgates backends (compiled, NumPy reference) are compared with it:
outputs and every gradient, single layers through ``cell_forward``/``cell_backward``,
stacks through the NumPy layers and the torch modules (stacked, bidirectional, ragged,
token ids).  The reference's gradients are checked by central finite differences;
the compiled kernels at every ISA level against the reference and for bit-identity
across thread counts; bad input and zero-variance rows last.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import fastgates
import fastgates.reference as reference
from conftest import assert_close, assert_equal
from fastgates import _recurrence, cells

torch = pytest.importorskip("torch")
F = torch.nn.functional

LN_CELLS = ["lnlstm", "lngru"]
EPS = 1e-5


# The oracle.

def _ln(v):
    return F.layer_norm(v, v.shape[-1:], eps=EPS)


def oracle_step(cell, x_t, h, c, P):
    """One step of the issue's equations; x_t (B, D) float or (B,) token ids."""
    H = h.shape[1]
    xw = P["weight_ih"].T[x_t] if x_t.dtype == torch.int64 else x_t @ P["weight_ih"].T
    xs = P["ln_ih_weight"] * _ln(xw) + P["bias_ih"]
    hs = P["ln_hh_weight"] * _ln(h @ P["weight_hh"].T) + P["bias_hh"]
    if cell == "lnlstm":
        a = xs + hs
        i, f = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H])
        g, o = torch.tanh(a[:, 2 * H:3 * H]), torch.sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        return o * torch.tanh(P["ln_c_weight"] * _ln(c) + P["ln_c_bias"]), c
    r = torch.sigmoid(xs[:, :H] + hs[:, :H])
    z = torch.sigmoid(xs[:, H:2 * H] + hs[:, H:2 * H])
    n = torch.tanh(xs[:, 2 * H:] + r * hs[:, 2 * H:])
    return z * h + (1 - z) * n, None


def oracle_layer(cell, x, h, c, P, lengths=None):
    """(y, h_n, c_n) over T steps; rows past their length keep their state, y is 0 there."""
    T, B = x.shape[:2]
    ys = []
    for t in range(T):
        h1, c1 = oracle_step(cell, x[t], h, c, P)
        if lengths is not None:
            m = torch.as_tensor(lengths > t)[:, None]
            h1 = torch.where(m, h1, h)
            c1 = torch.where(m, c1, c) if c is not None else None
            ys.append(torch.where(m, h1, torch.zeros_like(h1)))
        else:
            ys.append(h1)
        h, c = h1, c1
    return torch.stack(ys) if ys else x.new_zeros((0, B, h.shape[1])), h, c


def _reverse(a, lengths):
    """Reverse the valid prefix of every row of a (T, B, ...) tensor."""
    T, B = a.shape[:2]
    L = np.full(B, T) if lengths is None else lengths
    t = np.arange(T)[:, None]
    idx = np.where(t < L[None, :], L[None, :] - 1 - t, t)
    return a[torch.as_tensor(idx), torch.arange(B)[None, :]]


def oracle_stack(cell, x, params, L, dirs, lengths=None):
    """A stack of L layers (and a reverse direction): y, h_n (L*dirs, B, H), c_n."""
    stems = [p.stem for p in cells.param_specs(cells.get(cell))]
    B = x.shape[1]
    H = params["weight_hh_l0"].shape[1]
    inp, hs, cs = x, [], []
    for layer in range(L):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            P = {s: params[s + sfx] for s in stems}
            zero = torch.zeros(B, H, dtype=torch.float64)
            xi = inp if d == 0 else _reverse(inp, lengths)
            y, h, c = oracle_layer(cell, xi, zero, zero if cell == "lnlstm" else None, P, lengths)
            outs.append(y if d == 0 else _reverse(y, lengths))
            hs.append(h)
            cs.append(c)
        inp = torch.cat(outs, dim=2)
    return inp, torch.stack(hs), (torch.stack(cs) if cell == "lnlstm" else None)


# Problems.

def make_problem(rng, cell, T, B, D, H, dtype, tokens=False, gains="random"):
    c = cells.get(cell)
    shapes = cells.param_shapes(c, D, H)
    k = 1 / np.sqrt(H)
    p = {}
    for stem, shape in shapes.items():
        if stem.startswith("ln_") and gains == "random":
            base = 0.0 if stem == "ln_c_bias" else 1.0
            p[stem] = (base + 0.3 * rng.standard_normal(shape)).astype(dtype)
        else:
            p[stem] = rng.uniform(-k, k, shape).astype(dtype)
    x = (rng.integers(0, D, (T, B)) if tokens
         else rng.standard_normal((T, B, D)).astype(dtype))
    state = {s: (0.5 * rng.standard_normal((B, H))).astype(dtype) for s in c.states}
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = {s: rng.standard_normal((B, H)).astype(dtype) for s in c.states}
    return x, state, p, dy, dstate


def oracle_grads(cell, x, state, p, dy, dstate, lengths=None):
    """The oracle's outputs and gradients (float64) as NumPy, keyed like fastgates'."""
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    tokens = x.dtype.kind in "iu"
    tx = torch.tensor(x) if tokens else torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ts = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in state.items()}
    y, h, c = oracle_layer(cell, tx, ts["h"], ts.get("c"), tp,
                           None if lengths is None else np.asarray(lengths))
    loss = (y * torch.tensor(dy, dtype=torch.float64)).sum()
    loss = loss + (h * torch.tensor(dstate["h"], dtype=torch.float64)).sum()
    if c is not None:
        loss = loss + (c * torch.tensor(dstate["c"], dtype=torch.float64)).sum()
    loss.backward()
    out = {"y": y, "h": h, "c": c}
    out = {k: None if v is None else v.detach().numpy() for k, v in out.items()}
    grads = {k: v.grad.numpy() for k, v in tp.items()}
    grads["dx"] = None if tokens else tx.grad.numpy()
    grads.update({"d" + k + "0": v.grad.numpy() for k, v in ts.items()})
    return out, grads


def run(mod, cell, x, state, p, dy, dstate, **kw):
    y, s, cache = mod.cell_forward(cell, x, state, p, **kw)
    kw.pop("lengths", None)
    g = mod.cell_backward(cell, dy, dstate, cache, **kw)
    grads = dict(g.param_grads)
    grads["dx"] = g.dx
    grads.update({"d" + k + "0": v for k, v in g.state_grads.items()})
    return {"y": y, **s}, grads, cache


# The oracle tests.

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", ["dense", "ragged", "tokens", "ragged-tokens"])
@pytest.mark.parametrize("cell", LN_CELLS)
@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_layer_matches_torch_oracle(backend, cell, case, dtype):
    rng = np.random.default_rng(14)
    T, B, D, H = 6, 4, 5, 7
    x, state, p, dy, dstate = make_problem(rng, cell, T, B, D, H, dtype, tokens="tokens" in case)
    lengths = np.array([6, 0, 3, 6]) if "ragged" in case else None
    mod = fastgates if backend == "fast" else reference
    out, grads, _ = run(mod, cell, x, state, p, dy, dstate, lengths=lengths, n_threads=2)
    want_out, want = oracle_grads(cell, x, state, p, dy, dstate, lengths)
    what = f"{backend} {cell} {case} {np.dtype(dtype).name}"
    for k in out:
        assert_close(out[k], want_out[k].astype(dtype), dtype, f"{k} [{what}]")
    assert sorted(grads) == sorted(want), what
    for k in want:
        assert_close(grads[k], None if want[k] is None else want[k].astype(dtype), dtype,
                     f"d{k} [{what}]")


def _stack_problem(cell, tokens, dtype, bidirectional, seed=3):
    T, B, D, H, L = 5, 3, 4, 6, 2
    rng = np.random.default_rng(seed)
    layer_cls = getattr(fastgates, cells.get(cell).layer)
    m = layer_cls(D, H, L, bidirectional=bidirectional, dtype=dtype, seed=seed)
    for v in m.parameters().values():        # gains away from 1, so their gradients matter
        v += (0.3 * rng.standard_normal(v.shape)).astype(dtype)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D)).astype(dtype)
    return m, x, np.array([5, 2, 4])


@pytest.mark.parametrize("tokens", [False, True], ids=["float", "tokens"])
@pytest.mark.parametrize("cell", LN_CELLS)
def test_stacked_bidirectional_ragged_layer_matches_oracle(cell, tokens):
    m, x, lengths = _stack_problem(cell, tokens, np.float64, True)
    y, state = m.forward(x, lengths=lengths)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx = m.backward(dy)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in m.parameters().items()}
    tx = torch.tensor(x) if tokens else torch.tensor(x, requires_grad=True)
    ty, th, tc = oracle_stack(cell, tx, tp, m.num_layers, 2, lengths)
    (ty * torch.tensor(dy)).sum().backward()
    what = f"{cell} stacked bidirectional ragged {'tokens' if tokens else 'float'}"
    assert_close(y, ty.detach().numpy(), np.float64, f"y [{what}]")
    h_n = state[0] if cell == "lnlstm" else state
    assert_close(h_n, th.detach().numpy(), np.float64, f"h_n [{what}]")
    if cell == "lnlstm":
        assert_close(state[1], tc.detach().numpy(), np.float64, f"c_n [{what}]")
    assert list(m.grads) == list(tp)
    for k, v in tp.items():
        assert_close(m.grads[k], v.grad.numpy(), np.float64, f"{k} [{what}]")
    if not tokens:
        assert_close(dx, tx.grad.numpy(), np.float64, f"dx [{what}]")


@pytest.mark.parametrize("cell", LN_CELLS)
def test_torch_module_matches_oracle_with_packed_sequences(cell):
    import fastgates.torch as ft
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    torch.manual_seed(0)
    mod = getattr(ft, cells.get(cell).layer)(4, 6, 2, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        for prm in mod.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = np.array([5, 4, 2])
    out, _ = mod(pack_padded_sequence(x, lengths))
    y, _ = pad_packed_sequence(out)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    got = {n: p.grad.clone() for n, p in mod.named_parameters()}
    gx = x.grad.clone()
    x.grad = None
    params = {n: p.detach().clone().requires_grad_(True) for n, p in mod.named_parameters()}
    ty, _, _ = oracle_stack(cell, x, params, 2, 2, lengths)
    (ty * w).sum().backward()
    assert_close(y.detach().numpy(), ty.detach().numpy(), np.float64, f"y [{cell} torch module]")
    assert list(got) == list(params)
    for n, p in params.items():
        assert_close(got[n].numpy(), p.grad.numpy(), np.float64, f"{n} [{cell} torch module]")
    assert_close(gx.numpy(), x.grad.numpy(), np.float64, f"dx [{cell} torch module]")


# The reference by finite differences, the fast path by the reference.

@pytest.mark.parametrize("cell", LN_CELLS)
def test_reference_gradients_by_central_differences(cell):
    rng = np.random.default_rng(5)
    T, B, D, H = 3, 2, 3, 4
    x, state, p, dy, dstate = make_problem(rng, cell, T, B, D, H, np.float64)
    lengths = np.array([3, 2])

    def loss(p_, x_, s_):
        y, s, _ = reference.cell_forward(cell, x_, s_, p_, lengths=lengths)
        return (y * dy).sum() + sum((s[k] * dstate[k]).sum() for k in s)

    _, grads, _ = run(reference, cell, x, state, p, dy, dstate, lengths=lengths)
    h = 1e-6
    checked = 0
    for name, arr in ([(k, v) for k, v in p.items()] + [("dx", x)]
                      + [("d" + k + "0", v) for k, v in state.items()]):
        g = grads[name]
        for idx in [tuple(i) for i in rng.integers(0, arr.shape, (3, arr.ndim))]:
            saved = arr[idx]
            arr[idx] = saved + h
            up = loss(p, x, state)
            arr[idx] = saved - h
            down = loss(p, x, state)
            arr[idx] = saved
            num = (up - down) / (2 * h)
            assert abs(num - g[idx]) <= 1e-6 * max(1.0, abs(num)), (cell, name, idx, num, g[idx])
            assert num != 0 or g[idx] == 0
            checked += 1
    assert checked >= 3 * (len(p) + 1 + len(state))


_ISA_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastgates, fastgates.reference as reference
    from fastgates import _recurrence, cells
    sys.path.insert(0, {tests!r})
    from test_lncells import make_problem, run
    worst = {{}}
    for cell in ("lnlstm", "lngru"):
        for dtype in (np.float32, np.float64):
            for H, tokens in ((1, False), (19, True), (70, False)):
                rng = np.random.default_rng(H)
                x, st, p, dy, ds = make_problem(rng, cell, 5, 4, 3, H, dtype, tokens)
                lengths = np.array([5, 1, 0, 4])
                ref = run(reference, cell, x, st, p, dy, ds, lengths=lengths)
                first = None
                for nt in (1, 2, 3):
                    got = run(fastgates, cell, x, st, p, dy, ds, lengths=lengths, n_threads=nt)
                    flat = [v for part in got[:2] for v in part.values() if v is not None]
                    if first is None:
                        first = flat
                    assert all(np.array_equal(a, b) for a, b in zip(flat, first)), (cell, H, nt)
                err = 0.0
                for part_got, part_ref in zip(got[:2], ref[:2]):
                    for k, v in part_ref.items():
                        if v is not None:
                            scale = max(1.0, float(np.abs(v).max()))
                            err = max(err, float(np.abs(part_got[k] - v).max()) / scale)
                key = f"{{cell}} {{np.dtype(dtype).name}}"
                worst[key] = max(worst.get(key, 0.0), err)
    print(json.dumps({{"isa": _recurrence.isa_active(), "worst": worst}}))
""")


@pytest.mark.parametrize("level", ["generic", "avx2", "avx512"])
def test_fast_matches_reference_at_every_isa_level(level):
    """In a child with FASTGATES_ISA=level: fast vs reference (float32 1e-5, float64 1e-12
    relative to each array's scale), and bit-identity for 1, 2 and 3 threads."""
    if level not in _recurrence.isa_compiled() or level not in _recurrence.isa_supported():
        pytest.skip(f"{level} is not available on this machine/build")
    from _helpers.subproc import TESTS, child_env, run_code
    r = run_code(_ISA_CHILD.format(tests=TESTS), timeout=300,
                 env=child_env(FASTGATES_ISA=level))
    assert r.returncode == 0, r.report()
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["isa"] == level
    for key, err in res["worst"].items():
        assert err < (1e-5 if "float32" in key else 1e-12), (level, key, err)


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("cell", LN_CELLS)
def test_bit_identical_across_thread_counts(cell, training):
    rng = np.random.default_rng(8)
    x, state, p, dy, dstate = make_problem(rng, cell, 9, 13, 6, 45, np.float32)
    lengths = rng.integers(0, 10, 13)
    results = []
    for nt in (1, 2, 3, 4):
        y, s, cache = fastgates.cell_forward(cell, x, state, p, training=training,
                                             n_threads=nt, lengths=lengths)
        flat = [y, *s.values()]
        if training:
            g = fastgates.cell_backward(cell, dy, dstate, cache, n_threads=nt)
            flat += [g.dx, *g.param_grads.values(), *g.state_grads.values()]
        results.append(flat)
    for nt, flat in zip((2, 3, 4), results[1:]):
        for i, (a, b) in enumerate(zip(flat, results[0])):
            assert_equal(a, b, f"{cell} output/gradient #{i}, {nt} threads vs 1")


@pytest.mark.parametrize("cell", LN_CELLS)
def test_inference_equals_training_forward_and_caches_cross_backends(cell):
    rng = np.random.default_rng(9)
    x, state, p, dy, dstate = make_problem(rng, cell, 7, 3, 4, 10, np.float64)
    y, s, cache = fastgates.cell_forward(cell, x, state, p)
    yi, si, none = fastgates.cell_forward(cell, x, state, p, training=False)
    assert none is None
    assert_equal(yi, y, "inference y")
    yr, _, rcache = reference.cell_forward(cell, x, state, p)
    assert sorted(cache.saved) == sorted(rcache.saved)
    for k in cache.saved:
        assert_close(cache.saved[k], rcache.saved[k], np.float64, f"saved {k}")
    # each backend's backward reads the other's cache
    g_fast = fastgates.cell_backward(cell, dy, dstate, rcache).param_grads
    g_ref = reference.cell_backward(cell, dy, dstate, cache).param_grads
    for k in g_ref:
        assert_close(g_fast[k], g_ref[k], np.float64, f"cross-cache d{k}")


@pytest.mark.parametrize("cell", LN_CELLS)
def test_inputs_are_not_modified(cell):
    rng = np.random.default_rng(10)
    x, state, p, dy, dstate = make_problem(rng, cell, 4, 3, 5, 8, np.float32)
    before = [a.copy() for a in (x, dy, *state.values(), *p.values(), *dstate.values())]
    run(fastgates, cell, x, state, p, dy, dstate)
    after = (x, dy, *state.values(), *p.values(), *dstate.values())
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


# Numerics.

@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("cell", LN_CELLS)
def test_zero_variance_rows_stay_finite(cell, backend):
    """All-zero weights: every projection row is constant (variance 0); LN gives 0 there
    (not 0/0) and the gradients stay finite.  Matches the oracle."""
    rng = np.random.default_rng(11)
    x, state, p, dy, dstate = make_problem(rng, cell, 4, 3, 5, 6, np.float64)
    p["weight_ih"][:] = 0
    p["weight_hh"][:] = 0
    state = {k: np.zeros_like(v) for k, v in state.items()}    # c_t = f*0 + i*g: constant too
    p["bias_ih"][:] = 0.1
    p["bias_hh"][:] = -0.2
    mod = fastgates if backend == "fast" else reference
    out, grads, _ = run(mod, cell, x, state, p, dy, dstate)
    for k, v in [*out.items(), *grads.items()]:
        assert v is None or np.all(np.isfinite(v)), (cell, backend, k)
    want_out, want = oracle_grads(cell, x, state, p, dy, dstate)
    assert_close(out["y"], want_out["y"], np.float64, "y (zero variance)")
    for k in want:
        assert_close(grads[k], want[k], np.float64, f"d{k} (zero variance)")


@pytest.mark.parametrize("cell", LN_CELLS)
def test_float32_large_offsets_normalise_accurately(cell):
    """Rows with a large common offset and a small spread: the block partials (sum and
    squared deviations from each block's mean) keep float32 accurate where E[v^2] - mean^2
    would cancel."""
    rng = np.random.default_rng(12)
    x, state, p, dy, dstate = make_problem(rng, cell, 3, 2, 4, 40, np.float32)
    x = x + np.float32(300)                       # every input feature ~300: W_ih x has a large mean
    out, _, _ = run(fastgates, cell, x, state, p, dy, dstate)
    want_out, _ = oracle_grads(cell, x, state, p, dy, dstate)
    assert_close(out["y"], want_out["y"].astype(np.float32), np.float32, "y (offset 300)")


# Bad input.

@pytest.mark.parametrize("cell", LN_CELLS)
def test_bad_input_raises_clear_errors(cell):
    rng = np.random.default_rng(13)
    x, state, p, dy, dstate = make_problem(rng, cell, 3, 2, 4, 5, np.float32)
    for backend in (fastgates, reference):
        q = dict(p)
        q.pop("ln_hh_weight")
        with pytest.raises(KeyError, match="ln_hh_weight"):
            backend.cell_forward(cell, x, state, q)
        q = dict(p, ln_ih_weight=np.ones(7, np.float32))
        with pytest.raises(ValueError, match=r"ln_ih_weight must have shape \((20|15),\) \(ln_ih_weight \(G\*H,\)\)"):
            backend.cell_forward(cell, x, state, q)
        q = dict(p, ln_hh_weight=p["ln_hh_weight"].astype(np.float64))
        with pytest.raises(TypeError, match="ln_hh_weight"):
            backend.cell_forward(cell, x, state, q)
        with pytest.raises(ValueError, match="n_threads"):
            backend.cell_forward(cell, x, state, p, n_threads=0)
        with pytest.raises(ValueError, match="token ids"):
            backend.cell_forward(cell, np.full((3, 2), 4), state, p)
        _, _, cache = backend.cell_forward(cell, x, state, p)
        with pytest.raises(ValueError, match="dy"):
            backend.cell_backward(cell, dy[:, :1], dstate, cache)
        with pytest.raises(ValueError, match="training=True"):
            backend.cell_backward(cell, dy, dstate, None)
    if cell == "lnlstm":
        with pytest.raises(ValueError, match="ln_c_bias"):
            fastgates.cell_forward(cell, x, state, dict(p, ln_c_bias=np.zeros(4, np.float32)))


# The public names the issue spells out.

def test_table_layers_torch_and_lm_names():
    import fastgates.torch as ft
    from fastgates.lm import model as lm_model
    assert fastgates.LayerNormLSTM is fastgates.layers.CLASSES["LayerNormLSTM"]
    assert fastgates.LayerNormGRU is fastgates.layers.CLASSES["LayerNormGRU"]
    assert ft.LayerNormLSTM.__name__ == "LayerNormLSTM" and ft.LayerNormGRU
    assert {"lnlstm", "lngru"} <= set(lm_model.CELLS)
    m = fastgates.LayerNormLSTM(3, 4, 2, bidirectional=True, seed=0)
    names = list(m.state_dict())
    assert names[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "ln_ih_weight_l0", "ln_hh_weight_l0", "ln_c_weight_l0", "ln_c_bias_l0"]
    assert names[8] == "weight_ih_l0_reverse" and len(names) == 32
    sd = m.state_dict()
    assert np.all(sd["ln_ih_weight_l1"] == 1) and sd["ln_ih_weight_l1"].shape == (16,)
    assert np.all(sd["ln_c_bias_l0_reverse"] == 0) and sd["ln_c_weight_l0"].shape == (4,)
    assert np.abs(sd["weight_hh_l1"]).max() <= 0.5                   # U(-1/sqrt(H), 1/sqrt(H))
    g = fastgates.LayerNormGRU(3, 4, bias=False)
    assert list(g.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "ln_ih_weight_l0",
                                    "ln_hh_weight_l0"]
    t = ft.LayerNormLSTM(3, 4, 2)
    assert [n for n, _ in t.named_parameters()] == list(fastgates.LayerNormLSTM(3, 4, 2).state_dict())
    assert cells.get("lnlstm").onnx is None and cells.get("lngru").torch is None


def test_layer_state_dict_round_trip_and_torch_module_agree():
    import fastgates.torch as ft
    torch.manual_seed(1)
    t = ft.LayerNormGRU(3, 5, 2, dtype=torch.float64)
    m = fastgates.LayerNormGRU(3, 5, 2, dtype=np.float64)
    m.load_state_dict(t.state_dict())
    m.eval()
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    y, h = m.forward(x)
    with torch.no_grad():
        ty, th = t(torch.tensor(x))
    assert_close(y, ty.numpy(), np.float64, "layer vs torch module")


def test_packed_layers_refuse_layernorm_cells():
    w = [np.zeros(s, np.float32) for s in ((16, 3), (16, 4), (16,), (16,))]
    with pytest.raises(NotImplementedError, match="LayerNorm"):
        _recurrence.pack_layer(cells.get("lnlstm").code, *w, 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("embedding", [0, 5], ids=["one-hot", "embedding"])
@pytest.mark.parametrize("cell", LN_CELLS)
def test_compiled_sampler_draws_what_the_numpy_sampler_draws(cell, embedding, dtype):
    """The compiled sampler runs the LayerNorm cells (fg_generate); the NumPy sampler (the
    reference's step in float64) draws the same tokens, for any thread count."""
    from fastgates.lm import generation
    from fastgates.lm.model import CharRNN, ModelConfig
    cfg = ModelConfig(vocab_size=13, cell=cell, hidden=21, layers=2, embedding=embedding,
                      dtype=dtype)
    model = CharRNN(cfg, rng=np.random.default_rng(4))
    for k, v in model.params.items():          # gains away from 1
        if ".ln_" in k:
            v += (0.3 * np.random.default_rng(1).standard_normal(v.shape)).astype(v.dtype)
    prefix = np.array([3, 1, 4, 1, 5])
    want = generation.sample_numpy(model, prefix, 40, temperature=1.0, seed=7)
    for nt in (1, 2, 3):
        model.n_threads = nt
        got = generation.sample_compiled(model, prefix, 40, temperature=1.0, seed=7)
        assert np.array_equal(got, want), (cell, embedding, dtype, nt)


def test_lm_trains_resumes_and_refuses_onnx_export_with_layernorm_cells(tmp_path):
    from fastgates.lm import onnx_export
    from fastgates.lm.cli import main
    from fastgates.lm.model import ModelConfig
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    for cell in LN_CELLS:
        args = ["train", "--text", str(text), "--cell", cell, "--layers", "2", "--hidden", "16",
                "--batch", "4", "--steps", "10", "--out", str(tmp_path / cell),
                "--sample-length", "20"]
        main(args + ["--epochs", "1"])
        main(args + ["--epochs", "2", "--resume"])      # the carried (h, c) state comes back
        log = (tmp_path / cell / "log.csv").read_text().splitlines()
        assert sum(line.startswith("epoch,") for line in log) == 2
        with pytest.raises(ValueError, match="ONNX has no operator"):
            onnx_export._cell_name(ModelConfig(vocab_size=5, cell=cell))
