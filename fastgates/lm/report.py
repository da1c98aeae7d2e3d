"""What a training run shows and writes: progress, log.csv, perplexity.png.

Design: :class:`Progress` draws a one-line bar (epoch, tokens/s, train
perplexity, ETA) when the output is a terminal and prints a plain line every
``log_every`` minibatches otherwise; :class:`CsvLog` appends one row per
logging interval and per epoch to ``log.csv``; :func:`plot_history` draws train
and validation perplexity against epochs with matplotlib when it is installed
(an optional extra: ``pip install fastgates[plot]``) and says so otherwise.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time

CSV_FIELDS = ("kind", "epoch", "step", "seconds", "tokens_per_s", "train_ppl", "val_ppl",
              "val_bpc", "grad_norm", "lr")


def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_rate(tokens_per_s: float) -> str:
    if tokens_per_s >= 1e6:
        return f"{tokens_per_s / 1e6:.2f}M"
    if tokens_per_s >= 1e3:
        return f"{tokens_per_s / 1e3:.1f}k"
    return f"{tokens_per_s:.0f}"


def fmt_num(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


class Progress:
    """Progress of a run: a bar on a terminal, plain lines every ``log_every`` minibatches otherwise.

    ``remaining_batches()`` (a callable) and ``max_seconds`` give the ETA.
    """

    def __init__(self, stream=None, *, log_every=100, total_epochs=1, max_seconds=None, tty=None):
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every = max(1, int(log_every))
        self.total_epochs = total_epochs
        self.max_seconds = max_seconds
        self.t0 = time.perf_counter()
        self._last_draw = 0.0
        self._bar_shown = False
        self._batches_run = 0

    def eta(self, remaining_batches):
        """Seconds left: remaining minibatches at this run's pace, capped by the time budget."""
        elapsed = time.perf_counter() - self.t0
        eta = remaining_batches * elapsed / max(self._batches_run, 1)
        if self.max_seconds is not None:
            eta = min(eta, max(self.max_seconds - elapsed, 0.0))
        return eta

    def update(self, info, remaining_batches):
        """Report the minibatch described by ``info`` (a :class:`~fastgates.lm.training.BatchInfo`)."""
        self._batches_run += 1
        tps = info.tokens / max(info.seconds, 1e-9)
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw < 0.2 and info.batch != info.n_batches:
                return
            self._last_draw = now
            frac = info.batch / info.n_batches
            width = 24
            filled = int(frac * width)
            bar = "#" * filled + "-" * (width - filled)
            line = (f"epoch {info.epoch + 1}/{self.total_epochs} [{bar}] {frac * 100:3.0f}% "
                    f"| {fmt_rate(tps)} tok/s | ppl {fmt_num(info.epoch_ppl, 2)} "
                    f"| ETA {fmt_duration(self.eta(remaining_batches))}")
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
            self._bar_shown = True
        elif info.batch % self.log_every == 0:
            self.stream.write(
                f"epoch {info.epoch + 1} batch {info.batch}/{info.n_batches}  "
                f"train ppl {fmt_num(info.epoch_ppl, 2)}  |g| {fmt_num(info.grad_norm, 3)}  "
                f"{fmt_rate(tps)} tok/s  ETA {fmt_duration(self.eta(remaining_batches))}\n")
            self.stream.flush()

    def clear(self):
        """End the bar's line before other output."""
        if self.tty and self._bar_shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._bar_shown = False

    def line(self, text):
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()


class CsvLog:
    """``log.csv``: one row per logging interval ("interval") and per epoch ("epoch")."""

    def __init__(self, path, append=False):
        self.path = path
        exists = append and os.path.exists(path) and os.path.getsize(path) > 0
        self._f = open(path, "a" if exists else "w", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, fieldnames=CSV_FIELDS)
        if not exists:
            self._w.writeheader()
            self._f.flush()

    def row(self, **values):
        out = {}
        for k in CSV_FIELDS:
            v = values.get(k)
            if isinstance(v, float):
                v = "" if math.isnan(v) else f"{v:.6g}"
            out[k] = "" if v is None else v
        self._w.writerow(out)
        self._f.flush()

    def close(self):
        self._f.close()


def read_csv(path):
    """The rows of a ``log.csv`` as dicts.

    Parameters
    ----------
    path : str or path-like
        A ``log.csv`` written by :class:`CsvLog`.

    Returns
    -------
    list of dict
        One dict per row, keyed by the columns (``kind``, ``epoch``, ``step``,
        ``seconds``, ``tokens_per_s``, ``train_ppl``, ``val_ppl``, ``val_bpc``,
        ``grad_norm``, ``lr``): ``kind`` is "interval" or "epoch", numbers are
        floats and empty fields None.
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                if k == "kind":
                    row[k] = v
                else:
                    try:
                        row[k] = float(v) if v not in ("", None) else None
                    except ValueError:
                        row[k] = None
            rows.append(row)
    return rows


def plot_history(csv_path, png_path) -> str | None:
    """Draw ``perplexity.png``: train and validation perplexity per epoch, from ``log.csv``.

    The figure is drawn without pyplot (a :class:`matplotlib.figure.Figure` saved
    directly), so it never changes the matplotlib backend of the calling process, and
    written atomically (a temporary file renamed over ``png_path``).

    Parameters
    ----------
    csv_path : str or path-like
        A ``log.csv`` written by :class:`CsvLog` (``fastgates-lm train`` writes one in
        its run directory).
    png_path : str or path-like
        Where to write the PNG.

    Returns
    -------
    str or None
        None when the figure was written; otherwise why it was skipped (matplotlib, an
        optional extra, is not installed: ``pip install "fastgates[plot]"``).
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FormatStrFormatter
    except ImportError:
        return "matplotlib is not installed (pip install 'fastgates[plot]')"
    png_path = os.fspath(png_path)
    rows = read_csv(csv_path)
    interval = [(r["epoch"], r["train_ppl"]) for r in rows if r["kind"] == "interval" and r["train_ppl"]]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.subplots()
    if interval:
        ax.plot(*zip(*interval), color="tab:blue", alpha=0.35, lw=1, label="train (interval)")
    ep_train = [(r["epoch"], r["train_ppl"]) for r in epochs if r["train_ppl"]]
    ep_val = [(r["epoch"], r["val_ppl"]) for r in epochs if r["val_ppl"]]
    if ep_train:
        ax.plot(*zip(*ep_train), "o-", color="tab:blue", label="train")
    if ep_val:
        ax.plot(*zip(*ep_val), "s-", color="tab:orange", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=8)
    ax.grid(True, which="both", alpha=0.3)
    if interval or ep_train or ep_val:
        ax.legend()
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, png_path)
    return None
