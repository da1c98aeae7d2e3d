"""Instruction-set dispatch: the level the kernels run matches the CPU, FASTGATES_ISA forces
every level the machine has (each tested against the reference in a child process), and
asking for more than the machine has warns and runs the best available level."""

import re
import sys

import pytest

from fastgates import _recurrence
from _helpers.subproc import child_env, run_code, run_python

LEVELS = _recurrence.ISA_LEVELS        # ("generic", "avx2", "avx512")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_levels_are_ordered_and_generic_is_always_there():
    assert LEVELS == ("generic", "avx2", "avx512")
    assert "generic" in _recurrence.isa_compiled() and "generic" in _recurrence.isa_supported()


@pytest.mark.skipif(_cpu_flags() is None or not sys.platform.startswith("linux"),
                    reason="needs /proc/cpuinfo (Linux)")
def test_supported_levels_match_the_cpu_flags():
    """/proc/cpuinfo lists the features the CPU has and the kernel enabled (XSAVE state)."""
    flags = _cpu_flags()
    expect = ["generic"]
    if {"avx2", "fma"} <= flags:
        expect.append("avx2")
        if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
            expect.append("avx512")
    assert _recurrence.isa_supported() == expect


def test_the_default_level_is_the_best_available():
    r = run_code("from fastgates import _recurrence as R; print(R.isa_active())", timeout=120,
                 env=child_env(FASTGATES_ISA=""))
    assert r.returncode == 0, r.report()
    best = [n for n in LEVELS if n in _recurrence.isa_compiled() and n in _recurrence.isa_supported()][-1]
    assert r.stdout.split() == [best]


def _available():
    return [n for n in LEVELS if n in _recurrence.isa_compiled() and n in _recurrence.isa_supported()]


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_the_machine_has_matches_the_reference(level):
    """Every kernel, cell, dtype, input kind and tail size, dense and ragged, against the
    NumPy reference; bit-identical for 1, 2, 3 threads; the step equals the forward."""
    if level not in _available():
        pytest.skip(f"this machine/build cannot run {level} (available: {_available()}); "
                    "dispatch never selects it here (see the warning test)")
    r = run_python(["-W", "error::RuntimeWarning", "-m", "_helpers.isa_sweep", level], timeout=900,
                   env=child_env(FASTGATES_ISA=level))
    assert r.returncode == 0, r.report()
    assert re.search(rf"^ok {level} \d+$", r.stdout, re.M), r.report()


def test_show_config_reports_the_forced_level():
    for level in _available():
        r = run_python(["-m", "fastgates", "--info"], timeout=120, env=child_env(FASTGATES_ISA=level))
        assert r.returncode == 0 and not r.stderr.strip(), r.report()
        assert re.search(rf"^  isa +: {level}$", r.stdout, re.M), r.report()


@pytest.mark.parametrize("cpu", [n for n in LEVELS[:-1]])
def test_asking_for_more_than_the_cpu_has_warns_and_runs_the_best(cpu):
    """A CPU that offers nothing above `cpu` (pretended), asked for avx512."""
    code = ("import warnings\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    from fastgates import _recurrence as R\n"
            "print(R.isa_active())\n"
            "print('|'.join(str(x.message) for x in w))\n")
    r = run_code(code, timeout=120, env=child_env(FASTGATES_ISA="avx512", _FASTGATES_ISA_CPU=cpu))
    assert r.returncode == 0, r.report()
    active, message = r.stdout.splitlines()[:2]
    best = [n for n in _available() if LEVELS.index(n) <= LEVELS.index(cpu)][-1]
    assert active == best
    assert "FASTGATES_ISA=avx512 asks for more than this machine offers" in message
    assert f"the available levels are {[n for n in _available() if LEVELS.index(n) <= LEVELS.index(cpu)]}" in message


def test_an_unknown_level_warns_and_runs_the_best():
    code = ("import warnings\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    from fastgates import _recurrence as R\n"
            "print(R.isa_active()); print('|'.join(str(x.message) for x in w))\n")
    r = run_code(code, timeout=120, env=child_env(FASTGATES_ISA="sse9"))
    assert r.returncode == 0, r.report()
    active, message = r.stdout.splitlines()[:2]
    assert active == _available()[-1]
    assert "FASTGATES_ISA='sse9' is not a level (generic | avx2 | avx512)" in message
