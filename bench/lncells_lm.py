"""The character LM with the LayerNorm LSTM against the plain LSTM (issue 14).

    python bench/lncells_lm.py [--epochs 3] [--cells lstm,lnlstm] [--text PATH]

Trains ``fastgates-lm train`` on the tiny shakespeare corpus (``../shared/corpora/
tinyshakespeare.txt`` beside the checkout, or ``--text``) with 2 layers of 256 units, the
same epochs, seed and recipe for every cell (batch 32 x 35, SGD lr 1, clip 1), one cell
after the other in its own process, and prints a Markdown table of the validation loss
(nats per character), perplexity and wall time of each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(os.path.dirname(ROOT), "shared", "corpora", "tinyshakespeare.txt")


def train(cell, text, epochs, out):
    cmd = [sys.executable, "-m", "fastgates.lm", "train", "--text", text, "--cell", cell,
           "--layers", "2", "--hidden", "256", "--epochs", str(epochs), "--seed", "0",
           "--out", out, "--json", "--log-every", "1000000", "--sample-length", "0"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        sys.exit(f"{cell}: fastgates-lm train failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cells", default="lstm,lnlstm")
    ap.add_argument("--text", default=CORPUS)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    if not os.path.isfile(args.text):
        ap.error(f"--text: no file at {args.text} (the tiny shakespeare corpus lives in "
                 "../shared/corpora beside the checkout)")
    rows = []
    for cell in args.cells.split(","):
        with tempfile.TemporaryDirectory() as out:
            r = train(cell, args.text, args.epochs, out)
        rows.append(r)
        print(f"{cell}: {json.dumps(r)}", file=sys.stderr, flush=True)
    print(f"2 layers x 256, {args.epochs} epochs, batch 32 x 35, SGD lr 1, clip 1, float32\n")
    print("| cell | val loss (nats/char) | val perplexity | train perplexity | tokens/s | time |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cell']} | {math.log(r['val_ppl']):.4f} | {r['val_ppl']:.3f} | "
              f"{r['train_ppl']:.3f} | {r['tokens_per_s']:,.0f} | {r['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
