"""Corpus, tokenizers and vocabulary of the character language model.

Design: a text becomes a 1-D array of token ids in three steps.  ``load_text``
reads a file (or the default corpus), ``tokenize`` maps it to a string of
single-character tokens (``char``: every character; ``letters``: lower-case a-z
and space, everything else a space, runs collapsed), and :class:`Vocab` maps
characters to ids with ``<unk>`` (id 0) for anything not seen in the training
text.  Encoding is vectorised (code points through ``np.searchsorted``), so a
megabyte of text encodes in milliseconds.

The default corpus needs no download: the English text of the Python language
reference that ships with every CPython (``pydoc_data.topics``, the values of
its ``topics`` dict concatenated in sorted key order, about 465k characters).
"""

from __future__ import annotations

import codecs
import os
import re
from collections import Counter
from typing import Iterable, NamedTuple, Sequence

import numpy as np

#: Tokenizer names accepted by :func:`tokenize`.
TOKENIZERS = ("char", "letters")

#: The unknown token; always id 0.
UNK = "<unk>"

_NON_LETTERS = re.compile(r"[^a-z]+")


class DataError(ValueError):
    """A text file that cannot be used as a corpus (missing, empty, undecodable, ...)."""


def default_text() -> str:
    """The default corpus: CPython's ``pydoc_data.topics`` in sorted key order.

    The text of the Python language reference that ships with every CPython (about
    465,000 characters), so the language model trains without a download.

    Returns
    -------
    str
    """
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def load_text(path: str | os.PathLike | None = None, encoding: str = "utf-8") -> str:
    """Read a corpus.

    Parameters
    ----------
    path : str or path-like or None
        A text file, or None for :func:`default_text`.
    encoding : str, default "utf-8"
        The file's encoding.  A UTF-8 byte-order mark is dropped.

    Returns
    -------
    str
        The decoded text.

    Raises
    ------
    DataError
        When the file is missing, is a directory, cannot be read, is empty, does
        not decode with ``encoding``, or ``encoding`` is not a known codec.
    """
    if path is None:
        return default_text()
    path = os.fspath(path)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (try utf-8, latin-1, cp1252, ...)") from None
    if not os.path.exists(path):
        raise DataError(f"text file {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"{path!r} is a directory, not a text file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"cannot read text file {path!r}: {exc.strerror or exc}") from None
    if not raw:
        raise DataError(f"text file {path!r} is empty")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1]
        raise DataError(
            f"text file {path!r} is not valid {encoding} (byte 0x{bad.hex()} at offset "
            f"{exc.start}); pass --encoding (e.g. latin-1) if it uses another encoding") from None
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig") and text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DataError(f"text file {path!r} contains only whitespace")
    return text


def tokenize(text: str, tokens: str = "char") -> str:
    """Map ``text`` to a string whose characters are the tokens.

    Parameters
    ----------
    text : str
    tokens : {"char", "letters"}, default "char"
        ``char`` keeps every character.  ``letters`` lower-cases, maps everything
        outside a-z to a space and collapses runs of such characters into one space
        (the textbook's 26 letters + space; with ``<unk>`` a 28-token vocabulary).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        An unknown ``tokens``.

    Examples
    --------
    >>> from fastgates.lm import tokenize
    >>> tokenize("Hello, World 42!", "letters")
    'hello world '
    """
    if tokens == "char":
        return text
    if tokens == "letters":
        return _NON_LETTERS.sub(" ", text.lower())
    raise ValueError(f"tokens must be one of {TOKENIZERS}, got {tokens!r}")


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class Vocab:
    """Token <-> id mapping over single characters, with ``<unk>`` as id 0.

    Characters are numbered by decreasing frequency in the text they are built
    from (ties by code point), so the ids are reproducible.

    Parameters
    ----------
    tokens : sequence of str
        The vocabulary in id order: ``tokens[0]`` must be ``"<unk>"``, the others
        single distinct characters.

    Raises
    ------
    ValueError
        ``tokens`` does not start with ``"<unk>"``, or the others are not distinct
        single characters.

    Examples
    --------
    >>> from fastgates.lm import Vocab
    >>> v = Vocab.build("abracadabra")
    >>> v.tokens
    ['<unk>', 'a', 'b', 'r', 'c', 'd']
    >>> v.encode("cab!")
    array([4, 1, 2, 0])
    >>> v.decode([4, 1, 2, 0])
    'cab\ufffd'
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if not tokens or tokens[0] != UNK:
            raise ValueError(f"the first vocabulary entry must be {UNK!r}")
        chars = tokens[1:]
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("vocabulary entries after <unk> must be single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary entries must be distinct")
        self.tokens = tokens
        self._index = {c: i for i, c in enumerate(tokens)}
        cps = np.array([ord(c) for c in chars], dtype=np.uint32)
        order = np.argsort(cps, kind="stable")
        self._sorted_cps = cps[order]
        self._sorted_ids = (order + 1).astype(np.int64)

    @classmethod
    def build(cls, text: str) -> "Vocab":
        """The vocabulary of ``text``: its distinct characters by decreasing frequency.

        Parameters
        ----------
        text : str

        Returns
        -------
        Vocab
        """
        counts = Counter(text)
        chars = sorted(counts, key=lambda c: (-counts[c], ord(c)))
        return cls([UNK] + chars)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, char: str) -> bool:
        return char in self._index and char != UNK

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def id(self, char: str) -> int:
        """The id of one character (0 = ``<unk>`` when unknown).

        Parameters
        ----------
        char : str

        Returns
        -------
        int
        """
        return self._index.get(char, 0) if char != UNK else 0

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of ``text`` (unknown characters -> 0).

        Parameters
        ----------
        text : str

        Returns
        -------
        ndarray of shape (len(text),), int64
        """
        cps = _codepoints(text)
        if not len(self._sorted_cps):
            return np.zeros(len(cps), dtype=np.int64)
        pos = np.searchsorted(self._sorted_cps, cps)
        pos = np.minimum(pos, len(self._sorted_cps) - 1)
        found = self._sorted_cps[pos] == cps
        return np.where(found, self._sorted_ids[pos], 0)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the vocabulary.

        Parameters
        ----------
        text : str

        Returns
        -------
        list of str
            Sorted.
        """
        return sorted({c for c in text if c not in self._index or c == UNK})

    def decode(self, ids: Iterable[int], unk: str = "\ufffd") -> str:
        """The text of ``ids``.

        Parameters
        ----------
        ids : iterable of int
            Token ids in ``[0, len(self))`` (any shape; flattened).
        unk : str, default "\\ufffd"
            What ``<unk>`` (id 0) becomes.

        Returns
        -------
        str
        """
        table = [unk] + self.tokens[1:]
        return "".join(table[int(i)] for i in np.asarray(ids, dtype=np.int64).ravel())


class Corpus(NamedTuple):
    """A tokenized text split into training and validation ids.

    Parameters
    ----------
    vocab : Vocab
        Built from the training part only.
    train : ndarray of shape (N_train,), int64
        The first ``1 - val_fraction`` of the token ids.
    val : ndarray of shape (N_val,), int64
        The rest.
    tokens : {"char", "letters"}
        How the text was tokenized (:func:`tokenize`).
    """

    vocab: Vocab
    train: np.ndarray
    val: np.ndarray
    tokens: str


def split_point(n: int, val_fraction: float) -> int:
    """Index of the first validation token for ``n`` tokens.

    Parameters
    ----------
    n : int
        Number of tokens.
    val_fraction : float
        Held-out fraction, in [0, 1).

    Returns
    -------
    int
    """
    return n - int(round(n * val_fraction))


def make_corpus(text: str, tokens: str = "char", val_fraction: float = 0.1,
                vocab: Vocab | None = None) -> Corpus:
    """Tokenize ``text``, hold out its last ``val_fraction`` and encode both parts.

    Parameters
    ----------
    text : str
    tokens : {"char", "letters"}, default "char"
        See :func:`tokenize`.
    val_fraction : float, default 0.1
        The final fraction of the tokens held out for validation, in [0, 1).
    vocab : Vocab or None, default None
        A vocabulary to use (e.g. a checkpoint's) instead of building one from the
        training part.

    Returns
    -------
    Corpus

    Raises
    ------
    ValueError
        ``val_fraction`` outside [0, 1) or an unknown ``tokens``.
    DataError
        A training or validation part of fewer than 2 tokens.

    Examples
    --------
    >>> from fastgates.lm import make_corpus
    >>> c = make_corpus("the quick brown fox jumps over the lazy dog", val_fraction=0.25)
    >>> len(c.vocab), c.train.shape, c.val.shape, c.train.dtype
    (22, (32,), (11,), dtype('int64'))
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    toks = tokenize(text, tokens)
    cut = split_point(len(toks), val_fraction)
    train_text, val_text = toks[:cut], toks[cut:]
    if len(train_text) < 2:
        raise DataError(f"the training text has {len(train_text)} tokens; need at least 2")
    if val_fraction > 0 and len(val_text) < 2:
        raise DataError(f"the validation text has {len(val_text)} tokens; need at least 2 "
                        f"(use a longer text or a larger --val-fraction)")
    if vocab is None:
        vocab = Vocab.build(train_text)
    return Corpus(vocab, vocab.encode(train_text), vocab.encode(val_text), tokens)
