"""The compiled fast path (``fastgates``) against the NumPy reference.

The sweep covers every cell and variant x dtype x shape x n_threads x token or
float input, and inside each test initial states given or None and every
combination of gradient sources.  Further tests: caches shared across backends,
bit-identity across thread counts, training=False, empty sequences and batches,
NaN propagation, inputs left unmodified and non-contiguous inputs.
"""

import warnings

import numpy as np
import pytest

from fastgates import cells as fastgates_cells

from conftest import (CACHE_ARRAYS, assert_backward_sources, assert_caches_cross, CELL_IDS, CELLS, DTYPE_IDS, DTYPES, assert_close, assert_equal, assert_grads_equal,
                      assert_outputs_equal,
                      assert_grads_close, assert_outputs_close, backward, case_id, forward,
                      grad_sources, make_grad_outputs, make_params, make_state, make_x)

#: name -> (T, B, D, H)
SHAPES = {
    "T1-B1": (1, 1, 3, 4),
    "odd": (7, 3, 5, 9),          # D != H, odd sizes
    "H100": (4, 2, 6, 100),        # H not a multiple of 16 (nor of a SIMD width)
    "large": (20, 33, 17, 40),     # a larger T*B
}


def problem(rng, cell, shape, dtype, tokens):
    """Parameters, input, initial states and gradient outputs of one case."""
    T, B, D, H = shape
    p = make_params(rng, cell, D, H, dtype)
    x = make_x(rng, T, B, D, dtype, tokens)
    h0, c0 = make_state(rng, B, H, dtype), make_state(rng, B, H, dtype)
    return p, x, h0, c0, make_grad_outputs(rng, T, B, H, dtype)


def pick(sources, dy, dh_n, dc_n, cell):
    use_dy, use_dh, use_dc = sources
    return (dy if use_dy else None, dh_n if use_dh else None,
            dc_n if use_dc and cell == "lstm" else None)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_fast_matches_reference(fast, ref, cell, variant, dtype, shape, tokens, n_threads, rng):
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, shape, dtype, tokens)
    for states in ("given", "none"):
        s_h0, s_c0 = (h0, c0) if states == "given" else (None, None)
        case = case_id(cell=cell, variant=variant, dtype=dtype, shape=shape, tokens=tokens,
                       n_threads=n_threads, states=states)
        want = forward(ref, cell, variant, x, s_h0, s_c0, p)
        got = forward(fast, cell, variant, x, s_h0, s_c0, p, n_threads=n_threads)
        assert_outputs_close(got, want, dtype, case)
        assert_backward_sources(fast, ref, cell, grad_sources(cell), (dy, dh_n, dc_n),
                                want.cache, got.cache, dtype, case, n_threads=n_threads)


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_cache_is_shared_across_backends(fast, ref, cell, variant, dtype, tokens, rng):
    """Both caches hold the same fields, and each backward accepts the other's cache."""
    shape = SHAPES["odd"]
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, shape, dtype, tokens)
    case = case_id(cell=cell, variant=variant, dtype=dtype, tokens=tokens)
    f_out = forward(fast, cell, variant, x, h0, c0, p)
    r_out = forward(ref, cell, variant, x, h0, c0, p)

    fc, rc = f_out.cache, r_out.cache
    assert type(fc) is type(rc), f"cache types differ: {type(fc)} vs {type(rc)} [{case}]"
    for field in ("cell", "variant", "tokens", "D"):
        assert getattr(fc, field) == getattr(rc, field), f"cache.{field} [{case}]"
    assert np.dtype(fc.dtype) == np.dtype(rc.dtype) == np.dtype(dtype), f"cache.dtype [{case}]"
    assert_caches_cross(fast, ref, cell, fc, rc, dtype, tokens, dy, dh_n, dc_n, case)


@pytest.mark.parametrize("shape", [SHAPES["large"], (6, 1, 5, 40)], ids=["large", "B1"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_bit_identical_across_thread_counts(fast, cell, variant, dtype, tokens, shape, rng):
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, shape, dtype, tokens)
    results = {}
    for n in (1, 2, 3, -1, None):
        out = forward(fast, cell, variant, x, h0, c0, p, n_threads=n)
        grads = backward(fast, cell, dy, dh_n, dc_n, out.cache, n_threads=n)
        results[n] = (out, grads)
    base_out, base_grads = results[1]
    for n, (out, grads) in results.items():
        case = case_id(cell=cell, variant=variant, dtype=dtype, tokens=tokens, shape=shape,
                       n_threads=f"{n} vs 1")
        assert_outputs_equal(out, base_out, case)
        assert_grads_equal(grads, base_grads, case)


#: token-id calls read w_ih's columns in place below 2 D rows (else its transpose) and
#: sum dW_ih in place below 4 D rows: one shape on each side of both choices (D = 20)
TOKEN_ROWS = {"in-place": (5, 3, 20, 19), "mixed": (10, 5, 20, 19), "transposed": (30, 3, 20, 19)}


@pytest.mark.parametrize("shape", list(TOKEN_ROWS.values()), ids=list(TOKEN_ROWS))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_token_ids_read_w_ih_in_place_or_transposed(fast, ref, cell, variant, dtype, shape, rng):
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, shape, dtype, True)
    want = forward(ref, cell, variant, x, h0, c0, p)
    want_g = backward(ref, cell, dy, dh_n, dc_n, want.cache)
    got = {}
    for n in (1, 2):
        out = forward(fast, cell, variant, x, h0, c0, p, n_threads=n)
        got[n] = out, backward(fast, cell, dy, dh_n, dc_n, out.cache, n_threads=n)
        inf = forward(fast, cell, variant, x, h0, c0, p, n_threads=n, training=False)
        case = case_id(cell=cell, variant=variant, dtype=dtype, shape=shape, n_threads=n)
        assert_outputs_close(out, want, dtype, case)
        assert_outputs_close(inf, want, dtype, case + " training=False")
        assert_grads_close(got[n][1], want_g, dtype, case)
    case = case_id(cell=cell, variant=variant, dtype=dtype, shape=shape, n_threads="2 vs 1")
    assert_outputs_equal(got[2][0], got[1][0], case)
    assert_grads_equal(got[2][1], got[1][1], case)


#: small steps (no dealing) run their products first and the gate math after
#: (fwd_group_small) when a step has at most a row tile of rows and B * H <= 256: batches
#: across that line (ragged, so the rows per step shrink through it), H with and without
#: a tail block
SMALL_STEPS = {"B1-H100": (9, 1, 7, 100), "B3-H20": (6, 3, 5, 20), "B9-H20": (5, 9, 4, 20),
               "B13-H5": (5, 13, 3, 5), "B2-H130": (4, 2, 6, 130)}


@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "ragged"])
@pytest.mark.parametrize("shape", list(SMALL_STEPS.values()), ids=list(SMALL_STEPS))
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_small_steps_match_reference(fast, ref, cell, variant, shape, ragged, rng):
    dtype = np.float32
    T, B = shape[:2]
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, shape, dtype, False)
    kw = {"lengths": np.sort(rng.integers(0, T + 1, B))[::-1].copy()} if ragged else {}
    want = forward(ref, cell, variant, x, h0, c0, p, **kw)
    want_g = backward(ref, cell, dy, dh_n, dc_n, want.cache)
    got = {}
    for n in (1, 2):
        out = forward(fast, cell, variant, x, h0, c0, p, n_threads=n, **kw)
        got[n] = out, backward(fast, cell, dy, dh_n, dc_n, out.cache, n_threads=n)
        case = case_id(cell=cell, variant=variant, shape=shape, ragged=ragged, n_threads=n)
        assert_outputs_close(out, want, dtype, case)
        assert_outputs_close(forward(fast, cell, variant, x, h0, c0, p, n_threads=n,
                                     training=False, **kw), want, dtype, case + " training=False")
        assert_grads_close(got[n][1], want_g, dtype, case)
    assert_outputs_equal(got[2][0], got[1][0], case)
    assert_grads_equal(got[2][1], got[1][1], case)


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_inference_mode(backend, cell, variant, dtype, tokens, rng):
    """training=False returns the same outputs and no cache."""
    p, x, h0, c0, _ = problem(rng, cell, SHAPES["odd"], dtype, tokens)
    case = case_id(backend=backend.__name__, cell=cell, variant=variant, dtype=dtype,
                   tokens=tokens)
    train = forward(backend, cell, variant, x, h0, c0, p, training=True)
    infer = forward(backend, cell, variant, x, h0, c0, p, training=False)
    assert infer.cache is None, f"training=False returned a cache [{case}]"
    assert_outputs_equal(infer, train, case)


@pytest.mark.parametrize("empty", ["T0", "B0"])
@pytest.mark.parametrize("states", ["given", "none"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_empty_sequence_or_batch(backend, cell, variant, tokens, states, empty, rng):
    """T=0 or B=0: empty y, h_n = h0, zero weight gradients, dh0 = dh_n."""
    dtype = np.float64
    T, B, D, H = (0, 3, 5, 4) if empty == "T0" else (4, 0, 5, 4)
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, (T, B, D, H), dtype, tokens)
    case = case_id(backend=backend.__name__, cell=cell, variant=variant, tokens=tokens,
                   states=states, empty=empty)
    s_h0, s_c0 = (h0, c0) if states == "given" else (None, None)
    out = forward(backend, cell, variant, x, s_h0, s_c0, p)
    zeros = np.zeros((B, H), dtype)
    assert_equal(out.y, np.zeros((T, B, H), dtype), f"y [{case}]")
    assert_equal(out.h_n, zeros if s_h0 is None else h0, f"h_n [{case}]")
    if cell == "lstm":
        assert_equal(out.c_n, zeros if s_c0 is None else c0, f"c_n [{case}]")
    assert out.h_n is not s_h0 and not np.shares_memory(out.h_n, h0), f"h_n aliases h0 [{case}]"

    for source, use in grad_sources(cell).items():
        args = pick(use, dy, dh_n, dc_n, cell)
        g = backward(backend, cell, *args, out.cache)
        where = f"{case} grads-from={source}"
        if tokens:
            assert g["dx"] is None, f"dx must be None for token ids [{where}]"
        else:
            assert_equal(g["dx"], np.zeros((T, B, D), dtype), f"dx [{where}]")
        for name, arr in p._asdict().items():
            assert_equal(g["d" + name], np.zeros_like(arr), f"d{name} [{where}]")
        assert_equal(g["dh0"], zeros if args[1] is None else args[1], f"dh0 [{where}]")
        if args[1] is not None:
            assert not np.shares_memory(g["dh0"], args[1]), f"dh0 aliases dh_n [{where}]"
        if cell == "lstm":
            assert_equal(g["dc0"], zeros if args[2] is None else args[2], f"dc0 [{where}]")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_nan_propagates(fast, ref, cell, variant, dtype, rng):
    """A NaN in x[t0, b0] makes row b0 non-finite from t0 on; other rows are untouched."""
    T, B, D, H = 6, 4, 5, 7
    t0, b0 = 2, 1
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, (T, B, D, H), dtype, False)
    x[t0, b0, 2] = np.nan
    clean = np.arange(B) != b0
    outs = {}
    for mod in (fast, ref):
        case = case_id(backend=mod.__name__, cell=cell, variant=variant, dtype=dtype)
        out = forward(mod, cell, variant, x, h0, c0, p)
        assert np.isfinite(out.y[:t0]).all(), f"y before the NaN step is not finite [{case}]"
        assert np.isfinite(out.y[:, clean]).all(), f"y of the clean rows is not finite [{case}]"
        assert not np.isfinite(out.y[t0, b0]).any(), f"NaN did not reach y[t0, b0] [{case}]"
        assert not np.isfinite(out.h_n[b0]).any(), f"NaN did not reach h_n[b0] [{case}]"
        assert np.isfinite(out.h_n[clean]).all(), f"h_n of clean rows not finite [{case}]"
        g = backward(mod, cell, dy, dh_n, dc_n, out.cache)
        assert np.isfinite(g["dx"][:, clean]).all(), f"dx of the clean rows [{case}]"
        assert np.isfinite(g["dh0"][clean]).all(), f"dh0 of the clean rows [{case}]"
        assert not np.isfinite(g["dw_ih"]).all(), f"NaN did not reach dw_ih [{case}]"
        outs[mod.__name__] = (out, g)
    (f_out, f_g), (r_out, r_g) = outs["fastgates"], outs["fastgates.reference"]
    case = case_id(cell=cell, variant=variant, dtype=dtype)
    for name in ("y", "h_n", "c_n"):
        got, want = getattr(f_out, name), getattr(r_out, name)
        if want is None:
            continue
        assert np.array_equal(np.isfinite(got), np.isfinite(want)), (
            f"{name}: non-finite entries differ between fast and reference [{case}]")
    assert_close(f_out.y[:, clean], r_out.y[:, clean], dtype, f"y clean rows [{case}]")
    assert_close(f_g["dx"][:, clean], r_g["dx"][:, clean], dtype, f"dx clean rows [{case}]")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_inf_input_does_not_crash(backend, cell, variant, dtype, rng):
    """+-Inf in x and h0 run through without exceptions and without a warning (turned into
    errors here): the reference's NaN/Inf arithmetic is silenced inside each call, the
    compiled kernels never report to NumPy.  (An ``np.errstate(..."raise")`` around the
    calls could not fire: see test_numerics for where it can.)"""
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, (5, 3, 4, 6), dtype, False)
    x[1, 0, :] = np.inf
    x[3, 2, 1] = -np.inf
    h0[1, 0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = forward(backend, cell, variant, x, h0, c0, p)
        g = backward(backend, cell, dy, dh_n, dc_n, out.cache)
    case = case_id(backend=backend.__name__, cell=cell, variant=variant, dtype=dtype)
    assert out.y.shape == (5, 3, 6) and g["dw_hh"].shape == p.w_hh.shape, case


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_inputs_unmodified_and_outputs_private(backend, cell, variant, tokens, rng):
    """No input changes; outputs can be overwritten without corrupting the cache;
    backward overwrites (a second call returns the same, not the double)."""
    dtype = np.float64
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, SHAPES["odd"], dtype, tokens)
    inputs = {"x": x, "h0": h0, "c0": c0, "dy": dy, "dh_n": dh_n, "dc_n": dc_n, **p._asdict()}
    copies = {k: v.copy() for k, v in inputs.items()}
    case = case_id(backend=backend.__name__, cell=cell, variant=variant, tokens=tokens)

    out = forward(backend, cell, variant, x, h0, c0, p)
    first = backward(backend, cell, dy, dh_n, dc_n, out.cache)
    for arr in inputs.values():
        for o in (out.y, out.h_n, out.c_n):
            assert o is None or not np.shares_memory(o, arr), f"an output aliases an input [{case}]"
    for o in (out.y, out.h_n, out.c_n):       # the caller owns the outputs
        if o is not None:
            o[...] = 7.0
    for name in ("x", "w_ih", "w_hh"):        # changing inputs must not reach the cache
        inputs[name][...] = 0
    second = backward(backend, cell, dy, dh_n, dc_n, out.cache)
    for name in first:
        assert_equal(second[name], first[name], f"{name} after a second backward [{case}]")
        if first[name] is not None:
            assert not np.shares_memory(first[name], second[name]), f"{name} reused [{case}]"
    for name in ("x", "w_ih", "w_hh"):
        inputs[name][...] = copies[name]
    for name, arr in inputs.items():
        if name in ("x", "w_ih", "w_hh"):
            continue
        assert np.array_equal(arr, copies[name]), f"{name} was modified [{case}]"

    # now without the deliberate overwrites: every input is left bit-identical
    out = forward(backend, cell, variant, x, h0, c0, p)
    backward(backend, cell, dy, dh_n, dc_n, out.cache)
    for name, arr in inputs.items():
        assert np.array_equal(arr, copies[name]), f"{name} was modified [{case}]"


def _strided(a):
    """A non-contiguous view with the same values as ``a``: every other element of
    a twice-as-long last axis (a Fortran-ordered copy for 2-D arrays)."""
    if a.ndim == 2 and min(a.shape) > 1:
        return np.asfortranarray(a)
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_non_contiguous_inputs(backend, cell, variant, dtype, tokens, rng):
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, SHAPES["odd"], dtype, tokens)
    case = case_id(backend=backend.__name__, cell=cell, variant=variant, dtype=dtype,
                   tokens=tokens)
    want = forward(backend, cell, variant, x, h0, c0, p)
    want_g = backward(backend, cell, dy, dh_n, dc_n, want.cache)

    # x as a transposed view of a batch-first array, states and weights strided
    xt = np.ascontiguousarray(np.swapaxes(x, 0, 1)).swapaxes(0, 1)
    assert not xt.flags.c_contiguous
    ps = type(p)(*(_strided(a) for a in p))
    assert not any(a.flags.c_contiguous for a in ps)
    got = forward(backend, cell, variant, xt, _strided(h0), _strided(c0), ps)
    assert_outputs_close(got, want, dtype, f"non-contiguous inputs [{case}]")
    dyt = np.ascontiguousarray(np.swapaxes(dy, 0, 1)).swapaxes(0, 1)
    got_g = backward(backend, cell, dyt, _strided(dh_n), _strided(dc_n), got.cache)
    assert_grads_close(got_g, want_g, dtype, f"non-contiguous inputs [{case}]")


@pytest.mark.parametrize("id_dtype", [np.int32, np.uint8, np.int16])
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_token_id_integer_types(backend, cell, variant, id_dtype, rng):
    """Any integer dtype of token ids means the same as int64 and equals one-hot input."""
    T, B, D, H = 5, 3, 6, 4
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, (T, B, D, H), np.float64, True)
    case = case_id(backend=backend.__name__, cell=cell, variant=variant, ids=id_dtype)
    want = forward(backend, cell, variant, x, h0, c0, p)
    got = forward(backend, cell, variant, x.astype(id_dtype), h0, c0, p)
    assert_outputs_close(got, want, np.float64, case)

    onehot = np.eye(D)[x]
    dense = forward(backend, cell, variant, onehot, h0, c0, p)
    assert_outputs_close(dense, want, np.float64, f"one-hot float input [{case}]")
    g_tok = backward(backend, cell, dy, dh_n, dc_n, want.cache)
    g_dense = backward(backend, cell, dy, dh_n, dc_n, dense.cache)
    assert g_tok["dx"] is None, f"dx must be None for token ids [{case}]"
    g_dense["dx"] = None
    assert_grads_close(g_tok, g_dense, np.float64, f"token ids vs one-hot [{case}]")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_result_dtypes(backend, cell, variant, dtype, rng):
    """float32 stays float32 everywhere (outputs, cache, gradients)."""
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, (3, 2, 4, 5), dtype, False)
    out = forward(backend, cell, variant, x, h0, c0, p)
    case = case_id(backend=backend.__name__, cell=cell, variant=variant, dtype=dtype)
    for name, a in [("y", out.y), ("h_n", out.h_n), ("c_n", out.c_n)] + [
            (f"cache.{f}", getattr(out.cache, f)) for f in CACHE_ARRAYS]:
        if a is not None:
            assert a.dtype == dtype, f"{name} has dtype {a.dtype} [{case}]"
    for name, a in backward(backend, cell, dy, dh_n, dc_n, out.cache).items():
        assert a.dtype == dtype, f"{name} has dtype {a.dtype} [{case}]"


#: (T, B, D, H, lengths): 261 valid rows (>= 256: the backward's weight-gradient products
#: of their own, dW_ih sharing dW_hh's pass where it can) and B = 9 (a full row tile per
#: step: the input projection inside the time loop) with batch sizes falling below a tile
MANY_ROWS = (48, 9, 6, 20, [48, 12, 40, 0, 48, 33, 5, 45, 30])


@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "ragged"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", [*[c.name for c in fastgates_cells.CELLS.values()], "lstm+peep"])
def test_many_rows_match_reference_for_every_cell(name, dtype, ragged, rng):
    """Every cell of the table (and the peephole LSTM) with many rows, dense and ragged: the
    fast path's outputs and every gradient against the reference, the same for 1, 2 and 3
    threads bit for bit."""
    import fastgates
    import fastgates.reference as reference
    cell = fastgates_cells.get(name.split("+")[0])
    T, B, D, H, lengths = MANY_ROWS
    k = 1 / np.sqrt(H)
    p = {s: (1.0 + 0.3 * rng.standard_normal(sh) if s.startswith("ln_") and s != "ln_c_bias"
             else rng.uniform(-k, k, sh)).astype(dtype)
         for s, sh in fastgates_cells.param_shapes(cell, D, H).items()}
    if name.endswith("+peep"):
        p["weight_peep"] = rng.uniform(-k, k, (3, H)).astype(dtype)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state = {s: (0.5 * rng.standard_normal((B, H))).astype(dtype) for s in cell.states}
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = {s: rng.standard_normal((B, H)).astype(dtype) for s in cell.states}
    kw = {"lengths": lengths} if ragged else {}
    case = case_id(cell=name, dtype=dtype, ragged=ragged)
    y_r, s_r, c_r = reference.cell_forward(cell, x, state, p, **kw)
    g_r = reference.cell_backward(cell, dy, dstate, c_r)
    runs = []
    for nt in (1, 2):
        y, s, c = fastgates.cell_forward(cell, x, state, p, n_threads=nt, **kw)
        g = fastgates.cell_backward(cell, dy, dstate, c, n_threads=nt)
        runs.append([y, *s.values(), g.dx, *g.param_grads.values(), *g.state_grads.values()])
    assert_close(runs[0][0], y_r, dtype, f"y [{case}]")
    for st in cell.states:
        assert_close(s[st], s_r[st], dtype, f"{st}_n [{case}]")
    assert_close(g.dx, g_r.dx, dtype, f"dx [{case}]")
    assert list(g.param_grads) == list(g_r.param_grads)
    for stem in g_r.param_grads:
        assert_close(g.param_grads[stem], g_r.param_grads[stem], dtype, f"d{stem} [{case}]")
    for st in g_r.state_grads:
        assert_close(g.state_grads[st], g_r.state_grads[st], dtype, f"d{st}0 [{case}]")
    for i, (a, b) in enumerate(zip(runs[1], runs[0])):
        assert_equal(a, b, f"output/gradient #{i}, 2 threads vs 1 [{case}]")


# Steps big enough to be dealt (src_c/deal.h: >= 2^20 multiply-adds per step for every cell)
DEALT = (6, 33, 7, 180, [6, 6, 5, 0, 6, 3, 1] + [6] * 26)


@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "ragged"])
@pytest.mark.parametrize("name", ["rnn_tanh", "gru", "gru_rb", "lstm", "lstm+peep", "lnlstm", "lngru"])
def test_dealt_steps_match_for_any_thread_count(name, ragged, rng):
    """Steps whose unit blocks (forward; not the LayerNorm cells') and dh panels (BPTT) are
    dealt with stealing: the same bits for 1, 2, 3 and 4 threads (3 and 4 threads on fewer cores keep threads
    waiting for a core, so the others take their items), float32 against the reference."""
    import fastgates
    import fastgates.reference as reference
    cell = fastgates_cells.get(name.split("+")[0])
    T, B, D, H, lengths = DEALT
    k = 1 / np.sqrt(H)
    p = {s: (1.0 + 0.3 * rng.standard_normal(sh) if s.startswith("ln_") and s != "ln_c_bias"
             else rng.uniform(-k, k, sh)).astype(np.float32)
         for s, sh in fastgates_cells.param_shapes(cell, D, H).items()}
    if name.endswith("+peep"):
        p["weight_peep"] = rng.uniform(-k, k, (3, H)).astype(np.float32)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    state = {s: (0.5 * rng.standard_normal((B, H))).astype(np.float32) for s in cell.states}
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    dstate = {s: rng.standard_normal((B, H)).astype(np.float32) for s in cell.states}
    kw = {"lengths": lengths} if ragged else {}
    case = case_id(cell=name, ragged=ragged)
    runs = []
    for nt in (1, 2, 3, 4):
        for training in (True, False):
            y, s, c = fastgates.cell_forward(cell, x, state, p, training=training, n_threads=nt, **kw)
            runs.append([y, *s.values()])
            cache = c if training else cache
        g = fastgates.cell_backward(cell, dy, dstate, cache, n_threads=nt)
        runs[-1] += [g.dx, *g.param_grads.values(), *g.state_grads.values()]
    y_r, s_r, c_r = reference.cell_forward(cell, x, state, p, **kw)
    g_r = reference.cell_backward(cell, dy, dstate, c_r)
    assert_close(runs[1][0], y_r, np.float32, f"y [{case}]")
    assert_close(runs[1][len(cell.states) + 1], g_r.dx, np.float32, f"dx [{case}]")
    for j in range(2, len(runs)):
        for i, (a, b) in enumerate(zip(runs[j], runs[j % 2])):
            assert_equal(a, b, f"output/gradient #{i}, {j // 2 + 1} threads vs 1 [{case}]")


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_training_copies_made_in_the_region(n_threads, tokens, rng):
    """A training forward's private copies (x, w_ih; w_hh packed for the backward) and
    its y are made by the threads of its region (copy jobs in 64-byte slices per thread,
    panels): at pooled sizes whose byte counts are no multiple of 64, every thread count
    gives the inputs' exact values in fresh memory and the inference pass's y."""
    import fastgates
    T, B, D, H = 7, 5, 129, 67          # w_hh 268 x 67 floats: pooled, 71824 bytes
    x = (rng.integers(0, D, (T, B)) if tokens
         else rng.standard_normal((T, B, D)).astype(np.float32))
    w_ih = rng.standard_normal((4 * H, D)).astype(np.float32) * 0.1
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32) * 0.1
    b = rng.standard_normal(4 * H).astype(np.float32) * 0.1
    h0, c0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    y, h_n, c_n, cache = fastgates.lstm_forward(x, h0, c0, w_ih, w_hh, b, b, training=True,
                                                n_threads=n_threads)
    y_inf = fastgates.lstm_forward(x, h0, c0, w_ih, w_hh, b, b, n_threads=n_threads)[0]
    assert_equal(y, y_inf, f"y [threads {n_threads}]")
    for name, src in (("x", x), ("w_ih", w_ih), ("w_hh", w_hh)):
        own = getattr(cache, name)
        if tokens and name == "w_ih":
            assert own is None
            continue
        assert np.array_equal(own, src) and not np.shares_memory(own, src), name
    assert_equal(cache.hs[1:], y, "hs[1:]")
    held = [a for a in (cache.x, cache.w_ih, cache.hs, cache.gates, cache.cs, cache.tc)
            if a is not None]      # w_hh: read above, so held packed and unpacked
    kept = cache._w_hh_bwd[0] if cache._w_hh_bwd is not None else None
    assert cache.nbytes == sum(a.nbytes for a in held) + cache.w_hh.nbytes + (
        0 if kept is None else kept.nbytes)


def test_packed_w_hh_of_another_level_is_repacked(rng):
    """The cache keeps w_hh packed for the backward of the level the forward ran at; a
    backward at another level (the level switched in between) packs it again from the
    unpacked copy, computing what a cache holding w_hh as an array gives; a projected
    LSTM's w_hh (4H, P) unpacks to its values too."""
    import fastgates
    from fastgates import _recurrence as R
    active = R.isa_active()
    levels = sorted({R.isa_select(name) for name in R.ISA_LEVELS}, key=R.ISA_LEVELS.index)
    assert len(levels) > 1 or active == "generic", levels
    T, B, D, H, P = 6, 3, 5, 37, 21
    x = rng.standard_normal((T, B, D))
    w_ih, w_hh = rng.standard_normal((4 * H, D)) * 0.2, rng.standard_normal((4 * H, P)) * 0.2
    w_hr = rng.standard_normal((P, H)) * 0.2
    b = rng.standard_normal(4 * H) * 0.1
    dy, dh = rng.standard_normal((T, B, P)), rng.standard_normal((B, P))
    dc = rng.standard_normal((B, H))
    try:
        for first in levels:
            for second in levels:
                R.isa_select(first)
                cache = fastgates.lstm_forward(x, None, None, w_ih, w_hh, b, b, w_hr=w_hr,
                                               training=True)[3]
                plain = fastgates.lstm_forward(x, None, None, w_ih, w_hh, b, b, w_hr=w_hr,
                                               training=True)[3]
                assert np.array_equal(plain.w_hh, w_hh)      # unpacks to the values
                plain.w_hh = plain.w_hh.copy()               # an array: packed again by BPTT
                assert plain._packed_w_hh(R.ISA_LEVELS.index(first)) is None
                assert cache._packed_w_hh(R.ISA_LEVELS.index(first)) is not None
                R.isa_select(second)
                g = fastgates.lstm_backward(dy, dh, dc, cache)
                want = fastgates.lstm_backward(dy, dh, dc, plain)
                for name, got in g._asdict().items():
                    assert_equal(got, getattr(want, name), f"{name} [{first} -> {second}]")
    finally:
        R.isa_select(active)
