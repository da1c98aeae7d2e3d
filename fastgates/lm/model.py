"""The character RNN language model: stacked recurrent layers + dense softmax output.

Design: the parameters are a plain dict of NumPy arrays with PyTorch's names
(``embedding.weight`` when an embedding is used; ``rnn.weight_ih_l{k}``,
``rnn.weight_hh_l{k}``, ``rnn.bias_ih_l{k}``, ``rnn.bias_hh_l{k}`` per layer, plus
``rnn.weight_hr_l{k}`` with a projection and ``rnn.weight_peep_l{k}`` with peepholes;
``fc.weight``, ``fc.bias``), so a ``torch.nn.LSTM`` (also with ``proj_size``) +
``nn.Linear`` state dict maps onto them one to one.  With a projection (``proj`` = P)
the recurrent state h, the layers' outputs and the input of ``fc`` are P wide.  The recurrent layers run on the one stack of the
package (:func:`fastgates.layers.stack_forward` / ``stack_backward``, the same as
``fastgates.LSTM`` and ``fastgates.torch.LSTM``) over the public kernels of
``fastgates`` (backend ``fast``) or ``fastgates.reference`` (backend ``reference``),
never through private modules.  The cell is the entry of :mod:`fastgates.cells` that
``cell`` (a kernel family: rnn, gru, lstm) and ``gru_reset`` select.

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

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from .. import cells as _cells
from .. import layers as _layers
from .threadpool import blas_limit

#: The cells the LM offers (``--cell``): the kernel families of fastgates.cells -> gates.
CELLS = {kernel: defs[0].G for kernel, defs in _cells.families().items()}

#: ``--gru-reset``: "after" = reset applied after the linear map (PyTorch, cuDNN:
#: linear_before_reset=True); "before" = the textbook form (r ⊙ h) W_hnᵀ.  A file and
#: command-line spelling only: the model reads the table's cell (:meth:`ModelConfig.celldef`).
GRU_RESETS = ("after", "before")

BACKENDS = ("fast", "reference")

DTYPES = ("float32", "float64")


def kernels(backend: str = "fast"):
    """The kernel module of ``backend``: ``fastgates`` or ``fastgates.reference``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return _layers.kernels(backend)


@dataclass
class ModelConfig:
    """Architecture of a :class:`CharRNN` (everything needed to rebuild its parameters).

    A dataclass, validated at construction; checkpoints store it as a dict
    (:meth:`to_dict`, :meth:`from_dict`).

    Parameters
    ----------
    vocab_size : int
        V, the number of token ids (rows of the output layer).
    cell : str, default "lstm"
        A kernel family of :mod:`fastgates.cells` (``--cell``; ``fastgates-lm train
        --help`` lists them).
    hidden : int, default 256
        H, the units of every recurrent layer.
    layers : int, default 1
        Stacked recurrent layers.
    dropout : float, default 0.0
        Dropout between the recurrent layers in training, in [0, 1).
    embedding : int, default 0
        E > 0: an ``embedding.weight`` (V, E) feeds the first layer; 0: token ids go
        to the kernels as one-hot rows.
    gru_reset : {"after", "before"}, default "after"
        The GRU's form: "after" is PyTorch's (``linear_before_reset=True``), "before"
        the textbook one; ignored by the other cells.
    dtype : {"float32", "float64"}, default "float32"
        The parameters' dtype.
    proj : int, default 0
        P > 0 (LSTM only, below ``hidden``): a projected LSTM, h and the input of
        ``fc`` P wide.
    peephole : bool, default False
        Peephole connections (LSTM only).

    Raises
    ------
    ValueError
        An unknown ``cell``, ``gru_reset`` or ``dtype``, a size below 1, a negative
        ``embedding``, ``dropout`` outside [0, 1), ``proj`` / ``peephole`` for a cell
        without them, or ``proj`` not below ``hidden``.
    TypeError
        ``proj`` that is not an int, ``peephole`` that is not a bool.

    Examples
    --------
    >>> from fastgates.lm import ModelConfig
    >>> cfg = ModelConfig(vocab_size=60, cell="gru", hidden=32, layers=2, gru_reset="before")
    >>> cfg.celldef.name, cfg.input_size, cfg.out_size
    ('gru_rb', 60, 32)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    vocab_size: int
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0
    embedding: int = 0
    gru_reset: str = "after"
    dtype: str = "float32"
    proj: int = 0
    peephole: bool = False

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
        # proj / peephole: the LSTM's variants (validated like fastgates.LSTM's arguments)
        _layers.make_spec(self.celldef, 1, self.hidden, 1, bias=True, bidirectional=False,
                          proj_size=self.proj, peephole=self.peephole)

    @property
    def gates(self) -> int:
        """G, the number of gates of the cell (rnn 1, gru 3, lstm 4)."""
        return CELLS[self.cell]

    @property
    def celldef(self) -> _cells.CellDef:
        """The table's cell: the family ``cell``, picked by ``gru_reset`` where it applies."""
        return _cells.select(self.cell, linear_before_reset=self.gru_reset == "after")

    def stack_spec(self) -> _layers.StackSpec:
        """The recurrent stack: ``layers`` unidirectional layers of ``hidden`` units.

        Returns
        -------
        fastgates.layers.StackSpec
            The stack the model runs (:func:`fastgates.layers.stack_forward`).
        """
        return _layers.StackSpec(self.celldef.name, self.input_size, self.hidden, self.layers,
                                 proj_size=self.proj, peephole=bool(self.peephole))

    @property
    def out_size(self) -> int:
        """Width of h, of each layer's output and of the input of ``fc``: ``proj`` or ``hidden``."""
        return self.proj or self.hidden

    @property
    def input_size(self) -> int:
        """Size of the first layer's input: the embedding size, or the vocabulary size (one-hot)."""
        return self.embedding or self.vocab_size

    def to_dict(self) -> dict:
        """The fields as a plain dict (what checkpoints store).

        Returns
        -------
        dict of str to object
            Field name -> value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """The config of a dict written by :meth:`to_dict` (unknown keys are ignored).

        Parameters
        ----------
        d : dict of str to object
            Field name -> value; missing fields take their defaults.

        Returns
        -------
        ModelConfig
            The validated config.

        Raises
        ------
        TypeError
            ``vocab_size`` missing.
        ValueError
            A value the constructor refuses.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def param_shapes(config: ModelConfig) -> dict:
    """Name -> shape of every parameter, in a fixed order (the recurrent ones from the
    table, under ``rnn.``: ``rnn.weight_ih_l0``, ...)."""
    H, V = config.hidden, config.vocab_size
    shapes = {}
    if config.embedding:
        shapes["embedding.weight"] = (V, config.embedding)
    shapes.update(("rnn." + name, shape)
                  for name, shape in _layers.parameter_shapes(config.stack_spec()).items())
    shapes["fc.weight"] = (V, config.out_size)
    shapes["fc.bias"] = (V,)
    return shapes


def _recurrent_init(config: ModelConfig) -> dict:
    """``rnn.<name>`` -> the table's initialisation of that parameter (see cells.init_spec)."""
    spec = config.stack_spec()
    specs = {p.stem: p for p in _cells.param_specs(spec.celldef, **spec._options())}
    return {"rnn." + name: _cells.init_spec(specs[stem], config.hidden)
            for names in _layers.parameter_names(spec) for name, stem in zip(names, spec.stems())}


def init_params(config: ModelConfig, rng: np.random.Generator) -> dict:
    """PyTorch's default initialisation of every parameter of a model.

    Recurrent parameters as the table says (weights and biases ~ U(-1/√H, 1/√H),
    ``nn.LSTM``'s), the output layer ~ U(-1/√H, 1/√H) (H = ``config.hidden``, also
    with a projection), the embedding ~ N(0, 1) (``nn.Embedding``).  Drawn in float64
    and rounded to ``config.dtype``, so a float32 and a float64 model from the same
    seed start from the same (rounded) weights.

    Parameters
    ----------
    config : ModelConfig
        The architecture.
    rng : numpy.random.Generator
        The generator the weights are drawn from, in the order of the parameters.

    Returns
    -------
    dict of str to ndarray
        Name -> C-contiguous array of ``config.dtype``: ``embedding.weight`` (V, E)
        when ``config.embedding``, ``rnn.weight_ih_l{k}`` (G*H, input), ``rnn.weight_hh_l{k}``
        (G*H, R), ``rnn.bias_ih_l{k}``, ``rnn.bias_hh_l{k}`` (G*H,) (and
        ``rnn.weight_hr_l{k}`` (P, H), ``rnn.weight_peep_l{k}`` (3, H) where configured),
        ``fc.weight`` (V, R), ``fc.bias`` (V,); R = P or H.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgates.lm import ModelConfig, init_params
    >>> params = init_params(ModelConfig(vocab_size=50, hidden=16), np.random.default_rng(0))
    >>> {name: p.shape for name, p in params.items()}
    {'rnn.weight_ih_l0': (64, 50), 'rnn.weight_hh_l0': (64, 16), 'rnn.bias_ih_l0': (64,),
     'rnn.bias_hh_l0': (64,), 'fc.weight': (50, 16), 'fc.bias': (50,)}
    """
    dtype = np.dtype(config.dtype)
    bound = 1.0 / math.sqrt(config.hidden)
    recurrent = _recurrent_init(config)
    params = {}
    for name, shape in param_shapes(config).items():
        kind, v = recurrent.get(name, ("uniform", bound))
        if name == "embedding.weight":
            w = rng.standard_normal(shape)
        elif kind == "uniform":
            w = rng.uniform(-v, v, shape)
        else:
            w = np.full(shape, v)
        params[name] = np.ascontiguousarray(w, dtype=dtype)
    return params


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, grad: bool = True):
    """Fused, numerically stable softmax cross-entropy.

    The row maximum is subtracted before ``exp``; the sums are accumulated in
    float64.

    Parameters
    ----------
    logits : ndarray of shape (N, V), float32 or float64
        The scores; OVERWRITTEN (used as the work buffer).
    targets : ndarray of shape (N,), int
        The target id of each row, in [0, V) (not checked).
    grad : bool, default True
        Also return the gradient of the MEAN loss with respect to the logits.

    Returns
    -------
    total : float
        The SUM over rows of ``logsumexp(logits_n) - logits_n[targets_n]``.
    dlogits : ndarray of shape (N, V) or None
        ``(softmax - onehot(targets)) / N``, in the buffer of ``logits`` (the same
        array); None when ``grad=False``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgates.lm import softmax_cross_entropy
    >>> logits = np.zeros((2, 4))                    # uniform: each row costs log 4
    >>> total, dlogits = softmax_cross_entropy(logits, np.array([0, 3]))
    >>> round(total, 4), round(float(2 * np.log(4)), 4)
    (2.7726, 2.7726)
    >>> dlogits[0]
    array([-0.375,  0.125,  0.125,  0.125])
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

    Token ids (or an embedding) into stacked recurrent layers, a dense output layer and
    a fused softmax cross-entropy (see :mod:`fastgates.lm.model`).  The parameters are a
    dict of NumPy arrays under PyTorch's names (``params``), updated in place by the
    optimizers.

    Parameters
    ----------
    config : ModelConfig
        The architecture.
    params : dict of str to ndarray or None, default None
        Name -> array for every name of the architecture (see :func:`init_params`),
        cast to ``config.dtype`` (a copy unless already C-contiguous of that dtype);
        None: :func:`init_params` with ``rng``.
    backend : {"fast", "reference"}, default "fast"
        The kernels: compiled (``fastgates``) or the NumPy reference.
    n_threads : int or None, default None
        Passed to every kernel call.
    rng : numpy.random.Generator or None, default None
        The generator of the initialisation when ``params`` is None (None: seed 0).
    blas_threads : int or None, default 1
        Threads of NumPy's BLAS (the output layer) during the model's calls: 1 by
        default, so that it does not fight the kernels' OpenMP threads for the cores
        (see :func:`blas_limit`); None leaves BLAS alone.

    Raises
    ------
    ValueError
        ``params`` whose names or shapes do not match ``config``, or an unknown
        ``backend``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgates.lm import CharRNN, ModelConfig
    >>> model = CharRNN(ModelConfig(vocab_size=20, cell="lstm", hidden=16))
    >>> X = np.array([[1, 2], [3, 4], [5, 6]])              # (T, B) token ids
    >>> Y = np.array([[2, 3], [4, 5], [6, 7]])              # the next tokens
    >>> loss, grads, state = model.loss_and_grads(X, Y)
    >>> round(loss, 1), grads["rnn.weight_hh_l0"].shape, state[0][0].shape
    (3.0, (64, 16), (2, 16))
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
        self.spec = config.stack_spec()
        self.backend = backend
        self.kernels = kernels(backend)
        self.n_threads = n_threads
        self.blas_threads = blas_threads

    @property
    def n_params(self) -> int:
        """The number of scalar parameters."""
        return int(sum(p.size for p in self.params.values()))

    def zero_state(self, batch: int) -> list:
        """The zero state of a batch, in the layout the model's calls carry.

        Parameters
        ----------
        batch : int
            B, the batch rows.

        Returns
        -------
        list of tuple of ndarray
            Per layer ``(h,)`` (rnn, gru) or ``(h, c)`` (lstm), zeros of the model's
            dtype of shape (batch, width) (h: ``config.out_size``, c:
            ``config.hidden``).

        Examples
        --------
        >>> from fastgates.lm import CharRNN, ModelConfig
        >>> model = CharRNN(ModelConfig(vocab_size=20, hidden=16, layers=2, proj=8))
        >>> [[a.shape for a in layer] for layer in model.zero_state(4)]
        [[(4, 8), (4, 16)], [(4, 8), (4, 16)]]
        """
        return [tuple(np.zeros(self.spec.state_shape(s, batch)[1:], self.dtype)
                      for s in self.spec.celldef.states) for _ in range(self.config.layers)]

    def _weights(self):
        """Per layer: stem -> parameter, for the stack."""
        spec = self.spec
        return [{stem: self.params["rnn." + name] for stem, name in zip(spec.stems(), names)}
                for names in _layers.parameter_names(spec)]

    def _check_ids(self, X, name="X"):
        X = np.asarray(X)
        if X.ndim != 2 or X.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a (T, B) integer array of token ids, got "
                             f"{X.dtype} array of shape {X.shape}")
        return np.ascontiguousarray(X, dtype=np.int64)

    def _forward(self, X, state, training, rng):
        """Run all layers; return the last layer's output, the new state and the tape."""
        cfg, spec = self.config, self.spec
        X = self._check_ids(X)
        x = self.params["embedding.weight"][X] if cfg.embedding else X
        masks = None
        if training and cfg.dropout > 0 and cfg.layers > 1:
            if rng is None:
                raise ValueError("dropout needs a random generator (rng) in training mode")
            keep = 1.0 - cfg.dropout
            masks = []
            for _ in range(cfg.layers - 1):      # the generator's order: layer 0 first
                mask = (rng.random(X.shape + (cfg.out_size,)) < keep).astype(self.dtype)
                mask *= self.dtype.type(1.0 / keep)
                masks.append(mask)
        names = spec.celldef.states
        stacked = None if state is None else {
            s: np.stack([st[i] for st in state]) for i, s in enumerate(names)}
        y, state_n, tape = _layers.stack_forward(spec, self._weights(), x, stacked, masks=masks,
                                                 training=training, n_threads=self.n_threads,
                                                 backend=self.kernels)
        new_state = [tuple(state_n[s][k] for s in names) for k in range(cfg.layers)]
        return X, y, new_state, tape

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
        X, Y : ndarray of shape (T, B), int
            Inputs and targets (the inputs shifted by one), token ids in [0, V).
        state : list of tuple of ndarray or None, default None
            The carried state (see :meth:`zero_state`); None = zeros.  No gradient
            flows into it (truncated BPTT).
        rng : numpy.random.Generator or None, default None
            Dropout masks (needed only when ``config.dropout > 0`` and
            ``config.layers > 1``).

        Returns
        -------
        loss : float
            The mean cross-entropy over the T*B tokens (nats).
        grads : dict of str to ndarray
            Same names, shapes and dtype as ``params`` (fresh arrays).
        state : list of tuple of ndarray
            The final state of every layer, to carry into the next minibatch.

        Raises
        ------
        ValueError
            ``X`` or ``Y`` not a 2-D integer array, shapes that differ, or dropout
            without ``rng``; the kernels' errors for token ids out of range.
        """
        with blas_limit(self.blas_threads):
            return self._loss_and_grads(X, Y, state, rng)

    def _loss_and_grads(self, X, Y, state, rng):
        cfg, p = self.config, self.params
        X, y, new_state, tape = self._forward(X, state, True, rng)
        Y = self._check_ids(Y, "Y")
        if Y.shape != X.shape:
            raise ValueError(f"Y has shape {Y.shape}, expected {X.shape} (the shape of X)")
        T, B = X.shape
        yf, logits = self._logits(y)
        total, dlogits = softmax_cross_entropy(logits, Y.ravel())
        grads = {"fc.weight": dlogits.T @ yf, "fc.bias": dlogits.sum(axis=0)}
        dy = (dlogits @ p["fc.weight"]).reshape(T, B, cfg.out_size)
        dx, _, layer_grads = _layers.stack_backward(tape, dy, n_threads=self.n_threads)
        for names, g in zip(_layers.parameter_names(self.spec), layer_grads):
            grads.update(("rnn." + name, v) for name, v in zip(names, g.values()))
        if cfg.embedding:
            demb = np.zeros_like(p["embedding.weight"])
            np.add.at(demb, X.ravel(), dx.reshape(T * B, cfg.embedding))
            grads["embedding.weight"] = demb
        grads = {name: grads[name] for name in p}
        return total / (T * B), grads, new_state

    def loss_sum(self, X, Y, state=None):
        """Sum of the cross-entropies of a (T, B) block (evaluation: no dropout, no cache).

        Parameters
        ----------
        X, Y : ndarray of shape (T, B), int
            Inputs and targets, token ids in [0, V).
        state : list of tuple of ndarray or None, default None
            The carried state (see :meth:`zero_state`); None = zeros.

        Returns
        -------
        total : float
            The sum of the cross-entropies over the T*B tokens (nats).
        state : list of tuple of ndarray
            The final state of every layer.

        Raises
        ------
        ValueError
            ``X`` or ``Y`` not a 2-D integer array.

        Examples
        --------
        >>> import numpy as np
        >>> from fastgates.lm import CharRNN, ModelConfig
        >>> model = CharRNN(ModelConfig(vocab_size=20, cell="gru", hidden=16))
        >>> X = np.zeros((8, 2), np.int64)
        >>> total, state = model.loss_sum(X, X)
        >>> round(total / X.size, 1), state[0][0].shape     # log(20) = 3.0 for a uniform guess
        (2.8, (2, 16))
        """
        with blas_limit(self.blas_threads):
            X, y, new_state, _ = self._forward(X, state, False, None)
            _, logits = self._logits(y)
            total, _ = softmax_cross_entropy(logits, self._check_ids(Y, "Y").ravel(), grad=False)
        return total, new_state

    def logits(self, X, state=None):
        """Output logits and the final state (evaluation mode: no dropout, no cache).

        Parameters
        ----------
        X : ndarray of shape (T, B), int
            Token ids in [0, V).
        state : list of tuple of ndarray or None, default None
            The carried state (see :meth:`zero_state`); None = zeros.

        Returns
        -------
        logits : ndarray of shape (T, B, V)
            The unnormalised scores of the next token, of the model's dtype.
        state : list of tuple of ndarray
            The final state of every layer.

        Raises
        ------
        ValueError
            ``X`` not a 2-D integer array.

        Examples
        --------
        >>> import numpy as np
        >>> from fastgates.lm import CharRNN, ModelConfig
        >>> model = CharRNN(ModelConfig(vocab_size=20, hidden=16))
        >>> logits, state = model.logits(np.zeros((3, 2), np.int64))
        >>> logits.shape, logits.dtype
        ((3, 2, 20), dtype('float32'))
        """
        with blas_limit(self.blas_threads):
            X, y, new_state, _ = self._forward(X, state, False, None)
            T, B = X.shape
            return self._logits(y)[1].reshape(T, B, -1), new_state
