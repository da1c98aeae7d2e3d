"""Checkpoints: one ``.npz`` file, no pickle, written atomically.

Design: a checkpoint is a flat dict of arrays (``params/<name>``,
``optim/<m|v>/<name>``, ``carried/<h|c>_l<k>``) plus one JSON document stored
as a 0-d unicode array under ``meta.json``: format and version, the model and
run configuration, the vocabulary, the progress (epoch, minibatch, step, loss
sums, history), the optimizer settings and the generator state.  Everything
loads with ``np.load(path, allow_pickle=False)``.

Writing goes to a temporary file in the target's directory, which is flushed,
fsync'ed and then renamed over the target with ``os.replace`` (atomic on POSIX
and Windows), so a crash or Ctrl-C during a save leaves the previous checkpoint
intact.  Reading validates the container and the JSON and turns a truncated
or garbled file into a :class:`CheckpointError` that says so.
"""

from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

import numpy as np

from .._io import atomic_write

FORMAT = "fastgates-lm-checkpoint"
VERSION = 1
META_KEY = "meta.json"


#: Types of the top-level metadata entries that save_training writes.
META_TYPES = {"config": dict, "model": dict, "vocab": list, "progress": dict, "optimizer": dict,
              "rng": dict, "train": dict}


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, garbled or of another format."""


def _write_npz(f, arrays: dict) -> None:
    np.savez(f, **arrays)


#: Test hook (private): "<n>:<marker path>" makes the n-th save of this process create the
#: marker file and sleep after the temporary file is written and fsync'ed but before it
#: replaces the target, so a test can SIGKILL the writer at exactly that moment.
_PAUSE_ENV = "_FASTGATES_TEST_CHECKPOINT_PAUSE"
_saves = 0


def _test_pause() -> None:
    global _saves
    spec = os.environ.get(_PAUSE_ENV)
    if not spec:
        return
    _saves += 1
    n, marker = spec.split(":", 1)
    if _saves == int(n):
        with open(marker, "w"):
            pass
        time.sleep(600)


def save_checkpoint(path, arrays: dict, meta: dict) -> None:
    """Write ``arrays`` and the JSON ``meta`` to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        Target file (``.npz``); its directory must exist.  Written to a temporary
        file in the same directory, fsync'ed and renamed over ``path``: a crash
        leaves the previous file intact.
    arrays : dict of str -> ndarray
        Numeric arrays only (no object dtype).
    meta : dict
        JSON-serialisable; stored with ``format`` and ``version`` added.

    Raises
    ------
    ValueError
        ``arrays`` uses the reserved name ``meta.json``.
    TypeError
        An array of object dtype.
    OSError
        The file cannot be written.
    """
    path = os.fspath(path)
    if META_KEY in arrays:
        raise ValueError(f"{META_KEY!r} is reserved")
    for k, a in arrays.items():
        if np.asarray(a).dtype.hasobject:
            raise TypeError(f"array {k!r} has object dtype; checkpoints hold numeric arrays only")
    doc = dict(meta, format=FORMAT, version=VERSION)
    payload = dict(arrays)
    payload[META_KEY] = np.array(json.dumps(doc, allow_nan=True))
    with atomic_write(path, prefix=".checkpoint-", suffix=".npz.tmp", durable=True,
                      before_replace=_test_pause) as f:
        _write_npz(f, payload)


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Everything is read with ``np.load(path, allow_pickle=False)``: a checkpoint can
    never run code.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.

    Returns
    -------
    arrays : dict of str -> ndarray
    meta : dict

    Raises
    ------
    CheckpointError
        Missing file, not an npz archive, truncated or corrupted data, missing or
        invalid metadata, or another format/version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a directory (expected a .npz file; "
                              f"try {os.path.join(path, 'checkpoint.npz')!r})")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    # Any failure to parse the container means a damaged file: flipped header bits reach
    # zipfile's NotImplementedError ("strong encryption") or RuntimeError ("encrypted"),
    # forged sizes a MemoryError, and so on (found by tests/test_checkpoint_safety.py).
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupted and cannot be read "
                              f"({type(exc).__name__}: {exc})") from None
    if META_KEY not in arrays:
        raise CheckpointError(f"{path!r} is an npz archive but not a fastgates-lm checkpoint "
                              f"(no {META_KEY})")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)[()]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path!r} has garbled metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a fastgates-lm checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format version {meta.get('version')!r}; "
                              f"this fastgates reads version {VERSION}")
    for key, kind in META_TYPES.items():     # readers index these without further checks
        if key in meta and not isinstance(meta[key], kind):
            raise CheckpointError(f"checkpoint {path!r} has garbled metadata ({key!r} is a "
                                  f"{type(meta[key]).__name__}, expected a {kind.__name__})")
    return arrays, meta


class Loaded(NamedTuple):
    """A checkpoint opened for use, as :func:`load_model` returns it.

    Parameters
    ----------
    model : CharRNN
        The model with the saved parameters.
    vocab : Vocab
        Its vocabulary.
    meta : dict
        The saved metadata (configuration, progress, optimizer, generator state).
    arrays : dict of str to ndarray
        Every saved array.
    """

    model: object
    vocab: object
    meta: dict
    arrays: dict


def save_training(path, trainer, vocab, config: dict) -> None:
    """Checkpoint a :class:`~fastgates.lm.Trainer` with its vocabulary and run ``config``.

    Parameters
    ----------
    path : str or path-like
        Target ``.npz`` (written atomically, see :func:`save_checkpoint`).
    trainer : Trainer
        Its model, optimizer state, carried state and progress are saved.
    vocab : Vocab
        The vocabulary of the model's token ids.
    config : dict
        The run's configuration (JSON), e.g. the command line's options.
    """
    meta = trainer.state_meta()
    meta["model"] = trainer.model.config.to_dict()
    meta["vocab"] = list(vocab.tokens)
    meta["config"] = config
    save_checkpoint(path, trainer.state_arrays(), meta)


def load_model(path, *, backend: str = "fast", n_threads=None) -> Loaded:
    """Open a checkpoint written by :func:`save_training` as a ready model.

    Parameters
    ----------
    path : str or path-like
        A ``checkpoint.npz`` (``fastgates-lm train`` writes one per run directory).
    backend : {"fast", "reference"}, default "fast"
        The kernels the model runs on.
    n_threads : int or None, default None
        Threads of every kernel call.

    Returns
    -------
    Loaded
        ``(model, vocab, meta, arrays)``.

    Raises
    ------
    CheckpointError
        A missing, truncated, garbled or inconsistent checkpoint, or another format.

    Examples
    --------
    >>> from fastgates import lm
    >>> loaded = lm.load_model("runs/demo/checkpoint.npz")     # doctest: +SKIP
    >>> print(lm.generate(loaded.model, loaded.vocab, "the ", 100, seed=0))  # doctest: +SKIP
    """
    from .data import Vocab
    from .model import CharRNN, ModelConfig, param_shapes

    arrays, meta = load_checkpoint(path)
    try:
        config = ModelConfig.from_dict(meta["model"])
        vocab = Vocab(meta["vocab"])
        params = {name: arrays[f"params/{name}"] for name in param_shapes(config)}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} is incomplete or inconsistent "
                              f"({type(exc).__name__}: {exc})") from None
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: vocabulary of {len(vocab)} tokens "
                              f"but the model expects {config.vocab_size}")
    try:
        model = CharRNN(config, params, backend=backend, n_threads=n_threads)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {exc}") from None
    return Loaded(model, vocab, meta, arrays)
