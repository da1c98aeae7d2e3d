"""What the benchmarks measure: implementations, cells, shapes, and the spec format.

A *spec* (a dict of builtins) names one measurable thing; the worker builds the inputs
itself from a fixed seed, so no array crosses the pipe.  Kinds of spec:

kernel    {"kind": "kernel", "impl", "cell", "shape", "direction", "dtype", "tokens"[, "ragged"]}
          cell: rnn (tanh), gru_lbr, gru_rb, lstm (the bench's names of the cells of
          fastgates.cells, see CELL_NAMES); direction: fwd (training=False /
          torch.no_grad) or fwdbwd (forward with a cache + backward for dy, dh_n[, dc_n]).
          ragged: lengths uniform in [1, T] (fixed seed; ragged_lengths) — fastgates and
          the reference take ``lengths=``, torch runs pack_padded_sequence(enforce_sorted=
          False) -> module -> pad_packed_sequence; jax has no ragged form.
generate  {"kind": "generate", "impl", "cell", "hidden", "vocab", "chars"}
lm        {"kind": "lm", "impl", "cell", "steps"}   the textbook recipe: letters
          (vocabulary 28), hidden 256, batch 32, 35 steps, SGD lr 1, clip 1.

The cells come from fastgates/cells.py, read as a file: this module runs in the parent
process too, which must not load fastgates' OpenMP runtime (see _harness).
"""

from __future__ import annotations

import importlib.util
import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)

#: Threads of fastgates (the "fastgates-2t" implementation) and of torch.
THREADS = int(os.environ.get("FASTGATES_BENCH_THREADS", "2"))


def fastgates_root() -> str:
    """The directory to put on the workers' sys.path: the first place, in import order,
    holding a *built* fastgates (an install, or this checkout built in place)."""
    import glob

    cands = []
    spec = importlib.util.find_spec("fastgates")
    if spec is not None and spec.submodule_search_locations:
        cands += [os.path.dirname(p) for p in spec.submodule_search_locations]
    cands += [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)] + [REPO_ROOT]
    for c in cands:
        if glob.glob(os.path.join(c, "fastgates", "_recurrence*.so")) or \
                glob.glob(os.path.join(c, "fastgates", "_recurrence*.pyd")):
            return c
    return cands[0]


def _cell_table():
    """fastgates.cells of the fastgates the workers run, loaded from its file (importing the
    package would load its compiled core and OpenMP runtime into this process)."""
    for root in (fastgates_root(), REPO_ROOT):
        path = os.path.join(root, "fastgates", "cells.py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("_bench_fastgates_cells", path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod          # dataclasses look their module up
            spec.loader.exec_module(mod)
            return mod
    raise ImportError(f"fastgates/cells.py not found under {fastgates_root()} or {REPO_ROOT}")


#: The bench's name of each cell (spec "cell", report rows, BENCHMARKS.md) -> the table's name.
CELL_NAMES = {"rnn": "rnn_tanh", "gru_lbr": "gru", "gru_rb": "gru_rb", "lstm": "lstm"}
_TABLE = _cell_table().CELLS
#: cell -> (kernel family, variant, gates), from the table
CELLS = {b: (_TABLE[n].kernel, _TABLE[n].variant, _TABLE[n].G) for b, n in CELL_NAMES.items()}
CELL_LABEL = {"rnn": "RNN", "gru_lbr": "GRU lbr", "gru_rb": "GRU rb", "lstm": "LSTM"}


def cell_option(cell) -> dict:
    """The keyword of the kernels and modules that picks the cell (``{"linear_before_reset":
    False}`` for gru_rb), from the table."""
    option = _TABLE[CELL_NAMES[cell]].option
    return {} if option is None else {option[0]: option[1]}


#: (T, B, D, H)
SHAPES = {"tiny": (25, 1, 65, 100), "d2l": (35, 32, 28, 256), "mid": (50, 64, 256, 512),
          "big": (100, 128, 512, 1024)}

KERNEL_IMPLS = ["fastgates-2t", "fastgates-1t", "reference", "torch", "jax", "fastgates-avx2"]
GENERATE_IMPLS = ["fastgates", "reference", "torch"]
LM_IMPLS = ["fastgates", "torch"]

#: implementation -> worker process that runs it
GROUP = {"fastgates-2t": "fastgates", "fastgates-1t": "fastgates", "fastgates": "fastgates",
         "fastgates-avx2": "fastgates_avx2",
         "reference": "reference", "torch": "torch", "jax": "jax",
         "onnxruntime": "onnxruntime", "openvino": "openvino", "fastgates.torch": "fgtorch"}

#: Environment of a group's worker process: fastgates-avx2 is fastgates (2 threads) with its
#: kernels forced to the AVX2 level, so that an AVX-512 machine shows what each level gains.
GROUP_ENV = {"fastgates_avx2": {"FASTGATES_ISA": "avx2"}}

#: LM training recipe (d2l, chapter "RNN from scratch"/"concise")
LM_RECIPE = {"tokens": "letters", "hidden": 256, "batch": 32, "steps": 35, "lr": 1.0, "clip": 1.0}

SEED = 20240527



# -- a clock pytest-benchmark can read -------------------------------------------------------

class VirtualClock:
    """A clock that only moves when told: pytest-benchmark reads it before and after the
    target, and the target advances it by the duration measured inside the worker.  Used as
    ``pytest.mark.benchmark(timer=CLOCK)`` so the tables show the worker's own timings."""

    __name__ = "worker_perf_counter"

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CLOCK = VirtualClock()


# -- specs ------------------------------------------------------------------------------------

def kernel_spec(impl, cell, shape, direction, dtype="float32", tokens=False, ragged=False):
    spec = {"kind": "kernel", "impl": impl, "cell": cell, "shape": shape,
            "direction": direction, "dtype": dtype, "tokens": bool(tokens)}
    if ragged:
        spec["ragged"] = True
    return spec


def generate_spec(impl, cell, hidden=256, vocab=28, chars=200):
    return {"kind": "generate", "impl": impl, "cell": cell, "hidden": hidden, "vocab": vocab,
            "chars": chars}


def lm_spec(impl, cell, steps=10):
    return {"kind": "lm", "impl": impl, "cell": cell, "steps": steps}


def infer_spec(impl, cell, case):
    """An inference row of bench/inference.py (case: see _impls.INFER_CASES)."""
    return {"kind": "infer", "impl": impl, "cell": cell, "case": case}


def case_name(spec) -> str:
    """The implementation-independent name of a spec (a pytest-benchmark group)."""
    if spec["kind"] == "infer":
        return f"infer-{spec['case']}-{spec['cell']}"
    if spec["kind"] == "kernel":
        dt = {"float32": "f32", "float64": "f64"}[spec["dtype"]]
        return (f"{spec['shape']}-{spec['cell']}-{dt}{'-tokens' if spec['tokens'] else ''}"
                f"{'-ragged' if spec.get('ragged') else ''}-{spec['direction']}")
    if spec["kind"] == "generate":
        return f"generate-{spec['cell']}-H{spec['hidden']}-V{spec['vocab']}"
    return f"lm-train-{spec['cell']}"


def spec_key(spec) -> str:
    return spec["impl"] + ":" + case_name(spec)


def kernel_dims(spec):
    return SHAPES[spec["shape"]]


def ragged_lengths(spec):
    """The lengths of a ragged spec: uniform in [1, T] from a fixed seed (d2l: mean 18.3 of
    35), drawn apart from kernel_data's stream so the padded twin has the same data."""
    import numpy as np

    T, B, _, _ = kernel_dims(spec)
    return np.random.default_rng(SEED + 2).integers(1, T + 1, B)


def kernel_gflop(spec) -> float:
    """GEMM FLOPs every implementation must do, in GFLOP.

    forward 2·T·B·(D+H)·G·H, forward+backward three times that; with token-id
    input the input GEMM is a gather, so D counts as 0; ragged: the valid steps
    sum(lengths) instead of T·B.
    """
    T, B, D, H = kernel_dims(spec)
    G = CELLS[spec["cell"]][2]
    steps = int(ragged_lengths(spec).sum()) if spec.get("ragged") else T * B
    flop = 2.0 * steps * ((0 if spec["tokens"] else D) + H) * G * H
    return flop * (3 if spec["direction"] == "fwdbwd" else 1) / 1e9
