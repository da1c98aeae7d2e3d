"""The character RNN language model: stacked recurrent layers + dense softmax output.

Design: the parameters are a plain dict of NumPy arrays with PyTorch's names
(``embedding.weight`` when an embedding is used; ``rnn.weight_ih_l{k}``,
``rnn.weight_hh_l{k}``, ``rnn.bias_ih_l{k}``, ``rnn.bias_hh_l{k}`` per layer;
``fc.weight``, ``fc.bias``), so a ``torch.nn.LSTM`` + ``nn.Linear`` state dict
maps onto them one to one.  The recurrent layers run through the public kernel
functions of ``fastgates`` (backend ``fast``) or ``fastgates.reference``
(backend ``reference``), never through private modules.

Forward, for token ids X (T, B) and targets Y (T, B)::

    x_0 = X as token ids (one-hot, no GEMM)   or   embedding.weight[X]   (T, B, E)
    y_k, state_k = cell_k(x_k, state_k)       k = 0 .. L-1
    x_{k+1} = dropout(y_k)                    (between layers only, training only)
    logits = y_{L-1} fc.weightᵀ + fc.bias     (T*B, V)
    loss = mean_n [ logsumexp(logits_n) - logits_n[Y_n] ]

The softmax cross-entropy is fused and numerically stable (the row maximum is
subtracted before ``exp``); its gradient is ``(softmax - onehot(Y)) / (T*B)``.
The state handed back by a forward pass is a set of fresh arrays: carrying it
into the next minibatch stops the gradient at the boundary (truncated BPTT).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from .threadpool import blas_limit

#: Cell names and their number of gates (PyTorch order: LSTM i,f,g,o; GRU r,z,n).
CELLS = {"rnn": 1, "gru": 3, "lstm": 4}

#: ``--gru-reset``: "after" = reset applied after the linear map (PyTorch, cuDNN:
#: linear_before_reset=True); "before" = the textbook form (r ⊙ h) W_hnᵀ.
GRU_RESETS = ("after", "before")

BACKENDS = ("fast", "reference")

DTYPES = ("float32", "float64")


def kernels(backend: str = "fast"):
    """The kernel module of ``backend``: ``fastgates`` or ``fastgates.reference``."""
    if backend == "fast":
        return importlib.import_module("fastgates")
    if backend == "reference":
        return importlib.import_module("fastgates.reference")
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


@dataclass
class ModelConfig:
    """Architecture of a :class:`CharRNN` (everything needed to rebuild its parameters)."""

    vocab_size: int
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0
    embedding: int = 0
    gru_reset: str = "after"
    dtype: str = "float32"

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        if self.gru_reset not in GRU_RESETS:
            raise ValueError(f"gru_reset must be one of {GRU_RESETS}, got {self.gru_reset!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in ("vocab_size", "hidden", "layers"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.embedding, (int, np.integer)) or self.embedding < 0:
            raise ValueError(f"embedding must be a non-negative integer, got {self.embedding!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def gates(self) -> int:
        return CELLS[self.cell]

    @property
    def input_size(self) -> int:
        """Size of the first layer's input: the embedding size, or the vocabulary size (one-hot)."""
        return self.embedding or self.vocab_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def param_shapes(config: ModelConfig) -> dict:
    """Name -> shape of every parameter, in a fixed order."""
    G, H, V = config.gates, config.hidden, config.vocab_size
    shapes = {}
    if config.embedding:
        shapes["embedding.weight"] = (V, config.embedding)
    for k in range(config.layers):
        D = config.input_size if k == 0 else H
        shapes[f"rnn.weight_ih_l{k}"] = (G * H, D)
        shapes[f"rnn.weight_hh_l{k}"] = (G * H, H)
        shapes[f"rnn.bias_ih_l{k}"] = (G * H,)
        shapes[f"rnn.bias_hh_l{k}"] = (G * H,)
    shapes["fc.weight"] = (V, H)
    shapes["fc.bias"] = (V,)
    return shapes


def init_params(config: ModelConfig, rng: np.random.Generator) -> dict:
    """PyTorch's default initialisation.

    Recurrent weights and biases ~ U(-1/√H, 1/√H) (``nn.LSTM``), the output
    layer ~ U(-1/√H, 1/√H) (``nn.Linear`` with fan-in H), the embedding ~ N(0, 1)
    (``nn.Embedding``).  Drawn in float64 and rounded to ``config.dtype``, so a
    float32 and a float64 model from the same seed start from the same weights.
    """
    dtype = np.dtype(config.dtype)
    bound = 1.0 / math.sqrt(config.hidden)
    params = {}
    for name, shape in param_shapes(config).items():
        if name == "embedding.weight":
            w = rng.standard_normal(shape)
        else:
            w = rng.uniform(-bound, bound, shape)
        params[name] = np.ascontiguousarray(w, dtype=dtype)
    return params


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, grad: bool = True):
    """Fused, numerically stable softmax cross-entropy.

    Parameters
    ----------
    logits : (N, V) float array
        Overwritten (used as the work buffer).
    targets : (N,) int array
    grad : bool
        Also return the gradient of the MEAN loss with respect to the logits.

    Returns
    -------
    total : float
        The SUM over rows of ``logsumexp(logits_n) - logits_n[targets_n]`` (float64).
    dlogits : (N, V) array or None
        ``(softmax - onehot(targets)) / N`` (in the buffer of ``logits``).
    """
    n = logits.shape[0]
    rows = np.arange(n)
    logits -= logits.max(axis=1, keepdims=True)
    picked = logits[rows, targets].astype(np.float64)
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1, keepdims=True)
    total = float(np.sum(np.log(sums[:, 0].astype(np.float64)) - picked))
    if not grad:
        return total, None
    logits /= sums
    logits[rows, targets] -= 1.0
    logits *= 1.0 / n
    return total, logits


class CharRNN:
    """A character language model over the fastgates kernels.

    Parameters
    ----------
    config : ModelConfig
    params : dict of arrays, optional
        Initialised with :func:`init_params` (``rng`` or seed 0) when omitted.
    backend : "fast" or "reference"
    n_threads : int or None
        Passed to every kernel call.
    blas_threads : int or None
        Threads of NumPy's BLAS (the output layer) during the model's calls: 1 by
        default, so that it does not fight the kernels' OpenMP threads for the cores
        (see :mod:`fastgates.lm.threadpool`); None leaves BLAS alone.
    """

    def __init__(self, config: ModelConfig, params: dict | None = None, *, backend: str = "fast",
                 n_threads: int | None = None, rng: np.random.Generator | None = None,
                 blas_threads: int | None = 1):
        self.config = config
        self.dtype = np.dtype(config.dtype)
        if params is None:
            params = init_params(config, rng if rng is not None else np.random.default_rng(0))
        shapes = param_shapes(config)
        if set(params) != set(shapes):
            missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
            raise ValueError(f"parameters do not match the config: missing {missing}, unexpected {extra}")
        for name, shape in shapes.items():
            if tuple(params[name].shape) != shape:
                raise ValueError(f"parameter {name} has shape {params[name].shape}, expected {shape}")
        self.params = {name: np.ascontiguousarray(params[name], dtype=self.dtype) for name in shapes}
        self.backend = backend
        self.kernels = kernels(backend)
        self.n_threads = n_threads
        self.blas_threads = blas_threads

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def zero_state(self, batch: int) -> list:
        """Per layer ``(h,)`` (rnn, gru) or ``(h, c)`` (lstm), zeros of shape (batch, H)."""
        n = 2 if self.config.cell == "lstm" else 1
        return [tuple(np.zeros((batch, self.config.hidden), self.dtype) for _ in range(n))
                for _ in range(self.config.layers)]

    def _weights(self, k):
        p = self.params
        return (p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"],
                p[f"rnn.bias_ih_l{k}"], p[f"rnn.bias_hh_l{k}"])

    def _layer_forward(self, k, x, st, training):
        K, cell = self.kernels, self.config.cell
        h0 = None if st is None else st[0]
        if cell == "lstm":
            c0 = None if st is None else st[1]
            y, h, c, cache = K.lstm_forward(x, h0, c0, *self._weights(k), training=training,
                                            n_threads=self.n_threads)
            return y, (h, c), cache
        if cell == "gru":
            y, h, cache = K.gru_forward(x, h0, *self._weights(k), training=training,
                                        linear_before_reset=self.config.gru_reset == "after",
                                        n_threads=self.n_threads)
        else:
            y, h, cache = K.rnn_forward(x, h0, *self._weights(k), nonlinearity="tanh",
                                        training=training, n_threads=self.n_threads)
        return y, (h,), cache

    def _layer_backward(self, k, dy, cache):
        K, cell = self.kernels, self.config.cell
        if cell == "lstm":
            g = K.lstm_backward(dy, None, None, cache, n_threads=self.n_threads)
        elif cell == "gru":
            g = K.gru_backward(dy, None, cache, n_threads=self.n_threads)
        else:
            g = K.rnn_backward(dy, None, cache, n_threads=self.n_threads)
        return g

    def _check_ids(self, X, name="X"):
        X = np.asarray(X)
        if X.ndim != 2 or X.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a (T, B) integer array of token ids, got "
                             f"{X.dtype} array of shape {X.shape}")
        return np.ascontiguousarray(X, dtype=np.int64)

    def _forward(self, X, state, training, rng):
        """Run all layers; return the last layer's output, the new state and what backward needs."""
        cfg = self.config
        X = self._check_ids(X)
        if state is None:
            state = [None] * cfg.layers
        x = self.params["embedding.weight"][X] if cfg.embedding else X
        caches, masks, new_state = [], [], []
        for k in range(cfg.layers):
            y, st, cache = self._layer_forward(k, x, state[k], training)
            new_state.append(st)
            caches.append(cache)
            if training and cfg.dropout > 0 and k < cfg.layers - 1:
                if rng is None:
                    raise ValueError("dropout needs a random generator (rng) in training mode")
                keep = 1.0 - cfg.dropout
                mask = (rng.random(y.shape) < keep).astype(self.dtype)
                mask *= self.dtype.type(1.0 / keep)
                y = y * mask
                masks.append(mask)
            else:
                masks.append(None)
            x = y
        return X, x, new_state, caches, masks

    def _logits(self, y):
        T, B, H = y.shape
        yf = y.reshape(T * B, H)
        logits = yf @ self.params["fc.weight"].T
        logits += self.params["fc.bias"]
        return yf, logits

    def loss_and_grads(self, X, Y, state=None, rng=None):
        """Mean cross-entropy of one minibatch and the gradients of all parameters.

        Parameters
        ----------
        X, Y : (T, B) int arrays
            Inputs and targets (the inputs shifted by one).
        state : list or None
            The carried state (see :meth:`zero_state`); None = zeros.  No gradient
            flows into it (truncated BPTT).
        rng : numpy.random.Generator
            Dropout masks (needed only when ``config.dropout > 0``).

        Returns
        -------
        loss : float
        grads : dict
            Same names and shapes as ``params`` (fresh arrays).
        state : list
            The final state of every layer, to carry into the next minibatch.
        """
        with blas_limit(self.blas_threads):
            return self._loss_and_grads(X, Y, state, rng)

    def _loss_and_grads(self, X, Y, state, rng):
        cfg, p = self.config, self.params
        X, y, new_state, caches, masks = self._forward(X, state, True, rng)
        Y = self._check_ids(Y, "Y")
        if Y.shape != X.shape:
            raise ValueError(f"Y has shape {Y.shape}, expected {X.shape} (the shape of X)")
        T, B = X.shape
        yf, logits = self._logits(y)
        total, dlogits = softmax_cross_entropy(logits, Y.ravel())
        grads = {"fc.weight": dlogits.T @ yf, "fc.bias": dlogits.sum(axis=0)}
        dy = (dlogits @ p["fc.weight"]).reshape(T, B, cfg.hidden)
        for k in reversed(range(cfg.layers)):
            if masks[k] is not None:
                dy *= masks[k]
            g = self._layer_backward(k, dy, caches[k])
            grads[f"rnn.weight_ih_l{k}"] = g.dw_ih
            grads[f"rnn.weight_hh_l{k}"] = g.dw_hh
            grads[f"rnn.bias_ih_l{k}"] = g.db_ih
            grads[f"rnn.bias_hh_l{k}"] = g.db_hh
            dy = g.dx
        if cfg.embedding:
            demb = np.zeros_like(p["embedding.weight"])
            np.add.at(demb, X.ravel(), dy.reshape(T * B, cfg.embedding))
            grads["embedding.weight"] = demb
        grads = {name: grads[name] for name in p}
        return total / (T * B), grads, new_state

    def loss_sum(self, X, Y, state=None):
        """Sum of the cross-entropies of a (T, B) block (evaluation: no dropout, no cache).

        Returns ``(total, state)``; ``total`` is a float64 sum over T*B tokens.
        """
        with blas_limit(self.blas_threads):
            X, y, new_state, _, _ = self._forward(X, state, False, None)
            _, logits = self._logits(y)
            total, _ = softmax_cross_entropy(logits, self._check_ids(Y, "Y").ravel(), grad=False)
        return total, new_state

    def logits(self, X, state=None):
        """Output logits (T, B, V) and the final state (evaluation mode)."""
        with blas_limit(self.blas_threads):
            X, y, new_state, _, _ = self._forward(X, state, False, None)
            T, B = X.shape
            return self._logits(y)[1].reshape(T, B, -1), new_state
