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
    code = (f"open({str(trace)!r}, 'w').write('the case'); "
            "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    r = run_python(["-c", code], timeout=60)
    assert r.returncode == -11 and "SIGSEGV" in r.how_it_ended()
    assert trace.read_text() == "the case"
