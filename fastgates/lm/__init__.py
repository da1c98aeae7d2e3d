"""fastgates.lm — a character-level RNN language model on the fastgates kernels.

The textbook chapter's model, fast: token ids straight into the kernels'
one-hot path (or an embedding), stacked rnn/gru/lstm layers, a dense softmax
output, truncated BPTT with sequential or random minibatches, gradient clipping
over all parameters, SGD or Adam, perplexity and bits per character, resumable
atomic checkpoints, and a compiled sampling loop for generation.

The command line (``fastgates-lm`` / ``python -m fastgates.lm``) is a thin layer
over these pieces; a custom loop needs only::

    from fastgates import lm
    text = lm.load_text()                               # default corpus
    corpus = lm.make_corpus(text, tokens="char")        # vocab + train/val ids
    model = lm.CharRNN(lm.ModelConfig(len(corpus.vocab), cell="lstm", hidden=256))
    opt = lm.SGD(model.params, lr=1.0)
    state = None
    for X, Y in lm.SequentialBatches(corpus.train, batch=32, steps=35):
        loss, grads, state = model.loss_and_grads(X, Y, state)
        lm.clip_grad_norm(grads, 1.0)
        opt.step(model.params, grads)
    print(lm.perplexity(model, corpus.val))
    print(lm.generate(model, corpus.vocab, "the ", 100, seed=0))
"""

from .batches import RandomBatches, SequentialBatches, make_batches
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint, save_training
from .data import Corpus, DataError, Vocab, default_text, load_text, make_corpus, tokenize
from .generation import generate, sample_compiled, sample_numpy
from .model import CharRNN, ModelConfig, init_params, softmax_cross_entropy
from .optim import SGD, Adam, make_optimizer
from .threadpool import blas_limit
from .training import Evaluation, Trainer, clip_grad_norm, evaluate, grad_norm, perplexity, train

__all__ = [
    "Adam", "CharRNN", "CheckpointError", "Corpus", "DataError", "Evaluation", "ModelConfig",
    "RandomBatches", "SGD", "SequentialBatches", "Trainer", "Vocab", "blas_limit", "clip_grad_norm",
    "default_text", "evaluate", "generate", "grad_norm", "init_params", "load_checkpoint",
    "load_model", "load_text", "make_batches", "make_corpus", "make_optimizer", "perplexity",
    "sample_compiled", "sample_numpy", "save_checkpoint", "save_training",
    "softmax_cross_entropy", "tokenize", "train",
]
