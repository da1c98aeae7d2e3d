"""Fixtures of the benchmark suite: worker processes and the ``measure`` helper.

Design: the pytest process imports none of the measured libraries.  Each
implementation (fastgates, the NumPy reference, torch, jax) runs in its own
worker process (``_harness.Worker``), because PyTorch's bundled OpenMP runtime,
the system libgomp used by fastgates, OpenBLAS and XLA's thread pool steal the
cores from each other when they share a process.  ``measure(spec)`` prepares
the case in the right worker (building inputs and warming up / compiling
there), then lets pytest-benchmark run ``rounds`` remote calls; the tests carry
``pytest.mark.benchmark(timer=_harness.CLOCK)`` so that the statistics are the
durations measured inside the worker, without the pipe round trip.

Rounds: as many as fit in ``--benchmark-max-time`` (default 1 s), at least
``--benchmark-min-rounds`` (default 5; 3 when a call takes longer than a
second).  The big shape is opt-in: ``FASTGATES_BENCH_BIG=1``.
"""

from __future__ import annotations

import os

import pytest

from . import _harness as H

BIG = os.environ.get("FASTGATES_BENCH_BIG", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "big: the big shape (100, 128, 512, 1024); set "
                                       "FASTGATES_BENCH_BIG=1 to run it")


def pytest_collection_modifyitems(config, items):
    if BIG:
        return
    skip = pytest.mark.skip(reason="big shape is opt-in: set FASTGATES_BENCH_BIG=1")
    for item in items:
        if "big" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pool(tmp_path_factory):
    p = H.Pool(log_dir=str(tmp_path_factory.mktemp("workers")))
    yield p
    p.close()


_INFO = {}


def _worker_info(worker):
    if worker.group not in _INFO:
        _INFO[worker.group] = worker.call("info")
    return _INFO[worker.group]


@pytest.fixture
def measure(benchmark, pool, request):
    """``measure(spec, **extra)``: benchmark one spec in its worker, grouped by case."""

    def run(spec, **extra):
        impl = spec["impl"]
        worker = pool.worker(impl)
        if not worker.available:
            pytest.skip(f"{impl} not importable here: {worker.info.get('reason')}")
        prep = worker.call("prepare", spec)
        key, est = prep["key"], max(prep["estimate"] * prep["units"], 1e-7)
        max_time = float(request.config.getoption("benchmark_max_time"))
        min_rounds = int(request.config.getoption("benchmark_min_rounds"))
        if est > 1.0:
            min_rounds = min(min_rounds, 3)
        rounds = max(min_rounds, min(10000, int(max_time / est)))

        info = _worker_info(worker)
        benchmark.group = H.case_name(spec)
        benchmark.extra_info.update(
            impl=impl, n_threads=prep["n_threads"], spec=spec, unit=_unit(spec),
            process=f"own worker process ({worker.group})",
            versions={k: info[k] for k in ("numpy", "fastgates", "torch", "jax") if k in info},
            threadpool_info=info.get("threadpool_info"), **extra)
        if spec["kind"] == "kernel":
            T, B, D, Hd = H.kernel_dims(spec)
            benchmark.extra_info.update(T=T, B=B, D=D, H=Hd, gflop=H.kernel_gflop(spec))
            if impl == "torch" and spec["cell"] == "gru_rb":
                benchmark.extra_info["note"] = ("torch has no reset-before GRU: this row is "
                                                "torch.nn.GRU (linear before reset)")

        def target():
            H.CLOCK.advance(worker.call("time", key, 1)[0])

        try:
            benchmark.pedantic(target, rounds=rounds, iterations=1, warmup_rounds=0)
        finally:
            worker.call("drop", key)
        st = getattr(benchmark, "stats", None)
        best = getattr(getattr(st, "stats", None), "min", None)
        if best:
            if spec["kind"] == "kernel":
                benchmark.extra_info["gflop_per_s"] = H.kernel_gflop(spec) / best
            elif spec["kind"] == "lm":
                R = H.LM_RECIPE
                benchmark.extra_info["tokens_per_s"] = R["batch"] * R["steps"] / best
            elif spec["kind"] == "generate":
                benchmark.extra_info["us_per_char"] = best * 1e6

    return run


def _unit(spec):
    return {"kernel": "one call", "generate": "one character (time per call / chars)",
            "lm": "one optimizer step (batch 32 x 35 steps)"}[spec["kind"]]
