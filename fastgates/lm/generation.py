"""Text generation from a trained :class:`~fastgates.lm.model.CharRNN`.

Design: :func:`generate` tokenizes the prefix, maps unknown characters to
``<unk>`` (with a warning) and hands everything to the compiled loop in
``fastgates._recurrence.sample`` (the compiled core), which feeds the prefix and draws every new token
without returning to Python.  :func:`sample_numpy` is the same algorithm — the
same recurrence for B = 1, the same softmax with temperature and top-k, the same
xoshiro256** generator — written in NumPy with a Python loop per token, and it is
the fallback when the extension has not been compiled.  It is not the same
arithmetic: the compiled loop runs the kernels' step in the model's dtype, while
:func:`_numpy_step` runs the NumPy reference's step of the table's cell
(``fastgates.reference.cell_step``) in float64 and rounds each new state to the
model's dtype; so it serves every cell of the table without code here.  The tests
check that the two draw the same tokens (on their models, float32 and float64).
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import reference
from .data import tokenize
from .threadpool import blas_limit

_MASK = (1 << 64) - 1



class Xoshiro256:
    """xoshiro256** seeded with splitmix64 — the compiled sampler's generator in Python."""

    def __init__(self, seed: int):
        x = int(seed) & _MASK
        s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & _MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            s.append(z ^ (z >> 31))
        self.s = s

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & _MASK

    def next(self) -> int:
        s0, s1, s2, s3 = self.s
        result = (self._rotl((s1 * 5) & _MASK, 7) * 9) & _MASK
        t = (s1 << 17) & _MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = self._rotl(s3, 45)
        self.s = [s0, s1, s2, s3]
        return result

    def uniform(self) -> float:
        """u in [0, 1) with 53 random bits."""
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)


def resolve_seed(seed) -> int:
    """``seed`` as an unsigned 64-bit integer; None draws one from the OS."""
    if seed is None:
        return int(np.random.SeedSequence().entropy) & _MASK
    return int(seed) & _MASK


def encode_prefix(vocab, prefix: str, tokens: str = "char") -> tuple[str, np.ndarray]:
    """Tokenize ``prefix`` like the training text; unknown characters become ``<unk>`` (warned)."""
    text = tokenize(prefix, tokens)
    if not text:
        raise ValueError("the prefix is empty after tokenization; give at least one character")
    unknown = vocab.unknown(text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        warnings.warn(f"prefix characters not in the vocabulary are mapped to <unk>: {shown}",
                      UserWarning, stacklevel=3)
    return text, vocab.encode(text)


def _layers(model):
    """Per layer (w_ih, w_hh, b_ih, b_hh, the other parameters by stem): the sampler's layout."""
    stems = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [tuple(w[s] for s in stems) + ({k: v for k, v in w.items() if k not in stems},)
            for w in model._weights()]


def _check_args(model, prefix_ids, length, temperature, top_k):
    V = model.config.vocab_size
    prefix_ids = np.ascontiguousarray(prefix_ids, dtype=np.int64)
    if prefix_ids.ndim != 1 or len(prefix_ids) < 1:
        raise ValueError("prefix_ids must be a non-empty 1-D array of token ids")
    if prefix_ids.min() < 0 or prefix_ids.max() >= V:
        raise ValueError(f"prefix_ids must lie in [0, {V}), got range "
                         f"[{prefix_ids.min()}, {prefix_ids.max()}]")
    if int(length) != length or length < 0:
        raise ValueError(f"length must be a non-negative integer, got {length!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be a non-negative integer (0 = no limit), got {top_k!r}")
    return prefix_ids, int(length), float(temperature), int(top_k)


def sample_compiled(model, prefix_ids, length, temperature=1.0, top_k=0, seed=0) -> np.ndarray:
    """Feed ``prefix_ids`` and draw ``length`` token ids in compiled code (see the module doc)."""
    from .. import _checks, _fork, _recurrence

    prefix_ids, length, temperature, top_k = _check_args(model, prefix_ids, length, temperature, top_k)
    cfg, p = model.config, model.params
    h = np.zeros((cfg.layers, cfg.out_size), model.dtype)
    c = np.zeros((cfg.layers, cfg.hidden), model.dtype)
    out = np.zeros(length, np.int64)
    # the sampler runs its own OpenMP region: in a child forked after OpenMP threads ran,
    # GNU libgomp would hang there, so it obeys the kernels' fork guard too
    nt = _fork.safe_threads(_recurrence.resolve_threads(_checks.check_n_threads(model.n_threads)))
    with blas_limit(1):   # a B = 1 GEMV gains nothing from BLAS threads
        _recurrence.sample(cfg.celldef.code, _layers(model), p["fc.weight"], p["fc.bias"],
                           p.get("embedding.weight"), h, c, prefix_ids, out, temperature, top_k,
                           resolve_seed(seed), nt)
    return out


def _numpy_step(model, layers, cell, tok, hs, cs):
    """One recurrence step of every layer for B = 1: the reference's step of the table's
    cell (``fastgates.reference.cell_step``) in float64, each new state rounded to the
    model's dtype (see the module docstring)."""
    dt = model.dtype
    emb = model.params.get("embedding.weight")
    x = np.array([tok]) if emb is None else emb[tok][None].astype(np.float64)
    for k, p in enumerate(layers):
        state = {"h": hs[k][None].astype(np.float64), "c": cs[k][None].astype(np.float64)}
        new = reference.cell_step(cell, x, state, p)
        hs[k] = new["h"][0].astype(dt)
        if "c" in new:
            cs[k] = new["c"][0].astype(dt)
        x = hs[k][None].astype(np.float64)


def _numpy_draw(logits, temperature, top_k, rng):
    l = logits.astype(np.float64)
    best = int(np.argmax(l))
    if temperature <= 0:
        return best
    V = len(l)
    thr = -np.inf
    if 0 < top_k < V:
        thr = np.partition(l, V - top_k)[V - top_k]
    p = np.where(l >= thr, np.exp((l - l[best]) / temperature), 0.0)
    cum = np.cumsum(p)
    u = rng.uniform() * cum[-1]
    hit = np.flatnonzero((cum > u) & (p > 0))
    if hit.size:
        return int(hit[0])
    nz = np.flatnonzero(p > 0)
    return int(nz[-1]) if nz.size else best


def sample_numpy(model, prefix_ids, length, temperature=1.0, top_k=0, seed=0) -> np.ndarray:
    """:func:`sample_compiled` in NumPy (a Python loop per token; for tests and as a fallback)."""
    prefix_ids, length, temperature, top_k = _check_args(model, prefix_ids, length, temperature, top_k)
    cfg, p = model.config, model.params
    cell = cfg.celldef
    layers = [{stem: a.astype(np.float64) for stem, a in w.items()} for w in model._weights()]
    hs = [np.zeros(cfg.out_size, model.dtype) for _ in range(cfg.layers)]
    cs = [np.zeros(cfg.hidden, model.dtype) for _ in range(cfg.layers)]
    rng = Xoshiro256(resolve_seed(seed))
    for tok in prefix_ids:
        _numpy_step(model, layers, cell, int(tok), hs, cs)
    out = np.zeros(length, np.int64)
    for t in range(length):
        logits = p["fc.bias"] + p["fc.weight"] @ hs[-1]
        out[t] = _numpy_draw(logits, temperature, top_k, rng)
        if t + 1 < length:
            _numpy_step(model, layers, cell, int(out[t]), hs, cs)
    return out


def compiled_available() -> bool:
    """True when the compiled core (with its sampler, ``fastgates._recurrence``) is built."""
    try:
        from .. import _recurrence  # noqa: F401
    except ImportError:
        return False
    return True


def generate(model, vocab, prefix: str = "the ", length: int = 200, *, temperature: float = 1.0,
             top_k: int = 0, seed=None, tokens: str = "char") -> str:
    """Continue ``prefix`` by ``length`` characters drawn from ``model``.

    Parameters
    ----------
    model : CharRNN
    vocab : Vocab
    prefix : str
        Tokenized like the training text (``tokens``); characters outside the
        vocabulary are mapped to ``<unk>`` with a warning.
    length : int
        Number of new characters.
    temperature : float
        Softmax temperature; 0 = greedy (argmax, deterministic).
    top_k : int
        Draw only among the k most likely tokens (0 = all).
    seed : int or None
        Seed of the generator (None: fresh entropy).  Same seed, same text.
    tokens : "char" or "letters"

    Returns
    -------
    str
        The (tokenized) prefix followed by the generated text.
    """
    text, ids = encode_prefix(vocab, prefix, tokens)
    if compiled_available():
        out = sample_compiled(model, ids, length, temperature, top_k, seed)
    else:
        warnings.warn("fastgates._recurrence is not compiled; generating with the slow NumPy "
                      "loop (build the package to get the compiled sampler)", RuntimeWarning,
                      stacklevel=2)
        out = sample_numpy(model, ids, length, temperature, top_k, seed)
    return text + vocab.decode(out)
