"""Concurrency: the GIL is released in the kernels, Python threads get exactly the
single-threaded results, and kernels in child processes (spawn, forkserver, fork after
the parent ran OpenMP threads) work instead of hanging.  Every child runs under a timeout.
"""

import json
import linecache
import os
import sys
import threading

import numpy as np
import pytest

import fastgates
from _helpers.subproc import run_python
from conftest import CELLS, assert_equal, backward, forward, make_params, make_x


def _problem(seed, cell, T=30, B=4, D=6, H=24, dtype=np.float64, tokens=False):
    rng = np.random.default_rng(seed)
    p = make_params(rng, cell, D, H, dtype)
    x = make_x(rng, T, B, D, dtype, tokens)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    return p, x, h0, c0, dy


def _run(cell, variant, prob, n_threads):
    p, x, h0, c0, dy = prob
    out = forward(fastgates, cell, variant, x, h0, c0, p, n_threads=n_threads)
    g = backward(fastgates, cell, dy, None, None, out.cache, n_threads=n_threads)
    return [out.y, out.h_n] + [v for v in g.values() if v is not None]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_four_python_threads_get_the_single_threaded_results(n_threads):
    """Four threads, each its own cell and data, 10 rounds at once: bit-identical results."""
    jobs = [(CELLS[k % len(CELLS)], _problem(100 + k, CELLS[k % len(CELLS)][0], tokens=k == 3))
            for k in range(4)]
    expected = [_run(cell, variant, prob, n_threads) for (cell, variant), prob in jobs]
    start = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def worker(k):
        (cell, variant), prob = jobs[k]
        try:
            start.wait()
            results[k] = [_run(cell, variant, prob, n_threads) for _ in range(10)]
        except Exception as exc:  # reported below with the thread's case
            errors.append((k, repr(exc)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a kernel thread did not finish (deadlock?)"
    assert not errors, errors
    for k, rounds in enumerate(results):
        for r, arrays in enumerate(rounds):
            for i, (got, want) in enumerate(zip(arrays, expected[k])):
                assert_equal(got, want, f"thread {k} ({jobs[k][0]}) round {r} output {i}")


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_the_gil_is_released_inside_the_kernels(phase):
    """While a thread is inside the compiled call, another thread runs Python.

    The switch interval is raised to 100 s, so the only way the main thread can run
    while the worker is busy is the worker releasing the GIL itself.  The main thread
    looks at the worker's stack each time it runs; it must see the worker inside the
    compiled call (its top Python frame is the line that calls ``_recurrence``).
    """
    T, B, D, H = 3000, 8, 16, 64
    p, x, h0, c0, dy = _problem(1, "lstm", T, B, D, H)
    cache = None
    if phase == "backward":
        cache = fastgates.lstm_forward(x, h0, c0, *p, n_threads=1)[-1]
    entered, done = threading.Event(), threading.Event()

    def worker():
        entered.set()
        if phase == "forward":
            fastgates.lstm_forward(x, h0, c0, *p, n_threads=1)
        else:
            fastgates.lstm_backward(dy, None, None, cache, n_threads=1)
        done.set()

    seen_inside = 0
    old = sys.getswitchinterval()
    t = threading.Thread(target=worker)
    sys.setswitchinterval(100.0)
    try:
        t.start()
        entered.wait()
        while not done.is_set():
            frame = sys._current_frames().get(t.ident)
            if frame is not None and not done.is_set():
                line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
                in_fast = os.path.basename(frame.f_code.co_filename) == "_fast.py"
                if in_fast and "_recurrence." in line:
                    seen_inside += 1
            done.wait(0.002)   # blocks: lets the worker take the GIL back
    finally:
        sys.setswitchinterval(old)
        t.join(60)
    assert seen_inside > 0, "the main thread never ran while the worker was in compiled code"


def _mp_check(method):
    r = run_python(["-m", "_helpers.mp_check", method], timeout=180)
    assert r.returncode == 0 and not r.timed_out, r.report()
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_kernels_in_spawned_children(method):
    res = _mp_check(method)
    assert res["child"] != "hang", f"{method} child hung"
    assert res["exitcode"] == 0, res
    for n, got in res["child"]["kernel"].items():
        assert got == res["parent"]["kernel"], f"{method} child, n_threads={n}: {got}"
    assert res["child"]["matmul"] == pytest.approx(res["parent"]["matmul"], rel=1e-12)
    assert res["child"]["generate"] == res["parent"]["generate"]
    assert res["child"]["runner"] == res["parent"]["runner"]
    assert not [w for w in res["child"]["warnings"] if "fastgates" in w], res["child"]["warnings"]


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_fork_after_openmp_runs_single_threaded_instead_of_hanging():
    """GNU libgomp's pool does not survive fork: without fastgates/_fork.py the child hangs
    in its first multi-threaded kernel.  With it, the child runs on one thread (identical
    results, one RuntimeWarning that points to spawn/forkserver); OpenBLAS works too."""
    res = _mp_check("fork")
    assert res["child"] != "hang", "the forked child hung in a kernel call"
    assert res["exitcode"] == 0, res
    for n, got in res["child"]["kernel"].items():
        assert got == res["parent"]["kernel"], f"fork child, n_threads={n}: {got}"
    assert res["child"]["matmul"] == pytest.approx(res["parent"]["matmul"], rel=1e-12)
    assert res["child"]["generate"] == res["parent"]["generate"], "generation in the fork child"
    assert res["child"]["runner"] == res["parent"]["runner"], "a frozen runner in the fork child"
    if fastgates._recurrence.have_openmp() and fastgates._recurrence.max_threads() > 1:
        ours = [w for w in res["child"]["warnings"] if "forked" in w]
        assert len(ours) == 1 and "spawn" in ours[0], res["child"]["warnings"]
