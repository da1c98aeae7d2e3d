"""Thread control: per-call n_threads, OMP_NUM_THREADS and threadpoolctl reach the kernels.

The kernels' results are bit-identical for every thread count, so the thread count is
observed where it shows: the count the compiled core resolves (what it passes to
``omp parallel num_threads``) and the OS threads the OpenMP runtime starts for the first
parallel region of a fresh process (``/proc/self/task``, Linux).  Each case runs in its
own subprocess, outside the checkout, so that the runtime's thread pool starts empty.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from threadpoolctl import threadpool_limits

import fastgates
from fastgates import _recurrence, _threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastgates.__file__)))
OUTSIDE = os.path.dirname(os.path.abspath(os.sep))

needs_openmp = pytest.mark.skipif(not _recurrence.have_openmp(), reason="serial build (no OpenMP)")
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                                reason="counts OS threads through /proc/self/task (Linux)")

# Prints the thread count the core resolves for the call and the OS threads the call started.
PROBE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import fastgates
    from fastgates import _recurrence
    from threadpoolctl import threadpool_limits

    def tasks():
        return len(os.listdir("/proc/self/task"))

    how, n = sys.argv[1], (int(sys.argv[2]) if sys.argv[2] != "None" else None)
    H, D = int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((3, 4, D)), None, rng.standard_normal((H, D)),
            rng.standard_normal((H, H)), np.zeros(H), np.zeros(H))
    before = tasks()
    if how == "limits":
        with threadpool_limits(limits=n, user_api="openmp"):
            resolved = _recurrence.resolve_threads(None)
            fastgates.rnn_forward(*args)
    else:
        resolved = _recurrence.resolve_threads(n)
        fastgates.rnn_forward(*args, n_threads=n)
    print(json.dumps({"resolved": resolved, "started": tasks() - before}))
""")


def probe(how, n, H=256, D=256, **env):
    """The default size is large enough for the small-work policy to allow every count asked
    for (weights of 1 MiB: up to 5 threads; fastgates._threads.small_work_threads)."""
    # OpenBLAS at one thread: BLAS threads must not blur the count of OpenMP threads
    full_env = dict(os.environ, OPENBLAS_NUM_THREADS="1",
                    PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.pop("OMP_NUM_THREADS", None)
    full_env.update(env)
    r = subprocess.run([sys.executable, "-c", PROBE, how, str(n), str(H), str(D)],
                       capture_output=True, text=True,
                       timeout=120, cwd=OUTSIDE, env=full_env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


# 3 threads on purpose: more than the cores of a small CI machine, so the counts are not
# what the OpenMP default would give anyway.
@needs_openmp
@needs_proc
@pytest.mark.parametrize("how, n, env, threads", [
    ("call", 1, {}, 1),
    ("call", 3, {}, 3),
    ("call", None, {"OMP_NUM_THREADS": "1"}, 1),
    ("call", None, {"OMP_NUM_THREADS": "3"}, 3),
    ("limits", 1, {}, 1),
    ("limits", 3, {}, 3),
    ("call", 3, {"OMP_NUM_THREADS": "1"}, 3),   # the per-call count wins
], ids=["n_threads=1", "n_threads=3", "OMP_NUM_THREADS=1", "OMP_NUM_THREADS=3",
        "threadpool_limits=1", "threadpool_limits=3", "n_threads-beats-env"])
def test_thread_count_reaches_the_kernels(how, n, env, threads):
    got = probe(how, n, **env)
    case = f"{how} n={n} env={env}"
    assert got["resolved"] == threads, f"{case}: core resolved {got['resolved']} threads"
    # the OpenMP runtime starts threads - 1 workers; the calling thread is the first
    assert got["started"] == threads - 1, f"{case}: the call started {got['started']} OS threads"


@needs_openmp
@needs_proc
def test_small_work_runs_on_one_thread():
    """A step whose weights are far below SMALL_STEP_BYTES does not pay for a parallel region:
    the call asked for 3 threads starts none (the results are the same for any count)."""
    assert _threads.small_work_threads(3, 1, 64, 8, 8) == 1
    got = probe("call", 3, H=64, D=8)
    assert got["resolved"] == 3 and got["started"] == 0, got


def test_small_work_policy_caps_by_weight_bytes():
    S = _threads.SMALL_STEP_BYTES
    H = 256                                  # one gate: weights H * (D + H) * itemsize
    assert _threads.small_work_threads(2, 1, 128, 40, 4) == 1        # 84 KiB of weights
    assert _threads.small_work_threads(2, 4, H, 40, 4) == 2          # 1.2 MB: the LSTM stream step
    assert _threads.small_work_threads(8, 4, H, 40, 4) == 1 + 4 * H * (40 + H) * 4 // S
    assert _threads.small_work_threads(1, 4, 1024, 1024, 8) == 1     # never more than asked
    # a stack: the average layer counts (layer 0 reads D, the others H)
    assert _threads.small_work_threads(2, 4, 128, 1, 4, L=3) == \
        min(2, 1 + (4 * 128 * 129 + 2 * 4 * 128 * 256) * 4 // 3 // S)


def test_small_work_policy_pays_sooner_for_sequences():
    """A call of many steps starts its region once: the tiny LSTM (264 KB of weights), GRU
    (198 KB) and RNN (66 KB) run on two threads over a sequence, the GRU not for a single
    step; an RNN below 64 KiB on one."""
    step, seq = _threads.unit_for_steps(1), _threads.unit_for_steps(25)
    assert (step, seq) == (_threads.SMALL_STEP_BYTES, _threads.SMALL_SEQ_BYTES)
    assert seq < step and _threads.unit_for_steps(_threads.SEQ_STEPS - 1) == step
    assert _threads.small_work_threads(2, 3, 100, 65, 4, unit=step) == 1
    assert _threads.small_work_threads(2, 3, 100, 65, 4, unit=seq) == 2
    assert _threads.small_work_threads(2, 4, 100, 65, 4, unit=seq) == 2
    assert _threads.small_work_threads(2, 1, 100, 65, 4, unit=seq) == 2     # 66 KB: two
    assert _threads.small_work_threads(2, 1, 100, 50, 4, unit=seq) == 1     # 60 KB: one


@needs_openmp
def test_threadpoolctl_controls_our_openmp_runtime():
    path = _threads.openmp_runtime_path()
    if path is None:
        pytest.skip("the runtime's path cannot be told on this platform")
    assert os.path.exists(path)
    found = [c for c, ours in _threads.openmp_controllers() if ours]
    assert found, (f"threadpoolctl does not see the kernels' OpenMP runtime {path}; it sees "
                   f"{[c.filepath for c, _ in _threads.openmp_controllers()]}")
    start = _recurrence.resolve_threads(None)
    for n in (1, 3):
        with threadpool_limits(limits=n, user_api="openmp"):
            assert _recurrence.resolve_threads(None) == n
            assert found[0].get_num_threads() == n
    assert _recurrence.resolve_threads(None) == start   # restored on exit


@needs_openmp
def test_negative_n_threads_counts_back_from_the_default():
    top = _recurrence.resolve_threads(None)
    with threadpool_limits(limits=3, user_api="openmp"):
        assert _recurrence.resolve_threads(-1) == 3
        assert _recurrence.resolve_threads(-2) == 2
        assert _recurrence.resolve_threads(-10) == 1
    assert _recurrence.resolve_threads(-1) == top


@pytest.mark.skipif(_recurrence.have_openmp(), reason="OpenMP build")
def test_serial_build_runs_on_one_thread_and_says_so():
    assert _recurrence.resolve_threads(None) == 1
    assert _recurrence.resolve_threads(4) == 1
    cfg = fastgates.show_config(mode="dicts")
    assert cfg["openmp"] == {"enabled": False, "default_n_threads": 1}
    assert cfg["build"]["openmp"] is False and cfg["build"]["serial_reason"]


def _scipy_blas():
    return _threads._scipy_blas_controllers()


def test_blas_held_at_one_thread_inside_calls_and_restored():
    blas = _scipy_blas()
    if not blas:
        pytest.skip("threadpoolctl finds no BLAS under scipy")
    with threadpool_limits(limits=2, user_api="blas"):
        if any(c.get_num_threads() != 2 for c in blas):
            pytest.skip("scipy's BLAS cannot run 2 threads here")
        with _threads.blas_single():
            assert [c.get_num_threads() for c in blas] == [1] * len(blas)
            with _threads.blas_single():                  # nested calls share the hold
                assert [c.get_num_threads() for c in blas] == [1] * len(blas)
            assert [c.get_num_threads() for c in blas] == [1] * len(blas)
        assert [c.get_num_threads() for c in blas] == [2] * len(blas)
        with pytest.raises(RuntimeError):
            with _threads.blas_single():
                raise RuntimeError("the hold ends on errors too")
        assert [c.get_num_threads() for c in blas] == [2] * len(blas)

