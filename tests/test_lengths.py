"""Variable-length (ragged) batches: ``lengths=`` of every ``*_forward``.

Row b runs lengths[b] steps: y is zero past its end, h_n/c_n are its state after
its last step (h0 for length 0), and backward takes gradients from its valid steps
only.  Checked here: the fast path against the reference (every cell, dtype, input
kind, mode, thread count, unsorted lengths with 0 and T); each row of a ragged
batch against that row run alone; equal lengths T against lengths=None
(bit-identical); bit-identity across thread counts; torch's pack_padded_sequence;
the reference's gradients against finite differences; inference memory; bad
``lengths``.
"""

import tracemalloc

import numpy as np
import pytest

from conftest import (assert_backward_sources, assert_caches_cross, numerical_gradient, TORCH_CELLS, TORCH_IDS, CELL_IDS, CELLS, DTYPE_IDS, DTYPES, BACKENDS, assert_close,
                      assert_equal, assert_grads_equal, assert_matches_torch, assert_outputs_equal,
                      assert_outputs_close, backward, case_id, forward,
                      grad_sources, import_backend, make_grad_outputs, make_params, make_state,
                      make_x, torch_case)

#: name -> (T, B, D, H, lengths): unsorted, with 0 and T, ties, H past a SIMD block
CASES = {
    "small": (6, 5, 4, 9, [3, 0, 6, 1, 3]),
    "wide": (9, 7, 5, 20, [9, 2, 5, 9, 0, 7, 1]),
    # past OWN_GEMM_ROWS valid rows (the weight gradients by the kernels' product; the GRU
    # lbr's dnx columns in a panel that straddles 2H) and RIDE_DX_ROWS rows (dx in the loop)
    "many": (12, 33, 19, 37, [12, 0, 7, 12, 3, 9, 12, 5, 11, 1, 8, 12, 6, 10, 2, 12, 4, 9, 12,
                              7, 11, 3, 12, 8, 5, 10, 12, 6, 1, 9, 12, 11, 7]),
}


def problem(rng, cell, T, B, D, H, dtype, tokens):
    p = make_params(rng, cell, D, H, dtype)
    x = make_x(rng, T, B, D, dtype, tokens)
    h0, c0 = make_state(rng, B, H, dtype), make_state(rng, B, H, dtype)
    return p, x, h0, c0, make_grad_outputs(rng, T, B, H, dtype)


def poison_padding(x, dy, lengths, tokens):
    """Copies of x and dy holding NaN (token id -1) past each row's end: never read."""
    x, dy = x.copy(), dy.copy()
    past = np.arange(x.shape[0])[:, None] >= np.asarray(lengths)[None, :]
    x[past] = -1 if tokens else np.nan
    dy[past] = np.nan
    return x, dy


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_fast_matches_reference(fast, ref, cell, variant, dtype, case, tokens, n_threads, rng):
    T, B, D, H, lengths = CASES[case]
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, dtype, tokens)
    x, dy = poison_padding(x, dy, lengths, tokens)
    for states in ("given", "none"):
        s_h0, s_c0 = (h0, c0) if states == "given" else (None, None)
        where = case_id(cell=cell, variant=variant, dtype=dtype, case=case, tokens=tokens,
                        n_threads=n_threads, states=states)
        want = forward(ref, cell, variant, x, s_h0, s_c0, p, lengths=lengths)
        got = forward(fast, cell, variant, x, s_h0, s_c0, p, lengths=lengths, n_threads=n_threads)
        assert_outputs_close(got, want, dtype, where)
        infer = forward(fast, cell, variant, x, s_h0, s_c0, p, lengths=lengths,
                        n_threads=n_threads, training=False)
        assert infer.cache is None, f"training=False returned a cache [{where}]"
        assert_outputs_equal(infer, got, where, "inference ")
        # every gradient source on one thread; two threads are checked bit-identical below
        sources = grad_sources(cell) if n_threads == 1 else {"all": (True, True, True)}
        assert_backward_sources(fast, ref, cell, sources, (dy, dh_n, dc_n), want.cache,
                                got.cache, dtype, where, n_threads=n_threads)


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_cache_is_shared_across_backends(fast, ref, cell, variant, dtype, tokens, rng):
    """Both backends store the same packed cache, and each backward accepts the other's."""
    T, B, D, H, lengths = CASES["small"]
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, dtype, tokens)
    where = case_id(cell=cell, variant=variant, dtype=dtype, tokens=tokens)
    fc = forward(fast, cell, variant, x, h0, c0, p, lengths=lengths).cache
    rc = forward(ref, cell, variant, x, h0, c0, p, lengths=lengths).cache
    assert fc.shape == rc.shape == (T, B, D, H), f"cache.shape [{where}]"
    for c in (fc, rc):
        assert c.lengths.dtype == np.int64 and np.array_equal(c.lengths, lengths), where
    N = int(np.sum(lengths))
    assert fc.hs.shape == (B + N, H), f"packed hs has shape {fc.hs.shape} [{where}]"
    assert_caches_cross(fast, ref, cell, fc, rc, dtype, tokens, dy, dh_n, dc_n, where)


@pytest.mark.parametrize("backend_name", BACKENDS, ids=["fast", "reference"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_each_row_alone(backend_name, cell, variant, dtype, tokens, rng):
    """Row b of a ragged batch equals x[:lengths[b], b] run as a batch of one; the weight
    gradients are the sums over the rows; padding (NaN x, NaN dy) is never read."""
    mod = import_backend(backend_name)
    T, B, D, H, lengths = CASES["wide"]
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, dtype, tokens)
    x, dy = poison_padding(x, dy, lengths, tokens)
    lstm = cell == "lstm"
    where = case_id(backend=backend_name, cell=cell, variant=variant, dtype=dtype, tokens=tokens)
    out = forward(mod, cell, variant, x, h0, c0, p, lengths=lengths)
    g = backward(mod, cell, dy, dh_n, dc_n if lstm else None, out.cache)
    sums = {name: np.zeros_like(g[name]) for name in ("dw_ih", "dw_hh", "db_ih", "db_hh")}
    for b, L in enumerate(lengths):
        row = f"{where} row={b} length={L}"
        assert_equal(out.y[L:, b], np.zeros((T - L, H), dtype), f"y past the end [{row}]")
        one = forward(mod, cell, variant, x[:L, b:b + 1], h0[b:b + 1], c0[b:b + 1], p)
        g1 = backward(mod, cell, dy[:L, b:b + 1], dh_n[b:b + 1],
                      dc_n[b:b + 1] if lstm else None, one.cache)
        assert_close(out.y[:L, b], one.y[:, 0], dtype, f"y [{row}]")
        assert_close(out.h_n[b], one.h_n[0], dtype, f"h_n [{row}]")
        if lstm:
            assert_close(out.c_n[b], one.c_n[0], dtype, f"c_n [{row}]")
        if L == 0:      # exactly the initial state, and its gradient straight through
            assert_equal(out.h_n[b], h0[b], f"h_n of an empty row [{row}]")
            assert_equal(g["dh0"][b], dh_n[b], f"dh0 of an empty row [{row}]")
        assert_close(g["dh0"][b], g1["dh0"][0], dtype, f"dh0 [{row}]")
        if lstm:
            assert_close(g["dc0"][b], g1["dc0"][0], dtype, f"dc0 [{row}]")
        if not tokens:
            assert_close(g["dx"][:L, b], g1["dx"][:, 0], dtype, f"dx [{row}]")
            assert_equal(g["dx"][L:, b], np.zeros((T - L, D), dtype), f"dx past the end [{row}]")
        for name in sums:
            sums[name] += g1[name]
    for name, total in sums.items():
        assert_close(g[name], total, dtype, f"{name} = sum over rows [{where}]")


@pytest.mark.parametrize("backend_name", BACKENDS, ids=["fast", "reference"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_full_lengths_equal_no_lengths(backend_name, cell, variant, tokens, training, rng):
    """lengths all T gives bit-identical results to lengths=None (the same arithmetic)."""
    mod = import_backend(backend_name)
    dtype = np.float32
    T, B, D, H = 8, 6, 5, 20
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, dtype, tokens)
    where = case_id(backend=backend_name, cell=cell, variant=variant, tokens=tokens,
                    training=training)
    full = np.full(B, T, np.int32)
    a = forward(mod, cell, variant, x, h0, c0, p, training=training, n_threads=2)
    b = forward(mod, cell, variant, x, h0, c0, p, training=training, n_threads=2, lengths=full)
    assert_outputs_equal(b, a, where)
    if training:
        ga = backward(mod, cell, dy, dh_n, dc_n, a.cache, n_threads=2)
        gb = backward(mod, cell, dy, dh_n, dc_n, b.cache, n_threads=2)
        assert_grads_equal(gb, ga, where)


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_bit_identical_across_thread_counts(fast, cell, variant, dtype, tokens, rng):
    T, B, D, H = 20, 33, 17, 40
    lengths = rng.integers(0, T + 1, B)
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, dtype, tokens)
    results = {}
    for n in (1, 2, 3, -1, None):
        out = forward(fast, cell, variant, x, h0, c0, p, n_threads=n, lengths=lengths)
        inf = forward(fast, cell, variant, x, h0, c0, p, n_threads=n, lengths=lengths,
                      training=False)
        grads = backward(fast, cell, dy, dh_n, dc_n, out.cache, n_threads=n)
        results[n] = (out, inf, grads)
    base_out, base_inf, base_grads = results[1]
    for n, (out, inf, grads) in results.items():
        where = case_id(cell=cell, variant=variant, dtype=dtype, tokens=tokens,
                        n_threads=f"{n} vs 1")
        assert_outputs_equal(out, base_out, where)
        assert_outputs_equal(inf, base_out, where, "inference ")
        assert_grads_equal(grads, base_grads, where)


@pytest.mark.parametrize("lengths", [[0, 0, 0], [1, 0, 2]], ids=["all-empty", "short"])
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_empty_and_short_rows(backend, cell, variant, lengths, rng):
    """All rows empty: y zero, h_n = h0, zero weight gradients, dh0 = dh_n.  Rows shorter
    than T with T larger than any length: the steps nobody runs cost nothing and change nothing."""
    dtype = np.float64
    T, B, D, H = 5, 3, 4, 6
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, dtype, False)
    where = case_id(backend=backend.__name__, cell=cell, variant=variant, lengths=lengths)
    out = forward(backend, cell, variant, x, h0, c0, p, lengths=lengths)
    g = backward(backend, cell, dy, dh_n, dc_n, out.cache)
    if max(lengths) == 0:
        assert_equal(out.y, np.zeros((T, B, H)), f"y [{where}]")
        assert_equal(out.h_n, h0, f"h_n [{where}]")
        assert_equal(g["dh0"], dh_n, f"dh0 [{where}]")
        assert_equal(g["dx"], np.zeros((T, B, D)), f"dx [{where}]")
        for name, arr in p._asdict().items():
            assert_equal(g["d" + name], np.zeros_like(arr), f"d{name} [{where}]")
        if cell == "lstm":
            assert_equal(out.c_n, c0, f"c_n [{where}]")
            assert_equal(g["dc0"], dc_n, f"dc0 [{where}]")
    else:
        short = forward(backend, cell, variant, x[:max(lengths)], h0, c0, p, lengths=lengths)
        assert_equal(out.y[:max(lengths)], short.y, f"y [{where}]")
        assert_equal(out.y[max(lengths):], np.zeros((T - max(lengths), B, H)), f"y tail [{where}]")
        assert_equal(out.h_n, short.h_n, f"h_n [{where}]")


@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_inputs_unmodified(backend, cell, variant, tokens, rng):
    """lengths (and every other input) is left as it was; the cache keeps its own copy."""
    T, B, D, H, lengths = CASES["small"]
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, np.float64, tokens)
    lengths = np.array(lengths, np.int32)
    inputs = {"x": x, "h0": h0, "c0": c0, "dy": dy, "dh_n": dh_n, "dc_n": dc_n,
              "lengths": lengths, **p._asdict()}
    copies = {k: v.copy() for k, v in inputs.items()}
    out = forward(backend, cell, variant, x, h0, c0, p, lengths=lengths)
    first = backward(backend, cell, dy, dh_n, dc_n, out.cache)
    lengths[:] = T                           # must not reach the cache
    second = backward(backend, cell, dy, dh_n, dc_n, out.cache)
    lengths[:] = copies["lengths"]
    where = case_id(backend=backend.__name__, cell=cell, variant=variant, tokens=tokens)
    for name in first:
        assert_equal(second[name], first[name], f"{name} after changing lengths [{where}]")
    for name, arr in inputs.items():
        assert np.array_equal(arr, copies[name]), f"{name} was modified [{where}]"


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_ragged_inference_memory_is_bounded(cell):
    """training=False with lengths keeps no per-step activations nor per-token indices:
    beyond y, memory grows by a few scalars per step (the batch sizes and offsets), against
    B*H*8 = 2 KiB per step for y itself and B*(G+3)*H*8 for a training cache."""
    B, D, H = 4, 8, 64
    G = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    rng = np.random.default_rng(0)
    w = [rng.standard_normal(s) * 0.1 for s in ((G * H, D), (G * H, H), (G * H,), (G * H,))]
    fwd = getattr(__import__("fastgates"), f"{cell}_forward")

    def peak_beyond_y(T):
        x = rng.integers(0, D, (T, B))
        lengths = np.array([T, T // 2, 1, T - 3])
        args = (x, None, None, *w) if cell == "lstm" else (x, None, *w)
        tracemalloc.start()
        try:
            fwd(*args, training=False, n_threads=1, lengths=lengths)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak - T * B * H * 8

    short, long = peak_beyond_y(2000), peak_beyond_y(20000)
    assert (long - short) / 18000 < 32, (short, long)
    # a fixed chunk of max(1024, B) rows of gates, h and x, plus the per-step scalars
    assert long < 1024 * (G + 2) * H * 8 + 1024 * D * 8 + 20000 * 32 + 512 * 1024, long


# torch oracle: pack_padded_sequence(enforce_sorted=False) on the same weights



@pytest.mark.parametrize("backend_name", BACKENDS, ids=["fast", "reference"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", TORCH_CELLS, ids=TORCH_IDS)
def test_matches_torch_packed_sequence(backend_name, cell, variant, dtype, tokens, rng):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    mod = import_backend(backend_name)
    T, B, D, H = 9, 6, 5, 12
    lengths = np.array([4, 9, 1, 6, 9, 2])       # torch needs lengths >= 1
    lstm = cell == "lstm"
    where = case_id(backend=backend_name, cell=cell, variant=variant, dtype=dtype, tokens=tokens)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, params, p, x, h0, c0, (dy, dh_n, dc_n), x_t = torch_case(rng, cell, variant, T, B, D,
                                                                      H, dtype, tokens)
        h0_t = torch.tensor(h0, requires_grad=True)
        c0_t = torch.tensor(c0, requires_grad=True)
        packed = pack_padded_sequence(x_t, torch.tensor(lengths), enforce_sorted=False)
        if lstm:
            y_p, (hn_t, cn_t) = net(packed, (h0_t[None], c0_t[None]))
        else:
            y_p, hn_t = net(packed, h0_t[None])
            cn_t = None
        y_t, _ = pad_packed_sequence(y_p, total_length=T)
        loss = (y_t * torch.tensor(dy)).sum() + (hn_t[0] * torch.tensor(dh_n)).sum()
        if lstm:
            loss = loss + (cn_t[0] * torch.tensor(dc_n)).sum()
        loss.backward()
    finally:
        torch.set_num_threads(threads)

    out = forward(mod, cell, variant, x, h0, c0, p, lengths=lengths)
    assert_matches_torch(mod, cell, out, (dy, dh_n, dc_n), (y_t, hn_t, cn_t), (x_t, h0_t, c0_t),
                         params, dtype, tokens, where)


# the reference's ragged gradients against central finite differences



@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_reference_gradients_match_finite_differences(ref, cell, variant, rng):
    T, B, D, H = 4, 3, 2, 3
    lengths = [2, 0, 4]
    lstm = cell == "lstm"
    p, x, h0, c0, (dy, dh_n, dc_n) = problem(rng, cell, T, B, D, H, np.float64, False)
    p = [a.copy() for a in p]

    def loss():
        out = forward(ref, cell, variant, x, h0, c0, p, lengths=lengths)
        total = np.sum(dy * out.y) + np.sum(dh_n * out.h_n)
        return total + (np.sum(dc_n * out.c_n) if lstm else 0.0)

    out = forward(ref, cell, variant, x, h0, c0, p, lengths=lengths)
    g = backward(ref, cell, dy, dh_n, dc_n if lstm else None, out.cache)
    named = {"dx": x, "dh0": h0, "dw_ih": p[0], "dw_hh": p[1], "db_ih": p[2], "db_hh": p[3]}
    if lstm:
        named["dc0"] = c0
    for name, arr in named.items():
        num = numerical_gradient(loss, arr)
        scale = max(np.abs(num).max(), np.abs(g[name]).max(), 1e-12)
        err = np.abs(num - g[name]).max() / scale
        assert err < 1e-6, f"{name}: relative error {err:.2e} [{case_id(cell=cell, variant=variant)}]"


# bad lengths

BAD_LENGTHS = [
    ([1.0, 2.0, 3.0], TypeError, "float64"),
    (np.array([True, False, True]), TypeError, "bool"),
    (["a", "b", "c"], TypeError, "lengths"),
    ([1, 2], ValueError, r"\(3,\)"),
    (np.ones((3, 1), int), ValueError, r"shape \(3, 1\)"),
    (3, ValueError, r"shape \(\)"),
    ([1, -1, 2], ValueError, r"lengths\[1\] = -1"),
    ([1, 2, 5], ValueError, r"lengths\[2\] = 5"),
    (np.array([1, 2, 2**40], np.uint64), ValueError, str(2**40)),
]


@pytest.mark.parametrize("bad,exc,match", BAD_LENGTHS,
                         ids=["floats", "bools", "strings", "short", "2-D", "scalar", "negative",
                              "above-T", "huge-uint64"])
@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_bad_lengths_raise(backend, cell, variant, bad, exc, match, rng):
    T, B, D, H = 4, 3, 2, 5
    p, x, h0, c0, _ = problem(rng, cell, T, B, D, H, np.float64, False)
    with pytest.raises(exc, match=match) as info:
        forward(backend, cell, variant, x, h0, c0, p, lengths=bad)
    assert "lengths" in str(info.value), str(info.value)
    if exc is ValueError and "lengths[" in str(info.value):
        assert "[0, 4]" in str(info.value), str(info.value)    # the expected range


@pytest.mark.parametrize("good", [[1, 4, 0], (4, 4, 4), np.array([2, 0, 3], np.uint8),
                                  np.array([2, 0, 3], np.int16)], ids=["list", "tuple", "uint8", "int16"])
def test_lengths_accept_any_integer_sequence(backend, good, rng):
    T, B, D, H = 4, 3, 2, 5
    p, x, h0, c0, _ = problem(rng, "gru", T, B, D, H, np.float64, False)
    gru = CELLS[CELL_IDS.index("gru")]                  # (kernel, variant) of the cell "gru"
    want = forward(backend, *gru, x, h0, c0, p, lengths=np.asarray(good, np.int64))
    got = forward(backend, *gru, x, h0, c0, p, lengths=good)
    assert_equal(got.y, want.y, f"y with lengths={good!r}")
    assert got.cache.lengths.dtype == np.int64


def test_padding_token_ids_may_be_out_of_range(backend, rng):
    """Token ids past a row's end are never read, so any value is accepted there; an
    out-of-range id at a valid step is still an error."""
    T, B, D, H = 5, 2, 3, 4
    p, _, h0, c0, _ = problem(rng, "lstm", T, B, D, H, np.float64, True)
    x = rng.integers(0, D, (T, B))
    x[3:, 1] = -1
    out = forward(backend, "lstm", "", x, h0, c0, p, lengths=[5, 3])
    assert np.isfinite(out.y).all()
    x[2, 1] = D
    with pytest.raises(ValueError, match=r"token ids in \[0, D\) = \[0, 3\) .*found 3"):
        forward(backend, "lstm", "", x, h0, c0, p, lengths=[5, 3])
