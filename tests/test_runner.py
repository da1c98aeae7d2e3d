"""Frozen inference runners (``layer.freeze()``, fastgates.Runner).

A runner must give the results of ``layer.eval(); layer.forward(...)`` bit for bit (and
so the reference's, to the per-dtype tolerance) for every cell, stacked, bidirectional,
batch_first, ragged, token ids, float32/float64; ``step`` repeated T times must equal one
call over T steps bit for bit.  Also: snapshot semantics, fresh results, errors that name
the argument, concurrent calls, thread-count independence.  The fork guard is covered in
test_concurrency.py (tests/_helpers/mp_check.py runs a runner made by the parent).
"""

import itertools
import threading

import numpy as np
import pytest

import fastgates
from fastgates import _recurrence, layers
from conftest import KIND_ARGS, KIND_IDS, assert_close, case_id

T, B, D, H = 7, 3, 5, 9


def tup(s):
    return s if isinstance(s, tuple) else (s,)


def random_state(rng, layer, B):
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), B, layer.hidden_size)
    s = tuple((0.5 * rng.standard_normal(shape)).astype(layer.dtype)
              for _ in layer._spec.celldef.states)
    return s if len(s) > 1 else s[0]


def make_x(rng, layer, tokens, T=T, B=B):
    if tokens:
        x = rng.integers(0, layer.input_size, (T, B))
    else:
        x = rng.standard_normal((T, B, layer.input_size)).astype(layer.dtype)
    return np.ascontiguousarray(x.swapaxes(0, 1)) if layer.batch_first else x


def assert_same(a, b, what):
    for u, v in zip(tup(a), tup(b)):
        assert u.shape == v.shape and u.dtype == v.dtype, what
        assert np.array_equal(u, v), f"{what}: max |diff| {np.abs(u - v).max()}"


@pytest.mark.parametrize("cls, kw", KIND_ARGS, ids=KIND_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_runner_equals_the_layer_in_eval_bit_for_bit(cls, kw, dtype, rng):
    for L, bidir, bf, tokens, ragged, given in itertools.product(
            (1, 2), (False, True), (False, True), (False, True), (False, True), (False, True)):
        what = case_id(cls=cls.__name__, kw=kw, dtype=dtype, L=L, bidir=bidir, bf=bf,
                       tokens=tokens, ragged=ragged, state=given)
        layer = cls(D, H, num_layers=L, bidirectional=bidir, batch_first=bf, dtype=dtype,
                    seed=3, **kw)
        runner = layer.freeze()
        x = make_x(rng, layer, tokens)
        lengths = np.array([T, 0, 3]) if ragged else None
        state = random_state(rng, layer, B) if given else None
        y, s = runner(x, state, lengths)
        y_ref, s_ref = layer.eval().forward(x, state, lengths)
        assert_same(y, y_ref, what + " y")
        assert_same(s, s_ref, what + " state")


@pytest.mark.parametrize("cls, kw", KIND_ARGS, ids=KIND_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_runner_agrees_with_the_reference(cls, kw, dtype, rng):
    """The packed path against the NumPy stack (ragged, bidirectional, stacked)."""
    layer = cls(D, H, num_layers=2, bidirectional=True, dtype=dtype, seed=5, **kw)
    x = make_x(rng, layer, False)
    lengths = np.array([T, 2, 5])
    state = random_state(rng, layer, B)
    y, s = layer.freeze()(x, state, lengths)
    names = layer._spec.celldef.states
    y_ref, s_ref, _ = layers.stack_forward(layer._spec, layer._weights(), x,
                                           dict(zip(names, tup(state))), lengths=lengths,
                                           training=False, backend="reference")
    what = case_id(cls=cls.__name__, kw=kw, dtype=dtype)
    assert_close(y, y_ref, dtype, what + " y")
    for a, name in zip(tup(s), names):
        assert_close(a, s_ref[name], dtype, f"{what} {name}")


@pytest.mark.parametrize("cls, kw", KIND_ARGS, ids=KIND_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float", "tokens"])
def test_steps_equal_one_call_bit_for_bit(cls, kw, dtype, tokens, rng):
    layer = cls(D, H, num_layers=3, dtype=dtype, seed=7, **kw)
    runner = layer.freeze()
    x = make_x(rng, layer, tokens)
    for state in (None, random_state(rng, layer, B)):
        y, s = runner(x, state)
        ys, st = [], state
        for t in range(T):
            y_t, st = runner.step(x[t], st)
            ys.append(y_t)
        what = case_id(cls=cls.__name__, kw=kw, dtype=dtype, tokens=tokens,
                       state=state is not None)
        assert_same(np.stack(ys), y, what + " y")
        assert_same(st, s, what + " state")


def test_every_layer_class_of_the_table_freezes(rng):
    """freeze() lives on the shared layer machinery: every class the table generates has it."""
    for name, cls in layers.CLASSES.items():
        layer = cls(4, 6, seed=0)
        runner = layer.freeze()
        assert isinstance(runner, fastgates.Runner), name
        x = rng.standard_normal((3, 2, 4)).astype(np.float32)
        assert_same(runner(x)[0], layer.eval().forward(x)[0], name)


def test_runner_is_a_snapshot(rng):
    layer = fastgates.LSTM(D, H, num_layers=2, seed=1)
    x = make_x(rng, layer, False)
    runner = layer.freeze()
    y0, s0 = runner(x)
    y0_step, _ = runner.step(x[0])
    for p in layer.parameters().values():
        p += 1.0                                    # in place: the live parameters
    layer.batch_first = True
    layer.n_threads = 1
    y1, s1 = runner(x)
    assert_same(y1, y0, "runner after the layer's parameters changed")
    assert_same(runner.step(x[0])[0], y0_step, "step after the layer's parameters changed")
    assert not runner.batch_first and runner.n_threads is None
    assert not np.array_equal(layer.eval().forward(x.swapaxes(0, 1))[0].swapaxes(0, 1), y0)
    assert_same(layer.freeze()(x.swapaxes(0, 1))[0], layer.forward(x.swapaxes(0, 1))[0],
                "a new freeze takes the changes")


def test_results_are_fresh_and_inputs_unmodified(rng):
    layer = fastgates.LSTM(D, H, num_layers=2, seed=2)
    runner = layer.freeze()
    x = make_x(rng, layer, False)
    state = random_state(rng, layer, B)
    copies = (x.copy(),) + tuple(a.copy() for a in state)
    y, (h, c) = runner(x, state)
    y_t, (h1, c1) = runner.step(x[0], state)
    for a, b in zip((x,) + state, copies):
        assert np.array_equal(a, b), "an input was modified"
    assert not np.shares_memory(y_t, h1), "y_t must not alias the returned state"
    y_t_copy = y_t.copy()
    y_t[...] = 7
    h[...] = 7
    assert_same(runner.step(x[0], state)[0], y_t_copy, "results are the caller's")
    assert_same(runner(x, state)[0], y, "results are the caller's")


@pytest.mark.parametrize("cls, kw", KIND_ARGS, ids=KIND_IDS)
def test_thread_counts_give_the_same_bits(cls, kw, rng):
    layer = cls(40, 256, num_layers=2, seed=4, **kw)      # large enough for 2 threads
    x = rng.standard_normal((5, 2, 40)).astype(np.float32)
    results = []
    for n in (1, 2, 3, None):
        layer.n_threads = n
        runner = layer.freeze()
        results.append((runner(x), runner.step(x[0])))
    for got in results[1:]:
        assert_same(got[0][0], results[0][0][0], f"{cls.__name__} call")
        assert_same(got[1][1], results[0][1][1], f"{cls.__name__} step")


def test_four_threads_calling_one_runner_get_the_serial_results(rng):
    layer = fastgates.GRU(16, 64, num_layers=2, seed=6, n_threads=2)
    runner = layer.freeze()
    xs = [rng.standard_normal((9, 3, 16)).astype(np.float32) for _ in range(8)]
    serial = [(runner(x), [runner.step(x[t]) for t in range(3)]) for x in xs]
    got = [None] * len(xs)
    errors = []

    def work(i):
        try:
            for _ in range(5):
                got[i] = (runner(xs[i]), [runner.step(xs[i][t]) for t in range(3)])
        except Exception as exc:        # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads[:4]:
        t.start()
    for t in threads[:4]:
        t.join()
    for t in threads[4:]:
        t.start()
    for t in threads[4:]:
        t.join()
    assert not errors, errors
    for i, (want, have) in enumerate(zip(serial, got)):
        assert_same(have[0][0], want[0][0], f"sequence {i}")
        for (a, _), (b, _) in zip(have[1], want[1]):
            assert_same(a, b, f"sequence {i} step")


def test_bidirectional_step_refuses():
    runner = fastgates.GRU(3, 4, bidirectional=True, seed=0).freeze()
    with pytest.raises(ValueError, match="unidirectional"):
        runner.step(np.zeros((1, 3), np.float32))


@pytest.mark.parametrize("call, exc, match", [
    (lambda r: r(np.zeros((2, 1, 4), np.float32)), ValueError, "x has 4 features"),
    (lambda r: r(np.zeros((2, 1, 3), np.float64)), TypeError, "x has dtype float64"),
    (lambda r: r(np.zeros((2, 3), np.float32)), ValueError, "x must be 3-D"),
    (lambda r: r(np.zeros((2, 1, 3), bool)), TypeError, "x must be a float array"),
    (lambda r: r(np.array([[0, 3]])), ValueError, r"token ids in \[0, input_size\)"),
    (lambda r: r(np.zeros((2, 1, 3), np.float32), (np.zeros((1, 1, 4), np.float32), None)),
     ValueError, r"state\[0\] \(h\)"),
    (lambda r: r(np.zeros((2, 1, 3), np.float32), np.zeros((1, 1, 5), np.float32)), TypeError,
     "must be a pair"),
    (lambda r: r(np.zeros((2, 2, 3), np.float32), None, [2]), ValueError, "lengths"),
    (lambda r: r(np.zeros((2, 2, 3), np.float32), None, [3, 1]), ValueError, "lengths"),
    (lambda r: r.step(np.zeros((1, 4), np.float32)), ValueError, "x_t must have shape"),
    (lambda r: r.step(np.zeros((1, 3), np.float64)), TypeError, "x_t has dtype"),
    (lambda r: r.step(np.zeros((1, 3), np.complex64)), TypeError, "x_t must be a float"),
    (lambda r: r.step(np.array([0, 3])), ValueError, r"x_t holds token ids in \[0, input_size\)"),
    (lambda r: r.step(np.array([[0]])), ValueError, "x_t of token ids must be 1-D"),
    (lambda r: r.step(np.zeros((2, 3), np.float32), (None, np.zeros((1, 2, 4), np.float32))),
     ValueError, r"state\[1\] \(c\)"),
    (lambda r: r.step(np.zeros((2, 3), np.float32), "h"), TypeError, "must be a pair"),
], ids=["x-features", "x-dtype", "x-ndim", "x-bool", "x-token-range", "state-h-shape",
        "state-not-pair", "lengths-shape", "lengths-range", "step-x-shape", "step-x-dtype",
        "step-x-kind", "step-token-range", "step-token-ndim", "step-state-c-shape",
        "step-state-type"])
def test_bad_input_raises_naming_the_argument(call, exc, match):
    runner = fastgates.LSTM(3, 5, seed=0).freeze()
    with pytest.raises(exc, match=match):
        call(runner)


def test_ragged_padding_may_hold_any_token(rng):
    """Only the valid steps' ids are read and checked (as in the kernels)."""
    layer = fastgates.GRU(4, 6, seed=0)
    x = rng.integers(0, 4, (5, 2))
    x[3:, 1] = -1
    lengths = np.array([5, 3])
    assert_same(layer.freeze()(x, None, lengths)[0], layer.eval().forward(x, None, lengths)[0],
                "ragged tokens")


def test_repr_and_properties():
    runner = fastgates.LSTM(3, 5, num_layers=2, batch_first=True, dtype=np.float64,
                            seed=0).freeze()
    assert runner.cell == "lstm" and runner.dtype == np.float64
    assert (runner.input_size, runner.hidden_size, runner.num_layers) == (3, 5, 2)
    assert not runner.bidirectional and runner.batch_first
    assert runner.isa == _recurrence.isa_active()
    r = repr(runner)
    assert "LSTM(3, 5, num_layers=2, batch_first=True)" in r and "float64" in r


def test_step_plan_matches_the_cores_step(rng):
    """The pointer tables gathered once give _recurrence.step's results."""
    layer = fastgates.LSTM(6, 10, num_layers=2, seed=1)
    packed = layer.freeze()._packed
    plan = _recurrence.StepPlan(packed)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    h0 = rng.standard_normal((2, 4, 10)).astype(np.float32)
    c0 = rng.standard_normal((2, 4, 10)).astype(np.float32)
    for nt in (1, 2):
        assert_same(plan.run(x, h0, c0, nt), _recurrence.step(packed, x, h0, c0, nt),
                    f"nt={nt}")


def test_the_compiled_step_takes_only_the_common_call(rng):
    """step()'s compiled fast path (StepPlan.stream) runs the plain call and declines the
    rest, which the checked path then takes: the same bits either way."""
    layer = fastgates.LSTM(6, 10, num_layers=2, seed=1)
    runner = layer.freeze()
    plan = runner._plan
    x = rng.standard_normal((4, 6)).astype(np.float32)
    h, c = (rng.standard_normal((2, 4, 10)).astype(np.float32) for _ in range(2))
    y, (h1, c1) = plan.stream(x, (h, c))
    assert_same(plan.run(x, h, c, 1), (h1, c1), "stream vs run")
    assert_same(y, h1[-1], "y is the top layer's h")
    assert y.base is None and not np.shares_memory(y, h1), "y is a fresh array"
    declined = {
        "x strided": (np.repeat(x, 2, axis=1)[:, ::2], (h, c)),
        "state a list": (x, [h, c]),
        "state a strided view": (x, (np.repeat(h, 2, axis=2)[..., ::2], c)),
        "ids out of range": (np.array([0, 6, 1, 2]), (h, c)),
        "ids of int32": (np.array([0, 5, 1, 2], np.int32), (h, c)),
    }
    for what, (xx, state) in declined.items():
        if what != "ids out of range":
            assert plan.stream(xx, state) is None, what
            got = runner.step(xx, state)
            want = runner.step(np.ascontiguousarray(np.asarray(xx) if "ids" not in what
                                                    else np.asarray(xx, np.int64)),
                               tuple(np.ascontiguousarray(s) for s in state))
            assert_same(_flat(got), _flat(want), what)
        else:
            assert plan.stream(xx, state) is None, what
            with pytest.raises(ValueError, match="x_t holds token ids"):
                runner.step(xx, state)
    y0, s0 = plan.stream(np.array([0, 5, 1, 2]), None)         # ids and zero state
    assert_same(_flat((y0, s0)), _flat(runner.step(np.array([0, 5, 1, 2]),
                                                   (np.zeros_like(h), np.zeros_like(c)))), "ids")


def _flat(out):
    """(y, (h, c)) -> (y, h, c)"""
    return (out[0], *out[1])


def test_the_compiled_call_takes_only_the_common_call(rng):
    """runner(x)'s compiled fast path (StepPlan.call) runs the plain sequence call and
    declines the rest, which the checked path then takes: the same bits either way."""
    layer = fastgates.GRU(6, 10, num_layers=2, seed=2)
    runner = layer.freeze()
    plan = runner._plan
    x = rng.standard_normal((5, 3, 6)).astype(np.float32)
    h = rng.standard_normal((2, 3, 10)).astype(np.float32)
    y, h1 = plan.call(x, h)
    want = layer.eval().forward(x, h)
    assert_same((y, h1), want, "call vs the layer")
    declined = {"x strided": (np.repeat(x, 2, axis=2)[..., ::2], h),
                "state strided": (x, np.repeat(h, 2, axis=2)[..., ::2]),
                "ids": (rng.integers(0, 6, (5, 3)), h),
                "empty batch": (x[:, :0], h[:, :0])}
    for what, (xx, state) in declined.items():
        assert plan.call(xx, state) is None, what
        assert_same(runner(xx, state), layer.eval().forward(xx, state), what)
