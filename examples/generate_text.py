"""
One-to-many: generate text with a character language model
===========================================================

An LSTM learns to predict the next character of a text, then writes new text one
character at a time, each sampled character fed back as the next input.

The model is :class:`fastgates.lm.CharRNN` (token ids straight into the kernels' one-hot
path, a softmax layer on top) trained on the first 200,000 characters of the Python
language reference that ships with CPython, by truncated backpropagation through time
with the state carried from one minibatch to the next.  Generation runs the whole loop
in compiled code.  ``fastgates-lm train`` is the same model with a full command line
(see the language-model tutorial).

.. code-block:: bash

    python examples/generate_text.py [--steps 400] [--hidden 128] [--seed 0] [--plot PNG]

Prints the validation perplexity next to that of the character frequencies alone (the
unigram model) and samples at three temperatures; the last line is JSON, and it exits
non-zero when the model is not well below the unigram perplexity.  With ``--plot`` (and
matplotlib) it draws the perplexity during training and the next-character distribution
at each temperature.
"""

import json
import sys
import time

import numpy as np

from fastgates import lm
from _common import figure, finish, parse_args

PROMPT, SEQ_LEN, TEMPERATURES = "The ", 35, (0.7, 1.0, 1.3)

# %%
# The data: a text as token ids
# -----------------------------
# :func:`fastgates.lm.make_corpus` builds the vocabulary from the training part and holds
# out the last 10 % of the text. The unigram perplexity (the character frequencies, no
# context) is the baseline a model that reads the context must beat.


def unigram_perplexity(train, val, V):
    p = (np.bincount(train, minlength=V) + 1) / (len(train) + V)
    return float(np.exp(-np.mean(np.log(p[val]))))


# %%
# Training: truncated BPTT, the state carried across minibatches
# --------------------------------------------------------------
# Each minibatch is ``(T, B)`` token ids and targets shifted by one; the final state of a
# minibatch is the initial state of the next (no gradient flows through it). Gradients
# are clipped over all parameters together, then Adam steps.


def main(argv=None):
    args = parse_args(argv, __doc__, steps=400, batch=32, hidden=128)
    t0 = time.perf_counter()
    corpus = lm.make_corpus(lm.load_text()[:200_000], tokens="char")
    V = len(corpus.vocab)
    model = lm.CharRNN(lm.ModelConfig(V, cell="lstm", hidden=args.hidden),
                       n_threads=args.threads, rng=np.random.default_rng(args.seed))
    opt = lm.Adam(model.params, lr=0.01)
    batches = lm.SequentialBatches(corpus.train, args.batch, SEQ_LEN,
                                   rng=np.random.default_rng(args.seed))
    val = corpus.val[:20_000]
    curve, state, step, window = [], None, 0, []
    while step < args.steps:
        for X, Y in batches:
            loss, grads, state = model.loss_and_grads(X, Y, state)
            lm.clip_grad_norm(grads, 1.0)
            opt.step(model.params, grads)
            step += 1
            window.append(loss)
            if step % 50 == 0 or step == args.steps:
                val_ppl = lm.perplexity(model, val)
                curve.append((step, float(np.exp(np.mean(window))), val_ppl))
                window = []
                print(f"step {step}: train ppl {curve[-1][1]:.2f}, validation ppl {val_ppl:.2f}")
            if step == args.steps:
                break
    baseline = unigram_perplexity(corpus.train, val, V)

    # %%
    # Generation: temperature reshapes the next-character distribution
    # -----------------------------------------------------------------
    # Sampling divides the logits by the temperature: below 1 the likely characters win
    # more often (safer, more repetitive text), above 1 the distribution flattens.

    samples = {T: lm.generate(model, corpus.vocab, PROMPT, 160, temperature=T, seed=args.seed)
               for T in TEMPERATURES}
    for T, text in samples.items():
        print(f"--- temperature {T}:\n{text}")

    fig, axes = figure(args, 1, 2, figsize=(10, 3.6))
    if fig is not None:
        ax_ppl, ax_next = axes
        steps, train_ppl, val_ppl = zip(*curve)
        ax_ppl.plot(steps, train_ppl, "o-", label="train")
        ax_ppl.plot(steps, val_ppl, "s-", label="validation")
        ax_ppl.axhline(baseline, color="gray", ls="--", lw=1, label="unigram")
        ax_ppl.set(xlabel="training step", ylabel="perplexity", ylim=(0, None),
                   title="perplexity while training")
        ax_ppl.legend()
        logits, _ = model.logits(corpus.vocab.encode(PROMPT)[:, None])
        z = logits[-1, 0].astype(np.float64)
        top = np.argsort(z)[::-1][:10]
        width = 0.8 / len(TEMPERATURES)
        for k, T in enumerate(TEMPERATURES):
            p = np.exp((z - z.max()) / T)
            p /= p.sum()
            ax_next.bar(np.arange(len(top)) + (k - 1) * width, p[top], width, label=f"T = {T}")
        ax_next.set_xticks(np.arange(len(top)), [repr(corpus.vocab.tokens[i])[1:-1] or " "
                                                 for i in top], fontfamily="monospace")
        ax_next.set(ylabel="probability", title=f"next character after {PROMPT!r}")
        ax_next.legend()
    finish(args, fig)

    val_ppl = curve[-1][2]
    print(json.dumps({"task": "generate", "val_ppl": val_ppl, "unigram_ppl": baseline,
                      "steps": args.steps, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0 if val_ppl < 0.75 * baseline else 1


# %%
# Run it
# ------

if __name__ == "__main__":
    status = main()
    if status:              # exit only on failure: the documentation runs this block too
        sys.exit(status)
