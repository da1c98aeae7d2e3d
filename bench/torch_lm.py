"""The fastgates-lm training loop in PyTorch, for a side-by-side tokens/s comparison.

Same data and recipe as ``fastgates-lm train``: the same corpus, tokenizer,
vocabulary and train/validation split (``fastgates.lm.data``), the same
minibatch plan per epoch (``fastgates.lm.batches`` with the generator
``default_rng([seed, 2, epoch])``), one-hot inputs, ``nn.LSTM``/``nn.GRU``/``nn.RNN``
+ ``nn.Linear``, mean cross-entropy, ``clip_grad_norm_`` over all parameters,
SGD (or Adam), the hidden state carried across minibatches and detached
(truncated BPTT; reset per epoch, or per minibatch with ``--sampling random``),
and the same validation (32 parallel streams, state carried across the held-out
text).  By default the weights start from fastgates' initialisation with the
same seed, so both runs start from identical weights.

Usage::

    python bench/torch_lm.py --tokens letters --cell lstm --hidden 256 --batch 32 \\
        --steps 35 --lr 1 --clip 1 --epochs 10

Progress goes to stderr; the last line on stdout is one JSON object with
``tokens_per_s`` (training steps only, validation excluded, as in fastgates-lm),
``train_ppl``, ``val_ppl``, ``val_bpc``, ``epochs``, ``seconds``, ``threads``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover
    sys.exit("bench/torch_lm.py needs PyTorch: pip install torch")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastgates.lm.batches import make_batches  # noqa: E402
from fastgates.lm.data import load_text, make_corpus  # noqa: E402
from fastgates.lm.model import ModelConfig, init_params  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default=None)
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--tokens", choices=("char", "letters"), default="char")
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=35)
    p.add_argument("--sampling", choices=("sequential", "random"), default="sequential")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads [torch default]")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--init", choices=("fastgates", "torch"), default="fastgates",
                   help="start from fastgates' initial weights (same seed) or torch's own")
    return p.parse_args(argv)


class CharRNN(torch.nn.Module):
    def __init__(self, vocab_size, cell, hidden, layers, dropout):
        super().__init__()
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.vocab_size = vocab_size
        self.rnn = cls(vocab_size, hidden, num_layers=layers, dropout=dropout)
        self.fc = torch.nn.Linear(hidden, vocab_size)

    def forward(self, X, state):
        x = torch.nn.functional.one_hot(X, self.vocab_size).to(self.fc.weight.dtype)
        y, state = self.rnn(x, state)
        return self.fc(y), state


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def evaluate(model, ids, streams=32, chunk=512):
    """fastgates.lm.training.evaluate in torch: mean CE over every next-token prediction."""
    n = len(ids) - 1
    S = max(1, min(streams, n))
    L = n // S
    xs = torch.from_numpy(np.ascontiguousarray(ids[:S * L].reshape(S, L).T))
    ys = torch.from_numpy(np.ascontiguousarray(ids[1:S * L + 1].reshape(S, L).T))
    total, state = 0.0, None
    model.eval()
    with torch.no_grad():
        for start in range(0, L, chunk):
            logits, state = model(xs[start:start + chunk], state)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, model.vocab_size).double(), ys[start:start + chunk].reshape(-1),
                reduction="sum").item()
        rest = n - S * L
        if rest:
            last = tuple(s[:, S - 1:S].contiguous() for s in state) if isinstance(state, tuple) \
                else state[:, S - 1:S].contiguous()
            x = torch.from_numpy(ids[S * L:n, None].copy())
            y = torch.from_numpy(ids[S * L + 1:n + 1].copy())
            logits, _ = model(x, last)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, model.vocab_size).double(), y, reduction="sum").item()
    model.train()
    ce = total / n
    return math.exp(ce), ce / math.log(2)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    corpus = make_corpus(load_text(args.text, args.encoding), args.tokens, args.val_fraction)
    V = len(corpus.vocab)
    model = CharRNN(V, args.cell, args.hidden, args.layers, args.dropout).to(dtype)
    if args.init == "fastgates":
        cfg = ModelConfig(V, cell=args.cell, hidden=args.hidden, layers=args.layers,
                          dtype=args.dtype)
        params = init_params(cfg, np.random.default_rng([args.seed, 1]))
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.from_numpy(params[name]))
    lr = args.lr if args.lr is not None else (1.0 if args.optimizer == "sgd" else 2e-3)
    opt = (torch.optim.SGD if args.optimizer == "sgd" else torch.optim.Adam)(model.parameters(), lr=lr)
    params = list(model.parameters())
    log = sys.stderr
    log.write(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.cell} hidden "
              f"{args.hidden} x{args.layers}, vocab {V}, {len(corpus.train):,} train / "
              f"{len(corpus.val):,} val tokens\n")
    max_seconds = None if args.max_minutes is None else args.max_minutes * 60
    t0 = time.perf_counter()
    train_seconds, tokens, history, stopped = 0.0, 0, [], "done"
    epochs_done = 0.0
    for epoch in range(args.epochs):
        plan = make_batches(args.sampling, corpus.train, args.batch, args.steps,
                            np.random.default_rng([args.seed, 2, epoch]))
        state, loss_sum, nb = None, 0.0, 0
        for i in range(len(plan)):
            X, Y = plan.batch(i)
            ts = time.perf_counter()
            X, Y = torch.from_numpy(X), torch.from_numpy(Y)
            if args.sampling == "random":
                state = None
            logits, state = model(X, state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), Y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip > 0:
                torch.nn.utils.clip_grad_norm_(params, args.clip)
            opt.step()
            state = detach(state)
            lv = loss.item()
            train_seconds += time.perf_counter() - ts
            tokens += X.numel()
            loss_sum += lv
            nb += 1
            if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                stopped = "time"
                break
        epochs_done = epoch + nb / len(plan)
        val_ppl, val_bpc = evaluate(model, corpus.val)
        history.append({"epoch": epochs_done, "train_ppl": math.exp(loss_sum / max(nb, 1)),
                        "val_ppl": val_ppl, "val_bpc": val_bpc})
        log.write(f"epoch {epochs_done:.3f}: train ppl {history[-1]['train_ppl']:.3f}, val ppl "
                  f"{val_ppl:.3f} ({val_bpc:.3f} bits/char), {tokens / train_seconds:,.0f} tok/s\n")
        log.flush()
        if stopped == "time":
            break
    result = {"impl": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "train_ppl": history[-1]["train_ppl"], "val_ppl": history[-1]["val_ppl"],
              "val_bpc": history[-1]["val_bpc"], "tokens_per_s": tokens / max(train_seconds, 1e-9),
              "epochs": round(epochs_done, 4), "seconds": time.perf_counter() - t0,
              "cell": args.cell, "hidden": args.hidden, "layers": args.layers,
              "params": sum(p.numel() for p in params), "stopped": stopped}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
