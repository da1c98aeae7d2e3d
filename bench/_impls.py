"""The implementations, run inside a worker: fastgates, its reference, torch and jax.

Each builder turns a spec into a zero-argument callable that runs it once (the worker
times it): kernels (forward, or forward + backward), text generation, LM training steps.
"""

from __future__ import annotations

import sys

try:      # as part of the package bench (pytest), or from bench/ on sys.path
    from ._specs import (BENCH_DIR, CELL_NAMES, CELLS, LM_RECIPE, SEED, THREADS, cell_option,
                         kernel_dims)
    from ._data import kernel_data
except ImportError:
    from _specs import (BENCH_DIR, CELL_NAMES, CELLS, LM_RECIPE, SEED, THREADS, cell_option,
                        kernel_dims)
    from _data import kernel_data


def _numpy_kernel(mod, spec, n_threads):
    """fastgates or fastgates.reference: a zero-argument callable running the spec once."""
    d = kernel_data(spec)
    cell = CELLS[spec["cell"]][0]
    option = cell_option(spec["cell"])          # nonlinearity= / linear_before_reset=
    kw = {} if n_threads is None else {"n_threads": n_threads}
    fkw = dict(kw, lengths=d["lengths"]) if spec.get("ragged") else kw
    x, h0, c0 = d["x"], d["h0"], d["c0"]
    W = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    dy, dh_n, dc_n = d["dy"], d["dh_n"], d["dc_n"]
    if cell == "rnn":
        def fwd(training):
            return mod.rnn_forward(x, h0, *W, training=training, **option, **fkw)

        def bwd(out):
            return mod.rnn_backward(dy, dh_n, out[2], **kw)
    elif cell == "gru":
        def fwd(training):
            return mod.gru_forward(x, h0, *W, training=training, **option, **fkw)

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
    cell, name = CELLS[spec["cell"]][0], CELL_NAMES[spec["cell"]]    # name: the table's
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
            elif name == "gru":                     # linear before reset
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


# -- inference peers (bench/inference.py): streaming steps, tiny sequences, fixed costs ------

#: case -> (T, B, D, H) of the inference rows (issue 12)
INFER_CASES = {"stream": (1, 1, 40, 256), "tiny_seq": (25, 1, 65, 100), "fixed_step": (1, 1, 8, 8),
               "fixed_fn": (1, 1, 8, 8), "torch_nograd": (1, 1, 40, 256)}


def _fg_layer(cell, D, H):
    import numpy as np
    import fastgates

    family, option = CELLS[cell][0], cell_option(cell)
    cls = {"rnn": fastgates.RNN, "gru": fastgates.GRU, "lstm": fastgates.LSTM}[family]
    return cls(D, H, seed=SEED, n_threads=THREADS, dtype=np.float32, **option)


def _onnx_session(layer, impl, initial_state):
    """The layer exported by fastgates.onnx (its recurrent operator plus glue), opened in
    ONNX Runtime (intra-op threads = THREADS) or OpenVINO (f32 precision, THREADS threads)."""
    import os
    import tempfile

    import fastgates.onnx

    path = os.path.join(tempfile.mkdtemp(prefix="fg-bench-"), "layer.onnx")
    fastgates.onnx.export(layer, path, initial_state=initial_state)
    if impl == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return lambda feeds: sess.run(None, feeds)
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                "INFERENCE_NUM_THREADS": THREADS,
                                                "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    outs = compiled.outputs

    def run(feeds):
        res = request.infer(feeds)
        return [res[o] for o in outs]
    return run


def _inference(spec):
    """A zero-argument callable for one inference row (spec kind "infer")."""
    import numpy as np

    impl, cell, case = spec["impl"], spec["cell"], spec["case"]
    T, B, D, H = INFER_CASES[case]
    rng = np.random.default_rng(SEED)
    lstm = CELLS[cell][0] == "lstm"
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    if impl == "fastgates" and case == "fixed_fn":
        import fastgates

        G = CELLS[cell][2]
        w = [rng.uniform(-0.3, 0.3, s).astype(np.float32)
             for s in ((G * H, D), (G * H, H), (G * H,), (G * H,))]
        if lstm:
            return lambda: fastgates.lstm_forward(x, None, None, *w, training=False,
                                                  n_threads=THREADS)
        fn = getattr(fastgates, CELLS[cell][0] + "_forward")
        return lambda: fn(x, None, *w, training=False, n_threads=THREADS, **cell_option(cell))
    if case == "torch_nograd":
        import importlib

        import torch

        mod = torch.nn if impl == "torch" else importlib.import_module("fastgates.torch")
        kw = {} if impl == "torch" else {"n_threads": THREADS}
        m = {"rnn": mod.RNN, "gru": mod.GRU, "lstm": mod.LSTM}[CELLS[cell][0]](D, H, **kw).eval()
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return m(xt)
        return run
    layer = _fg_layer(cell, D, H)
    if impl == "fastgates":
        runner = layer.freeze()
        if case == "tiny_seq":
            return lambda: runner(x)
        x_t, state = x[0], [runner.step(x[0])[1]]

        def step():                              # one frame, the state fed back
            y_t, state[0] = runner.step(x_t, state[0])
            return y_t
        return step
    if case == "tiny_seq":
        run = _onnx_session(layer, impl, initial_state=False)
        return lambda: run({"x": x})
    run = _onnx_session(layer, impl, initial_state=True)
    zeros = np.zeros((1, B, H), np.float32)
    feeds = {"x": x, "h0": zeros}
    if lstm:
        feeds["c0"] = zeros

    def step():                                  # one session.run per frame, state fed back
        out = run(feeds)
        feeds["h0"] = out[1]
        if lstm:
            feeds["c0"] = out[2]
        return out[0]
    return step
