"""Kernels in child processes: run as a script by tests/test_concurrency.py (under a timeout).

    python -m _helpers.mp_check METHOD      METHOD: spawn, forkserver or fork

The parent first runs a multi-threaded kernel (starting GNU OpenMP's thread pool) and a
multi-threaded NumPy matmul (OpenBLAS's pool), then starts a child with METHOD that runs
the kernel with the default, 1 and 2 threads and a matmul.  Prints one JSON line: the
parent's and the child's results (as lists), the child's warnings, or "hang" when the
child did not finish within its own timeout.
"""

import json
import multiprocessing as mp
import sys
import warnings

import numpy as np

import fastgates

# weights of 4*128*(64+128) float64 (768 KiB): large enough that the small-work policy
# (fastgates._threads.small_work_threads) lets 2 threads run, so the parent starts its pool
T, B, D, H = 20, 4, 64, 128


def problem():
    rng = np.random.default_rng(5)
    w = [rng.standard_normal(s) * 0.2 for s in ((4 * H, D), (4 * H, H), (4 * H,), (4 * H,))]
    return rng.standard_normal((T, B, D)), w, rng.standard_normal((300, 300))


def kernel(n_threads):
    x, w, _ = problem()
    y, h_n, c_n, cache = fastgates.lstm_forward(x, None, None, *w, n_threads=n_threads)
    g = fastgates.lstm_backward(np.ones_like(y), None, None, cache, n_threads=n_threads)
    return [float(y.sum()), float(g.dw_hh.sum()), float(g.dx.sum())]


def generate():
    """Text generation runs its own OpenMP region (the compiled sampler): 2 threads."""
    from fastgates.lm.generation import sample_compiled
    from fastgates.lm.model import CharRNN, ModelConfig

    model = CharRNN(ModelConfig(vocab_size=12, hidden=48), rng=np.random.default_rng(3),
                    n_threads=2)
    return sample_compiled(model, np.array([1, 2, 3]), 40, seed=7).tolist()


_RUNNER = None    # a frozen runner made by the parent before the child starts (fork inherits it)


def runner():
    """A frozen runner (its packed weights and step plan made in the parent for fork):
    a whole-sequence call and T streaming steps, 2 threads."""
    x, _, _ = problem()
    r = _RUNNER or fastgates.LSTM(D, H, num_layers=2, dtype=np.float64, n_threads=2,
                                  seed=4).freeze()
    y, _ = r(x)
    state = None
    for t in range(T):
        y_t, state = r.step(x[t], state)
    return [float(y.sum()), float(y_t.sum())]


def matmul():
    a = problem()[2]
    return float((a @ a).sum())


def child(q):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = {"kernel": {str(n): kernel(n) for n in (None, 1, 2)}, "matmul": matmul(),
               "generate": generate(), "runner": runner()}
    out["warnings"] = [str(w.message) for w in caught]
    q.put(out)


def main(method):
    global _RUNNER
    _RUNNER = fastgates.LSTM(D, H, num_layers=2, dtype=np.float64, n_threads=2, seed=4).freeze()
    parent = {"kernel": kernel(2), "matmul": matmul(),    # both thread pools started
              "generate": generate(), "runner": runner()}
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        p.join()
        print(json.dumps({"parent": parent, "child": "hang"}))
        return 0
    print(json.dumps({"parent": parent, "exitcode": p.exitcode,
                      "child": q.get(timeout=10) if p.exitcode == 0 else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
