"""
A character language model, from the command line to Python
============================================================

This tutorial trains the character-level language model of ``fastgates-lm`` (the
classic textbook chapter: predict the next character, truncated backpropagation through
time, perplexity), looks at its perplexity curve, samples from it, and then does the same
from Python.

The README's first command is the full run::

    pip install ".[plot]"
    fastgates-lm train --out runs/demo
    fastgates-lm generate --checkpoint runs/demo/checkpoint.npz

It trains an LSTM with 256 units on the text of the Python language reference that ships
with every CPython (``pydoc_data.topics``) for 6 epochs, about two minutes on two cores,
and reaches a validation perplexity of about 5.5 (2.47 bits per character). To keep this
page quick to build, the run below is a short one: the first 150,000 characters, 128
units, Adam, 3 epochs.
"""

# %%
# Train
# -----
# :func:`fastgates.lm.cli.main` is the ``fastgates-lm`` command, called in-process here;
# on a terminal you type the same arguments. It prints the configuration, a line per
# ``--log-every`` minibatches, the perplexity after each epoch with a sample, and at the
# end where it left the checkpoint and the perplexity curve.

import os
import tempfile

from fastgates import lm
from fastgates.lm import cli

work = tempfile.mkdtemp(prefix="fastgates-lm-tutorial-")
text_path = os.path.join(work, "reference.txt")
with open(text_path, "w", encoding="utf-8") as f:
    f.write(lm.load_text()[:150_000])
run = os.path.join(work, "run")

status = cli.main(["train", "--text", text_path, "--hidden", "128", "--optimizer", "adam", "--lr", "0.005",
                   "--epochs", "3", "--log-every", "150", "--sample-length", "80", "--out", run])

# %%
# The perplexity curve
# --------------------
# Every run directory holds ``checkpoint.npz``, ``log.csv`` (a row per logging interval
# and per epoch) and, when matplotlib is installed (the ``plot`` extra),
# ``perplexity.png``: train and validation perplexity per epoch, the light line the
# training perplexity of each logging interval. Perplexity is ``exp`` of the mean
# cross-entropy: the number of characters the model is, on average, choosing among.
# A uniform guess over the vocabulary scores its size (about 100 here).

import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
ax.imshow(plt.imread(os.path.join(run, "perplexity.png")))
ax.set_axis_off()
fig.tight_layout(pad=0)

# %%
# ``log.csv`` is plain CSV; :func:`fastgates.lm.report.read_csv` reads it back as dicts:

from fastgates.lm.report import read_csv

for row in read_csv(os.path.join(run, "log.csv")):
    if row["kind"] == "epoch":
        print(f"epoch {row['epoch']:.0f}: train {row['train_ppl']:.2f}, "
              f"validation {row['val_ppl']:.2f} ({row['val_bpc']:.3f} bits/char), "
              f"{row['tokens_per_s']:,.0f} tokens/s")

# %%
# Generate
# --------
# ``generate`` continues a prefix. The temperature divides the logits before sampling:
# 0 is greedy (always the most likely character), below 1 safer, above 1 wilder;
# ``--top-k`` restricts the draw to the k most likely characters. The same seed gives
# the same text.

checkpoint = os.path.join(run, "checkpoint.npz")
for temperature in ("0.5", "1.0"):
    print(f"--- temperature {temperature}")
    cli.main(["generate", "--checkpoint", checkpoint, "--prefix", "The ", "--length", "200",
              "--temperature", temperature, "--seed", "1"])

# %%
# ``eval`` measures perplexity and bits per character, on the run's validation text by
# default or on any other text (``--text``):

status = cli.main(["eval", "--checkpoint", checkpoint])

# %%
# The same from Python
# --------------------
# The command line is a thin layer over :mod:`fastgates.lm`. A checkpoint opens as a
# ready model with its vocabulary:

loaded = lm.load_model(checkpoint)
print(loaded.model.config)
print(lm.generate(loaded.model, loaded.vocab, "A function ", 120, temperature=0.7, seed=0))

# %%
# and a training loop of your own needs the corpus, the model, minibatches, clipping and
# an optimizer. Here the textbook recipe in small: 28 tokens (``letters``: a-z, space and
# unknown), a GRU, SGD with learning rate 1, the state carried from one minibatch to the
# next (``SequentialBatches``), one pass over the text.

import numpy as np

corpus = lm.make_corpus(lm.load_text()[:150_000], tokens="letters")
model = lm.CharRNN(lm.ModelConfig(len(corpus.vocab), cell="gru", hidden=128),
                   rng=np.random.default_rng(0))
opt = lm.SGD(model.params, lr=1.0)
state, losses = None, []
for X, Y in lm.SequentialBatches(corpus.train, batch=32, steps=35,
                                 rng=np.random.default_rng(0)):
    loss, grads, state = model.loss_and_grads(X, Y, state)   # X, Y: (35, 32) token ids
    lm.clip_grad_norm(grads, 1.0)                              # over all parameters together
    opt.step(model.params, grads)
    losses.append(loss)

ev = lm.evaluate(model, corpus.val)
print(f"{len(losses)} steps; validation perplexity {ev.ppl:.2f} ({ev.bpc:.3f} bits/char) "
      f"over {ev.tokens:,} predictions, vocabulary {len(corpus.vocab)}")

fig, ax = plt.subplots(figsize=(6.4, 3.2))
ax.plot(np.exp(losses), lw=1)
ax.set(xlabel="minibatch", ylabel="training perplexity", ylim=(0, None),
       title="GRU, letters, SGD lr 1: one epoch")
fig.tight_layout()

# %%
# Where to go from here: ``fastgates-lm train --help`` (the options, also in the API
# reference), ``--cell gru --layers 2 --dropout 0.2`` for a deeper model,
# ``--tokens letters --lr 1 --epochs 10`` for the textbook's 28-token setup (validation
# perplexity 4.40), and ``--resume`` to continue a run. The kernels under the model are
# the ones of :doc:`/getting_started`; their cost is in :doc:`/benchmarks`.
