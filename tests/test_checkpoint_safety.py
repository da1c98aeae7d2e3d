"""Data safety of the language model's checkpoints.

* SIGKILL of ``fastgates-lm train`` in the middle of a checkpoint write (made
  deterministic by the private test hook in fastgates/lm/checkpoint.py, which parks
  the writer after the temporary file is written and fsync'ed, before the rename)
  leaves the previous checkpoint loadable, and ``--resume`` continues from it to the
  same weights as an uninterrupted run.
* Flipped bytes and truncations give a CheckpointError (or, where the byte is not
  covered by a checksum, exactly the original data) — never another exception.
* Pickle payloads (object arrays inside the npz, a pickle named .npz) are refused
  without being unpickled: the file their unpickling would create never appears.
* Tampered metadata is a clear CLI error (exit 2), not a traceback.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from _helpers.subproc import OUTSIDE, child_env, run_python
from fastgates.lm.checkpoint import (CheckpointError, load_checkpoint, load_model, save_checkpoint,
                                     save_training)

SMALL = ["--hidden", "16", "--batch", "4", "--steps", "10", "--sample-length", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    from fastgates.lm.data import default_text

    p = tmp_path_factory.mktemp("corpus") / "text.txt"
    p.write_text(default_text()[:6000], encoding="utf-8")
    return str(p)


def cli(*args, timeout=180):
    return run_python(["-m", "fastgates.lm", *args], timeout=timeout)


def cli_many(argvs, timeout=300):
    """Several command lines through fastgates.lm.cli.main in one child process."""
    r = run_python(["-m", "_helpers.cli_many"], timeout=timeout, stdin=json.dumps(argvs))
    assert r.returncode == 0, r.report()
    return json.loads(r.stdout.strip().splitlines()[-1])


def assert_usage_error(res, what, prefix="error:"):
    assert res["traceback"] is None, f"{what}: traceback\n{res['traceback']}"
    assert res["code"] == 2 and prefix in res["stderr"], f"{what}: {res}"


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def params_of(path):
    arrays, _ = load_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.startswith("params/")}


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one_and_resume_continues(
        tmp_path, text_file):
    train = ["train", "--text", text_file, *SMALL, "--epochs", "2", "--json"]
    full = cli(*train, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.report()

    out, marker = tmp_path / "killed", tmp_path / "paused"
    env = child_env(_FASTGATES_TEST_CHECKPOINT_PAUSE=f"2:{marker}")   # save 2 = end of epoch 2
    p = subprocess.Popen([sys.executable, "-m", "fastgates.lm", *train, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=OUTSIDE)
    try:
        deadline = time.time() + 120
        while not marker.exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the writer never reached the pause: {p.poll()} {p.communicate()}"
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL
    leftovers = [f for f in os.listdir(out) if f.startswith(".checkpoint-")]
    assert len(leftovers) == 1, os.listdir(out)     # the new checkpoint was complete, not renamed

    # the previous checkpoint (end of epoch 1) is intact and usable
    arrays, meta = load_checkpoint(out / "checkpoint.npz")
    assert meta["progress"]["epoch"] == 1 and meta["progress"]["batch_index"] == 0
    steps_per_epoch = meta["progress"]["step"]
    assert steps_per_epoch > 0
    load_model(out / "checkpoint.npz")
    gen = cli("generate", "--checkpoint", str(out), "--length", "10", "--seed", "1")
    assert gen.returncode == 0, gen.report()

    rest = cli("train", "--resume", "--out", str(out), "--json")
    assert rest.returncode == 0, rest.report()
    assert f"resuming at epoch 1.000 (step {steps_per_epoch})" in rest.stdout
    a, b = last_json(full.stdout), last_json(rest.stdout)
    assert b["optimizer_steps"] == a["optimizer_steps"] == 2 * steps_per_epoch
    assert b["val_ppl"] == a["val_ppl"] and b["train_ppl"] == a["train_ppl"]
    wa, wb = params_of(tmp_path / "full" / "checkpoint.npz"), params_of(out / "checkpoint.npz")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


# -- corrupted files ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    from fastgates.lm.data import Vocab
    from fastgates.lm.model import CharRNN, ModelConfig
    from fastgates.lm.training import Trainer

    vocab = Vocab(["<unk>"] + list(" abcdef"))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, len(vocab), 600)
    model = CharRNN(ModelConfig(len(vocab), cell="gru", hidden=8), rng=rng, n_threads=1)
    tr = Trainer(model, ids, ids[:100], batch=2, steps=8, optimizer="adam")
    plan = tr._plan(0)
    for i in range(3):
        tr.train_step(*plan.batch(i))
    tr.batch_index = 3
    path = tmp_path_factory.mktemp("good") / "checkpoint.npz"
    save_training(path, tr, vocab, {"tokens": "char"})
    return path


def _same(loaded, original):
    (a, m), (a0, m0) = loaded, original
    assert m == m0 and a.keys() == a0.keys()
    for k in a0:
        assert a[k].dtype == a0[k].dtype and np.array_equal(a[k], a0[k]), k


def test_flipped_bytes_and_truncations_are_detected(tmp_path, good_checkpoint):
    raw = good_checkpoint.read_bytes()
    original = load_checkpoint(good_checkpoint)
    rng = np.random.default_rng(1)
    p = tmp_path / "bad.npz"
    outcomes = {"error": 0, "same": 0}
    positions = list(rng.integers(0, len(raw), 300)) + list(range(0, 64)) + list(range(len(raw) - 64, len(raw)))
    for pos in positions:
        b = bytearray(raw)
        b[pos] ^= 1 << int(rng.integers(0, 8))
        p.write_bytes(bytes(b))
        try:
            loaded = load_checkpoint(p)
            load_model(p)
        except CheckpointError:
            outcomes["error"] += 1
            continue
        _same(loaded, original)        # a byte outside the checksummed data: nothing changed
        outcomes["same"] += 1
    for n in list(rng.integers(0, len(raw), 100)) + [0, 1, 22, len(raw) - 1]:
        p.write_bytes(raw[:n])
        with pytest.raises(CheckpointError, match="truncated or corrupted|not a fastgates-lm"):
            load_checkpoint(p)
    assert outcomes["error"] > len(positions) // 2, outcomes


class _Payload:
    """Unpickling this creates the file ``path`` (stands for arbitrary code execution)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_files(tmp_path, marker, good):
    arrays, meta = load_checkpoint(good)
    meta = dict(meta)
    obj = np.empty(1, dtype=object)
    obj[0] = _Payload(marker)
    files = {}
    d = tmp_path / "meta-object"
    d.mkdir()
    np.savez(d / "checkpoint.npz", **arrays, **{"meta.json": obj})
    files["meta.json as a pickled object array"] = d
    d = tmp_path / "param-object"
    d.mkdir()
    np.savez(d / "checkpoint.npz", **{**arrays, "params/fc.bias": obj},
             **{"meta.json": np.array(json.dumps(meta))})
    files["a parameter as a pickled object array"] = d
    d = tmp_path / "raw-pickle"
    d.mkdir()
    (d / "checkpoint.npz").write_bytes(pickle.dumps({"meta.json": _Payload(marker)}))
    files["a pickle file named checkpoint.npz"] = d
    d = tmp_path / "npy"
    d.mkdir()
    with open(d / "checkpoint.npz", "wb") as f:
        np.save(f, obj, allow_pickle=True)
    files["an .npy object array"] = d
    return files


def test_pickle_payloads_are_refused_and_never_run(tmp_path, good_checkpoint):
    marker = tmp_path / "PWNED"
    files = _evil_files(tmp_path, marker, good_checkpoint)
    for what, d in files.items():
        with pytest.raises(CheckpointError, match="cannot be read|pickle|not a fastgates"):
            load_checkpoint(d / "checkpoint.npz")
        with pytest.raises(CheckpointError):
            load_model(d / "checkpoint.npz")
    argvs = [args for d in files.values()
             for args in (["generate", "--checkpoint", str(d)], ["eval", "--checkpoint", str(d)],
                          ["train", "--resume", "--out", str(d)])]
    for argv, res in zip(argvs, cli_many(argvs)):
        assert_usage_error(res, argv)
    assert not marker.exists(), "a pickle payload ran"
    # the control: these payloads are live (unpickling one does create the file)
    pickle.loads((files["a pickle file named checkpoint.npz"] / "checkpoint.npz").read_bytes())
    assert marker.exists()


TAMPERS = ["no-progress", "no-optimizer", "config-not-a-dict", "vocab-not-a-list", "rng-garbage",
           "param-shape", "param-missing"]


def _tampered(tamper, arrays, meta):
    if tamper == "no-progress":
        del meta["progress"]
    elif tamper == "no-optimizer":
        del meta["optimizer"]
    elif tamper == "config-not-a-dict":
        meta["config"] = 5
    elif tamper == "vocab-not-a-list":
        meta["vocab"] = "abc"
    elif tamper == "rng-garbage":
        meta["rng"]["dropout"] = 3
    elif tamper == "param-shape":
        arrays["params/fc.bias"] = arrays["params/fc.bias"][:-1]
    elif tamper == "param-missing":
        del arrays["params/fc.bias"]
    return arrays, meta


def test_tampered_metadata_is_a_clear_cli_error(tmp_path, good_checkpoint, text_file):
    """A well-formed file with wrong contents: --resume, generate and eval say so (exit 2)."""
    argvs, what = [], []
    for tamper in TAMPERS:
        arrays, meta = load_checkpoint(good_checkpoint)
        meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
        meta["config"] = dict(meta["config"], text=text_file)
        arrays, meta = _tampered(tamper, arrays, meta)
        d = tmp_path / tamper
        d.mkdir()
        save_checkpoint(d / "checkpoint.npz", arrays, meta)
        argvs.append(["train", "--resume", "--out", str(d), "--epochs", "1"])
        what.append((tamper, "error: --resume"))
        if tamper in ("config-not-a-dict", "vocab-not-a-list", "param-shape", "param-missing"):
            for cmd in ("generate", "eval"):
                argvs.append([cmd, "--checkpoint", str(d)])
                what.append((tamper, "error: --checkpoint"))
    for argv, (tamper, prefix), res in zip(argvs, what, cli_many(argvs)):
        assert_usage_error(res, f"{tamper}: {argv}", prefix)
