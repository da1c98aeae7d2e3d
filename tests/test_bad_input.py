"""Bad input raises ValueError/TypeError naming the argument, for both backends.

Each case starts from a valid call and replaces one argument; the expected
message must name that argument (``pytest.raises(..., match=...)``).
"""

import numpy as np
import pytest

from conftest import GATES, cell_kwargs, make_params
from fastgates import cells

T, B, D, H = 3, 2, 4, 5
CELL_NAMES = list(GATES)       # the families with the positional public kernels (conftest)
#: Each family's default cell (its first in the table).
VARIANT = {kernel: defs[0].variant for kernel, defs in cells.families().items() if kernel in GATES}


def valid_args(cell, dtype=np.float64):
    rng = np.random.default_rng(7)
    p = make_params(rng, cell, D, H, dtype)
    return {"x": rng.standard_normal((T, B, D)).astype(dtype),
            "h0": np.zeros((B, H), dtype), "c0": np.zeros((B, H), dtype), **p._asdict()}


def call_forward(mod, cell, a, **kw):
    kw = {**cell_kwargs(cell, VARIANT[cell]), **kw}
    if cell == "lstm":
        return mod.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"],
                                a["b_hh"], **kw)
    return getattr(mod, f"{cell}_forward")(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"],
                                           a["b_hh"], **kw)


def call_backward(mod, cell, dy, dh_n, dc_n, cache, **kw):
    if cell == "lstm":
        return mod.lstm_backward(dy, dh_n, dc_n, cache, **kw)
    return getattr(mod, f"{cell}_backward")(dy, dh_n, cache, **kw)


def f32(a):
    return a.astype(np.float32)


# (id, replacement of arguments given (args, G), exception, message pattern)
FORWARD_CASES = [
    ("x-2d", lambda a, G: {"x": a["x"][0]}, ValueError, r"x must be 3-D.*got 2-D"),
    ("x-4d", lambda a, G: {"x": a["x"][None]}, ValueError, r"x must be 3-D.*got 4-D"),
    ("x-wrong-D", lambda a, G: {"x": np.zeros((T, B, D + 1))}, ValueError, r"x has D=5"),
    ("x-none", lambda a, G: {"x": None}, TypeError, r"x must be an array"),
    ("x-bool", lambda a, G: {"x": np.zeros((T, B), bool)}, TypeError, r"x must be.*bool"),
    ("x-float32", lambda a, G: {"x": f32(a["x"])}, TypeError, r"x is float32"),
    ("x-complex", lambda a, G: {"x": a["x"] + 0j}, TypeError, r"x must be float32 or float64"),
    ("tokens-3d", lambda a, G: {"x": np.zeros((T, B, 1), np.int64)}, ValueError,
     r"x of token ids must be 2-D"),
    ("tokens-negative", lambda a, G: {"x": np.full((T, B), -1)}, ValueError,
     r"x holds token ids in \[0, D\).*found -1"),
    ("tokens-too-large", lambda a, G: {"x": np.full((T, B), D)}, ValueError,
     rf"x holds token ids in \[0, D\) = \[0, {D}\).*found {D}"),
    ("w_ih-1d", lambda a, G: {"w_ih": a["w_ih"][0]}, ValueError, r"w_ih must have shape"),
    ("w_ih-wrong-GH", lambda a, G: {"w_ih": a["w_ih"][:-1]}, ValueError, r"w_ih must have shape"),
    ("w_ih-float32", lambda a, G: {"w_ih": f32(a["w_ih"])}, TypeError, r"w_ih is float32"),
    ("w_ih-int", lambda a, G: {"w_ih": np.ones((G * H, D), np.int64)}, TypeError,
     r"w_ih must be float32 or float64, got dtype int64"),
    ("w_ih-complex", lambda a, G: {"w_ih": a["w_ih"] + 0j}, TypeError,
     r"w_ih must be float32 or float64, got dtype complex128"),
    ("w_hh-1d", lambda a, G: {"w_hh": a["w_hh"].ravel()}, ValueError, r"w_hh must be 2-D"),
    ("w_hh-wrong-G", lambda a, G: {"w_hh": np.zeros(((G + 1) * H, H))}, ValueError,
     r"w_hh must have shape"),
    ("w_hh-not-GHxH", lambda a, G: {"w_hh": a["w_hh"][:, :-1]}, ValueError,
     r"w_hh must have shape"),
    ("w_hh-none", lambda a, G: {"w_hh": None}, TypeError, r"w_hh must be an array"),
    ("w_hh-int", lambda a, G: {"w_hh": np.ones((G * H, H), np.int32)}, TypeError,
     r"w_hh must be float32 or float64, got dtype int32"),
    ("w_hh-complex", lambda a, G: {"w_hh": a["w_hh"] + 0j}, TypeError,
     r"w_hh must be float32 or float64, got dtype complex128"),
    ("w_hh-float16", lambda a, G: {"w_hh": a["w_hh"].astype(np.float16)}, TypeError,
     r"w_hh must be float32 or float64, got dtype float16"),
    ("w_hh-float32-rest-float64", lambda a, G: {"w_hh": f32(a["w_hh"])}, TypeError,
     r"w_hh is float32, w_ih is float64"),
    ("b_ih-short", lambda a, G: {"b_ih": a["b_ih"][:-1]}, ValueError, r"b_ih must have shape"),
    ("b_hh-2d", lambda a, G: {"b_hh": a["b_hh"][None]}, ValueError, r"b_hh must be 1-D"),
    ("b_ih-float32", lambda a, G: {"b_ih": f32(a["b_ih"])}, TypeError, r"b_ih is float32"),
    ("b_hh-int", lambda a, G: {"b_hh": np.zeros(G * H, np.int64)}, TypeError,
     r"b_hh must be float32 or float64"),
    ("b_hh-complex", lambda a, G: {"b_hh": a["b_hh"] + 0j}, TypeError,
     r"b_hh must be float32 or float64"),
    ("h0-wrong-B", lambda a, G: {"h0": a["h0"][:-1]}, ValueError, r"h0 must have shape \(2, 5\)"),
    ("h0-wrong-H", lambda a, G: {"h0": a["h0"][:, :-1]}, ValueError, r"h0 must have shape"),
    ("h0-3d", lambda a, G: {"h0": a["h0"][None]}, ValueError, r"h0 must be 2-D"),
    ("h0-float32", lambda a, G: {"h0": f32(a["h0"])}, TypeError, r"h0 is float32"),
    ("T*B-overflows-BLAS-int",
     lambda a, G: {"x": np.broadcast_to(a["x"][:1, :1], (2**16, 2**15, D))},
     ValueError, r"T\*B = 2147483648 exceeds the BLAS integer limit"),
    ("tokens-T*B-overflows-BLAS-int",
     lambda a, G: {"x": np.broadcast_to(np.zeros((1, 1), np.int64), (2**16, 2**15))},
     ValueError, r"T\*B = 2147483648 exceeds"),
]
LSTM_FORWARD_CASES = [
    ("c0-wrong-H", lambda a, G: {"c0": a["c0"][:, :-1]}, ValueError, r"c0 must have shape"),
    ("c0-float32", lambda a, G: {"c0": f32(a["c0"])}, TypeError, r"c0 is float32"),
]
KEYWORD_CASES = [
    ("n_threads-0", {"n_threads": 0}, ValueError, r"n_threads .*got 0"),
    ("n_threads-str", {"n_threads": "2"}, TypeError, r"n_threads must be None or an int"),
    ("n_threads-float", {"n_threads": 1.5}, TypeError, r"n_threads must be None or an int"),
    ("n_threads-bool", {"n_threads": True}, TypeError, r"n_threads must be None or an int"),
    ("training-str", {"training": "yes"}, TypeError, r"training must be True or False"),
]
CELL_KEYWORD_CASES = [
    ("rnn", "nonlinearity-sigmoid", {"nonlinearity": "sigmoid"}, ValueError,
     r"nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
    ("rnn", "nonlinearity-None", {"nonlinearity": None}, ValueError, r"nonlinearity"),
    ("gru", "linear_before_reset-str", {"linear_before_reset": "yes"}, TypeError,
     r"linear_before_reset must be True or False, got str 'yes'"),
    ("gru", "linear_before_reset-int", {"linear_before_reset": 1}, TypeError,
     r"linear_before_reset must be True or False"),
]


def forward_cases():
    for cell in CELL_NAMES:
        cases = FORWARD_CASES + (LSTM_FORWARD_CASES if cell == "lstm" else [])
        for cid, change, exc, match in cases:
            yield pytest.param(cell, change, exc, match, id=f"{cell}-{cid}")


@pytest.mark.parametrize("cell,change,exc,match", list(forward_cases()))
def test_forward_bad_argument(backend, cell, change, exc, match):
    a = valid_args(cell)
    a.update(change(a, GATES[cell]))
    with pytest.raises(exc, match=match):
        call_forward(backend, cell, a)


@pytest.mark.parametrize("cid,kw,exc,match", KEYWORD_CASES,
                         ids=[c[0] for c in KEYWORD_CASES])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_forward_bad_keyword(backend, cell, cid, kw, exc, match):
    with pytest.raises(exc, match=match):
        call_forward(backend, cell, valid_args(cell), **kw)


@pytest.mark.parametrize("cell,cid,kw,exc,match", CELL_KEYWORD_CASES,
                         ids=[c[1] for c in CELL_KEYWORD_CASES])
def test_forward_bad_variant(backend, cell, cid, kw, exc, match):
    with pytest.raises(exc, match=match):
        call_forward(backend, cell, valid_args(cell), **kw)


def _training_cache(mod, cell, dtype=np.float64):
    return call_forward(mod, cell, valid_args(cell, dtype))[-1]


def _grad_outputs(dtype=np.float64):
    return (np.ones((T, B, H), dtype), np.ones((B, H), dtype), np.ones((B, H), dtype))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_backward_without_cache(backend, cell):
    dy, dh_n, dc_n = _grad_outputs()
    cache = call_forward(backend, cell, valid_args(cell), training=False)[-1]
    assert cache is None
    with pytest.raises(ValueError, match=r"cache is None.*training=False"):
        call_backward(backend, cell, dy, dh_n, dc_n, cache)
    with pytest.raises(TypeError, match=r"cache must be the cache returned by"):
        call_backward(backend, cell, dy, dh_n, dc_n, {"hs": np.zeros((T + 1, B, H))})


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_backward_cache_from_another_cell(backend, cell):
    dy, dh_n, dc_n = _grad_outputs()
    for other in CELL_NAMES:
        if other == cell:
            continue
        cache = _training_cache(backend, other)
        match = rf"cache comes from {other}_forward, not {cell}_forward"
        with pytest.raises(ValueError, match=match):
            call_backward(backend, cell, dy, dh_n, dc_n, cache)


@pytest.mark.parametrize("cache_dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_backward_dtype_mismatch(backend, cell, cache_dtype):
    """A cache of another dtype than the gradients: the message names the gradient."""
    other = np.float64 if cache_dtype == np.float32 else np.float32
    cache = _training_cache(backend, cell, cache_dtype)
    good = _grad_outputs(cache_dtype)
    bad = _grad_outputs(other)
    names = ["dy", "dh_n"] + (["dc_n"] if cell == "lstm" else [])
    for k, name in enumerate(names):
        args = list(good)
        args[k] = bad[k]
        with pytest.raises(TypeError, match=rf"{name} has dtype {np.dtype(other).name} but the "
                                            rf"cache holds {np.dtype(cache_dtype).name}"):
            call_backward(backend, cell, *args, cache)
    args = list(good)
    args[0] = np.ones((T, B, H), np.int64)
    with pytest.raises(TypeError, match=r"dy must be float32 or float64"):
        call_backward(backend, cell, *args, cache)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_backward_wrong_shapes(backend, cell):
    cache = _training_cache(backend, cell)
    dy, dh_n, dc_n = _grad_outputs()
    bad = [("dy", 0, dy[:-1], r"dy must have shape \(3, 2, 5\)"),
           ("dy", 0, dy[0], r"dy must be 3-D"),
           ("dy", 0, dy[..., :-1], r"dy must have shape"),
           ("dh_n", 1, dh_n[:, :-1], r"dh_n must have shape \(2, 5\)"),
           ("dh_n", 1, dh_n[None], r"dh_n must be 2-D")]
    if cell == "lstm":
        bad.append(("dc_n", 2, dc_n[:-1], r"dc_n must have shape"))
    for name, k, value, match in bad:
        args = [dy, dh_n, dc_n]
        args[k] = value
        with pytest.raises(ValueError, match=match):
            call_backward(backend, cell, *args, cache)


@pytest.mark.parametrize("cid,n,exc,match", [
    ("0", 0, ValueError, r"n_threads .*got 0"),
    ("str", "2", TypeError, r"n_threads must be None or an int, got str '2'"),
    ("float", 2.0, TypeError, r"n_threads must be None or an int"),
], ids=["0", "str", "float"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_backward_bad_n_threads(backend, cell, cid, n, exc, match):
    cache = _training_cache(backend, cell)
    with pytest.raises(exc, match=match):
        call_backward(backend, cell, *_grad_outputs(), cache, n_threads=n)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_valid_thread_counts_are_accepted(backend, cell):
    """None, positive, negative (from the maximum) and numpy ints are valid."""
    results = []
    for n in (None, 1, 2, -1, np.int64(1)):
        y = call_forward(backend, cell, valid_args(cell), n_threads=n)[0]
        results.append(y)
    for y in results[1:]:
        np.testing.assert_allclose(y, results[0], rtol=1e-12, atol=0, err_msg=cell)


@pytest.mark.parametrize("bad", [[("h", None)], "h", 3])
def test_cell_functions_refuse_a_state_params_or_dstate_that_is_no_mapping(backend, bad):
    """cell_forward's ``state`` / ``params`` and cell_backward's ``dstate`` are mappings (or
    None for the states: zeros); anything else is a TypeError naming the argument."""
    from types import MappingProxyType
    cell = cells.get("gru")
    rng = np.random.default_rng(1)
    params = {st: rng.standard_normal(s) for st, s in cells.param_shapes(cell, D, H).items()}
    x = rng.standard_normal((T, B, D))
    y, _, cache = backend.cell_forward(cell, x, None, params)             # None: zeros
    y2, _, _ = backend.cell_forward(cell, x, MappingProxyType({}), MappingProxyType(params))
    np.testing.assert_array_equal(y, y2)
    g = backend.cell_backward(cell, np.ones_like(y), None, cache)
    g2 = backend.cell_backward(cell, np.ones_like(y), MappingProxyType({"h": None}), cache)
    np.testing.assert_array_equal(g.dw_hh, g2.dw_hh)
    with pytest.raises(TypeError, match="state must be a dict"):
        backend.cell_forward(cell, x, bad, params)
    with pytest.raises(TypeError, match="params must be a dict"):
        backend.cell_forward(cell, x, {}, bad)
    with pytest.raises(TypeError, match="dstate must be a dict"):
        backend.cell_backward(cell, np.ones_like(y), bad, cache)
