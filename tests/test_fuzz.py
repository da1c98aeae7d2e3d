"""Hostile inputs: hypothesis fuzzing of the public kernels against the reference.

The cases are generated and run by tests/_helpers/fuzz_worker.py in ONE child process
(see its docstring for what is fuzzed and the contract checked): a segfault or an abort
in compiled code kills the child, not the test run, and is reported here as a failure
together with the case that was running.

Default: FUZZ_EXAMPLES hypothesis examples with a fixed seed (a few hundred distinct
cases in seconds).  More: ``FASTGATES_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py``
(``FASTGATES_FUZZ_SEED`` picks another seed), or ``pytest -m slow tests/test_fuzz.py``.
"""

import json
import os
import signal

import numpy as np
import pytest

from _helpers.subproc import run_python

FUZZ_EXAMPLES = 600
SLOW_EXAMPLES = 5000


def run_fuzz(tmp_path, examples, seed, timeout):
    out, trace = tmp_path / "result.json", tmp_path / "case.txt"
    r = run_python(["-m", "_helpers.fuzz_worker", "--examples", str(examples), "--seed", str(seed),
                    "--out", str(out), "--trace", str(trace)], timeout=timeout)
    if r.returncode != 0 or not out.exists():
        last = trace.read_text() if trace.exists() else "(none)"
        pytest.fail(f"the fuzz worker {r.how_it_ended()} while running this case:\n{last}\n\n"
                    f"{r.report()}")
    result = json.loads(out.read_text())
    print(f"fuzz: {json.dumps({k: v for k, v in result.items() if k != 'failure'})}")
    assert result["failure"] is None, result["failure"]
    return result


def test_fuzz_public_api(tmp_path):
    examples = int(os.environ.get("FASTGATES_FUZZ_EXAMPLES", FUZZ_EXAMPLES))
    seed = int(os.environ.get("FASTGATES_FUZZ_SEED", 0))
    result = run_fuzz(tmp_path, examples, seed, timeout=120 + examples * 0.5)
    # the generator must really exercise both sides of the contract
    if examples >= FUZZ_EXAMPLES:
        assert result["distinct"] >= 300, result
        assert result["outcomes"]["agreed"] >= 100 and result["outcomes"]["rejected"] >= 100, result
        assert result["backward_calls"] >= 50, result


@pytest.mark.slow
def test_fuzz_public_api_long(tmp_path):
    run_fuzz(tmp_path, SLOW_EXAMPLES, seed=int(os.environ.get("FASTGATES_FUZZ_SEED", 1)),
             timeout=3600)


def test_a_crash_in_the_worker_is_reported_with_its_case(tmp_path):
    """The harness itself: a child killed by a signal fails with the signal and the case."""
    trace = tmp_path / "case.txt"
    # SIGABRT (a failed assertion in C): AddressSanitizer would intercept a SIGSEGV
    code = (f"open({str(trace)!r}, 'w').write('the case'); "
            "import os, signal; os.kill(os.getpid(), signal.SIGABRT)")
    r = run_python(["-c", code], timeout=60)
    assert r.returncode == -signal.SIGABRT and "SIGABRT" in r.how_it_ended()
    assert trace.read_text() == "the case"


# -- the guards the fuzzer relies on, named explicitly ------------------------------------------

def _huge(shape, dtype=np.float32):
    return np.broadcast_to(np.zeros((1,) * len(shape), dtype), shape)     # no memory behind it


@pytest.mark.parametrize("T,B,H,tokens,match", [
    (2**31 + 5, 0, 2, False, r"T = 2147483653 exceeds the BLAS integer limit"),
    (0, 2**31 + 5, 2, True, r"B = 2147483653 exceeds"),
    (1, 2**20, 2**12, False, r"B\*H = 4294967296 exceeds"),
    (2**20, 2**10, 2**14, False, r"needs at least .* GiB .* more than this machine's .* GiB of RAM"),
    (2**20, 2**10, 2**12, True, r"needs at least .* GiB .* more than this machine's"),
    (2, 2, 2**20, False, r"needs at least .* GiB .* more than this machine's"),
], ids=["T>int", "B>int", "B*H>int", "memory", "memory-tokens", "weights"])
def test_huge_dimensions_raise_value_error_before_allocating(backend, T, B, H, tokens, match):
    D = 3
    x = _huge((T, B), np.int64) if tokens else _huge((T, B, D))
    w = [_huge((4 * H, D)), _huge((4 * H, H)), _huge((4 * H,)), _huge((4 * H,))]
    with pytest.raises(ValueError, match=match):
        backend.lstm_forward(x, None, None, *w)


def test_absurd_thread_counts_are_refused(backend):
    x, w = np.zeros((2, 1, 3)), [np.zeros((4, 3)), np.zeros((4, 1)), np.zeros(4), np.zeros(4)]
    for n in (100_000, 10**20):
        with pytest.raises(ValueError, match=rf"n_threads = {n} is more than \d+ threads"):
            backend.lstm_forward(x, None, None, *w, n_threads=n)
    backend.lstm_forward(x, None, None, *w, n_threads=-(10**20))     # counts back: 1 thread
