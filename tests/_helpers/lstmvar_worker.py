"""The LSTM variants (projection, peepholes, both) at the instruction-set level this process
runs (FASTGATES_ISA): the compiled kernels against the NumPy reference, and bit-identical
results for 1, 2 and 3 threads.

    python -m _helpers.lstmvar_worker      (prints one JSON line: the level, cases, failures)

Sweeps proj x peephole x dtype x input kind (float, token ids, ragged) x training /
inference, with sizes that leave tails at every vector width (H = 37: not a multiple of
4, 8 or 16; P = 13; B = 7 rows, more than one row tile).
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np

import fastgates
from fastgates import _recurrence, reference

RTOL = {np.float32: 2e-4, np.float64: 1e-10}


def problem(rng, T, B, D, H, P, peep, dtype, tokens):
    R = P or H
    k = 1 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    w = [u(4 * H, D), u(4 * H, R), u(4 * H), u(4 * H)]
    kw = dict(w_hr=u(P, H) if P else None, w_peep=u(3, H) if peep else None)
    x = rng.integers(0, D, (T, B)) if tokens else rng.standard_normal((T, B, D)).astype(dtype)
    st = [rng.standard_normal((B, R)).astype(dtype) * 0.5,
          rng.standard_normal((B, H)).astype(dtype) * 0.5]
    grads = [rng.standard_normal((T, B, R)).astype(dtype), rng.standard_normal((B, R)).astype(dtype),
             rng.standard_normal((B, H)).astype(dtype)]
    return x, st, w, kw, grads


def run(mod, x, st, w, kw, grads, lengths, nt, training):
    y, h, c, cache = mod.lstm_forward(x, *st, *w, **kw, lengths=lengths, n_threads=nt,
                                      training=training)
    out = {"y": y, "h_n": h, "c_n": c}
    if training:
        g = mod.lstm_backward(*grads, cache, n_threads=nt)
        out.update({"dx": g.dx, "dh0": g.dh0, "dc0": g.dc0})
        out.update({"d" + k: v for k, v in g.param_grads.items()})
    return out


def main():
    rng = np.random.default_rng(13)
    T, B, D, H = 6, 7, 5, 37
    failures, cases = [], 0
    for P, peep, dtype, kind, training in itertools.product(
            (0, 13), (False, True), (np.float32, np.float64), ("float", "tokens", "ragged"),
            (True, False)):
        if not P and not peep:
            continue
        case = f"P={P} peep={peep} {np.dtype(dtype).name} {kind} training={training}"
        cases += 1
        x, st, w, kw, grads = problem(rng, T, B, D, H, P, peep, dtype, kind == "tokens")
        lengths = np.array([6, 0, 3, 6, 1, 5, 2]) if kind == "ragged" else None
        ref = run(reference, x, st, w, kw, grads, lengths, 1, training)
        fast = {nt: run(fastgates, x, st, w, kw, grads, lengths, nt, training) for nt in (1, 2, 3)}
        for name, want in ref.items():
            got = fast[1][name]
            if want is None:
                if got is not None:
                    failures.append(f"{case}: {name} is not None")
                continue
            scale = max(float(np.abs(want).max()), 1.0)
            if got.shape != want.shape or not np.allclose(got, want, rtol=RTOL[dtype],
                                                          atol=RTOL[dtype] * scale):
                failures.append(f"{case}: {name} differs from the reference by "
                                f"{float(np.abs(got - want).max()):.3g}")
            for nt in (2, 3):
                if not np.array_equal(fast[nt][name], got):
                    failures.append(f"{case}: {name} with {nt} threads is not bit-identical "
                                    "to 1 thread")
    print(json.dumps({"isa": _recurrence.isa_active(), "cases": cases, "failures": failures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
