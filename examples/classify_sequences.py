"""
Many-to-one: which process generated a sequence?
================================================

A GRU reads a ragged batch of token sequences and its last state classifies each one.

Three Markov chains over the symbols 0..3 share the same (uniform) symbol frequencies
and differ only in how one symbol follows another: "stay" tends to repeat, "up" tends
to step +1 (mod 4), "down" tends to step -1.  Counting symbols cannot tell them apart
(chance is 1/3); reading the order can.  Each sequence has its own length (6..30);
the batch is padded to its longest row and the true lengths go to the layer, so every
row's final state is taken at its own last symbol and the padding costs no work.

.. code-block:: bash

    python examples/classify_sequences.py [--steps 150] [--seed 0] [--threads 1] [--plot PNG]

Prints the held-out accuracy (the last line is JSON) and exits non-zero when it is not
well above chance.  With ``--plot`` (and matplotlib) it draws the training loss and the
held-out accuracy by sequence length.
"""

import json
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastgates
from _common import Adam, figure, finish, parse_args, softmax_xent

SYMBOLS, CLASSES = 4, ("stay", "up", "down")
STEP = {"stay": 0, "up": 1, "down": -1}

# %%
# The data: token ids, padded, with their lengths
# -----------------------------------------------
# Sequence first: ``x`` is ``(T, B)`` integer token ids (one-hot inputs for the GRU: the
# kernel gathers columns of ``w_ih`` instead of multiplying), padded with 0 past each
# row's end. The padding is never read.


def make_sequences(rng, n, min_len=6, max_len=30, p_rule=0.5):
    """n token sequences padded to (max_len, n) (sequence-first), their lengths and labels."""
    lengths = rng.integers(min_len, max_len + 1, n)
    labels = rng.integers(0, len(CLASSES), n)
    x = np.zeros((max_len, n), np.int64)          # padding: token 0, never read
    x[0] = rng.integers(0, SYMBOLS, n)
    for t in range(1, max_len):                    # one vectorised draw per step
        step = np.array([STEP[CLASSES[c]] for c in labels])
        follow = rng.random(n) < p_rule
        x[t] = np.where(follow, (x[t - 1] + step) % SYMBOLS, rng.integers(0, SYMBOLS, n))
    x[np.arange(max_len)[:, None] >= lengths[None, :]] = 0
    return x, lengths, labels


# %%
# Training: the last state of every row
# -------------------------------------
# ``gru.forward(x, lengths=lengths)`` returns ``h_n`` taken at each row's own last step.
# A softmax layer on top classifies it; the gradient flows back from ``h_n`` alone
# (``gru.backward(None, dh_n)``: no gradient from the per-step outputs), and Adam updates
# the GRU's parameters (``gru.parameters()``, the live arrays) and the head together.


def main(argv=None):
    args = parse_args(argv, __doc__, steps=150, batch=64)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()

    gru = fastgates.GRU(SYMBOLS, args.hidden, n_threads=args.threads, seed=args.seed)
    k = 1 / np.sqrt(args.hidden)
    head = {"w": rng.uniform(-k, k, (args.hidden, len(CLASSES))).astype(np.float32),
            "b": np.zeros(len(CLASSES), np.float32)}
    params = {**gru.parameters(), **head}
    opt = Adam(params)
    x_test, len_test, y_test = make_sequences(rng, 1000)
    losses = []

    with threadpool_limits(1, "blas"):
        for step in range(1, args.steps + 1):
            x, lengths, labels = make_sequences(rng, args.batch)
            _, h_n = gru.forward(x, lengths=lengths)           # token ids, ragged
            last = h_n[-1]                                     # (B, H): each row's last step
            loss, dlogits = softmax_xent(last @ head["w"] + head["b"], labels)
            grads = {"w": last.T @ dlogits, "b": dlogits.sum(axis=0)}
            gru.backward(None, (dlogits @ head["w"].T)[None])  # gradient from h_n only
            grads.update(gru.grads)
            opt.step(params, grads)
            losses.append(float(loss))
            if step % 50 == 0 or step == args.steps:
                print(f"step {step}: loss {loss:.3f}")

        gru.eval()
        _, h_n = gru.forward(x_test, lengths=len_test)
        correct = np.argmax(h_n[-1] @ head["w"] + head["b"], axis=1) == y_test
        accuracy = float(np.mean(correct))
    chance = 1 / len(CLASSES)

    fig, axes = figure(args, 1, 2, figsize=(9, 3.4))
    if fig is not None:
        ax_loss, ax_len = axes
        ax_loss.plot(np.arange(1, len(losses) + 1), losses, lw=1)
        ax_loss.axhline(np.log(len(CLASSES)), color="gray", ls="--", lw=1, label="chance (ln 3)")
        ax_loss.set(xlabel="training step", ylabel="cross-entropy", title="training loss")
        ax_loss.legend()
        lens = np.unique(len_test)
        acc_by_len = [correct[len_test == n].mean() for n in lens]
        ax_len.plot(lens, acc_by_len, "o-", ms=3)
        ax_len.axhline(chance, color="gray", ls="--", lw=1, label="chance")
        ax_len.set(xlabel="sequence length", ylabel="held-out accuracy", ylim=(0, 1.02),
                   title="longer sequences are easier")
        ax_len.legend(loc="lower right")
    finish(args, fig)

    print(json.dumps({"task": "classify", "accuracy": accuracy, "chance": chance,
                      "steps": args.steps, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0 if accuracy > chance + 0.3 else 1


# %%
# Run it
# ------
# The exit status says whether it learned (the test suite runs every example as a script).

if __name__ == "__main__":
    status = main()
    if status:              # exit only on failure: the documentation runs this block too
        sys.exit(status)
