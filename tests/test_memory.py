"""Memory: many kernel and generate calls leave the resident set size flat.

Each loop runs in a fresh child process (tests/_helpers/rss_check.py) after a warm-up,
and compares VmRSS before and after.  A control run with a deliberate 1 KiB-per-call
leak shows the measurement sees a leak of that size.
"""

import json
import os
import sys

import pytest

from _helpers.subproc import run_python

MAX_GROWTH_KIB = 5 * 1024

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status"),
    # ASan's quarantine holds freed memory on purpose: RSS is no measure there
    pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""), reason="under AddressSanitizer"),
]


def rss_run(what, n):
    r = run_python(["-m", "_helpers.rss_check", what, str(n)], timeout=300)
    assert r.returncode == 0, r.report()
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"rss: {res}")
    return res


def test_measurement_sees_a_leak():
    assert rss_run("leak", 10_000)["growth_kib"] >= MAX_GROWTH_KIB


def test_10000_forward_backward_calls_keep_rss_flat():
    """All five cell forms, float and token-id inputs, inference calls and rejected calls."""
    res = rss_run("kernels", 10_000)
    assert res["growth_kib"] < MAX_GROWTH_KIB, res


def test_1000_generate_calls_keep_rss_flat():
    res = rss_run("generate", 1_000)
    assert res["growth_kib"] < MAX_GROWTH_KIB, res
