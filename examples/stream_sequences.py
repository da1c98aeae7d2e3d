"""
Streaming: a trained model answers one frame at a time
======================================================

A GRU is trained on whole sequences, then frozen and fed one frame at a time, as an
online detector would run it: each frame updates the state and gets an answer at once.

The signal is a noisy sine whose frequency switches, at random times, between three
values; each frame must be tagged with the frequency playing now (3 classes).  One frame
is a window of 8 samples, so no single frame tells the frequency reliably through the
noise: the recurrent state must integrate over several frames.  Training runs the layer
over batches of whole sequences (``gru.forward`` / ``gru.backward``).  Deployment runs
``runner = gru.freeze()``: the weights are packed once, and ``runner.step(frame, state)``
costs a few microseconds per frame.  Streaming gives the bits of the whole-sequence call:
the script checks it, and reports the accuracy and the latency per frame.

.. code-block:: bash

    python examples/stream_sequences.py [--steps 150] [--seed 0] [--threads 1] [--plot PNG]

Prints the streamed accuracy next to chance (the last line is JSON) and exits non-zero
when it is not well above chance or when streaming and the whole-sequence call differ.
With ``--plot`` (and matplotlib) it draws a streamed signal with the true and predicted
frequencies, and the latency of each ``step``.
"""

import json
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastgates
from _common import Adam, figure, finish, parse_args, softmax_xent

FRAME, FREQS, NOISE = 8, (0.03, 0.09, 0.2), 0.6      # samples per frame, cycles per sample

# %%
# The data: frames of a signal whose frequency switches
# -----------------------------------------------------
# ``x`` is ``(T, B, FRAME)`` float32 frames (sequence first) and ``tags`` the ``(T, B)``
# frequency index of each frame.


def make_signal(rng, n, frames):
    """n signals of `frames` frames: (frames, n, FRAME) float32 and (frames, n) tags."""
    tags = np.zeros((frames, n), np.int64)
    tags[0] = rng.integers(0, len(FREQS), n)
    for t in range(1, frames):                       # a switch every ~20 frames on average
        switch = rng.random(n) < 0.05
        tags[t] = np.where(switch, rng.integers(0, len(FREQS), n), tags[t - 1])
    f = np.repeat(np.asarray(FREQS)[tags], FRAME, axis=0)        # (frames * FRAME, n)
    phase = 2 * np.pi * np.cumsum(f, axis=0) + rng.uniform(0, 2 * np.pi, n)
    s = np.sin(phase) + NOISE * rng.standard_normal(phase.shape)
    return s.reshape(frames, FRAME, n).transpose(0, 2, 1).astype(np.float32), tags


# %%
# Training: whole sequences, a tag at every frame
# -----------------------------------------------


def train(args, rng, C):
    gru = fastgates.GRU(FRAME, args.hidden, n_threads=args.threads, seed=args.seed)
    k = 1 / np.sqrt(args.hidden)
    head = {"w": rng.uniform(-k, k, (args.hidden, C)).astype(np.float32),
            "b": np.zeros(C, np.float32)}
    params = {**gru.parameters(), **head}
    opt = Adam(params)
    for step in range(1, args.steps + 1):
        x, tags = make_signal(rng, args.batch, 60)
        y, _ = gru.forward(x)                                   # (T, B, H)
        feats = y.reshape(-1, args.hidden)
        loss, dlogits = softmax_xent(feats @ head["w"] + head["b"], tags.reshape(-1))
        grads = {"w": feats.T @ dlogits, "b": dlogits.sum(axis=0)}
        gru.backward((dlogits @ head["w"].T).reshape(y.shape))
        grads.update(gru.grads)
        opt.step(params, grads)
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: loss {loss:.3f}")
    return gru, head


# %%
# Deployment: freeze, then one ``step`` per frame
# -----------------------------------------------
# The runner is a snapshot of the trained layer.  ``step`` takes the ``(B, FRAME)`` frame
# of every stream (here B = 1: one sensor) and the state it returned last (None at the
# start), and gives the top layer's output ``(B, H)`` for the head.


def stream(runner, head, x):
    """Feed the frames of x (T, 1, FRAME) one at a time; the tags and each step's latency."""
    state, preds, latency = None, [], []
    for frame in x:                                           # (1, FRAME) per call
        t0 = time.perf_counter()
        y_t, state = runner.step(frame, state)
        latency.append(time.perf_counter() - t0)
        preds.append(int(np.argmax(y_t[0] @ head["w"] + head["b"])))
    return np.array(preds), np.array(latency), state


def main(argv=None):
    args = parse_args(argv, __doc__, steps=150, batch=32)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    C = len(FREQS)
    with threadpool_limits(1, "blas"):
        gru, head = train(args, rng, C)
        runner = gru.freeze()

        x, tags = make_signal(rng, 1, 400)                      # one long held-out stream
        preds, latency, state = stream(runner, head, x)
        y_whole, state_whole = runner(x)                        # the same frames in one call
        same = bool(np.array_equal(np.argmax(y_whole[:, 0] @ head["w"] + head["b"], axis=1),
                                   preds) and np.array_equal(state, state_whole))
    accuracy = float(np.mean(preds == tags[:, 0]))
    chance = 1 / C
    print(f"streamed {len(x)} frames: accuracy {accuracy:.3f} (chance {chance:.3f}), "
          f"median step {np.median(latency) * 1e6:.1f} us, "
          f"streaming == whole sequence: {same}")

    fig, axes = figure(args, 2, 1, figsize=(10, 5.2), gridspec_kw={"height_ratios": [1.6, 1]})
    if fig is not None:
        ax_sig, ax_lat = axes
        n = 150
        t = np.arange(n * FRAME) / FRAME
        ax_sig.plot(t, x[:n, 0].reshape(-1), lw=0.6, color="0.6", label="signal (8 samples/frame)")
        ax_sig.step(np.arange(n), np.asarray(FREQS)[tags[:n, 0]] * 10 - 2.5, where="post", lw=3,
                    alpha=0.4, label="true frequency")
        ax_sig.plot(np.arange(n) + 0.5, np.asarray(FREQS)[preds[:n]] * 10 - 2.5, "o", ms=3,
                    label="streamed prediction")
        ax_sig.set(xlabel="frame", yticks=[], title="the first 150 frames of a held-out stream")
        ax_sig.legend(loc="upper right", fontsize=8)
        ax_lat.plot(latency * 1e6, ".", ms=2)
        ax_lat.set(xlabel="frame", ylabel="µs", yscale="log",
                   title=f"runner.step latency (median {np.median(latency) * 1e6:.1f} µs)")
    finish(args, fig)
    print(json.dumps({"task": "stream", "accuracy": accuracy, "chance": chance,
                      "streaming_equals_whole": same,
                      "median_step_us": round(float(np.median(latency)) * 1e6, 2),
                      "steps": args.steps, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0 if accuracy > chance + 0.3 and same else 1


# %%
# Run it
# ------
# The exit status says whether it learned and whether streaming matched the whole-sequence
# call (the test suite runs every example as a script).

if __name__ == "__main__":
    status = main()
    if status:              # exit only on failure: the documentation runs this block too
        sys.exit(status)
