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

Kinds of spec:

kernel    {"kind": "kernel", "impl", "cell", "shape", "direction", "dtype", "tokens"[, "ragged"]}
          cell: rnn (tanh), gru_lbr, gru_rb, lstm; direction: fwd (training=False /
          torch.no_grad) or fwdbwd (forward with a cache + backward for dy, dh_n[, dc_n]).
          ragged: lengths uniform in [1, T] (fixed seed; ragged_lengths) — fastgates and
          the reference take ``lengths=``, torch runs pack_padded_sequence(enforce_sorted=
          False) -> module -> pad_packed_sequence; jax has no ragged form.
generate  {"kind": "generate", "impl", "cell", "hidden", "vocab", "chars"}
lm        {"kind": "lm", "impl", "cell", "steps"}   the textbook recipe: letters
          (vocabulary 28), hidden 256, batch 32, 35 steps, SGD lr 1, clip 1.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)

#: Threads of fastgates (the "fastgates-2t" implementation) and of torch.
THREADS = int(os.environ.get("FASTGATES_BENCH_THREADS", "2"))

#: cell -> (fastgates cell, variant, gates)
CELLS = {"rnn": ("rnn", "tanh", 1), "gru_lbr": ("gru", "lbr", 3),
         "gru_rb": ("gru", "rb", 3), "lstm": ("lstm", "", 4)}
CELL_LABEL = {"rnn": "RNN", "gru_lbr": "GRU lbr", "gru_rb": "GRU rb", "lstm": "LSTM"}

#: (T, B, D, H)
SHAPES = {"tiny": (25, 1, 65, 100), "d2l": (35, 32, 28, 256), "mid": (50, 64, 256, 512),
          "big": (100, 128, 512, 1024)}

KERNEL_IMPLS = ["fastgates-2t", "fastgates-1t", "reference", "torch", "jax"]
GENERATE_IMPLS = ["fastgates", "reference", "torch"]
LM_IMPLS = ["fastgates", "torch"]

#: implementation -> worker process that runs it
GROUP = {"fastgates-2t": "fastgates", "fastgates-1t": "fastgates", "fastgates": "fastgates",
         "reference": "reference", "torch": "torch", "jax": "jax"}

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


def case_name(spec) -> str:
    """The implementation-independent name of a spec (a pytest-benchmark group)."""
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


# -- the machine ------------------------------------------------------------------------------

def machine_info() -> dict:
    info = {"cpu": None, "flags": [], "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["affinity"] = None
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        cores = set()
        phys = None
        for line in text.splitlines():
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "model name" and info["cpu"] is None:
                info["cpu"] = v
            elif k == "flags" and not info["flags"]:
                fl = set(v.split())
                info["flags"] = [x for x in ("avx", "avx2", "fma", "avx512f", "avx512_bf16")
                                 if x in fl]
            elif k == "physical id":
                phys = v
            elif k == "core id":
                cores.add((phys, v))
        info["physical_cores"] = len(cores) or None
    except OSError:
        pass
    try:
        info["loadavg"] = list(os.getloadavg())
    except OSError:
        info["loadavg"] = None
    return info


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


# -- data -------------------------------------------------------------------------------------

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


# -- implementations (run inside a worker) ----------------------------------------------------

def _numpy_kernel(mod, spec, n_threads):
    """fastgates or fastgates.reference: a zero-argument callable running the spec once."""
    d = kernel_data(spec)
    cell, variant, _ = CELLS[spec["cell"]]
    kw = {} if n_threads is None else {"n_threads": n_threads}
    fkw = dict(kw, lengths=d["lengths"]) if spec.get("ragged") else kw
    x, h0, c0 = d["x"], d["h0"], d["c0"]
    W = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    dy, dh_n, dc_n = d["dy"], d["dh_n"], d["dc_n"]
    if cell == "rnn":
        def fwd(training):
            return mod.rnn_forward(x, h0, *W, nonlinearity=variant, training=training, **fkw)

        def bwd(out):
            return mod.rnn_backward(dy, dh_n, out[2], **kw)
    elif cell == "gru":
        lbr = variant == "lbr"

        def fwd(training):
            return mod.gru_forward(x, h0, *W, linear_before_reset=lbr, training=training, **fkw)

        def bwd(out):
            return mod.gru_backward(dy, dh_n, out[2], **kw)
    else:
        def fwd(training):
            return mod.lstm_forward(x, h0, c0, *W, training=training, **fkw)

        def bwd(out):
            return mod.lstm_backward(dy, dh_n, dc_n, out[3], **kw)
    if spec["direction"] == "fwd":
        return lambda: fwd(False)
    return lambda: bwd(fwd(True))


def _torch_kernel(spec):
    """torch.nn.RNN/GRU/LSTM with the same weights; fwd under no_grad, fwd+bwd with
    ``torch.autograd.grad`` (fresh gradients, like fastgates).  torch has no
    reset-before GRU: gru_rb runs torch's (linear-before-reset) GRU."""
    import torch

    d = kernel_data(spec)
    T, B, D, H = kernel_dims(spec)
    cell = CELLS[spec["cell"]][0]
    tdt = {"float32": torch.float32, "float64": torch.float64}[spec["dtype"]]
    mod = {"rnn": lambda: torch.nn.RNN(D, H, nonlinearity="tanh"),
           "gru": lambda: torch.nn.GRU(D, H), "lstm": lambda: torch.nn.LSTM(D, H)}[cell]().to(tdt)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            tname = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0",
                     "b_hh": "bias_hh_l0"}[name]
            getattr(mod, tname).copy_(torch.from_numpy(d[name]))
    tokens = spec["tokens"]
    x = torch.from_numpy(d["x"])
    h0 = torch.from_numpy(d["h0"])[None]
    c0 = torch.from_numpy(d["c0"])[None] if cell == "lstm" else None

    lengths = torch.from_numpy(d["lengths"]) if spec.get("ragged") else None

    def inp(xx):
        return torch.nn.functional.one_hot(xx, D).to(tdt) if tokens else xx

    def call(xx, state):
        """The module on a padded batch, or the PackedSequence path of a ragged one."""
        if lengths is None:
            return mod(inp(xx), state)
        pack = torch.nn.utils.rnn.pack_padded_sequence(inp(xx), lengths, enforce_sorted=False)
        y, st = mod(pack, state)
        return torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0], st

    if spec["direction"] == "fwd":
        state = (h0, c0) if cell == "lstm" else h0

        def run():
            with torch.no_grad():
                return call(x, state)
        return run

    params = list(mod.parameters())
    xr = x if tokens else x.clone().requires_grad_()
    h0r = h0.clone().requires_grad_()
    c0r = c0.clone().requires_grad_() if cell == "lstm" else None
    state = (h0r, c0r) if cell == "lstm" else h0r
    grads_out = [torch.from_numpy(d["dy"]), torch.from_numpy(d["dh_n"])[None]]
    if cell == "lstm":
        grads_out.append(torch.from_numpy(d["dc_n"])[None])
    inputs = ([] if tokens else [xr]) + [h0r] + ([c0r] if cell == "lstm" else []) + params

    def run():
        y, st = call(xr, state)
        outs = [y, st[0], st[1]] if cell == "lstm" else [y, st]
        return torch.autograd.grad(outs, inputs, grads_out)
    return run


def _jax_kernel(spec):
    """The same cell as a jit-compiled ``lax.scan`` (input projection of all steps before
    the scan); fwd+bwd = ``jax.grad`` of <y, dy> + <h_n, dh_n> (+ <c_n, dc_n>)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    if spec.get("ragged"):
        raise NotImplementedError("no ragged (variable-length) form of the jax scan here")
    d = kernel_data(spec)
    T, B, D, H = kernel_dims(spec)
    cell, variant, _ = CELLS[spec["cell"]]
    tokens = spec["tokens"]
    dt = jnp.float32 if spec["dtype"] == "float32" else jnp.float64
    sig = jax.nn.sigmoid

    def forward(params, x, h0, c0):
        w_ih, w_hh, b_ih, b_hh = params
        xin = jax.nn.one_hot(x, D, dtype=dt) if tokens else x
        xp = jnp.einsum("tbd,gd->tbg", xin, w_ih) + b_ih

        def step(carry, xt):
            h, c = carry
            if cell == "rnn":
                h = jnp.tanh(xt + h @ w_hh.T + b_hh)
            elif cell == "gru" and variant == "lbr":
                gh = h @ w_hh.T + b_hh
                r = sig(xt[:, :H] + gh[:, :H])
                z = sig(xt[:, H:2 * H] + gh[:, H:2 * H])
                n = jnp.tanh(xt[:, 2 * H:] + r * gh[:, 2 * H:])
                h = z * h + (1 - z) * n
            elif cell == "gru":
                gh = h @ w_hh[:2 * H].T + b_hh[:2 * H]
                r = sig(xt[:, :H] + gh[:, :H])
                z = sig(xt[:, H:2 * H] + gh[:, H:])
                n = jnp.tanh(xt[:, 2 * H:] + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
                h = z * h + (1 - z) * n
            else:
                g = xt + h @ w_hh.T + b_hh
                i, f = sig(g[:, :H]), sig(g[:, H:2 * H])
                gg, o = jnp.tanh(g[:, 2 * H:3 * H]), sig(g[:, 3 * H:])
                c = f * c + i * gg
                h = o * jnp.tanh(c)
            return (h, c), h

        (hn, cn), ys = lax.scan(step, (h0, c0), xp)
        return ys, hn, cn

    params = tuple(jnp.asarray(d[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh"))
    x = jnp.asarray(d["x"])
    h0 = jnp.asarray(d["h0"])
    c0 = jnp.asarray(d["c0"]) if cell == "lstm" else jnp.zeros((B, H), dt)
    if spec["direction"] == "fwd":
        f = jax.jit(forward)

        def run():
            return jax.block_until_ready(f(params, x, h0, c0))
        return run

    dy, dh_n = jnp.asarray(d["dy"]), jnp.asarray(d["dh_n"])
    dc_n = jnp.asarray(d["dc_n"]) if cell == "lstm" else None

    def loss(params, x, h0, c0):
        ys, hn, cn = forward(params, x, h0, c0)
        s = jnp.vdot(ys, dy) + jnp.vdot(hn, dh_n)
        return s + jnp.vdot(cn, dc_n) if cell == "lstm" else s

    argnums = (0, 2) if tokens else (0, 1, 2)
    if cell == "lstm":
        argnums = argnums + (3,)
    g = jax.jit(jax.grad(loss, argnums=argnums))

    def run():
        return jax.block_until_ready(g(params, x, h0, c0))
    return run


def _charrnn(cell, hidden, vocab, dtype="float32", n_threads=None):
    import numpy as np
    from fastgates.lm.model import CharRNN, ModelConfig

    cfg = ModelConfig(vocab, cell="gru" if cell.startswith("gru") else cell, hidden=hidden,
                      gru_reset="before" if cell == "gru_rb" else "after", dtype=dtype)
    return CharRNN(cfg, n_threads=n_threads, rng=np.random.default_rng([SEED, 1]))


def _torch_charrnn(model):
    """bench/torch_lm.CharRNN with the weights of a fastgates CharRNN."""
    import torch

    sys.path.insert(0, BENCH_DIR)
    from torch_lm import CharRNN

    cfg = model.config
    if cfg.cell == "gru" and cfg.gru_reset != "after":
        raise ValueError("torch has no reset-before GRU")
    m = CharRNN(cfg.vocab_size, cfg.cell, cfg.hidden, cfg.layers, 0.0)
    m = m.to({"float32": torch.float32, "float64": torch.float64}[cfg.dtype])
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.from_numpy(model.params[name]))
    return m


def _generate(spec):
    """Per-character generation: prefix of one token, then ``chars`` draws (temperature 1)."""
    import numpy as np

    impl, chars = spec["impl"], spec["chars"]
    model = _charrnn(spec["cell"], spec["hidden"], spec["vocab"])
    prefix = np.array([1], np.int64)
    if impl == "fastgates":
        from fastgates.lm.generation import sample_compiled

        return lambda: sample_compiled(model, prefix, chars, temperature=1.0, seed=0)
    if impl == "reference":
        from fastgates.lm.generation import sample_numpy

        return lambda: sample_numpy(model, prefix, chars, temperature=1.0, seed=0)
    if impl == "torch":
        import torch

        m = _torch_charrnn(model).eval()
        torch.manual_seed(0)

        def run():
            out = []
            with torch.no_grad():
                tok, state = torch.tensor([[1]]), None
                for _ in range(chars):
                    logits, state = m(tok, state)               # one module call per character
                    p = torch.softmax(logits[0, 0], dim=-1)
                    tok = torch.multinomial(p, 1).view(1, 1)
                    out.append(int(tok))
            return out
        return run
    raise ValueError(f"no generation benchmark for {impl!r}")


def _lm(spec):
    """``steps`` optimizer steps of the textbook recipe on consecutive minibatches."""
    import numpy as np
    from fastgates.lm.batches import make_batches
    from fastgates.lm.data import load_text, make_corpus

    R = LM_RECIPE
    corpus = make_corpus(load_text(None), R["tokens"], 0.1)
    plan = make_batches("sequential", corpus.train, R["batch"], R["steps"],
                        np.random.default_rng([0, 2, 0]))
    V, n_steps = len(corpus.vocab), spec["steps"]
    pos = [0]

    def next_batch():
        X, Y = plan.batch(pos[0] % len(plan))
        pos[0] += 1
        return X, Y

    if spec["impl"] == "fastgates":
        from fastgates.lm.training import Trainer

        model = _charrnn(spec["cell"], R["hidden"], V, n_threads=THREADS)
        trainer = Trainer(model, corpus.train, None, batch=R["batch"], steps=R["steps"],
                          optimizer="sgd", lr=R["lr"], clip=R["clip"])

        def run():
            for _ in range(n_steps):
                trainer.train_step(*next_batch())
        return run
    if spec["impl"] == "torch":
        import torch
        from torch_lm import detach      # bench/ is on the worker's sys.path

        model = _torch_charrnn(_charrnn(spec["cell"], R["hidden"], V))
        opt = torch.optim.SGD(model.parameters(), lr=R["lr"])
        params = list(model.parameters())
        state = [None]

        def run():                                      # the loop body of bench/torch_lm.py
            for _ in range(n_steps):
                X, Y = next_batch()
                X, Y = torch.from_numpy(X), torch.from_numpy(Y)
                logits, st = model(X, state[0])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), Y.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, R["clip"])
                opt.step()
                state[0] = detach(st)
                loss.item()
        return run
    raise ValueError(f"no LM training benchmark for {spec['impl']!r}")


# -- the worker -------------------------------------------------------------------------------

def _threadpool_info():
    try:
        from threadpoolctl import threadpool_info
        return threadpool_info()
    except Exception as exc:  # pragma: no cover
        return [{"error": repr(exc)}]


class _WorkerState:
    def __init__(self, group):
        self.group = group
        self.cases = {}
        self.info = {"group": group, "pid": os.getpid(), "available": True}
        try:
            self._import()
        except Exception as exc:
            self.info.update(available=False, reason=f"{type(exc).__name__}: {exc}")

    def _import(self):
        import numpy as np
        self.info["numpy"] = np.__version__
        g = self.group
        if g in ("fastgates", "reference", "mixed"):
            import fastgates
            self.info["fastgates"] = fastgates.__version__
            self.info["fastgates_path"] = os.path.dirname(fastgates.__file__)
        if g in ("torch", "mixed"):
            import torch
            torch.set_num_threads(THREADS)
            self.info["torch"] = torch.__version__
            self.info["torch_threads"] = torch.get_num_threads()
            self.info["torch_config"] = torch.__config__.parallel_info()
        if g == "jax":
            import jax
            jax.config.update("jax_enable_x64", True)
            self.info["jax"] = jax.__version__
            self.info["jax_devices"] = [str(x) for x in jax.devices()]

    def n_threads(self, impl):
        """The thread count an implementation runs with (for extra_info)."""
        if impl == "fastgates-1t":
            return 1
        if impl in ("fastgates-2t", "fastgates"):
            return THREADS
        if impl == "torch":
            import torch
            return torch.get_num_threads()
        if impl == "reference":
            blas = [p for p in _threadpool_info() if p.get("user_api") == "blas"]
            return max((p.get("num_threads") or 0 for p in blas), default=None)
        return os.cpu_count()            # XLA's CPU pool uses every core

    def build(self, spec):
        impl, kind = spec["impl"], spec["kind"]
        if kind == "kernel":
            if impl in ("fastgates-2t", "fastgates-1t"):
                import fastgates
                return _numpy_kernel(fastgates, spec, 1 if impl == "fastgates-1t" else THREADS), 1
            if impl == "reference":
                import fastgates.reference
                return _numpy_kernel(fastgates.reference, spec, None), 1
            if impl == "torch":
                return _torch_kernel(spec), 1
            if impl == "jax":
                return _jax_kernel(spec), 1
        elif kind == "generate":
            return _generate(spec), spec["chars"]
        elif kind == "lm":
            return _lm(spec), spec["steps"]
        raise ValueError(f"unknown spec {spec!r}")

    def handle(self, msg):
        cmd = msg[0]
        if cmd == "info":
            return dict(self.info, threadpool_info=_threadpool_info())
        if cmd == "prepare":
            spec = msg[1]
            key = spec_key(spec)
            if key not in self.cases:
                fn, units = self.build(spec)
                times = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                    if times[0] >= 0.5 and spec["impl"] != "jax":
                        break
                self.cases[key] = (fn, units, times)
            fn, units, times = self.cases[key]
            return {"key": key, "first": times[0] / units, "estimate": min(times) / units,
                    "units": units, "n_threads": self.n_threads(spec["impl"])}
        if cmd == "time":
            key, reps = msg[1], int(msg[2])
            fn, units, _ = self.cases[key]
            gc.collect()
            out = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) / units)
            return out
        if cmd == "alternate":
            # run the prepared cases one after the other, ``reps`` times: interference check
            keys, reps = msg[1], int(msg[2])
            out = {k: [] for k in keys}
            for _ in range(reps):
                for k in keys:
                    fn, units, _ = self.cases[k]
                    t0 = time.perf_counter()
                    fn()
                    out[k].append((time.perf_counter() - t0) / units)
            return out
        if cmd == "drop":
            self.cases.pop(msg[1], None)
            gc.collect()
            return None
        if cmd == "sgemm":
            import numpy as np
            n, reps = int(msg[1]), int(msg[2])
            rng = np.random.default_rng(0)
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            a @ b
            out = []
            for _ in range(reps):
                t0 = time.perf_counter()
                a @ b
                out.append(time.perf_counter() - t0)
            return out
        raise ValueError(f"unknown command {cmd!r}")


def worker_main(group):
    """Serve requests on stdin/stdout until EOF (the body of a worker process)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                    # stray prints (C or Python) go to the log, not the pipe
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    sys.path.insert(0, BENCH_DIR)
    state = _WorkerState(group)

    def send(obj):
        pickle.dump(obj, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    send(("ok", state.info))
    while True:
        try:
            msg = pickle.load(inp)
        except EOFError:
            break
        try:
            send(("ok", state.handle(msg)))
        except Exception:
            send(("error", traceback.format_exc()))


# -- the parent side --------------------------------------------------------------------------

class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process running one group of implementations."""

    def __init__(self, group, env=None, log_dir=None):
        self.group = group
        log_dir = log_dir or tempfile.gettempdir()
        fd, self.log_path = tempfile.mkstemp(prefix=f"fastgates-bench-{group}-", suffix=".log",
                                             dir=log_dir)
        self._log = os.fdopen(fd, "wb")
        e = os.environ.copy()
        e["PYTHONPATH"] = os.pathsep.join(p for p in (fastgates_root(), e.get("PYTHONPATH")) if p)
        e.update(env or {})
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", group],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, env=e, cwd=REPO_ROOT)
        self._hello = None

    @property
    def info(self) -> dict:
        if self._hello is None:
            self._hello = self._recv()
        return self._hello

    @property
    def available(self) -> bool:
        return bool(self.info.get("available"))

    def _tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def _recv(self):
        try:
            status, payload = pickle.load(self.proc.stdout)
        except (EOFError, pickle.UnpicklingError) as exc:
            raise WorkerError(f"{self.group} worker died ({exc!r}); its log "
                              f"{self.log_path} ends with:\n{self._tail()}") from None
        if status == "error":
            raise WorkerError(f"{self.group} worker: {payload}")
        return payload

    def call(self, *msg):
        self.info  # noqa: B018  (the hello comes first)
        pickle.dump(msg, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        return self._recv()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Pool:
    """One worker per group, started on first use (``start`` starts several at once)."""

    def __init__(self, env=None, log_dir=None):
        self.workers = {}
        self.env = env or {}
        self.log_dir = log_dir

    def start(self, groups):
        for g in groups:
            if g not in self.workers:
                self.workers[g] = Worker(g, self.env.get(g), self.log_dir)

    def worker(self, impl_or_group) -> Worker:
        g = GROUP.get(impl_or_group, impl_or_group)
        self.start([g])
        return self.workers[g]

    def close(self):
        for w in self.workers.values():
            w.close()
        self.workers.clear()


def _rss_now_and_reset_peak():
    """Current RSS after returning free heap memory to the system, with the peak (VmHWM)
    reset to it (Linux: /proc/self/clear_refs).  Returns (rss bytes, reset worked)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    ok = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        ok = False
    return _proc_status("VmRSS"), ok


def _proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_rss_probe(spec_json: str) -> dict:
    """In a fresh process: peak RSS growth (VmHWM - VmRSS before) of one fastgates call."""
    import numpy as np

    import fastgates

    p = json.loads(spec_json)
    spec = kernel_spec("fastgates-2t", p["cell"], p["shape"], "fwd", p.get("dtype", "float32"))
    T = p.get("T")
    if T:
        SHAPES[spec["shape"]] = (T,) + SHAPES[spec["shape"]][1:]
    d = kernel_data(spec)
    cell = CELLS[spec["cell"]][0]
    W = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    training = p["mode"] != "inference"
    lbr = CELLS[spec["cell"]][1] == "lbr"

    def forward(x, training):
        if cell == "lstm":
            out = fastgates.lstm_forward(x, d["h0"], d["c0"], *W, training=training,
                                         n_threads=THREADS)
            return out[0], out[3]
        if cell == "gru":
            out = fastgates.gru_forward(x, d["h0"], *W, training=training, n_threads=THREADS,
                                        linear_before_reset=lbr)
        else:
            out = fastgates.rnn_forward(x, d["h0"], *W, training=training, n_threads=THREADS)
        return out[0], out[2]

    forward(d["x"][:1], True)        # thread pool, lazy imports: not part of the measurement
    gc.collect()
    before, reset = _rss_now_and_reset_peak()
    y, cache = forward(d["x"], training)
    if p["mode"] == "fwdbwd":
        if cell == "lstm":
            fastgates.lstm_backward(d["dy"], d["dh_n"], d["dc_n"], cache, n_threads=THREADS)
        elif cell == "gru":
            fastgates.gru_backward(d["dy"], d["dh_n"], cache, n_threads=THREADS)
        else:
            fastgates.rnn_backward(d["dy"], d["dh_n"], cache, n_threads=THREADS)
    peak = _proc_status("VmHWM")
    cache_bytes = 0
    if cache is not None:
        for name in cache.__slots__:
            v = getattr(cache, name)
            if isinstance(v, np.ndarray):
                cache_bytes += v.nbytes
    return {"peak_rss_growth": peak - before, "peak_reset": reset, "y_bytes": y.nbytes,
            "cache_bytes": cache_bytes, "T": SHAPES[spec["shape"]][0], "mode": p["mode"],
            "cell": p["cell"], "shape": p["shape"]}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker_main(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "rss":
        print(json.dumps(peak_rss_probe(sys.argv[2])))
    else:
        sys.exit("usage: _harness.py worker GROUP | rss SPEC_JSON (internal to bench/)")
