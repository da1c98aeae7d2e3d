"""fastgates.lm: corpus loading, tokenizers, vocabulary and the two minibatch iterators."""

import numpy as np
import pytest

from fastgates.lm import data
from fastgates.lm.batches import RandomBatches, SequentialBatches, make_batches
from fastgates.lm.data import UNK, DataError, Vocab, load_text, make_corpus, tokenize

TEXT = "The Time Traveller (for so it will be convenient to speak of him) was expounding\n" * 20


# -- corpus ---------------------------------------------------------------------------------

def test_default_corpus_is_pydoc_topics_in_sorted_key_order():
    from pydoc_data.topics import topics

    text = data.default_text()
    assert text == "".join(topics[k] for k in sorted(topics))
    assert len(text) > 100_000
    assert load_text(None) == text


@pytest.mark.parametrize("content, encoding, expected", [
    ("héllo wörld\n".encode("utf-8"), "utf-8", "héllo wörld\n"),
    ("\ufeffbom text".encode("utf-8"), "utf-8", "bom text"),
    ("héllo".encode("latin-1"), "latin-1", "héllo"),
])
def test_load_text_decodes(tmp_path, content, encoding, expected):
    p = tmp_path / "t.txt"
    p.write_bytes(content)
    assert load_text(p, encoding) == expected


@pytest.mark.parametrize("setup, match", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(b"   \n\t "), "only whitespace"),
    (lambda p: p.write_bytes("caf\u00e9".encode("latin-1")), r"not valid utf-8 \(byte 0xe9 at offset 3\).*--encoding"),
    (lambda p: p.mkdir(), "is a directory"),
])
def test_load_text_errors_are_clear(tmp_path, setup, match):
    p = tmp_path / "corpus.txt"
    setup(p)
    with pytest.raises(DataError, match=match) as exc:
        load_text(p)
    assert "corpus.txt" in str(exc.value)


def test_load_text_unknown_encoding(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abc")
    with pytest.raises(DataError, match="unknown encoding 'no-such-codec'"):
        load_text(p, "no-such-codec")


# -- tokenizers and vocabulary ---------------------------------------------------------------

def test_letters_tokenizer_maps_and_collapses():
    assert tokenize("The  Time-Traveller, 1895!\n\nHe said", "letters") == "the time traveller he said"
    assert tokenize("ÀB", "letters") == " b"
    assert tokenize("x", "char") == "x"
    with pytest.raises(ValueError, match="tokens must be one of"):
        tokenize("x", "words")


def test_letters_vocabulary_is_the_textbook_28_tokens():
    toks = tokenize(TEXT + "abcdefghijklmnopqrstuvwxyz QUICK", "letters")
    vocab = Vocab.build(toks)
    assert len(vocab) == 28
    assert vocab.tokens[0] == UNK
    assert set(vocab.tokens[1:]) == set("abcdefghijklmnopqrstuvwxyz ")


def test_vocab_round_trip_and_unknown():
    vocab = Vocab.build(TEXT)
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.int64 and ids.shape == (len(TEXT),)
    assert ids.min() >= 1 and ids.max() < len(vocab)
    assert vocab.decode(ids) == TEXT
    # ordered by decreasing frequency: the space is the most common character here
    assert vocab.tokens[1] == " "
    # unknown characters -> <unk> (id 0), decoded as the replacement character
    ids = vocab.encode("Tz€h")
    assert ids[1] == 0 and ids[2] == 0 and ids[0] == vocab.id("T")
    assert vocab.decode(ids) == "T\ufffd\ufffdh"
    assert vocab.unknown("Tz€h") == ["z", "€"]
    assert "T" in vocab and "z" not in vocab
    # the vocabulary survives a round trip through its token list (as in a checkpoint)
    assert Vocab(list(vocab.tokens)) == vocab


def test_vocab_handles_astral_characters():
    text = "a😀b😀\n"
    vocab = Vocab.build(text)
    assert vocab.decode(vocab.encode(text)) == text


def test_vocab_rejects_bad_token_lists():
    with pytest.raises(ValueError, match="first vocabulary entry"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        Vocab([UNK, "a", "a"])
    with pytest.raises(ValueError, match="single characters"):
        Vocab([UNK, "ab"])


def test_make_corpus_holds_out_the_end_and_builds_vocab_from_train():
    text = "abcabcabc" * 10 + "xyz"          # 93 chars; last 10% = "bcabcaxyz"-ish tail
    c = make_corpus(text, "char", 0.1)
    assert len(c.train) + len(c.val) == len(text)
    assert len(c.val) == round(len(text) * 0.1)
    assert c.vocab.decode(c.train) == text[:len(c.train)]
    # x, y, z only occur in the validation part -> <unk> there
    assert "x" not in c.vocab
    assert (c.val[-3:] == 0).all()
    with pytest.raises(ValueError, match="val_fraction"):
        make_corpus(text, "char", 1.0)
    with pytest.raises(DataError, match="validation text has"):
        make_corpus("abcdefghij", "char", 0.05)


# -- minibatch iterators ----------------------------------------------------------------------

IDS = np.arange(1000, dtype=np.int64) * 7 % 997   # distinct, so positions can be recovered
POS = {int(v): i for i, v in enumerate(IDS)}


def test_sequential_shapes_shift_and_continuity():
    B, T = 4, 9
    it = SequentialBatches(IDS, B, T, rng=np.random.default_rng(5))
    assert 0 <= it.offset < T
    per_stream = (len(IDS) - it.offset - 1) // B
    assert len(it) == per_stream // T
    batches = list(it)
    assert len(batches) == len(it)
    prev = None
    for X, Y in batches:
        assert X.shape == Y.shape == (T, B) and X.dtype == np.int64 and X.flags.c_contiguous
        px = np.vectorize(POS.get)(X)
        assert (np.vectorize(POS.get)(Y) == px + 1).all()            # targets shifted by one
        assert (np.diff(px, axis=0) == 1).all()                     # consecutive within a column
        if prev is not None:
            assert (px[0] == prev[-1] + 1).all()                    # stream b continues column b
        prev = px
    # the streams are contiguous, non-overlapping slices starting at the offset
    first = np.vectorize(POS.get)(batches[0][0])[0]
    assert (first == it.offset + per_stream * np.arange(B)).all()


def test_random_shapes_shift_and_disjoint_subsequences():
    B, T = 5, 7
    it = RandomBatches(IDS, B, T, rng=np.random.default_rng(1))
    assert len(it) == ((len(IDS) - it.offset - 1) // T) // B
    starts = []
    for X, Y in it:
        assert X.shape == Y.shape == (T, B) and X.flags.c_contiguous
        px = np.vectorize(POS.get)(X)
        assert (np.vectorize(POS.get)(Y) == px + 1).all()
        assert (np.diff(px, axis=0) == 1).all()
        starts.extend(px[0].tolist())
    starts = np.array(starts)
    assert len(set(starts.tolist())) == len(starts)
    assert ((starts - it.offset) % T == 0).all()
    assert not (np.diff(starts) == T).all()                          # shuffled


def test_iterators_are_reproducible_and_randomly_accessible():
    for kind in ("sequential", "random"):
        a = make_batches(kind, IDS, 3, 5, np.random.default_rng(7))
        b = make_batches(kind, IDS, 3, 5, np.random.default_rng(7))
        for i, (X, Y) in enumerate(a):
            Xb, Yb = b.batch(i)
            assert (X == Xb).all() and (Y == Yb).all()
        with pytest.raises(IndexError):
            a.batch(len(a))
    with pytest.raises(ValueError, match="sampling must be one of"):
        make_batches("shuffled", IDS, 3, 5)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        SequentialBatches(IDS, 0, 5)


def test_too_short_text_gives_no_batches():
    assert len(SequentialBatches(np.arange(10), 4, 5)) == 0
    assert len(RandomBatches(np.arange(10), 4, 5)) == 0
