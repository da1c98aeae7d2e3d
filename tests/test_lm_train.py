"""fastgates.lm: the training loop, resuming, and atomic checkpoints."""

import os

import numpy as np
import pytest

from fastgates.lm import checkpoint as ckpt_mod
from fastgates.lm.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint, save_training
from fastgates.lm.data import Vocab
from fastgates.lm.model import CharRNN, ModelConfig
from fastgates.lm.training import Trainer, train

IDS = np.random.default_rng(0).integers(1, 9, 1500)
VAL = np.random.default_rng(1).integers(1, 9, 200)
VOCAB = Vocab(["<unk>"] + list("abcdefgh"))


def make(cell="lstm", sampling="sequential", optimizer="sgd", layers=1, dropout=0.0, backend="fast",
         dtype="float64"):
    cfg = ModelConfig(vocab_size=9, cell=cell, hidden=10, layers=layers, dropout=dropout, dtype=dtype)
    model = CharRNN(cfg, backend=backend, rng=np.random.default_rng(0))
    return Trainer(model, IDS, VAL, batch=4, steps=7, sampling=sampling, optimizer=optimizer,
                   clip=1.0, seed=5)


def record_losses(tr, epochs, stop_after=None):
    losses = []

    def on_batch(t, info):
        losses.append(info.loss)
        if stop_after is not None and len(losses) == stop_after:
            raise KeyboardInterrupt

    try:
        tr.run(epochs, on_batch=on_batch)
    except KeyboardInterrupt:
        pass
    return losses


@pytest.mark.parametrize("setup", [
    dict(cell="lstm", sampling="sequential", optimizer="sgd"),
    dict(cell="gru", sampling="random", optimizer="adam", layers=2, dropout=0.3),
    dict(cell="rnn", sampling="sequential", optimizer="adam", layers=2, dropout=0.5, dtype="float32"),
], ids=["lstm-seq-sgd", "gru-random-adam-dropout", "rnn-seq-adam-dropout-f32"])
def test_resume_equals_uninterrupted(tmp_path, setup):
    """Interrupt mid-epoch, checkpoint, load into fresh objects, continue: identical results."""
    full = make(**setup)
    ref_losses = record_losses(full, 2)
    n_batches = full.n_batches
    assert len(ref_losses) == 2 * n_batches

    first = make(**setup)
    cut = n_batches + n_batches // 2              # in the middle of epoch 2, state carried
    losses = record_losses(first, 2, stop_after=cut)
    assert first.epoch == 1 and first.batch_index == n_batches // 2
    path = tmp_path / "checkpoint.npz"
    save_training(path, first, VOCAB, {"note": "test"})

    loaded = load_model(path, backend="fast")
    assert loaded.vocab == VOCAB and loaded.meta["config"] == {"note": "test"}
    second = Trainer(loaded.model, IDS, VAL, batch=4, steps=7, sampling=setup["sampling"],
                     optimizer=setup["optimizer"], clip=1.0, seed=5)
    second.load_state(loaded.arrays, loaded.meta)
    losses += record_losses(second, 2)

    assert losses == ref_losses                                  # bit for bit
    for k, p in full.model.params.items():
        assert (second.model.params[k] == p).all(), k
    assert [h["val_ppl"] for h in second.history] == [h["val_ppl"] for h in full.history]
    assert [h["train_ppl"] for h in second.history] == [h["train_ppl"] for h in full.history]


def test_train_function_summary():
    cfg = ModelConfig(vocab_size=9, hidden=8)
    model = CharRNN(cfg, rng=np.random.default_rng(0))
    seen = []
    res = train(model, IDS, VAL, epochs=2, batch=4, steps=7, on_epoch=lambda t, r: seen.append(r))
    assert res["stopped"] == "done" and res["epochs"] == 2.0
    assert len(res["history"]) == 2 and seen == res["history"]
    assert res["val_ppl"] == res["history"][-1]["val_ppl"] < 9
    assert res["tokens_per_s"] > 0 and res["steps"] == 2 * res["trainer"].n_batches


def test_time_budget_stops_mid_epoch():
    tr = make()
    assert tr.run(3, max_seconds=0.0) == "time"
    assert tr.step == 1 and tr.epoch == 0 and tr.batch_index == 1 and tr.state is not None


def test_sequential_resets_state_each_epoch_and_random_never_carries():
    tr = make(sampling="sequential")
    starts = []
    tr.run(2, on_batch=lambda t, i: starts.append(t.state is None) if i.batch == 1 else None)
    seen = []
    orig = tr.model.loss_and_grads

    def spy(X, Y, state=None, rng=None):
        seen.append(state)
        return orig(X, Y, state, rng)

    tr.model.loss_and_grads = spy
    tr.run(3)
    assert seen[0] is None and all(s is not None for s in seen[1:tr.n_batches])
    rt = make(sampling="random")
    rt.model.loss_and_grads = spy
    seen.clear()
    rt.run(1)
    assert all(s is None for s in seen)


# -- checkpoint files ---------------------------------------------------------------------------

def test_checkpoint_loads_without_pickle(tmp_path):
    tr = make(optimizer="adam")
    record_losses(tr, 1, stop_after=3)
    path = tmp_path / "c.npz"
    save_training(path, tr, VOCAB, {"tokens": "char"})
    with np.load(path, allow_pickle=False) as z:
        names = set(z.files)
        assert all(z[k].dtype != object for k in z.files)
    assert {"params/fc.weight", "optim/m/fc.weight", "carried/h_l0", "carried/c_l0",
            "meta.json"} <= names
    arrays, meta = load_checkpoint(path)
    assert meta["progress"]["batch_index"] == 3 and meta["optimizer"]["name"] == "adam"
    assert meta["vocab"] == VOCAB.tokens and meta["model"]["cell"] == "lstm"
    assert meta["rng"]["dropout"]["bit_generator"] == "PCG64"


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"w": np.arange(5.0)}, {"epoch": 1})
    real = ckpt_mod._write_npz

    def dies_midway(f, arrays):
        real(f, arrays)
        f.truncate(f.tell() // 2)            # half the file is on disk ...
        raise OSError(28, "No space left on device")     # ... when the write fails

    monkeypatch.setattr(ckpt_mod, "_write_npz", dies_midway)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"w": np.arange(7.0)}, {"epoch": 2})
    arrays, meta = load_checkpoint(path)
    assert meta["epoch"] == 1 and (arrays["w"] == np.arange(5.0)).all()
    assert os.listdir(tmp_path) == ["checkpoint.npz"]          # no temporary file left behind


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"w": np.arange(3.0)}, {"epoch": 1})

    def ctrl_c(f, arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod, "_write_npz", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": np.arange(9.0)}, {"epoch": 2})
    assert load_checkpoint(path)[1]["epoch"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_truncated_or_garbled_checkpoint_is_a_clear_error(tmp_path):
    good = tmp_path / "good.npz"
    save_checkpoint(good, {"w": np.arange(1000.0)}, {"epoch": 1})
    raw = good.read_bytes()
    cases = {
        "truncated.npz": raw[: len(raw) // 2],
        "garbled.npz": raw[:200] + bytes(200) + raw[400:],
        "text.npz": b"this is not a checkpoint",
        "empty.npz": b"",
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(CheckpointError, match="truncated or corrupted|not a fastgates-lm"):
            load_checkpoint(p)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a fastgates-lm checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
