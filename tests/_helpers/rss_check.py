"""Resident memory across many calls: run as a script by tests/test_memory.py.

    python -m _helpers.rss_check kernels N      N forward+backward pairs (all cells, float
                                                 and token-id inputs, inference, rejections)
    python -m _helpers.rss_check generate N     N calls of fastgates.lm.generate
    python -m _helpers.rss_check leak N         a deliberate 1 KiB leak per call (the control)

Warm-up first (allocator pools, lazily loaded code, thread pools), then VmRSS from
/proc/self/status before and after the loop.  Prints one JSON line with the figures.
"""

import gc
import json
import sys

import numpy as np


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def kernel_calls():
    import fastgates

    rng = np.random.default_rng(0)
    T, B, D, H = 4, 3, 5, 8
    cells = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}),
             ("gru", {"linear_before_reset": True}), ("gru", {"linear_before_reset": False}),
             ("lstm", {})]
    probs = []
    for cell, kw in cells:
        G = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
        w = [rng.standard_normal(s) * 0.3 for s in ((G * H, D), (G * H, H), (G * H,), (G * H,))]
        probs.append((cell, kw, w))
    x = rng.standard_normal((T, B, D))
    tok = rng.integers(0, D, (T, B))
    h0 = rng.standard_normal((B, H))
    dy = rng.standard_normal((T, B, H))

    def one(i):
        cell, kw, w = probs[i % len(probs)]
        fwd, bwd = getattr(fastgates, f"{cell}_forward"), getattr(fastgates, f"{cell}_backward")
        xi = tok if i % 2 else x
        states = (h0, h0) if cell == "lstm" else (h0,)
        # one thread: the loop measures memory, and OpenMP barriers on cores shared with
        # other processes make tiny multi-threaded calls 100x slower
        out = fwd(xi, *states, *w, n_threads=1, **kw)
        grads = (dy, h0, h0) if cell == "lstm" else (dy, h0)
        bwd(*grads, out[-1], n_threads=1)
        if i % 10 == 0:
            fwd(xi, *states, *w, training=False, n_threads=1, **kw)
            try:   # a rejected call must not leak either
                fwd(xi, *states, w[0], w[1][:-1], w[2], w[3], **kw)
            except ValueError:
                pass

    return one


def generate_calls():
    from fastgates.lm.data import Vocab
    from fastgates.lm.generation import generate
    from fastgates.lm.model import CharRNN, ModelConfig

    vocab = Vocab(["<unk>"] + list(" abcdefghij"))
    model = CharRNN(ModelConfig(len(vocab), cell="lstm", hidden=16, layers=2),
                    rng=np.random.default_rng(0))

    def one(i):
        generate(model, vocab, "abc", 20, temperature=0.8, seed=i)

    return one


def leaking_calls():
    kept = []

    def one(i):
        kept.append(np.ones(128))     # 1 KiB per call, never freed
    return one


def main(what, n):
    one = {"kernels": kernel_calls, "generate": generate_calls, "leak": leaking_calls}[what]()
    for i in range(max(200, n // 10)):     # warm-up
        one(i)
    gc.collect()
    before = rss_kib()
    for i in range(n):
        one(i)
    gc.collect()
    after = rss_kib()
    print(json.dumps({"what": what, "calls": n, "rss_before_kib": before, "rss_after_kib": after,
                      "growth_kib": after - before}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
