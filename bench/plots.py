"""Figures of the performance report: ``python bench/plots.py [bench/results.json]``.

Design: one figure per section of the JSON that ``bench/report.py`` writes, drawn from
the JSON alone (no import of the harness, so a figure can be redrawn from any saved run):

kernels      per shape, the speed-up of fastgates (2 threads) over each peer, by cell:
             bars of peer time / fastgates time on a log axis, 1 = parity (above the
             line fastgates is faster); one panel per (shape, dtype, input, direction)
generation   time per generated character of each implementation, by cell
lm           tokens/s of the LM training loop, fastgates and the PyTorch loop, by cell

``plot_results(res, out_dir, stem)`` writes ``<stem>-<section>.png`` for every section
the run has and returns the paths; ``report.py`` calls it after writing the JSON, so the
figures land next to it.  matplotlib is optional: without it nothing is drawn and the
reason is returned instead.  New cells, shapes and peers appear without changes here
(labels fall back to the names in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

#: implementation -> (label, colour) of the bars; unknown ones get the next default colour
IMPLS = {"fastgates-2t": ("fastgates, 2 threads", "#1f77b4"),
         "fastgates-1t": ("fastgates, 1 thread", "#aec7e8"),
         "fastgates": ("fastgates", "#1f77b4"),
         "torch": ("PyTorch", "#ff7f0e"),
         "jax": ("JAX (jit, lax.scan)", "#2ca02c"),
         "reference": ("NumPy reference", "#7f7f7f")}
CELLS = {"rnn": "RNN", "gru_lbr": "GRU lbr", "gru_rb": "GRU rb", "lstm": "LSTM"}
FG = "fastgates-2t"


def _label(impl):
    return IMPLS.get(impl, (impl, None))[0]


def _colour(impl):
    return IMPLS.get(impl, (None, None))[1]


def _best(results, impl):
    r = results.get(impl) or {}
    b = r.get("best")
    return b if isinstance(b, (int, float)) and b > 0 else None


def _panel_key(spec):
    """The panel a kernel row belongs to: everything of its case but the cell."""
    return (spec["shape"], spec.get("dtype", "float32"), bool(spec.get("tokens")),
            spec.get("direction", "fwdbwd"))


def _panel_title(key, shapes):
    shape, dtype, tokens, direction = key
    dims = shapes.get(shape)
    s = shape + (f" (T {dims[0]}, B {dims[1]}, D {dims[2]}, H {dims[3]})" if dims else "")
    extra = [d for d in (dtype.replace("float", "f") if dtype != "float32" else "",
                         "token ids" if tokens else "",
                         "forward" if direction == "fwd" else "") if d]
    return s + (", " + ", ".join(extra) if extra else "")


def _run_note(res):
    quick = (res.get("config") or {}).get("quick")
    return (f"{res.get('started', '?')}, {res.get('command', 'python bench/report.py')}"
            + (" (quick: smoke run, numbers indicative only)" if quick else ""))


def plot_kernels(res, plt):
    """Speed-up over each peer, one panel per shape (and dtype/input/direction)."""
    rows = [k for k in res.get("kernels") or [] if _best(k["results"], FG)]
    if not rows:
        return None
    panels = {}
    for k in rows:
        panels.setdefault(_panel_key(k["spec"]), []).append(k)
    peers = [i for i in ("torch", "jax", "reference", "fastgates-1t")
             if any(_best(k["results"], i) for k in rows)]
    peers += sorted({i for k in rows for i in k["results"] if _best(k["results"], i)}
                    - set(peers) - {FG})
    shapes = {"tiny": (25, 1, 65, 100), "d2l": (35, 32, 28, 256), "mid": (50, 64, 256, 512),
              "big": (100, 128, 512, 1024)}
    n = len(panels)
    ncols = min(n, 2)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 3.4 * nrows + 0.8),
                             squeeze=False)
    lo, hi = 1.0, 1.0
    width = 0.8 / max(len(peers), 1)
    for ax, (key, ks) in zip(axes.flat, panels.items()):
        cells = [k["spec"]["cell"] for k in ks]
        for j, peer in enumerate(peers):
            ratios = [(_best(k["results"], peer) or float("nan")) / _best(k["results"], FG)
                      for k in ks]
            xs = [c + (j - (len(peers) - 1) / 2) * width for c in range(len(ks))]
            bars = ax.bar(xs, ratios, width, label=f"vs {_label(peer)}", color=_colour(peer))
            for b, r in zip(bars, ratios):
                if r == r:                                   # not NaN
                    lo, hi = min(lo, r), max(hi, r)
                    ax.annotate(f"{r:.2g}", (b.get_x() + b.get_width() / 2, r),
                                ha="center", va="bottom" if r >= 1 else "top", fontsize=7,
                                xytext=(0, 1 if r >= 1 else -1), textcoords="offset points")
        ax.axhline(1, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(ks)), [CELLS.get(c, c) for c in cells])
        ax.set_title(_panel_title(key, shapes), fontsize=10)
        ax.set_ylabel("peer time / fastgates time")
        ax.grid(True, axis="y", which="both", alpha=0.25)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)
             if lo / 1.8 <= t <= hi * 1.8]
    for ax in axes.flat[:n]:
        ax.set_ylim(lo / 1.8, hi * 1.8)
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    top = 1 - 0.9 / fig.get_figheight()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, top + 0.005),
               ncol=len(peers), fontsize=9, frameon=False)
    fig.suptitle("Kernels: speed-up of fastgates (2 threads) over each peer — above 1, "
                 "fastgates is faster", y=0.995, fontsize=11)
    fig.text(0.5, 0.005, _run_note(res), ha="center", fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.02, 1, top - 0.03))
    return fig


def plot_generation(res, plt):
    """Time per generated character, by cell and implementation."""
    gens = [g for g in res.get("generation") or [] if g.get("results")]
    if not gens:
        return None
    impls = [i for i in ("fastgates", "reference", "torch")
             if any(_best(g["results"], i) for g in gens)]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        us = [(_best(g["results"], impl) or float("nan")) * 1e6 for g in gens]
        xs = [c + (j - (len(impls) - 1) / 2) * width for c in range(len(gens))]
        bars = ax.bar(xs, us, width, label=_label(impl) + (" (compiled loop)" if impl == "fastgates"
                                                            else " loop"), color=_colour(impl))
        for b, v in zip(bars, us):
            if v == v:
                ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(gens)), [CELLS.get(g["cell"], g["cell"]) for g in gens])
    ax.set_ylabel("µs per character (lower is better)")
    ax.set_title("Generation: B = 1, H = 256, vocabulary 28", fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.text(0.5, 0.005, _run_note(res), ha="center", fontsize=6, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_lm(res, plt):
    """Tokens/s of the LM training loop, fastgates and the PyTorch loop, by cell."""
    runs = [g for g in res.get("lm") or [] if g.get("results")]
    if not runs:
        return None
    tokens = 32 * 35          # the textbook recipe's minibatch (bench/_harness.LM_RECIPE)
    impls = [i for i in ("fastgates", "torch") if any(_best(g["results"], i) for g in runs)]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        rates = [tokens / _best(g["results"], impl) if _best(g["results"], impl) else float("nan")
                 for g in runs]
        xs = [c + (j - (len(impls) - 1) / 2) * width for c in range(len(runs))]
        bars = ax.bar(xs, rates, width, label=_label(impl) + (" loop" if impl == "torch" else ""),
                      color=_colour(impl))
        for b, v in zip(bars, rates):
            if v == v:
                ax.annotate(f"{v / 1e3:.0f}k", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=8)
    ax.set_xticks(range(len(runs)), [CELLS.get(g["cell"], g["cell"]) for g in runs])
    ax.set_ylabel("training tokens/s (higher is better)")
    ax.set_title("LM training loop: letters, hidden 256, batch 32 × 35, SGD", fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    ax.legend(fontsize=8)
    fig.text(0.5, 0.005, _run_note(res), ha="center", fontsize=6, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


SECTIONS = {"kernels": plot_kernels, "generation": plot_generation, "lm": plot_lm}


def plot_results(res, out_dir, stem="results"):
    """Draw every section of ``res`` (the report's JSON as a dict) into ``out_dir``.

    Returns the list of PNG paths written, or a string saying why nothing was drawn.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")              # a script: never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, draw in SECTIONS.items():
        fig = draw(res, plt)
        if fig is None:
            continue
        path = os.path.join(out_dir, f"{stem}-{name}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Draw the figures of a bench/report.py run.")
    ap.add_argument("json", nargs="?", default=os.path.join(here, "results.json"),
                    help="the report's JSON [bench/results.json]")
    ap.add_argument("--out", default=None, help="directory of the PNGs [next to the JSON]")
    ap.add_argument("--stem", default=None, help="file name prefix [the JSON's name]")
    args = ap.parse_args(argv)
    with open(args.json, encoding="utf-8") as f:
        res = json.load(f)
    out = args.out or os.path.dirname(os.path.abspath(args.json))
    stem = args.stem or os.path.splitext(os.path.basename(args.json))[0]
    paths = plot_results(res, out, stem)
    if isinstance(paths, str):
        print(f"no figures: {paths}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
