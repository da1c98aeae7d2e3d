"""Training loop: truncated BPTT, gradient clipping, perplexity.

Design: :class:`Trainer` owns everything a run needs to continue exactly where
it stopped — the model, the optimizer, the position (epoch, minibatch index,
step), the hidden state carried between minibatches, the per-epoch loss sums and
the dropout generator — and exposes it as arrays + JSON (``state()`` /
``load_state()``) for :mod:`fastgates.lm.checkpoint`.  The minibatch plan of
epoch ``e`` comes from its own generator ``default_rng([seed, 2, e])``, so a
resumed run rebuilds the same plan and jumps to the saved minibatch.

One step (``sequential`` sampling carries the state; ``random`` resets it)::

    loss, g, state' = model.loss_and_grads(X, Y, state)   # no gradient into state
    n = ‖g‖ over ALL parameters;  g ← min(1, θ/n) · g     # clip_grad_norm
    n finite:  optimizer.step(params, g)                  # else: skip + warning
    state ← state'                                        # (zeros for random)

A Ctrl-C during :meth:`Trainer.run` (main thread) is deferred to the end of the
current step and then raised as ``KeyboardInterrupt`` at a clean point, so the
caller can save a consistent checkpoint; a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from typing import NamedTuple

import numpy as np

from .batches import SAMPLINGS, make_batches
from .model import CharRNN
from .optim import make_optimizer
from .threadpool import blas_limit

LN2 = math.log(2.0)


def grad_norm(grads: dict) -> float:
    """Euclidean norm of all gradients together.

    Each array's sum of squares is a BLAS dot product in its own dtype, redone in
    float64 when a float32 sum overflows, so only a truly non-finite gradient
    gives a non-finite norm.

    Parameters
    ----------
    grads : dict of str to ndarray
        The gradients (any shapes, float32 or float64).

    Returns
    -------
    float
        The norm of their concatenation.
    """
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for g in grads.values():
            flat = g.ravel()
            s = float(np.dot(flat, flat))
            if not math.isfinite(s) and flat.dtype != np.float64:
                flat = flat.astype(np.float64)
                s = float(np.dot(flat, flat))
            total += s
    return math.sqrt(total)


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Clip all gradients together in place: g ← min(1, θ/‖g‖) · g.

    Parameters
    ----------
    grads : dict of str to ndarray
        Every parameter's gradient, scaled in place; ‖g‖ is the norm of their
        concatenation.
    max_norm : float
        θ > 0.

    Returns
    -------
    float
        ‖g‖ before clipping.  When it is not finite the gradients are left
        untouched (the caller should skip the update).

    Raises
    ------
    ValueError
        ``max_norm`` is not positive.

    Examples
    --------
    >>> from fastgates.lm import clip_grad_norm
    >>> grads = {"a": np.array([3.0]), "b": np.array([4.0])}
    >>> clip_grad_norm(grads, 1.0)
    5.0
    >>> grads["a"], grads["b"]
    (array([0.6]), array([0.8]))
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    norm = grad_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= g.dtype.type(scale)
    return norm


class Evaluation(NamedTuple):
    """Perplexity of a text, as :func:`evaluate` returns it.

    Parameters
    ----------
    ppl : float
        Perplexity, ``exp(ce)`` (inf when ``ce`` overflows).
    bpc : float
        Bits per character (token), ``ce / ln 2``.
    ce : float
        Mean cross-entropy in nats.
    tokens : int
        Number of predictions averaged over.
    """

    ppl: float
    bpc: float
    ce: float
    tokens: int


def evaluate(model: CharRNN, ids, streams: int = 32, chunk: int = 512,
             blas_threads: int | None = 1) -> Evaluation:
    """Mean cross-entropy of predicting every token of ``ids`` from the ones before it.

    The text is split into ``streams`` contiguous parts evaluated side by side,
    each with its hidden state carried across the whole part (chunks of
    ``chunk`` steps); the tokens left over continue the last stream.  Every one
    of the ``len(ids) - 1`` next-token predictions counts once.

    Parameters
    ----------
    model : CharRNN
        Evaluated in inference mode (no dropout, no cache).
    ids : array_like of shape (N,), integers in [0, vocab_size)
        The text as token ids, N >= 2.
    streams : int, default 32
        Parallel streams (the batch of the evaluation).
    chunk : int, default 512
        Steps per kernel call.
    blas_threads : int or None, default 1
        NumPy's BLAS threads meanwhile (see :mod:`fastgates.lm.threadpool`); None
        leaves them unchanged.

    Returns
    -------
    Evaluation
        ``(ppl, bpc, ce, tokens)``.

    Raises
    ------
    ValueError
        Fewer than 2 tokens.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    n = len(ids) - 1
    if n < 1:
        raise ValueError(f"need at least 2 tokens to evaluate, got {len(ids)}")
    S = max(1, min(int(streams), n))
    L = n // S
    xs = np.ascontiguousarray(ids[:S * L].reshape(S, L).T)
    ys = np.ascontiguousarray(ids[1:S * L + 1].reshape(S, L).T)
    total, state = 0.0, None
    with blas_limit(blas_threads):
        for start in range(0, L, chunk):
            t, state = model.loss_sum(xs[start:start + chunk], ys[start:start + chunk], state)
            total += t
        rest = n - S * L
        if rest:
            last = [tuple(np.ascontiguousarray(a[S - 1:S]) for a in st) for st in state]
            t, _ = model.loss_sum(ids[S * L:n, None], ids[S * L + 1:n + 1, None], last)
            total += t
    ce = total / n
    return Evaluation(math.exp(ce) if ce < 700 else math.inf, ce / LN2, ce, n)


def perplexity(model: CharRNN, ids, streams: int = 32) -> float:
    """Perplexity, exp(mean cross-entropy), of ``ids`` with the state carried.

    Parameters
    ----------
    model : CharRNN
    ids : array_like of shape (N,), integers
        The text as token ids, N >= 2.
    streams : int, default 32
        Parallel streams (see :func:`evaluate`).

    Returns
    -------
    float
    """
    return evaluate(model, ids, streams).ppl


class _Deferral:
    interrupted = False


@contextlib.contextmanager
def _deferred_sigint():
    """Record the first SIGINT instead of raising; a second one raises at once."""
    flag = _Deferral()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield flag
        return

    def handler(signum, frame):
        if flag.interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        flag.interrupted = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class BatchInfo(NamedTuple):
    """What :meth:`Trainer.run` reports to ``on_batch`` after every step.

    Parameters
    ----------
    epoch : int
        Completed epochs before this one (0-based epoch index).
    batch, n_batches : int
        This minibatch's 1-based index and the number in the epoch.
    step : int
        Optimizer steps taken in total.
    loss : float
        Mean cross-entropy of the minibatch.
    grad_norm : float
        Gradient norm before clipping.
    epoch_ppl : float
        Training perplexity of the epoch so far.
    tokens : int
        Tokens in the minibatch.
    seconds : float
        Wall time of the step.
    """

    epoch: int
    batch: int
    n_batches: int
    step: int
    loss: float
    grad_norm: float
    epoch_ppl: float
    tokens: int
    seconds: float


class Trainer:
    """A resumable training run of a :class:`CharRNN` on a token-id array.

    Parameters
    ----------
    model : CharRNN
    train_ids, val_ids : 1-D int arrays
        Training text and held-out text (val may be None).
    batch, steps : int
        Minibatch size B and BPTT length T.
    sampling : "sequential" or "random"
    optimizer : "sgd" or "adam"
    lr : float or None
        None = the optimizer's default (SGD 1, Adam 2e-3).
    clip : float or None
        θ of :func:`clip_grad_norm`; None or 0 disables clipping (the norm is still computed).
    seed : int
        Seeds the minibatch plans and the dropout masks.
    eval_streams : int
        Parallel streams for the validation perplexity.
    blas_threads : int or None
        Threads of NumPy's BLAS (the output layer) while training: 1 by default so
        that it does not compete with the kernels' OpenMP threads (see
        :mod:`fastgates.lm.threadpool`); None leaves BLAS alone.

    Raises
    ------
    ValueError
        An unknown ``sampling`` or ``optimizer``, a non-positive ``lr``, or a training
        text too short for one minibatch.

    Examples
    --------
    >>> from fastgates import lm
    >>> corpus = lm.make_corpus(lm.load_text()[:20000])
    >>> model = lm.CharRNN(lm.ModelConfig(len(corpus.vocab), cell="gru", hidden=32))
    >>> trainer = lm.Trainer(model, corpus.train, corpus.val, batch=16, steps=20)
    >>> trainer.run(1)
    'done'
    >>> sorted(trainer.history[-1])
    ['epoch', 'seconds', 'tokens_per_s', 'train_ppl', 'val_bpc', 'val_ppl']
    """

    def __init__(self, model: CharRNN, train_ids, val_ids=None, *, batch=32, steps=35,
                 sampling="sequential", optimizer="sgd", lr=None, clip=1.0, seed=0, eval_streams=32,
                 blas_threads=1):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.model = model
        self.train_ids = np.ascontiguousarray(train_ids, dtype=np.int64)
        self.val_ids = None if val_ids is None else np.ascontiguousarray(val_ids, dtype=np.int64)
        self.batch, self.steps, self.sampling = int(batch), int(steps), sampling
        self.clip = float(clip) if clip else 0.0
        self.seed = int(seed)
        self.eval_streams = int(eval_streams)
        self.blas_threads = blas_threads
        self.optimizer = make_optimizer(optimizer, model.params, lr)
        self.n_batches = len(self._plan(0))
        if self.n_batches == 0:
            raise ValueError(f"the training text ({len(self.train_ids)} tokens) is too short for "
                             f"one minibatch of batch {self.batch} x steps {self.steps}")
        self.dropout_rng = np.random.default_rng([self.seed, 3])
        # position and carried state
        self.epoch = 0            # completed epochs
        self.batch_index = 0      # next minibatch within the current epoch
        self.step = 0             # optimizer steps taken (and skipped) in total
        self.state = None         # carried hidden state (sequential sampling)
        self.epoch_loss = 0.0     # sum of minibatch mean losses in the current epoch
        self.epoch_batches = 0
        self.skipped = 0
        self.history = []         # one dict per completed epoch
        self.in_step = False      # True while parameters may be half updated
        self.tokens_per_s = math.nan
        self._epoch_t0 = None     # wall clock of the current epoch (this process)
        self._epoch_tokens = 0
        self._plan_len = 0        # minibatches in the current epoch (varies with its offset)

    # -- the plan ---------------------------------------------------------------------------
    def _plan(self, epoch):
        rng = np.random.default_rng([self.seed, 2, epoch])
        return make_batches(self.sampling, self.train_ids, self.batch, self.steps, rng)

    @property
    def progress(self) -> float:
        """Epochs done, with the fraction of the current one."""
        return self.epoch + self.batch_index / (self._plan_len or self.n_batches)

    # -- one step ---------------------------------------------------------------------------
    def train_step(self, X, Y):
        """One optimizer step on one minibatch.

        A step whose loss or gradient norm is not finite is skipped (weights
        unchanged) with a RuntimeWarning.

        Parameters
        ----------
        X, Y : ndarray of shape (steps, batch), integers
            Inputs and targets (the inputs shifted by one).

        Returns
        -------
        loss : float
            Mean cross-entropy of the minibatch.
        grad_norm : float
            Gradient norm before clipping.
        """
        carried = self.state if self.sampling == "sequential" else None
        loss, grads, new_state = self.model.loss_and_grads(X, Y, carried, rng=self.dropout_rng)
        norm = clip_grad_norm(grads, self.clip) if self.clip else grad_norm(grads)
        self.in_step = True
        if math.isfinite(norm) and math.isfinite(loss):
            self.optimizer.step(self.model.params, grads)
        else:
            self.skipped += 1
            warnings.warn(f"step {self.step}: gradient norm is {norm} (loss {loss}); "
                          f"update skipped, weights unchanged", RuntimeWarning, stacklevel=2)
        if self.sampling == "sequential":
            finite = all(np.isfinite(a).all() for st in new_state for a in st)
            self.state = new_state if finite else None
        self.step += 1
        self.in_step = False
        return loss, norm

    # -- evaluation --------------------------------------------------------------------------
    def validate(self):
        """Evaluate the held-out text.

        Returns
        -------
        Evaluation or None
            None when the trainer has no validation text.
        """
        if self.val_ids is None or len(self.val_ids) < 2:
            return None
        return evaluate(self.model, self.val_ids, self.eval_streams, blas_threads=self.blas_threads)

    @property
    def epoch_ppl(self) -> float:
        """Training perplexity of the current epoch so far (exp of the mean minibatch loss)."""
        if not self.epoch_batches:
            return math.nan
        m = self.epoch_loss / self.epoch_batches
        return math.exp(m) if m < 700 else math.inf

    # -- the loop ----------------------------------------------------------------------------
    def run(self, epochs, *, max_seconds=None, on_batch=None, on_epoch=None):
        """Train until ``epochs`` epochs are complete or ``max_seconds`` have passed.

        A Ctrl-C in the main thread is deferred to the end of the current step, then
        raised as KeyboardInterrupt with the trainer at a consistent point (unless
        ``trainer.in_step`` is True), so the caller can checkpoint.

        Parameters
        ----------
        epochs : int
            The total number of epochs to reach (a resumed trainer continues).
        max_seconds : float or None, default None
            A time budget; None: no limit.
        on_batch : callable or None
            ``on_batch(trainer, info)`` after every step, ``info`` a
            :class:`BatchInfo`.
        on_epoch : callable or None
            ``on_epoch(trainer, record)`` after every epoch, ``record`` the dict
            appended to ``history`` (epoch, train_ppl, val_ppl, val_bpc, seconds,
            tokens_per_s).

        Returns
        -------
        str
            "done" or "time".
        """
        t0 = time.perf_counter()
        tokens_run = 0
        train_seconds = 0.0
        with _deferred_sigint() as flag, blas_limit(self.blas_threads):
            while self.epoch < epochs:
                plan = self._plan(self.epoch)
                self._plan_len = len(plan)
                if self.batch_index == 0:
                    self.state, self.epoch_loss, self.epoch_batches = None, 0.0, 0
                if self._epoch_t0 is None:
                    self._epoch_t0, self._epoch_tokens = time.perf_counter(), 0
                for i in range(self.batch_index, len(plan)):
                    X, Y = plan.batch(i)
                    ts = time.perf_counter()
                    loss, norm = self.train_step(X, Y)
                    train_seconds += time.perf_counter() - ts
                    if math.isfinite(loss):
                        self.epoch_loss += loss
                        self.epoch_batches += 1
                    self.batch_index = i + 1
                    tokens_run += X.size
                    self._epoch_tokens += X.size
                    if on_batch is not None:
                        on_batch(self, BatchInfo(self.epoch, i + 1, len(plan), self.step, loss, norm,
                                                 self.epoch_ppl, tokens_run, train_seconds))
                    if flag.interrupted:
                        raise KeyboardInterrupt
                    if max_seconds is not None and time.perf_counter() - t0 >= max_seconds \
                            and (i + 1 < len(plan) or self.epoch + 1 < epochs):
                        if i + 1 == len(plan):
                            self._finish_epoch(on_epoch)
                        self.tokens_per_s = tokens_run / max(train_seconds, 1e-9)
                        return "time"
                self._finish_epoch(on_epoch)
                if flag.interrupted:
                    raise KeyboardInterrupt
        self.tokens_per_s = tokens_run / max(train_seconds, 1e-9)
        return "done"

    def _finish_epoch(self, on_epoch):
        seconds = time.perf_counter() - self._epoch_t0
        train_ppl = self.epoch_ppl
        self.epoch += 1
        self.batch_index = 0
        self.state = None
        ev = self.validate()
        record = {"epoch": self.epoch, "train_ppl": train_ppl,
                  "val_ppl": ev.ppl if ev else None, "val_bpc": ev.bpc if ev else None,
                  "seconds": seconds, "tokens_per_s": self._epoch_tokens / max(seconds, 1e-9)}
        self.history.append(record)
        self._epoch_t0 = None
        if on_epoch is not None:
            on_epoch(self, record)

    # -- resumable state ---------------------------------------------------------------------
    def state_arrays(self) -> dict:
        """Arrays to checkpoint: parameters, optimizer state, carried hidden state.

        Returns
        -------
        dict of str to ndarray
            ``params/<name>``, ``optim/<m|v>/<name>`` and ``carried/<h|c>_l<k>``.
        """
        arrays = {f"params/{k}": v for k, v in self.model.params.items()}
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.state_dict().items()})
        if self.state is not None:
            for k, st in enumerate(self.state):
                for name, a in zip(("h", "c"), st):
                    arrays[f"carried/{name}_l{k}"] = a
        return arrays

    def state_meta(self) -> dict:
        """JSON-able progress, optimizer settings and generator state.

        Returns
        -------
        dict
        """
        return {
            "train": {"batch": self.batch, "steps": self.steps, "sampling": self.sampling,
                      "clip": self.clip, "seed": self.seed, "eval_streams": self.eval_streams},
            "optimizer": self.optimizer.config(),
            "progress": {"epoch": self.epoch, "batch_index": self.batch_index, "step": self.step,
                         "epoch_loss": self.epoch_loss, "epoch_batches": self.epoch_batches,
                         "skipped": self.skipped, "history": self.history},
            "rng": {"dropout": self.dropout_rng.bit_generator.state,
                    "plan": f"numpy default_rng([{self.seed}, 2, epoch])"},
        }

    def load_state(self, arrays: dict, meta: dict) -> None:
        """Restore what :meth:`state_arrays` / :meth:`state_meta` saved (parameters included).

        Parameters
        ----------
        arrays : dict of str to ndarray
            As :meth:`state_arrays` returned them.
        meta : dict
            As :meth:`state_meta` returned it.

        Raises
        ------
        ValueError
            The checkpoint's optimizer differs from this trainer's.
        """
        for k, p in self.model.params.items():
            p[...] = arrays[f"params/{k}"]
        if meta["optimizer"]["name"] != self.optimizer.name:
            raise ValueError(f"checkpoint optimizer {meta['optimizer']['name']!r} differs from "
                             f"{self.optimizer.name!r}")
        optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        self.optimizer.load_state(meta["optimizer"], optim)
        pr = meta["progress"]
        self.epoch, self.batch_index, self.step = int(pr["epoch"]), int(pr["batch_index"]), int(pr["step"])
        self.epoch_loss, self.epoch_batches = float(pr["epoch_loss"]), int(pr["epoch_batches"])
        self.skipped = int(pr["skipped"])
        self.history = list(pr["history"])
        self.dropout_rng.bit_generator.state = meta["rng"]["dropout"]
        cfg = self.model.config
        if "carried/h_l0" in arrays:
            names = cfg.celldef.states
            self.state = [tuple(np.array(arrays[f"carried/{n}_l{k}"], dtype=self.model.dtype)
                                for n in names) for k in range(cfg.layers)]
        else:
            self.state = None


def train(model: CharRNN, train_ids, val_ids=None, *, epochs=1, max_seconds=None,
          on_batch=None, on_epoch=None, **options) -> dict:
    """Train ``model`` in place; a thin wrapper over :class:`Trainer`.

    Parameters
    ----------
    model : CharRNN
    train_ids : array_like of shape (N,), integers
        The training text as token ids.
    val_ids : array_like of shape (M,), integers, or None
        The held-out text.
    epochs : int, default 1
    max_seconds : float or None, default None
        A time budget.
    on_batch, on_epoch : callable or None
        As in :meth:`Trainer.run`.
    **options
        Those of :class:`Trainer` (batch, steps, sampling, optimizer, lr, clip,
        seed, eval_streams, blas_threads).

    Returns
    -------
    dict
        ``train_ppl`` (last epoch), ``val_ppl``, ``val_bpc`` (final model),
        ``epochs`` (fractional), ``steps``, ``tokens_per_s``, ``seconds``,
        ``history``, ``stopped`` ("done" or "time") and ``trainer``.
    """
    trainer = Trainer(model, train_ids, val_ids, **options)
    t0 = time.perf_counter()
    stopped = trainer.run(epochs, max_seconds=max_seconds, on_batch=on_batch, on_epoch=on_epoch)
    return summarize(trainer, stopped, time.perf_counter() - t0)


def summarize(trainer: Trainer, stopped: str, seconds: float) -> dict:
    """The final numbers of a run (validation recomputed unless the last epoch just did it).

    Parameters
    ----------
    trainer : Trainer
    stopped : str
        What :meth:`Trainer.run` returned.
    seconds : float
        Wall time of the run.

    Returns
    -------
    dict
        As :func:`train` returns it.
    """
    if trainer.batch_index == 0 and trainer.history:
        last = trainer.history[-1]
        val_ppl, val_bpc, train_ppl = last["val_ppl"], last["val_bpc"], last["train_ppl"]
    else:
        ev = trainer.validate()
        val_ppl, val_bpc = (ev.ppl, ev.bpc) if ev else (None, None)
        train_ppl = trainer.epoch_ppl
    return {"train_ppl": train_ppl, "val_ppl": val_ppl, "val_bpc": val_bpc,
            "epochs": round(trainer.progress, 4), "steps": trainer.step,
            "tokens_per_s": trainer.tokens_per_s, "seconds": seconds,
            "history": trainer.history, "stopped": stopped, "trainer": trainer}
