"""``fastgates-lm``: train, sample from, evaluate and export (ONNX) a character language model.

Design: a thin layer over :mod:`fastgates.lm`.  Every option is checked by
argparse (a bad value is a usage error naming the flag, exit code 2, never a
traceback); unusable files (a missing or undecodable ``--text``, a truncated
checkpoint) are reported the same way.  ``train`` writes ``checkpoint.npz``
(atomically, after every epoch, at the end and on Ctrl-C), ``log.csv`` and
``perplexity.png`` into ``--out``; ``--resume`` continues a run from its
checkpoint exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from . import data as data_mod
from .batches import SAMPLINGS
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_training
from .data import TOKENIZERS, DataError, load_text, make_corpus
from .generation import generate
from .model import BACKENDS, CELLS, DTYPES, CharRNN, ModelConfig
from .optim import OPTIMIZERS
from .report import CsvLog, Progress, fmt_duration, fmt_num, fmt_rate, plot_history
from .training import Trainer, evaluate, summarize

#: Defaults of ``train``.  The default run (no arguments) takes about two minutes on two cores.
TRAIN_DEFAULTS = {
    "text": None, "encoding": "utf-8", "tokens": "char", "cell": "lstm", "gru_reset": "after",
    "hidden": 256, "layers": 1, "dropout": 0.0, "embedding": 0, "batch": 32, "steps": 35,
    "sampling": "sequential", "epochs": 6, "max_minutes": None, "lr": None, "optimizer": "sgd",
    "clip": 1.0, "val_fraction": 0.1, "seed": 0, "threads": None, "backend": "fast",
    "dtype": "float32", "log_every": 100, "sample_length": 160, "proj": 0, "peephole": False,
}

#: Options that may change when a run is resumed (they do not change the results).
RESUME_OVERRIDABLE = {"epochs", "max_minutes", "threads", "backend", "log_every", "sample_length"}

#: Options stored in the checkpoint's run configuration.
RUN_KEYS = ("text", "encoding", "tokens", "cell", "gru_reset", "hidden", "layers", "dropout",
            "embedding", "batch", "steps", "sampling", "epochs", "lr", "optimizer", "clip",
            "val_fraction", "seed", "dtype", "proj", "peephole")

SAMPLE_PREFIX = "The "
SAMPLE_TEMPERATURE = 0.8


# -- argument types: each error message names what was expected and what came ---------------

def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _checked(parse, ok, message):
    """An argparse type: ``parse(text)``, refused with ``message`` (formatted with the text)
    unless ``ok(value)``."""
    def check(text):
        v = parse(text)
        if not ok(v):
            raise argparse.ArgumentTypeError(message.format(text))
        return v
    return check


positive_int = _checked(_int, lambda v: v >= 1, "must be a positive integer, got {}")
nonneg_int = _checked(_int, lambda v: v >= 0, "must be a non-negative integer, got {}")
nonzero_int = _checked(_int, lambda v: v != 0, "must not be 0 (n > 0 threads, or n < 0 to "
                                                "count back from the number of cores)")
positive_float = _checked(_float, lambda v: v > 0, "must be positive, got {}")
nonneg_float = _checked(_float, lambda v: v >= 0, "must be >= 0, got {}")


dropout_prob = _checked(_float, lambda v: 0 <= v < 1, "must be in [0, 1), got {}")


def open_fraction(text):
    v = _float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return v


# -- the parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgates-lm",
        description="Character-level RNN language model on the fastgates kernels: train with "
                    "truncated BPTT and clipping, measure perplexity, generate text.")
    sub = parser.add_subparsers(dest="command", metavar="{train,generate,eval,export}")
    sub.required = True
    d = TRAIN_DEFAULTS

    t = sub.add_parser(
        "train", help="train a model (default corpus: CPython's pydoc_data topics)",
        description="Train a character language model.  With no arguments: an LSTM with 256 "
                    "units on the Python language reference shipped with CPython, about two "
                    "minutes on two cores.  Defaults in [brackets].")
    g = t.add_argument_group("data")
    g.add_argument("--text", metavar="PATH", help="UTF-8 text file [pydoc_data.topics]")
    g.add_argument("--encoding", metavar="NAME", help=f"encoding of --text [{d['encoding']}]")
    g.add_argument("--tokens", choices=TOKENIZERS,
                   help=f"char: every character; letters: a-z and space [{d['tokens']}]")
    g.add_argument("--val-fraction", type=open_fraction, metavar="F",
                   help=f"held-out final fraction of the text [{d['val_fraction']}]")
    g = t.add_argument_group("model")
    g.add_argument("--cell", choices=tuple(CELLS), help=f"[{d['cell']}]")
    g.add_argument("--gru-reset", choices=("before", "after"),
                   help="GRU reset gate before the linear map (textbook) or after it (PyTorch) "
                        f"[{d['gru_reset']}]")
    g.add_argument("--hidden", type=positive_int, metavar="H", help=f"hidden units [{d['hidden']}]")
    g.add_argument("--layers", type=positive_int, metavar="L", help=f"stacked layers [{d['layers']}]")
    g.add_argument("--dropout", type=dropout_prob, metavar="P",
                   help=f"dropout between layers [{d['dropout']}]")
    g.add_argument("--embedding", type=nonneg_int, metavar="E",
                   help=f"embedding size; 0 = one-hot token ids [{d['embedding']}]")
    g.add_argument("--proj", type=nonneg_int, metavar="P",
                   help="LSTM projection: h (and the input of the output layer) P < H wide, "
                        f"PyTorch's proj_size; 0 = none [{d['proj']}]")
    g.add_argument("--peephole", action="store_true", default=None,
                   help="LSTM peephole connections (i, f see c_{t-1}, o sees c_t)")
    g.add_argument("--dtype", choices=DTYPES, help=f"[{d['dtype']}]")
    g = t.add_argument_group("training")
    g.add_argument("--batch", type=positive_int, metavar="B", help=f"minibatch size [{d['batch']}]")
    g.add_argument("--steps", type=positive_int, metavar="T",
                   help=f"BPTT length (time steps per minibatch) [{d['steps']}]")
    g.add_argument("--sampling", choices=SAMPLINGS, help=f"[{d['sampling']}]")
    g.add_argument("--epochs", type=positive_int, metavar="N", help=f"[{d['epochs']}]")
    g.add_argument("--max-minutes", type=positive_float, metavar="M",
                   help="stop (and checkpoint) after M minutes [no limit]")
    g.add_argument("--lr", type=positive_float, help="learning rate [sgd 1, adam 0.002]")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"[{d['optimizer']}]")
    g.add_argument("--clip", type=nonneg_float, metavar="THETA",
                   help=f"clip the gradient norm over all parameters to THETA; 0 = off [{d['clip']}]")
    g.add_argument("--seed", type=nonneg_int, help=f"[{d['seed']}]")
    g = t.add_argument_group("run")
    g.add_argument("--threads", type=nonzero_int, metavar="N",
                   help="OpenMP threads of the kernels; NumPy's BLAS stays at one thread "
                        "[all cores]")
    g.add_argument("--backend", choices=BACKENDS,
                   help=f"fast: compiled kernels; reference: NumPy [{d['backend']}]")
    g.add_argument("--out", metavar="DIR", help="run directory [runs/<timestamp>]")
    g.add_argument("--resume", action="store_true", help="continue the run in --out DIR")
    g.add_argument("--json", action="store_true", help="end with one JSON line of results")
    g.add_argument("--log-every", type=positive_int, metavar="N",
                   help=f"log every N minibatches [{d['log_every']}]")
    g.add_argument("--sample-length", type=nonneg_int, metavar="N",
                   help=f"characters of the sample shown after each epoch [{d['sample_length']}]")

    gen = sub.add_parser("generate", help="continue a prefix with text drawn from a checkpoint",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    gen.add_argument("--checkpoint", required=True, metavar="PATH",
                     help="checkpoint.npz (or its run directory)")
    gen.add_argument("--prefix", default=SAMPLE_PREFIX, help="text to continue")
    gen.add_argument("--length", type=nonneg_int, default=200, help="characters to generate")
    gen.add_argument("--temperature", type=nonneg_float, default=1.0,
                     help="softmax temperature; 0 = greedy (deterministic)")
    gen.add_argument("--top-k", type=nonneg_int, default=0, metavar="K",
                     help="draw among the K most likely characters; 0 = all")
    gen.add_argument("--seed", type=nonneg_int, default=None, help="seed (default: random)")

    ev = sub.add_parser("eval", help="perplexity and bits/char of a checkpoint",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("--checkpoint", required=True, metavar="PATH",
                    help="checkpoint.npz (or its run directory)")
    ev.add_argument("--text", metavar="PATH",
                    help="text to evaluate (default: the run's validation text)")
    ev.add_argument("--encoding", default=None, metavar="NAME",
                    help="encoding of --text (default: the run's, else utf-8)")
    ev.add_argument("--threads", type=nonzero_int, default=None, metavar="N")
    ev.add_argument("--backend", choices=BACKENDS, default="fast")
    ev.add_argument("--json", action="store_true", help="print one JSON line")
    ex = sub.add_parser("export", help="write a checkpoint's model as an ONNX file (needs onnx)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        description="Write the whole model (token ids and state in, logits and "
                                    "state out) as an ONNX file; see fastgates.lm.onnx_export.")
    ex.add_argument("--checkpoint", required=True, metavar="PATH",
                    help="checkpoint.npz (or its run directory)")
    ex.add_argument("--onnx", required=True, metavar="PATH", help="the .onnx file to write")
    ex.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (14 or later)")
    parser.subcommands = {"train": t, "generate": gen, "eval": ev, "export": ex}
    return parser


# -- helpers ------------------------------------------------------------------------------------

class UsageError(Exception):
    """Reported as ``fastgates-lm <command>: error: ...`` with exit code 2."""


def _showwarning(message, category, filename, lineno, file=None, line=None):
    stream = file if file is not None else sys.stderr
    stream.write(f"warning: {message}\n")


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _jsonable(v.item())
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _checkpoint_path(path: str) -> str:
    return os.path.join(path, "checkpoint.npz") if os.path.isdir(path) else path


def _sample_text(model, vocab, tokens, length, seed):
    prefix = SAMPLE_PREFIX
    if vocab.unknown(data_mod.tokenize(prefix, tokens)):
        prefix = vocab.tokens[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return generate(model, vocab, prefix, length, temperature=SAMPLE_TEMPERATURE,
                        seed=seed, tokens=tokens)


def _one_line(text: str) -> str:
    return text.replace("\n", "⏎ ")


def _default_out() -> str:
    base = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    out, i = base, 1
    while os.path.exists(out):
        out, i = f"{base}-{i}", i + 1
    return out


# -- train --------------------------------------------------------------------------------------

def _resolve_train_config(args):
    """Defaults + explicit options (+ the checkpoint's config when resuming)."""
    explicit = {k: v for k, v in vars(args).items()
                if k in TRAIN_DEFAULTS and v is not None}
    if not args.resume:
        cfg = dict(TRAIN_DEFAULTS)
        cfg.update(explicit)
        return cfg, None, None
    if args.out is None:
        raise UsageError("--resume needs --out DIR (the run directory to continue)")
    path = os.path.join(args.out, "checkpoint.npz")
    if not os.path.exists(path):
        raise UsageError(f"--resume: no checkpoint in {args.out!r} (expected {path!r})")
    try:
        arrays, meta = load_checkpoint(path)
    except CheckpointError as exc:
        raise UsageError(f"--resume: {exc}") from None
    saved = dict(TRAIN_DEFAULTS)
    saved.update(meta.get("config", {}))
    for k, v in explicit.items():
        if k in RESUME_OVERRIDABLE:
            saved[k] = v
        elif saved.get(k) != v:
            flag = "--" + k.replace("_", "-")
            raise UsageError(f"{flag} {v} differs from the resumed run's {saved.get(k)!r}; "
                             f"--resume continues the saved configuration (drop {flag})")
    return saved, arrays, meta


def cmd_train(args) -> int:
    cfg, arrays, meta = _resolve_train_config(args)
    if cfg["cell"] != "gru" and args.gru_reset is not None and not args.resume:
        warnings.warn("--gru-reset only applies to --cell gru; ignored")
    if cfg["dropout"] > 0 and cfg["layers"] < 2:
        warnings.warn("--dropout acts between layers; with --layers 1 it has no effect")
    out = args.out or _default_out()
    ckpt_path = os.path.join(out, "checkpoint.npz")
    if not args.resume and os.path.exists(ckpt_path):
        raise UsageError(f"--out {out!r} already holds a run (checkpoint.npz); use --resume to "
                         f"continue it or choose another directory")
    try:
        text = load_text(cfg["text"], cfg["encoding"])
    except DataError as exc:
        raise UsageError(f"--text: {exc}") from None
    digest = _text_digest(text)
    if meta is not None and meta.get("config", {}).get("text_sha256") not in (None, digest):
        raise UsageError(f"--resume: the text {cfg['text'] or '(default corpus)'} changed since the "
                         f"checkpoint was written")
    try:
        vocab = data_mod.Vocab(meta["vocab"]) if meta is not None else None
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--resume: the checkpoint's vocabulary is unusable "
                         f"({type(exc).__name__}: {exc})") from None
    try:
        corpus = make_corpus(text, cfg["tokens"], cfg["val_fraction"], vocab=vocab)
    except DataError as exc:
        raise UsageError(f"--text: {exc}") from None
    try:
        mcfg = ModelConfig(len(corpus.vocab), cell=cfg["cell"], hidden=cfg["hidden"],
                           layers=cfg["layers"], dropout=cfg["dropout"],
                           embedding=cfg["embedding"], gru_reset=cfg["gru_reset"],
                           dtype=cfg["dtype"], proj=cfg["proj"], peephole=bool(cfg["peephole"]))
    except ValueError as exc:       # --proj / --peephole with another cell, --proj >= --hidden
        msg = str(exc).replace("proj_size", "--proj").replace("peephole=True", "--peephole")
        raise UsageError(msg.replace("hidden_size", "--hidden")) from None
    model = CharRNN(mcfg, backend=cfg["backend"], n_threads=cfg["threads"],
                    rng=np.random.default_rng([cfg["seed"], 1]))
    try:
        trainer = Trainer(model, corpus.train, corpus.val, batch=cfg["batch"], steps=cfg["steps"],
                          sampling=cfg["sampling"], optimizer=cfg["optimizer"], lr=cfg["lr"],
                          clip=cfg["clip"], seed=cfg["seed"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if meta is not None:
        try:
            trainer.load_state(arrays, meta)
        except (KeyError, TypeError, ValueError, IndexError) as exc:   # a tampered checkpoint
            raise UsageError(f"--resume: checkpoint {os.path.join(out, 'checkpoint.npz')!r} is "
                             f"incomplete or inconsistent ({type(exc).__name__}: {exc})") from None
    run_config = {k: cfg[k] for k in RUN_KEYS}
    run_config["text_sha256"] = digest
    os.makedirs(out, exist_ok=True)

    epochs = cfg["epochs"]
    max_seconds = None if cfg["max_minutes"] is None else cfg["max_minutes"] * 60.0
    progress = Progress(log_every=cfg["log_every"], total_epochs=epochs, max_seconds=max_seconds)
    log = CsvLog(os.path.join(out, "log.csv"), append=args.resume)
    lr = trainer.optimizer.lr
    say = progress.line
    where = "resuming" if args.resume else "training"
    variant = (f", projection {mcfg.proj}" if mcfg.proj else "") + (", peepholes" if mcfg.peephole else "")
    say(f"{where} {mcfg.cell} (hidden {mcfg.hidden}{variant}, layers {mcfg.layers}, {model.n_params:,} "
        f"parameters, {cfg['dtype']}, backend {cfg['backend']}) on "
        f"{cfg['text'] or 'pydoc_data.topics'}: {len(corpus.train):,} train / {len(corpus.val):,} "
        f"validation tokens, vocabulary {len(corpus.vocab)} ({cfg['tokens']})")
    say(f"batch {cfg['batch']} x steps {cfg['steps']} ({cfg['sampling']}), {trainer.n_batches} "
        f"minibatches per epoch, {cfg['optimizer']} lr {lr:g}, clip {cfg['clip']:g}, epochs {epochs}"
        + (f", at most {cfg['max_minutes']:g} min" if max_seconds else "") + f"; output in {out}")
    if args.resume:
        say(f"resuming at epoch {trainer.progress:.3f} (step {trainer.step})")

    interval = {"loss": 0.0, "n": 0, "norm": 0.0}

    def on_batch(tr, info):
        if math.isfinite(info.loss):
            interval["loss"] += info.loss
            interval["n"] += 1
        interval["norm"] = info.grad_norm
        remaining = (epochs - tr.epoch - 1) * tr.n_batches + (info.n_batches - info.batch)
        progress.update(info, remaining)
        if info.batch % cfg["log_every"] == 0 and interval["n"]:
            m = interval["loss"] / interval["n"]
            log.row(kind="interval", epoch=round(tr.progress, 5), step=tr.step, seconds=info.seconds,
                    tokens_per_s=info.tokens / max(info.seconds, 1e-9),
                    train_ppl=math.exp(min(m, 700)), grad_norm=info.grad_norm, lr=lr)
            interval.update(loss=0.0, n=0)

    def checkpoint():
        save_training(ckpt_path, trainer, corpus.vocab, run_config)

    def on_epoch(tr, rec):
        log.row(kind="epoch", epoch=rec["epoch"], step=tr.step, seconds=rec["seconds"],
                tokens_per_s=rec["tokens_per_s"], train_ppl=rec["train_ppl"],
                val_ppl=rec["val_ppl"], val_bpc=rec["val_bpc"], grad_norm=interval["norm"], lr=lr)
        say(f"epoch {rec['epoch']}/{epochs}: train ppl {fmt_num(rec['train_ppl'])}, val ppl "
            f"{fmt_num(rec['val_ppl'])} ({fmt_num(rec['val_bpc'])} bits/char), "
            f"{fmt_rate(rec['tokens_per_s'])} tok/s, {fmt_duration(rec['seconds'])}")
        if cfg["sample_length"]:
            sample = _sample_text(model, corpus.vocab, cfg["tokens"], cfg["sample_length"],
                                  seed=cfg["seed"] + rec["epoch"])
            say(f"  sample: {_one_line(sample)}")
        checkpoint()

    t0 = time.perf_counter()
    try:
        stopped = trainer.run(epochs, max_seconds=max_seconds, on_batch=on_batch, on_epoch=on_epoch)
        result = summarize(trainer, stopped, time.perf_counter() - t0)
        checkpoint()
    except KeyboardInterrupt:
        progress.clear()
        if trainer.in_step:
            sys.stderr.write("interrupted during a parameter update: not saving; the last "
                             f"checkpoint in {out} is kept\n")
        else:
            checkpoint()
            sys.stderr.write(f"interrupted at epoch {trainer.progress:.3f} (step {trainer.step}); "
                             f"checkpoint saved to {ckpt_path}\n"
                             f"continue with: fastgates-lm train --resume --out {out}\n")
        log.close()
        _plot(out, say)
        return 130
    log.close()
    if stopped == "time":
        say(f"time budget of {cfg['max_minutes']:g} min reached at epoch {trainer.progress:.3f}; "
            f"continue with: fastgates-lm train --resume --out {out} [--max-minutes M]")
    say(f"final: train ppl {fmt_num(result['train_ppl'])}, val ppl {fmt_num(result['val_ppl'])} "
        f"({fmt_num(result['val_bpc'])} bits/char), {fmt_rate(result['tokens_per_s'])} tok/s, "
        f"{fmt_duration(result['seconds'])}")
    sample = _sample_text(model, corpus.vocab, cfg["tokens"], 200, seed=cfg["seed"])
    say("sample (temperature 0.8):")
    say(sample)
    _plot(out, say)
    say(f"checkpoint: {ckpt_path}")
    if args.json:
        summary = {
            "train_ppl": result["train_ppl"], "val_ppl": result["val_ppl"],
            "val_bpc": result["val_bpc"], "tokens_per_s": result["tokens_per_s"],
            "epochs": result["epochs"], "seconds": result["seconds"], "cell": mcfg.cell,
            "hidden": mcfg.hidden, "layers": mcfg.layers, "params": model.n_params,
            "vocab": len(corpus.vocab), "tokens": cfg["tokens"], "batch": cfg["batch"],
            "steps": cfg["steps"], "optimizer_steps": trainer.step, "dtype": cfg["dtype"],
            "backend": cfg["backend"], "threads": cfg["threads"], "stopped": stopped,
            "out": out, "checkpoint": ckpt_path,
        }
        print(json.dumps(_jsonable(summary)), flush=True)
    return 0


def _plot(out, say):
    png = os.path.join(out, "perplexity.png")
    why = plot_history(os.path.join(out, "log.csv"), png)
    say(f"skipping perplexity.png: {why}" if why else f"perplexity curve: {png}")


# -- generate / eval ----------------------------------------------------------------------------

def _open_checkpoint(path, backend="fast", threads=None):
    try:
        return load_model(_checkpoint_path(path), backend=backend, n_threads=threads)
    except CheckpointError as exc:
        raise UsageError(f"--checkpoint: {exc}") from None


def cmd_generate(args) -> int:
    loaded = _open_checkpoint(args.checkpoint)
    tokens = loaded.meta.get("config", {}).get("tokens", "char")
    try:
        text = generate(loaded.model, loaded.vocab, args.prefix, args.length,
                        temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                        tokens=tokens)
    except ValueError as exc:
        raise UsageError(f"--prefix: {exc}") from None
    sys.stdout.write(text + "\n")
    return 0


def cmd_eval(args) -> int:
    loaded = _open_checkpoint(args.checkpoint, args.backend, args.threads)
    cfg = loaded.meta.get("config", {})
    tokens = cfg.get("tokens", "char")
    if args.text is not None:
        try:
            text = load_text(args.text, args.encoding or "utf-8")
        except DataError as exc:
            raise UsageError(f"--text: {exc}") from None
        toks = data_mod.tokenize(text, tokens)
        unknown = loaded.vocab.unknown(toks)
        if unknown:
            warnings.warn(f"{len(unknown)} distinct characters of --text are not in the "
                          f"vocabulary and count as <unk>")
        ids, what = loaded.vocab.encode(toks), args.text
    else:
        try:
            text = load_text(cfg.get("text"), args.encoding or cfg.get("encoding", "utf-8"))
        except DataError as exc:
            raise UsageError(f"the run's text is unavailable ({exc}); pass --text PATH") from None
        if cfg.get("text_sha256") not in (None, _text_digest(text)):
            warnings.warn("the run's text changed since training; evaluating its current "
                          "validation part")
        corpus = make_corpus(text, tokens, cfg.get("val_fraction", 0.1), vocab=loaded.vocab)
        ids, what = corpus.val, "validation part of " + (cfg.get("text") or "pydoc_data.topics")
    if len(ids) < 2:
        raise UsageError("--text: need at least 2 tokens to evaluate")
    t0 = time.perf_counter()
    ev = evaluate(loaded.model, ids)
    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps(_jsonable({"ppl": ev.ppl, "bpc": ev.bpc, "ce": ev.ce, "tokens": ev.tokens,
                                    "seconds": seconds, "text": what})))
    else:
        print(f"{what}: perplexity {ev.ppl:.4f}, {ev.bpc:.4f} bits/char "
              f"({ev.tokens:,} predictions, {seconds:.1f} s)")
    return 0


def cmd_export(args) -> int:
    try:
        from .onnx_export import describe, export_model
        import fastgates.onnx  # noqa: F401  (the clear ImportError when onnx is missing)
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    loaded = _open_checkpoint(args.checkpoint)
    directory = os.path.dirname(os.path.abspath(args.onnx))
    if not os.path.isdir(directory):
        raise UsageError(f"--onnx: the folder {directory!r} does not exist")
    try:
        export_model(loaded.model, args.onnx, vocab=loaded.vocab, opset=args.opset,
                     tokens=loaded.meta.get("config", {}).get("tokens", "char"))
    except (ValueError, OSError) as exc:
        raise UsageError(f"--onnx/--opset: {exc}") from None
    print(f"{args.onnx}: {describe(loaded.model.config)}")
    return 0


# -- entry point --------------------------------------------------------------------------------

def main(argv=None) -> int:
    """Run ``fastgates-lm`` (also ``python -m fastgates.lm``).

    Parameters
    ----------
    argv : list of str or None, default None
        The arguments after the program name; None reads ``sys.argv``.

    Returns
    -------
    int
        The exit code: 0 on success, 130 when interrupted, 1 when the output pipe
        closed early.

    Raises
    ------
    SystemExit
        Usage and input errors (a bad option, an unreadable text or checkpoint):
        status 2 with the message on stderr, as argparse does.

    Examples
    --------
    >>> from fastgates.lm import cli
    >>> cli.main(["train", "--epochs", "1", "--hidden", "64", "--out", "runs/quick"])  # doctest: +SKIP
    >>> cli.main(["generate", "--checkpoint", "runs/quick", "--temperature", "0.8"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser.subcommands[args.command]
    old = warnings.showwarning
    warnings.showwarning = _showwarning
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_eval(args)
    except UsageError as exc:
        sub.error(str(exc))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        try:
            sys.stdout.close()
        except OSError:
            pass
        return 1
    finally:
        warnings.showwarning = old
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
