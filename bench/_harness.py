"""Shared machinery of the benchmark suite (pytest-benchmark) and ``bench/report.py``.

Design: every implementation is timed in its own long-lived worker process —
``fastgates`` (n_threads 2 and 1), ``reference`` (NumPy), ``torch`` and ``jax``.
PyTorch bundles its own OpenMP runtime (``torch.libs/libgomp-*.so``) next to the
system libgomp that fastgates links, JAX runs its own Eigen thread pool and
NumPy/SciPy their OpenBLAS pools.  Each runtime parks its idle threads by
spinning first, and two spinning pools in one process on a 2-core machine steal
the cores from each other (10-100x slowdowns were seen).  With one process per
implementation every library runs with its default settings, exactly as a user
sees it, and only that process is busy while it is measured (the others block
on a pipe read; the caller pauses briefly between workers so that the previous
pool has parked).  ``report.py --isolation-check`` measures the alternative
(torch and fastgates in one process, with and without OMP_WAIT_POLICY=passive).

The parent sends plain tuples/dicts (pickled) on the worker's stdin and reads
pickled replies from its stdout.  A *spec* (a dict of builtins) names one
measurable thing; the worker builds the inputs itself from a fixed seed, so no
array crosses the pipe.  The worker times the calls with ``perf_counter``; the
parent gets the per-unit durations (unit = one call for the kernels, one
character for generation, one optimizer step for LM training).

The machinery lives in modules a reader can hold one at a time; this module gathers
their names (``import _harness as H``) and is the script the worker processes run:

_specs.py    implementations, cells (from fastgates/cells.py), shapes, the spec format,
             the virtual clock pytest-benchmark reads
_machine.py  CPU, cores and load of this machine
_data.py     deterministic weights and inputs of a kernel spec
_impls.py    the implementations (run inside a worker)
_pool.py     the workers and the pool (the parent side and the worker loop)
_memory.py   peak-RSS probes of one call in a fresh process
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # the script form below

try:      # as part of the package bench (pytest), or from bench/ on sys.path
    from ._data import kernel_data
    from ._machine import machine_info
    from ._memory import peak_rss_probe
    from ._pool import Pool, Worker, WorkerError, worker_main
    from ._specs import (BENCH_DIR, CELL_LABEL, CELL_NAMES, CELLS, CLOCK, GENERATE_IMPLS, GROUP,
                         KERNEL_IMPLS, LM_IMPLS, LM_RECIPE, REPO_ROOT, SEED, SHAPES, THREADS,
                         VirtualClock, case_name, cell_option, fastgates_root, generate_spec,
                         kernel_dims, kernel_gflop, kernel_spec, lm_spec, ragged_lengths,
                         spec_key)
except ImportError:
    from _data import kernel_data
    from _machine import machine_info
    from _memory import peak_rss_probe
    from _pool import Pool, Worker, WorkerError, worker_main
    from _specs import (BENCH_DIR, CELL_LABEL, CELL_NAMES, CELLS, CLOCK, GENERATE_IMPLS, GROUP,
                        KERNEL_IMPLS, LM_IMPLS, LM_RECIPE, REPO_ROOT, SEED, SHAPES, THREADS,
                        VirtualClock, case_name, cell_option, fastgates_root, generate_spec,
                        kernel_dims, kernel_gflop, kernel_spec, lm_spec, ragged_lengths,
                        spec_key)

__all__ = ["BENCH_DIR", "CELL_LABEL", "CELL_NAMES", "CELLS", "CLOCK", "GENERATE_IMPLS", "GROUP",
           "KERNEL_IMPLS", "LM_IMPLS", "LM_RECIPE", "Pool", "REPO_ROOT", "SEED", "SHAPES",
           "THREADS", "VirtualClock", "Worker", "WorkerError", "case_name", "cell_option",
           "fastgates_root", "generate_spec", "kernel_data", "kernel_dims", "kernel_gflop",
           "kernel_spec", "lm_spec", "machine_info", "peak_rss_probe", "ragged_lengths",
           "spec_key", "worker_main"]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker_main(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "rss":
        print(json.dumps(peak_rss_probe(sys.argv[2])))
    else:
        sys.exit("usage: _harness.py worker GROUP | rss SPEC_JSON (internal to bench/)")
