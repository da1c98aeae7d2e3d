"""The measurements behind the small-work thread policy (fastgates/_threads.py).

    python bench/small_work.py step 1,2     # one step per call; then 4,16 (batch sizes)
    python bench/small_work.py seq 1,4      # whole sequences (T = 25): inference, training

``step``: one layer's streaming step (``_recurrence.StepPlan.run``, float32) for B in the
given batch sizes, D 8/64/256, H 32-384 and the RNN/GRU/LSTM gate counts, with 1 and 2
threads, best of 7 interleaved rounds.  Prints per line: B D H G multiply-adds
weight-bytes time-1-thread time-2-threads (us) and their ratio (> 1: two threads win).

``seq``: the public forward pass over T = 25 steps in inference (``inf``) and a training
step, forward + BPTT (``fb``), with the policy switched off so that both counts run;
per line: mode B D H G weight-bytes time-1-thread time-2-threads (us) ratio.  Each size
calls 1 and 2 threads in turn, best of 7 rounds.  Run on an otherwise idle machine.
"""
import sys
import time

import numpy as np

import fastgates
from fastgates import _recurrence, cells


def best_of(fn, n, rounds=7):
    """Best per-call time (us) of fn(1) and fn(2) over interleaved rounds of n calls."""
    best = {1: 1e9, 2: 1e9}
    for _ in range(rounds):
        for nt in (1, 2):
            t0 = time.perf_counter()
            for _ in range(n):
                fn(nt)
            best[nt] = min(best[nt], (time.perf_counter() - t0) / n * 1e6)
    return best


def weights(rng, G, H, D, dt=np.float32):
    return [rng.uniform(-.1, .1, s).astype(dt) for s in [(G * H, D), (G * H, H), (G * H,), (G * H,)]]


def step_rows(Bs, rng):
    for B in Bs:
        for D in (8, 64, 256):
            for H in (32, 64, 128, 192, 256, 384):
                for name in ("rnn_tanh", "gru", "lstm"):
                    c = cells.CELLS[name]
                    G = c.G
                    plan = _recurrence.StepPlan([_recurrence.pack_layer(c.code, *weights(rng, G, H, D), 2)])
                    h0 = np.zeros((1, B, H), np.float32)
                    c0 = h0.copy() if name == "lstm" else None
                    xs = rng.standard_normal((B, D)).astype(np.float32)
                    work = B * G * H * (D + H)
                    n = max(20, min(2000, int(3e7 / max(work, 1))))
                    best = best_of(lambda nt: plan.run(xs, h0, c0, nt), n)
                    print(f"{B} {D} {H} {G} {work} {G * H * (D + H) * 4} {best[1]:.2f} {best[2]:.2f} "
                          f"{best[1] / best[2]:.2f}", flush=True)


def seq_rows(Bs, rng, T=25):
    import fastgates._fast as fast
    fast.small_work_threads = lambda nt, *a, **k: nt      # both counts run, uncapped
    for B in Bs:
        for D in (8, 64, 256):
            for H in (32, 64, 100, 128, 192, 256):
                for name, G in (("rnn", 1), ("gru", 3), ("lstm", 4)):
                    w = weights(rng, G, H, D)
                    x = rng.standard_normal((T, B, D)).astype(np.float32)
                    dy = np.ones((T, B, H), np.float32)
                    fwd = getattr(fastgates, name + "_forward")
                    bwd = getattr(fastgates, name + "_backward")
                    states = (None, None) if name == "lstm" else (None,)

                    def inf(nt):
                        fwd(x, *states, *w, training=False, n_threads=nt)

                    def fb(nt):
                        cache = fwd(x, *states, *w, n_threads=nt)[-1]
                        bwd(dy, *states, cache, n_threads=nt)

                    for mode, fn in (("inf", inf), ("fb", fb)):
                        fn(1), fn(2)
                        t0 = time.perf_counter()
                        fn(1)
                        n = max(5, min(400, int(0.02 / max(time.perf_counter() - t0, 1e-6))))
                        best = best_of(fn, n)
                        print(f"{mode} {B} {D} {H} {G} {G * H * (D + H) * 4} {best[1]:.1f} "
                              f"{best[2]:.1f} {best[1] / best[2]:.2f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("step", "seq"):
        sys.exit(__doc__)
    rng = np.random.default_rng(0)
    batch = [int(b) for b in sys.argv[2].split(",")]
    (step_rows if sys.argv[1] == "step" else seq_rows)(batch, rng)
