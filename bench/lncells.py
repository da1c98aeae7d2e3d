"""The LayerNorm cells against their peers: fastgates vs PyTorch and JAX, fwd+bwd.

Run:  python bench/lncells.py [--shapes d2l,mid] [--cells lnlstm,lngru] [--budget 1.5]
      (on a shared machine: /work/shared-tools/quiet.sh python bench/lncells.py ...)

Peers (optional imports; a missing one is reported and skipped), float32, 2 threads:

torch   the cell as users write it (pytorch/pytorch#6760, PyTorch's own
        benchmarks/fastrnns/custom_lstms.py): ``nn.Linear`` (no bias) and ``nn.LayerNorm``
        modules, a Python loop over the steps, each step ``LN(x_t W_ih^T)`` and
        ``LN(h W_hh^T)``, autograd for the backward.  The LayerNorms' biases play b_ih
        and b_hh, so the parameters are exactly the issue's.
torch-hoisted  the same with the input side ``LN(x W_ih^T)`` of all steps as one call
        before the loop (it is not recurrent): the stronger form of the user's code.
jax     the same cell in ``lax.scan``, ``jax.jit(jax.grad(...))`` (XLA's CPU threads).
fastgates  ``cell_forward`` + ``cell_backward`` of the cell, and of the plain ``lstm`` /
        ``gru`` (the LayerNorm cells' cost over their plain twins).

fwd+bwd of every implementation computes the same loss, <y, dy> + <h_n, dh_n>, and every
gradient.  Each figure is the best of interleaved rounds (see :func:`_best_of`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SHAPES = {"d2l": (35, 32, 28, 256), "mid": (50, 64, 256, 512), "tiny": (25, 1, 65, 100)}
THREADS = 2
EPS = 1e-5


def _best_of(fns, budget, rounds=(5, 200)):
    """Best time of each callable in ``fns`` (name -> fn), run in interleaved rounds (every
    callable once per round, after two warm-ups) until ``budget`` seconds have passed.
    On a shared, noisy machine the interleaving exposes every implementation to the same
    disturbances and the best of many is the figure least disturbed (BENCHMARKS.md too)."""
    for fn in fns.values():
        fn()
        fn()
    best = {k: float("inf") for k in fns}
    start, n = time.perf_counter(), 0
    while n < rounds[0] or (time.perf_counter() - start < budget and n < rounds[1]):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
        n += 1
    return best


def _data(cell, shape, seed=0):
    import fastgates
    T, B, D, H = shape
    rng = np.random.default_rng(seed)
    shapes = fastgates.cells.param_shapes(fastgates.cells.get(cell), D, H)
    k = 1 / np.sqrt(H)
    p = {s: (np.ones(v) if s.startswith("ln_") and s != "ln_c_bias" else
             np.zeros(v) if s == "ln_c_bias" else rng.uniform(-k, k, v)).astype(np.float32)
         for s, v in shapes.items()}
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    dh = rng.standard_normal((B, H)).astype(np.float32)
    return p, x, dy, dh


def fastgates_fwd_bwd(cell, shape):
    import fastgates
    p, x, dy, dh = _data(cell, shape)
    states = fastgates.cells.get(cell).states

    def run():
        y, s, cache = fastgates.cell_forward(cell, x, {}, p, n_threads=THREADS)
        return fastgates.cell_backward(cell, dy, {"h": dh}, cache, n_threads=THREADS)
    assert states[0] == "h"
    return run


def torch_fwd_bwd(cell, shape, hoisted=False):
    import torch
    from torch import nn
    torch.set_num_threads(THREADS)
    T, B, D, H = shape
    G = 4 if cell == "lnlstm" else 3
    p, x, dy, dh = _data(cell, shape)

    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.ih = nn.Linear(D, G * H, bias=False)
            self.hh = nn.Linear(H, G * H, bias=False)
            self.ln_ih, self.ln_hh = nn.LayerNorm(G * H, eps=EPS), nn.LayerNorm(G * H, eps=EPS)
            if cell == "lnlstm":
                self.ln_c = nn.LayerNorm(H, eps=EPS)

        def forward(self, x):
            xs = self.ln_ih(self.ih(x)) if hoisted else None    # every step at once
            h = x.new_zeros(B, H)
            c = x.new_zeros(B, H)
            ys = []
            for t in range(x.shape[0]):
                xt = xs[t] if hoisted else self.ln_ih(self.ih(x[t]))
                hs = self.ln_hh(self.hh(h))
                if cell == "lnlstm":
                    i, f, g, o = (xt + hs).chunk(4, 1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
                else:
                    ur, uz, un = xt.chunk(3, 1)
                    vr, vz, vn = hs.chunk(3, 1)
                    r, z = torch.sigmoid(ur + vr), torch.sigmoid(uz + vz)
                    n = torch.tanh(un + r * vn)
                    h = z * h + (1 - z) * n
                ys.append(h)
            return torch.stack(ys), h

    m = Cell()
    with torch.no_grad():
        m.ih.weight.copy_(torch.from_numpy(p["weight_ih"]))
        m.hh.weight.copy_(torch.from_numpy(p["weight_hh"]))
        m.ln_ih.bias.copy_(torch.from_numpy(p["bias_ih"]))
        m.ln_hh.bias.copy_(torch.from_numpy(p["bias_hh"]))
    tx, tdy, tdh = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy), torch.from_numpy(dh)
    params = [tx, *m.parameters()]

    def run():
        y, h = m(tx)
        loss = (y * tdy).sum() + (h * tdh).sum()
        return torch.autograd.grad(loss, params)
    return run


def jax_fwd_bwd(cell, shape):
    import jax
    import jax.numpy as jnp
    from jax import lax
    T, B, D, H = shape
    p, x, dy, dh = _data(cell, shape)

    def ln(v):
        mu = v.mean(-1, keepdims=True)
        d = v - mu
        return d * lax.rsqrt((d * d).mean(-1, keepdims=True) + EPS)

    def loss(p, x):
        xs = p["ln_ih_weight"] * ln(x @ p["weight_ih"].T) + p["bias_ih"]

        def step(carry, xt):
            h, c = carry
            hs = p["ln_hh_weight"] * ln(h @ p["weight_hh"].T) + p["bias_hh"]
            if cell == "lnlstm":
                i, f, g, o = jnp.split(xt + hs, 4, axis=1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(p["ln_c_weight"] * ln(c) + p["ln_c_bias"])
            else:
                ur, uz, un = jnp.split(xt, 3, axis=1)
                vr, vz, vn = jnp.split(hs, 3, axis=1)
                r, z = jax.nn.sigmoid(ur + vr), jax.nn.sigmoid(uz + vz)
                h = z * h + (1 - z) * jnp.tanh(un + r * vn)
            return (h, c), h

        zero = jnp.zeros((B, H), x.dtype)
        (h, _), ys = lax.scan(step, (zero, zero), xs)
        return (ys * dy).sum() + (h * dh).sum()

    g = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jp = {k: jnp.asarray(v) for k, v in p.items()}
    jx = jnp.asarray(x)
    return lambda: jax.block_until_ready(g(jp, jx))


PEERS = {"torch": torch_fwd_bwd, "jax": jax_fwd_bwd,
         "torch-hoisted": lambda cell, shape: torch_fwd_bwd(cell, shape, hoisted=True)}
PLAIN = {"lnlstm": "lstm", "lngru": "gru"}


def _worker(impl, cell, shape_name, budget):
    """One implementation in this process: its best time (seconds)."""
    shape = SHAPES[shape_name]
    if impl in ("fastgates", "plain"):
        fns = {"fastgates": fastgates_fwd_bwd(cell, shape),
               "plain": fastgates_fwd_bwd(PLAIN[cell], shape)}
        return _best_of(fns, budget)
    return _best_of({impl: PEERS[impl](cell, shape)}, budget)


def _in_child(impl, cell, shape_name, budget):
    """_worker in a fresh process: torch's and XLA's thread pools keep spinning after a
    call, which would slow whatever runs next in the same process (and vice versa)."""
    out = subprocess.run([sys.executable, __file__, "--worker", impl, cell, shape_name,
                          str(budget)], capture_output=True, text=True)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        raise ImportError(tail)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="d2l,mid")
    ap.add_argument("--cells", default="lnlstm,lngru")
    ap.add_argument("--peers", default="torch,torch-hoisted,jax",
                    help="comma-separated, from " + ", ".join(PEERS) + " (or none)")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of rounds per figure")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        impl, cell, shape_name, budget = args.worker
        print(json.dumps(_worker(impl, cell, shape_name, float(budget))))
        return
    print(f"fwd+bwd, float32, {THREADS} threads, best of rounds, ms (peer ratio = peer / "
          f"fastgates; the LayerNorm cell and its plain twin interleaved in one process, "
          f"each peer in its own)")
    for shape_name in args.shapes.split(","):
        shape = SHAPES[shape_name]
        for cell in args.cells.split(","):
            both = _in_child("fastgates", cell, shape_name, args.budget)
            ours, plain = both["fastgates"], both["plain"]
            row = [f"{shape_name} {shape} {cell}: fastgates {ours * 1e3:.2f}",
                   f"{PLAIN[cell]} {plain * 1e3:.2f} (x{ours / plain:.2f})"]
            for peer in [p for p in args.peers.split(",") if p and p != "none"]:
                try:
                    t = _in_child(peer, cell, shape_name, args.budget)[peer]
                except ImportError as exc:
                    row.append(f"{peer} n/a ({exc})")
                    continue
                row.append(f"{peer} {t * 1e3:.2f} ({t / ours:.1f}x)")
            print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
