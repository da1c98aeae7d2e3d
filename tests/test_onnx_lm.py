"""The character language model as ONNX: ``fastgates-lm export`` and ``export_model``.

ONNX Runtime's logits and states match ``CharRNN.logits`` to 1e-4 for every cell (one-hot
and embedding inputs, stacked), whole sequences and one token at a time with the state
carried; the vocabulary travels in the metadata; the CLI reports bad use with exit code 2.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastgates
from fastgates import lm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from fastgates.lm.onnx_export import export_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastgates.__file__)))
OUTSIDE = os.path.dirname(os.path.abspath(os.sep))

CONFIGS = [dict(cell="lstm", layers=2), dict(cell="gru", layers=2, embedding=8),
           dict(cell="gru", gru_reset="before"), dict(cell="rnn", layers=3, embedding=5),
           dict(cell="lstm", embedding=6)]


def feeds_of(X, state, lstm):
    f = {"tokens": X.astype(np.int64), "h0": np.stack([s[0] for s in state])}
    if lstm:
        f["c0"] = np.stack([s[1] for s in state])
    return f


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_onnxruntime_matches_the_model(tmp_path, kw):
    V, H = 23, 24
    model = lm.CharRNN(lm.ModelConfig(V, hidden=H, **kw), rng=np.random.default_rng(0))
    path = tmp_path / "lm.onnx"
    proto = export_model(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    lstm = model.config.cell == "lstm"
    assert [i.name for i in proto.graph.input] == ["tokens", "h0"] + (["c0"] if lstm else [])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    X = rng.integers(0, V, (11, 3))
    state = [tuple(rng.standard_normal((3, H)).astype(np.float32) for _ in range(2 if lstm else 1))
             for _ in range(model.config.layers)]
    logits, new_state = model.logits(X, state)
    outs = sess.run(None, feeds_of(X, state, lstm))
    assert np.abs(outs[0] - logits).max() < 1e-4, kw
    assert np.abs(outs[1] - np.stack([s[0] for s in new_state])).max() < 1e-4, kw
    if lstm:
        assert np.abs(outs[2] - np.stack([s[1] for s in new_state])).max() < 1e-4, kw
    # stepping: one token at a time with the state carried gives the same logits
    st = feeds_of(X[:1], model.zero_state(3), lstm)
    stepped = []
    for t in range(X.shape[0]):
        st["tokens"] = X[t:t + 1].astype(np.int64)
        out = sess.run(None, st)
        stepped.append(out[0])
        st["h0"] = out[1]
        if lstm:
            st["c0"] = out[2]
    whole, _ = model.logits(X)
    assert np.abs(np.concatenate(stepped) - whole).max() < 1e-4, kw


def test_float64_model_warns(tmp_path):
    model = lm.CharRNN(lm.ModelConfig(10, hidden=8, dtype="float64"))
    with pytest.warns(UserWarning, match="float32"):
        export_model(model, tmp_path / "lm.onnx")


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fastgates.lm", *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=OUTSIDE)


def test_cli_export_end_to_end(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(lm.default_text()[:4000], encoding="utf-8")
    out = tmp_path / "run"
    r = run_cli("train", "--text", str(text), "--hidden", "16", "--layers", "2", "--batch", "4",
                "--steps", "10", "--epochs", "1", "--threads", "1", "--sample-length", "0",
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    target = tmp_path / "model.onnx"
    r = run_cli("export", "--checkpoint", str(out), "--onnx", str(target))
    assert r.returncode == 0, r.stderr
    assert "inputs tokens (T, B) int64, h0, c0 (2, B, 16)" in r.stdout
    loaded = lm.load_model(str(out / "checkpoint.npz"))
    m = onnx.load(str(target))
    props = {p.key: p.value for p in m.metadata_props}
    assert json.loads(props["fastgates.lm.vocab"]) == list(loaded.vocab.tokens)
    assert props["fastgates.lm.tokens"] == "char"
    assert json.loads(props["fastgates.lm.config"]) == loaded.model.config.to_dict()
    ids = loaded.vocab.encode("The quick brown fox")[:, None]
    sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    zeros = np.zeros((2, 1, 16), np.float32)
    got = sess.run(None, {"tokens": ids.astype(np.int64), "h0": zeros, "c0": zeros})[0]
    want, _ = loaded.model.logits(ids)
    assert np.abs(got - want).max() < 1e-4

    r = run_cli("export", "--checkpoint", str(out), "--onnx", str(tmp_path / "no" / "m.onnx"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("export", "--checkpoint", str(out), "--onnx", str(target), "--opset", "9")
    assert r.returncode == 2 and "opset must lie in" in r.stderr
    r = run_cli("export", "--checkpoint", str(tmp_path / "missing.npz"), "--onnx", str(target))
    assert r.returncode == 2 and "--checkpoint" in r.stderr
