"""
Many-to-many: tag every position with its bracket depth
=======================================================

An LSTM reads a ragged batch and a softmax layer tags each of its outputs.

Sequences over the tokens ``( ) a b`` (ids 0..3) nest brackets up to depth 4; the tag
of each position is the nesting depth after its token (5 classes).  No window of
neighbouring tokens gives it: the network must count.  Each sequence has its own length
(8..40); the loss and the accuracy count the valid positions only, and the layer
receives the true lengths, so its outputs past a row's end are zero and get no gradient.

.. code-block:: bash

    python examples/tag_sequences.py [--steps 200] [--seed 0] [--threads 1] [--plot PNG]

Prints the held-out per-position accuracy next to the majority-tag baseline (the last
line is JSON) and exits non-zero when it is not well above that baseline.  With
``--plot`` (and matplotlib) it draws the training loss and the tags of one held-out
sequence.
"""

import json
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastgates
from _common import Adam, figure, finish, parse_args, softmax_xent

OPEN, CLOSE, TOKENS, MAX_DEPTH = 0, 1, 4, 4
CHARS = "()ab"

# %%
# The data: a tag per position
# ----------------------------
# ``x`` and the tags are ``(T, B)`` (sequence first), padded past each row's end; the
# ``(T, B)`` mask of valid positions selects what the loss counts.


def make_sequences(rng, n, min_len=8, max_len=40):
    """Token ids and depth tags, padded to (max_len, n) (sequence-first), and the lengths."""
    lengths = rng.integers(min_len, max_len + 1, n)
    x = np.zeros((max_len, n), np.int64)
    tags = np.zeros((max_len, n), np.int64)
    depth = np.zeros(n, np.int64)
    for t in range(max_len):                       # one vectorised draw per step
        u = rng.random(n)
        opens = (u < 0.35) & (depth < MAX_DEPTH)
        closes = ~opens & (u < 0.7) & (depth > 0)
        x[t] = np.where(opens, OPEN, np.where(closes, CLOSE, rng.integers(2, TOKENS, n)))
        depth += opens.astype(np.int64) - closes.astype(np.int64)
        tags[t] = depth
    return x, tags, lengths


# %%
# Training: a loss at every valid position
# ----------------------------------------
# ``lstm.forward(x, lengths=lengths)`` gives ``y`` of shape ``(T, B, H)``, zero past each
# row's end. The head reads the valid rows ``y[valid]``; the gradient ``dy`` is scattered
# back into a zero array of ``y``'s shape (backward ignores ``dy`` past a row's end anyway).


def main(argv=None):
    args = parse_args(argv, __doc__, steps=200, batch=32)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    C, H = MAX_DEPTH + 1, args.hidden

    lstm = fastgates.LSTM(TOKENS, H, n_threads=args.threads, seed=args.seed)
    k = 1 / np.sqrt(H)
    head = {"w": rng.uniform(-k, k, (H, C)).astype(np.float32), "b": np.zeros(C, np.float32)}
    params = {**lstm.parameters(), **head}
    opt = Adam(params)
    losses = []

    with threadpool_limits(1, "blas"):
        for step in range(1, args.steps + 1):
            x, tags, lengths = make_sequences(rng, args.batch)
            valid = np.arange(x.shape[0])[:, None] < lengths[None, :]      # (T, B)
            y, _ = lstm.forward(x, lengths=lengths)                        # (T, B, H)
            feats = y[valid]                                               # (N, H) valid steps
            loss, dlogits = softmax_xent(feats @ head["w"] + head["b"], tags[valid])
            grads = {"w": feats.T @ dlogits, "b": dlogits.sum(axis=0)}
            dy = np.zeros_like(y)
            dy[valid] = dlogits @ head["w"].T
            lstm.backward(dy)
            grads.update(lstm.grads)
            opt.step(params, grads)
            losses.append(float(loss))
            if step % 50 == 0 or step == args.steps:
                print(f"step {step}: loss {loss:.3f}")

        lstm.eval()
        x, tags, lengths = make_sequences(rng, 500)
        valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
        y, _ = lstm.forward(x, lengths=lengths)
        pred = np.argmax(y[valid] @ head["w"] + head["b"], axis=1)
        accuracy = float(np.mean(pred == tags[valid]))
    baseline = float(np.bincount(tags[valid], minlength=C).max() / valid.sum())

    fig, axes = figure(args, 1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 1.6]})
    if fig is not None:
        ax_loss, ax_seq = axes
        ax_loss.plot(np.arange(1, len(losses) + 1), losses, lw=1)
        ax_loss.set(xlabel="training step", ylabel="cross-entropy", title="training loss")
        b = int(np.argmax(lengths))                       # the longest held-out sequence
        n = int(lengths[b])
        pred_all = np.argmax(y[:n, b] @ head["w"] + head["b"], axis=1)
        ax_seq.step(np.arange(n), tags[:n, b], where="mid", lw=3, alpha=0.4, label="true depth")
        ax_seq.plot(np.arange(n), pred_all, "o", ms=4, label="predicted")
        ax_seq.set_xticks(np.arange(n), [CHARS[i] for i in x[:n, b]], fontfamily="monospace")
        ax_seq.set(ylabel="depth", title=f"one held-out sequence ({n} tokens)",
                   yticks=range(MAX_DEPTH + 1))
        ax_seq.legend(loc="upper left")
    finish(args, fig)
    print(json.dumps({"task": "tag", "accuracy": accuracy, "baseline": baseline,
                      "steps": args.steps, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0 if accuracy > baseline + 0.3 else 1


# %%
# Run it
# ------
# The exit status says whether it learned (the test suite runs every example as a script).

if __name__ == "__main__":
    status = main()
    if status:              # exit only on failure: the documentation runs this block too
        sys.exit(status)
