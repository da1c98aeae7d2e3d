"""Properties of the compiled core itself: the vector transcendentals and the memory
of inference mode."""

import tracemalloc

import numpy as np
import pytest

import fastgates
from conftest import GATES
from fastgates import _recurrence

from _helpers import activations

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_accurate_to_a_few_ulps(dtype):
    activations.check_accuracy(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_saturate_exactly_and_propagate_nan(dtype):
    activations.check_saturation_and_nan(dtype)


@pytest.mark.parametrize("cell", list(GATES))
def test_inference_memory_does_not_grow_with_T(cell):
    """training=False keeps no per-step activations: beyond y, peak memory is
    O(max(1024, B)*G*H) (a chunk of at least 1024 rows of input projections)."""
    B, D, H = 4, 8, 64
    G = GATES[cell]
    rng = np.random.default_rng(0)
    w = [rng.standard_normal(s) * 0.1 for s in ((G * H, D), (G * H, H), (G * H,), (G * H,))]
    fwd = getattr(fastgates, f"{cell}_forward")

    def peak_beyond_y(T):
        x = rng.integers(0, D, (T, B))
        args = (x, None, None, *w) if cell == "lstm" else (x, None, *w)
        tracemalloc.start()
        try:
            fwd(*args, training=False, n_threads=1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak - T * B * H * 8

    short, long = peak_beyond_y(2000), peak_beyond_y(20000)
    assert long - short < 64 * 1024, (short, long)
    # a training cache at T=20000 would hold T*B*(G+3)*H*8 bytes (e.g. 286 MB for the lstm);
    # inference keeps a fixed chunk of 1024 rows of input projections (G*H) and cell
    # states (H), plus a few (B, H) states
    assert long < 1024 * (G + 1) * H * 8 + 512 * 1024, long


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_states_the_threads_write_start_on_a_cache_line(dtype):
    """The (B, H) states a step's threads update at their units -- the inference c state
    (returned as c_n) and BPTT's dh, dc (returned as dh0, dc0) -- are fresh 64-byte aligned
    arrays even where NumPy's own small arrays are not, so no cache line holds two
    threads' units."""
    rng = np.random.default_rng(3)
    T, B, D, H = 3, 1, 5, 100
    x = rng.standard_normal((T, B, D)).astype(dtype)
    w_ih = (0.1 * rng.standard_normal((4 * H, D))).astype(dtype)
    w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(dtype)
    b = np.zeros(4 * H, dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype)
    c0_given = c0.copy()
    for _ in range(4):                  # NumPy's small arrays land at various offsets
        _, _, c_n, _ = fastgates.lstm_forward(x, None, c0, w_ih, w_hh, b, b, training=False,
                                              n_threads=2)
        assert c_n.ctypes.data % 64 == 0
        y, h_n, c_n, cache = fastgates.lstm_forward(x, None, c0, w_ih, w_hh, b, b, n_threads=2)
        g = fastgates.lstm_backward(np.ones_like(y), h_n.copy(), c_n.copy(), cache, n_threads=2)
        assert g.dh0.ctypes.data % 64 == 0 and g.dc0.ctypes.data % 64 == 0
    np.testing.assert_array_equal(c0, c0_given)     # updated in a copy, never in the caller's


def test_small_workspace_arrays_never_enter_the_pool():
    """Arrays just under the pool's minimum come from the allocator, aligned, and go back
    to it: kept in the pool under their own size, no later call would ask for them and the
    pool would grow with every call (a GRU inference's (B, H) scratch of 16,360 bytes)."""
    x = np.ones((1, 4090, 1), np.float32)
    w = np.ones((3, 1), np.float32)
    b = np.zeros(3, np.float32)
    fastgates.gru_forward(x, None, w, w, b, b, training=False, n_threads=1)
    held = _recurrence.pool_info()
    for _ in range(5):
        fastgates.gru_forward(x, None, w, w, b, b, training=False, n_threads=1)
    assert _recurrence.pool_info() == held


def _lean_cases():
    """(cell name, x, state, params, training, lengths, accepted): common calls the compiled
    check must accept (accepted True) and calls it must hand to the full checks (False: a
    subclass, a strided array, a foreign dtype or byte order, a wrong shape, an extra
    parameter, a flag that is not a bool, token ids)."""
    rng = np.random.default_rng(3)
    T, B, D, H = 3, 2, 5, 4
    for name in ("rnn_tanh", "rnn_relu", "gru", "gru_rb", "lstm", "lnlstm", "lngru"):
        cell = fastgates.cells.get(name)
        for dt in (np.float32, np.float64):
            shapes = fastgates.cells.param_shapes(cell, D, H)
            params = {st: rng.standard_normal(s).astype(dt) for st, s in shapes.items()}
            x = rng.standard_normal((T, B, D)).astype(dt)
            h0 = rng.standard_normal((B, H)).astype(dt)
            state = {"h": h0, "c": h0.copy()} if "c" in cell.states else {"h": h0}
            yield name, x, state, params, True, None, True
            yield name, x, {}, params, False, None, True
            yield name, x, state, params, True, np.array([3, 1]), True
            yield name, x.view(), {"h": None}, params, False, [2, 2], True
            yield name, x[:, :, ::-1].copy()[:, :, ::-1], state, params, True, None, False
            yield name, x.astype(x.dtype.newbyteorder()), state, params, True, None, False
            yield name, x.astype(np.float16), state, params, True, None, False
            yield name, x[:, :1], state, params, True, None, False       # B mismatch
            yield name, x, state, params, 1, None, False                 # not a bool
            narrow = dict(params, weight_hh=params["weight_hh"][:, :-1].copy())
            yield name, x, state, narrow, True, None, False
            yield name, x, state, dict(params, bias_ih=params["bias_ih"].astype(np.float16)), \
                True, None, False
            if name == "lstm":
                peep = dict(params, weight_peep=np.zeros((3, H), dt))
                yield name, x, state, peep, True, None, False
            sub = dict(params, weight_ih=params["weight_ih"].view(type("Sub", (np.ndarray,), {})))
            yield name, x, state, sub, True, None, False
            yield name, rng.integers(0, D, (T, B)), state, params, True, None, False  # token ids


@pytest.mark.parametrize("case", list(_lean_cases()), ids=lambda c: c[0])
def test_compiled_common_call_check_agrees_with_the_full_checks(case):
    """_recurrence.lean_forward (the compiled check of the common call) returns exactly
    what _checks.check_forward returns -- the same arrays, not copies -- or None, and
    then the full checks normalise or raise.  It never accepts what they would change."""
    from fastgates import _checks
    name, x, state, params, training, lengths, accepted = case
    cell = fastgates.cells.get(name)
    lean = _recurrence.lean_forward(cell, x, state, params, training, lengths)
    assert (lean is not None) == accepted
    try:
        full = _checks.check_forward(cell, x, state, params, training=training, lengths=lengths)
    except (TypeError, ValueError):
        assert not accepted, "the full checks refuse a call the compiled check accepts"
        return
    if lean is None:
        return
    assert type(lean) is type(full) and lean._fields == full._fields
    for field, a, b in zip(full._fields, lean, full):
        if field == "packing":
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a.order, b.order)
                np.testing.assert_array_equal(a.batch_sizes, b.batch_sizes)
        elif field == "lengths":
            assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
        elif field == "params":
            assert (a is None) == (b is None)
            if a is not None:
                assert a.keys() == b.keys() and all(a[k] is b[k] for k in a)
        elif isinstance(b, np.ndarray) or b is None:
            assert a is b, field          # the caller's own arrays, never copies
        else:
            assert a == b and type(a) is type(b), (field, a, b)


def _lean_backward_cases():
    """(cell name, forward's lengths/projection, dy, dh_n, dc_n, accepted)."""
    rng = np.random.default_rng(4)
    T, B, D, H, P = 3, 2, 5, 6, 4
    for name in ("rnn_tanh", "gru", "gru_rb", "lstm", "lnlstm"):
        cell = fastgates.cells.get(name)
        for dt in (np.float32, np.float64):
            params = {st: rng.standard_normal(s).astype(dt)
                      for st, s in fastgates.cells.param_shapes(cell, D, H).items()}
            x = rng.standard_normal((T, B, D)).astype(dt)
            plain = not fastgates.cells.param_shapes(cell, D, H).keys() - {
                "weight_ih", "weight_hh", "bias_ih", "bias_hh"}
            for lengths in (None, [3, 1]):
                _, _, cache = fastgates.cell_forward(cell, x, {}, params, lengths=lengths)
                dy = rng.standard_normal((T, B, H)).astype(dt)
                dh = rng.standard_normal((B, H)).astype(dt)
                dc = dh.copy() if "c" in cell.states else None
                yield name, cache, dy, dh, dc, plain
                yield name, cache, None, None, None, plain
                yield name, cache, dy[:, :, ::-1], dh, dc, False           # strided
                yield name, cache, dy.astype(np.float16), dh, dc, False
                yield name, cache, dy[:, :1].copy(), dh, dc, False         # wrong shape
                yield name, cache, dy, dh.view(type("Sub", (np.ndarray,), {})), dc, False
                yield name, cache, dy.tolist(), dh, dc, False
                yield name, None, dy, dh, dc, False
            if name == "lstm":
                w_hr = rng.standard_normal((P, H)).astype(dt)
                proj = dict(params, weight_hh=rng.standard_normal((4 * H, P)).astype(dt),
                            weight_hr=w_hr)
                _, _, cache = fastgates.cell_forward(cell, x, {}, proj)
                yield name, cache, rng.standard_normal((T, B, P)).astype(dt), None, None, False


@pytest.mark.parametrize("case", list(_lean_backward_cases()), ids=lambda c: c[0])
def test_compiled_backward_check_agrees_with_the_full_checks(case):
    """_recurrence.lean_backward returns exactly what _checks.check_backward returns (the
    caller's arrays) or None, and then the full checks normalise or raise."""
    from fastgates import _checks
    name, cache, dy, dh, dc, accepted = case
    kernel = fastgates.cells.get(name).kernel
    lean = _recurrence.lean_backward(kernel, dy, dh, dc, cache)
    assert (lean is not None) == accepted
    try:
        full = _checks.check_backward(kernel, dy, dh, dc, cache)
    except (TypeError, ValueError):
        assert not accepted, "the full checks refuse a call the compiled check accepts"
        return
    if lean is not None:
        assert type(lean) is type(full)
        for field, a, b in zip(full._fields, lean, full):
            if isinstance(b, np.ndarray) or b is None:
                assert a is b, field
            else:
                assert a == b and type(a) is type(b), (field, a, b)
