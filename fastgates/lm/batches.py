"""The two minibatch schemes of the textbook, sequence-first.

Both yield ``(X, Y)``: C-contiguous int64 arrays of shape ``(steps, batch)``
(the layout of the kernels' token-id input), with ``Y[t, b]`` the token that
follows ``X[t, b]`` in the text (targets = inputs shifted by one).

- :class:`SequentialBatches`: the text (after a random offset < steps) is cut
  into ``batch`` contiguous streams; minibatch ``i`` holds steps
  ``i*steps ... (i+1)*steps - 1`` of every stream, so column ``b`` of minibatch
  ``i+1`` continues column ``b`` of minibatch ``i``.  The hidden state can be
  carried across minibatches (truncated BPTT).
- :class:`RandomBatches`: the text (after a random offset < steps) is cut into
  non-overlapping subsequences of ``steps`` tokens, visited in random order,
  ``batch`` per minibatch; neighbouring minibatches are unrelated, so the state
  is reset for each.

Each epoch builds a new iterator from its own generator; all randomness is drawn
in the constructor, and ``batch(i)`` gives minibatch ``i`` directly, so a run
can resume in the middle of an epoch.
"""

from __future__ import annotations

import numpy as np

#: Sampling scheme names.
SAMPLINGS = ("sequential", "random")


def _check(ids, batch, steps):
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    for name, v in (("batch", batch), ("steps", steps)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return ids, int(batch), int(steps)


def _offset(rng, steps):
    return 0 if rng is None else int(rng.integers(steps))


# The constructors' Parameters and Raises (both check their arguments with _check).
_ARGS_DOC = """    Parameters
    ----------
    ids : array_like of shape (N,), integers
        The token ids (converted to int64).
    batch, steps : int
        Minibatch size B{streams} and sequence length T, both >= 1.
    rng : numpy.random.Generator or None, default None
        Draws the starting offset in ``[0, steps)``{rng}

    Raises
    ------
    ValueError
        ``ids`` is not 1-D, or ``batch`` / ``steps`` is not a positive integer."""


class _Batches:
    """What both minibatch schemes share: ``len``, iteration, and ``batch(i)`` checking ``i``
    before the scheme's ``_batch(i)`` cuts the minibatch."""

    n_batches = 0

    def __len__(self):
        return self.n_batches

    def batch(self, i):
        """Minibatch ``i`` as ``(X, Y)``, each (steps, batch) int64.

        Parameters
        ----------
        i : int
            In ``[0, len(self))``.

        Returns
        -------
        X, Y : ndarray of shape (steps, batch), int64
            Inputs and targets (the inputs shifted by one).

        Raises
        ------
        IndexError
            ``i`` out of range.
        """
        if not 0 <= i < self.n_batches:
            raise IndexError(f"minibatch {i} out of range [0, {self.n_batches})")
        return self._batch(i)

    def __iter__(self):
        for i in range(self.n_batches):
            yield self.batch(i)


class SequentialBatches(_Batches):
    __doc__ = f"""Consecutive minibatches continue ``batch`` parallel streams of the text.

    The text (after the offset) is cut into ``batch`` contiguous streams; minibatch
    ``i`` holds steps ``i*steps ... (i+1)*steps - 1`` of every stream, so the hidden
    state can be carried from one minibatch to the next (truncated BPTT).

{_ARGS_DOC.format(streams=" (streams)", rng="; None starts at 0.")}

    See Also
    --------
    RandomBatches : independent subsequences, the state reset for each.

    Notes
    -----
    Iterating yields ``(X, Y)``, C-contiguous int64 arrays of shape (steps, batch)
    (the kernels' token-id layout), ``Y[t, b]`` the token after ``X[t, b]``;
    ``len()`` is the number of minibatches and :meth:`batch` gives one directly.

    Examples
    --------
    >>> from fastgates.lm import SequentialBatches
    >>> it = SequentialBatches(np.arange(21), batch=2, steps=3)
    >>> len(it)
    3
    >>> X, Y = it.batch(0)
    >>> X.T                                   # stream b is row b here
    array([[ 0,  1,  2],
           [10, 11, 12]])
    >>> it.batch(1)[0].T                      # ... and continues in the next minibatch
    array([[ 3,  4,  5],
           [13, 14, 15]])
    """

    def __init__(self, ids, batch, steps, rng=None):
        ids, self.batch_size, self.steps = _check(ids, batch, steps)
        self.offset = _offset(rng, self.steps)
        per_stream = (len(ids) - self.offset - 1) // self.batch_size
        self.n_batches = max(per_stream // self.steps, 0)
        n = per_stream * self.batch_size
        o = self.offset
        # (per_stream, B): column b is stream b; rows are consecutive tokens
        self._x = np.ascontiguousarray(ids[o:o + n].reshape(self.batch_size, per_stream).T) if n > 0 \
            else np.zeros((0, self.batch_size), np.int64)
        self._y = np.ascontiguousarray(ids[o + 1:o + 1 + n].reshape(self.batch_size, per_stream).T) if n > 0 \
            else np.zeros((0, self.batch_size), np.int64)

    def _batch(self, i):
        s = slice(i * self.steps, (i + 1) * self.steps)
        return self._x[s], self._y[s]


class RandomBatches(_Batches):
    __doc__ = f"""Minibatches of random, non-overlapping subsequences of the text.

    The text (after the offset) is cut into subsequences of ``steps`` tokens,
    visited in random order, ``batch`` per minibatch; neighbouring minibatches are
    unrelated, so the state is reset for each.

{_ARGS_DOC.format(streams="", rng=''' and shuffles the subsequences;
        None starts at 0 and keeps them in text order.''')}

    See Also
    --------
    SequentialBatches : contiguous streams, the state carried across minibatches.

    Examples
    --------
    >>> from fastgates.lm import RandomBatches
    >>> it = RandomBatches(np.arange(100), batch=4, steps=5, rng=np.random.default_rng(0))
    >>> X, Y = next(iter(it))
    >>> X.shape, bool(np.all(Y == X + 1))
    ((5, 4), True)
    """

    def __init__(self, ids, batch, steps, rng=None):
        ids, self.batch_size, self.steps = _check(ids, batch, steps)
        self._ids = ids
        self.offset = _offset(rng, self.steps)
        n_sub = max((len(ids) - self.offset - 1) // self.steps, 0)
        starts = self.offset + self.steps * np.arange(n_sub, dtype=np.int64)
        if rng is not None:
            rng.shuffle(starts)
        self.n_batches = n_sub // self.batch_size
        self.starts = starts[: self.n_batches * self.batch_size]
        self._t = np.arange(self.steps, dtype=np.int64)[:, None]

    def _batch(self, i):
        idx = self.starts[i * self.batch_size:(i + 1) * self.batch_size][None, :] + self._t
        return self._ids[idx], self._ids[idx + 1]


def make_batches(sampling, ids, batch, steps, rng=None):
    """The minibatch iterator of scheme ``sampling``.

    Parameters
    ----------
    sampling : {"sequential", "random"}
        :class:`SequentialBatches` or :class:`RandomBatches`.
    ids, batch, steps, rng
        Passed to the iterator's constructor.

    Returns
    -------
    SequentialBatches or RandomBatches

    Raises
    ------
    ValueError
        An unknown ``sampling``, or arguments the iterator refuses.
    """
    if sampling == "sequential":
        return SequentialBatches(ids, batch, steps, rng)
    if sampling == "random":
        return RandomBatches(ids, batch, steps, rng)
    raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
