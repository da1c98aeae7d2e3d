"""Deterministic inputs of a kernel spec: weights, inputs, states, output gradients."""

from __future__ import annotations

import math

try:      # as part of the package bench (pytest), or from bench/ on sys.path
    from ._specs import CELLS, SEED, kernel_dims, ragged_lengths
except ImportError:
    from _specs import CELLS, SEED, kernel_dims, ragged_lengths


def kernel_data(spec):
    """Deterministic weights, inputs and output gradients of a kernel spec (NumPy)."""
    import numpy as np

    T, B, D, H = kernel_dims(spec)
    G = CELLS[spec["cell"]][2]
    dt = np.dtype(spec["dtype"])
    rng = np.random.default_rng(SEED)
    k = 1.0 / math.sqrt(H)
    d = {"w_ih": rng.uniform(-k, k, (G * H, D)).astype(dt),
         "w_hh": rng.uniform(-k, k, (G * H, H)).astype(dt),
         "b_ih": rng.uniform(-k, k, G * H).astype(dt),
         "b_hh": rng.uniform(-k, k, G * H).astype(dt)}
    if spec["tokens"]:
        d["x"] = rng.integers(0, D, (T, B)).astype(np.int64)
    else:
        d["x"] = rng.standard_normal((T, B, D)).astype(dt)
    d["h0"] = (0.5 * rng.standard_normal((B, H))).astype(dt)
    d["c0"] = (0.5 * rng.standard_normal((B, H))).astype(dt) if spec["cell"] == "lstm" else None
    d["dy"] = rng.standard_normal((T, B, H)).astype(dt)
    d["dh_n"] = rng.standard_normal((B, H)).astype(dt)
    d["dc_n"] = rng.standard_normal((B, H)).astype(dt) if spec["cell"] == "lstm" else None
    d["lengths"] = ragged_lengths(spec) if spec.get("ragged") else None
    return d
