"""fastgates.lm: text generation (compiled sampling loop vs the NumPy version)."""

import numpy as np
import pytest

from fastgates.lm import generation as gen_mod
from fastgates.lm.data import Vocab
from fastgates.lm.generation import Xoshiro256, generate, sample_compiled, sample_numpy
from fastgates.lm.model import CharRNN, ModelConfig

pytest.importorskip("fastgates._recurrence", reason="the compiled core is not built")

VOCAB = Vocab(["<unk>"] + list(" etaoinshrdlu.\n"))
V = len(VOCAB)

CONFIGS = [
    dict(cell="lstm"), dict(cell="gru", gru_reset="after"), dict(cell="gru", gru_reset="before"),
    dict(cell="rnn"), dict(cell="lstm", layers=2, embedding=5), dict(cell="gru", layers=3),
]
IDS = ["lstm", "gru-after", "gru-before", "rnn", "lstm-2layer-emb", "gru-3layer"]


def model_for(dtype="float64", scale=3.0, **kw):
    cfg = ModelConfig(vocab_size=V, hidden=24, dtype=dtype, **kw)
    model = CharRNN(cfg, backend="reference", rng=np.random.default_rng(0))
    for p in model.params.values():          # larger weights: peaked, state-dependent outputs
        p *= scale
    return model


PREFIX = VOCAB.encode("the stone ")


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_greedy_equals_numpy_greedy(kw, dtype):
    model = model_for(dtype, **kw)
    a = sample_compiled(model, PREFIX, 80, temperature=0.0)
    b = sample_numpy(model, PREFIX, 80, temperature=0.0)
    assert (a == b).all()


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("temperature, top_k", [(1.0, 0), (0.7, 4), (1.5, 1)])
def test_compiled_sampling_equals_numpy_sampling(kw, temperature, top_k):
    model = model_for("float64", scale=1.0, **kw)
    a = sample_compiled(model, PREFIX, 60, temperature=temperature, top_k=top_k, seed=11)
    b = sample_numpy(model, PREFIX, 60, temperature=temperature, top_k=top_k, seed=11)
    assert (a == b).all()


def test_same_seed_same_text_and_greedy_is_deterministic():
    model = model_for("float32", scale=1.0, cell="lstm")
    a = generate(model, VOCAB, "the ", 100, seed=3)
    assert a.startswith("the ") and len(a) == 104
    assert generate(model, VOCAB, "the ", 100, seed=3) == a
    assert generate(model, VOCAB, "the ", 100, seed=4) != a
    g = generate(model, VOCAB, "the ", 100, temperature=0)
    assert generate(model, VOCAB, "the ", 100, temperature=0, seed=99) == g
    # top-k = 1 is greedy whatever the temperature
    assert generate(model, VOCAB, "the ", 100, temperature=2.0, top_k=1, seed=5) == g


def test_top_k_restricts_the_choice():
    model = model_for("float64", scale=1.0, cell="gru")
    out = sample_compiled(model, PREFIX, 300, temperature=5.0, top_k=2, seed=1)
    # at temperature 5 a free draw would use most of the vocabulary; top-2 stays within the
    # two most likely tokens of every step (checked by the NumPy version step by step)
    assert (out == sample_numpy(model, PREFIX, 300, temperature=5.0, top_k=2, seed=1)).all()
    free = sample_compiled(model, PREFIX, 300, temperature=5.0, seed=1)
    assert len(set(free.tolist())) > len(set(out.tolist()))


def test_generator_is_xoshiro256starstar():
    from fastgates import _recurrence as _sampling

    py = Xoshiro256(12345)
    assert _sampling.random_doubles(12345, 5) == [py.uniform() for _ in range(5)]
    # reference value of xoshiro256** seeded by splitmix64(0): first output
    assert Xoshiro256(0).next() == 0x99EC5F36CB75F2B4


def test_unknown_prefix_characters_warn_and_map_to_unk():
    model = model_for("float32", cell="rnn")
    with pytest.warns(UserWarning, match=r"mapped to <unk>: 'Q', 'Z'"):
        out = generate(model, VOCAB, "Qthe Z", 10, seed=0)
    assert out.startswith("Qthe Z")
    with pytest.raises(ValueError, match="prefix is empty"):
        generate(model, VOCAB, "", 10)
    # the letters tokenizer lower-cases the prefix first
    assert generate(model, VOCAB, "THE", 5, seed=0, tokens="letters").startswith("the")


@pytest.mark.parametrize("kw, match", [
    (dict(length=-1), "length must be a non-negative"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(top_k=-2), "top_k must be a non-negative"),
])
def test_bad_sampling_arguments(kw, match):
    model = model_for("float32", cell="rnn")
    args = dict(length=5, temperature=1.0, top_k=0) | kw
    with pytest.raises(ValueError, match=match):
        sample_compiled(model, PREFIX, **args)
    with pytest.raises(ValueError, match=r"prefix_ids must lie in \[0, 16\)"):
        sample_compiled(model, np.array([3, 99]), 5)


def test_zero_length_and_numpy_fallback(monkeypatch):
    model = model_for("float32", cell="lstm")
    assert sample_compiled(model, PREFIX, 0).shape == (0,)
    monkeypatch.setattr(gen_mod, "compiled_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="not compiled"):
        slow = generate(model, VOCAB, "the ", 30, temperature=0)
    monkeypatch.undo()
    assert generate(model, VOCAB, "the ", 30, temperature=0) == slow


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_sampling_same_for_every_thread_count(kw, dtype):
    # H = 40: several unit blocks per thread, a ragged last block (16 / 8 units per block)
    cfg = ModelConfig(vocab_size=V, hidden=40, dtype=dtype, **kw)
    runs = []
    for nt in (1, 2, 3):
        model = CharRNN(cfg, rng=np.random.default_rng(5), n_threads=nt)
        runs.append(sample_compiled(model, PREFIX, 200, temperature=1.0, seed=2))
    assert (runs[0] == runs[1]).all() and (runs[0] == runs[2]).all()


@pytest.mark.parametrize("cell, reset", [("rnn", "after"), ("gru", "after"), ("gru", "before"),
                                         ("lstm", "after")])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_greedy_follows_the_forward_kernel(cell, reset, dtype):
    """The generator steps exactly as fastgates.*_forward: teacher-forcing its own output
    through the kernel and taking argmax of the logits reproduces every token."""
    import fastgates

    cfg = ModelConfig(vocab_size=V, hidden=40, cell=cell, gru_reset=reset, dtype=dtype)
    model = CharRNN(cfg, rng=np.random.default_rng(1))
    for p in model.params.values():
        p *= 3.0
    out = sample_compiled(model, PREFIX, 60, temperature=0.0)
    seq = np.concatenate([PREFIX, out[:-1]])[:, None]
    p = model.params
    w = [p["rnn.weight_ih_l0"], p["rnn.weight_hh_l0"], p["rnn.bias_ih_l0"], p["rnn.bias_hh_l0"]]
    if cell == "lstm":
        y = fastgates.lstm_forward(seq, None, None, *w, training=False)[0]
    elif cell == "gru":
        y = fastgates.gru_forward(seq, None, *w, linear_before_reset=reset == "after",
                                  training=False)[0]
    else:
        y = fastgates.rnn_forward(seq, None, *w, training=False)[0]
    logits = y[len(PREFIX) - 1:, 0] @ p["fc.weight"].T + p["fc.bias"]
    assert (logits.argmax(axis=1) == out).all()
