"""Many-to-many: tag every position with its bracket depth.  An LSTM reads a ragged batch.

Sequences over the tokens ``( ) a b`` (ids 0..3) nest brackets up to depth 4; the tag
of each position is the nesting depth after its token (5 classes).  No window of
neighbouring tokens gives it: the network must count.  Each sequence has its own length
(8..40); the loss and the accuracy count the valid positions only, and the layer
receives the true lengths, so its outputs past a row's end are zero and get no gradient.

    python examples/tag_sequences.py [--steps 200] [--seed 0] [--threads 1]

Prints the held-out per-position accuracy next to the majority-tag baseline (the last
line is JSON) and exits non-zero when it is not well above that baseline.
"""

import json
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastgates
from _common import Adam, parse_args, softmax_xent

OPEN, CLOSE, TOKENS, MAX_DEPTH = 0, 1, 4, 4


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


def main(argv=None):
    args = parse_args(argv, __doc__.splitlines()[0], steps=200, batch=32)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    C, H = MAX_DEPTH + 1, args.hidden

    lstm = fastgates.LSTM(TOKENS, H, n_threads=args.threads, seed=args.seed)
    k = 1 / np.sqrt(H)
    head = {"w": rng.uniform(-k, k, (H, C)).astype(np.float32), "b": np.zeros(C, np.float32)}
    params = {**lstm.parameters(), **head}
    opt = Adam(params)

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
            if step % 50 == 0 or step == args.steps:
                print(f"step {step}: loss {loss:.3f}")

        lstm.eval()
        x, tags, lengths = make_sequences(rng, 500)
        valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
        y, _ = lstm.forward(x, lengths=lengths)
        pred = np.argmax(y[valid] @ head["w"] + head["b"], axis=1)
        accuracy = float(np.mean(pred == tags[valid]))
    baseline = float(np.bincount(tags[valid], minlength=C).max() / valid.sum())
    print(json.dumps({"task": "tag", "accuracy": accuracy, "baseline": baseline,
                      "steps": args.steps, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0 if accuracy > baseline + 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
