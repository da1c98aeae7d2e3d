"""How close ONNX Runtime runs the exported models to fastgates (and torch's to load()).

    PYTHONPATH=. python bench/onnx_parity.py [--T 35 --B 32 --D 28 --H 256]

Prints, per case, the largest absolute difference over y, h_n (and c_n) and the same
divided by the largest magnitude of the fastgates result ("rel"), float32:
  * fastgates layer -> fastgates.onnx.export -> ONNX Runtime, for every cell form,
    stacked + bidirectional, with and without a ragged batch (length-0 rows included);
  * the character LM -> export_model -> ONNX Runtime (logits);
  * torch.nn.LSTM/GRU/RNN -> torch.onnx.export(dynamo=False) -> fastgates.onnx.load ->
    the chained layers, against torch (when torch is installed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastgates  # noqa: E402
import fastgates.onnx as fo  # noqa: E402
from fastgates import lm  # noqa: E402
from fastgates.lm.onnx_export import export_model  # noqa: E402

FORMS = [("rnn-tanh", fastgates.RNN, {}), ("rnn-relu", fastgates.RNN, {"nonlinearity": "relu"}),
         ("gru (lbr)", fastgates.GRU, {}), ("gru (rb)", fastgates.GRU, {"linear_before_reset": False}),
         ("lstm", fastgates.LSTM, {})]


def diff(ours, theirs):
    abs_ = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
    scale = max(float(np.abs(a).max()) for a in ours)
    return abs_, abs_ / scale


def row(name, d):
    print(f"{name:<44} max abs {d[0]:.2e}   rel {d[1]:.2e}")


def layers_vs_ort(tmp, T, B, D, H):
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, T + 1, B)
    lengths[:2] = (0, T)
    for name, cls, kw in FORMS:
        for L, bi in ((1, False), (2, True)):
            layer = cls(D, H, num_layers=L, bidirectional=bi, seed=0, **kw).eval()
            path = os.path.join(tmp, "m.onnx")
            fo.export(layer, path, lengths=True)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            x = rng.standard_normal((T, B, D)).astype(np.float32)
            shape = (L * (2 if bi else 1), B, H)
            st = [rng.standard_normal(shape).astype(np.float32) * 0.5
                  for _ in range(2 if cls is fastgates.LSTM else 1)]
            for lens, what in ((np.full(B, T), "full"), (lengths, "ragged")):
                y, s = layer.forward(x, tuple(st) if len(st) == 2 else st[0], lengths=lens)
                ours = [y] + (list(s) if isinstance(s, tuple) else [s])
                feeds = {"x": x, "h0": st[0], "lengths": lens.astype(np.int64)}
                if len(st) == 2:
                    feeds["c0"] = st[1]
                row(f"{name} L={L}{' bi' if bi else ''} {what}", diff(ours, sess.run(None, feeds)))


def lm_vs_ort(tmp, T, B, H):
    for cell in ("rnn", "gru", "lstm"):
        model = lm.CharRNN(lm.ModelConfig(65, cell=cell, hidden=H, layers=2),
                           rng=np.random.default_rng(0))
        path = os.path.join(tmp, "lm.onnx")
        export_model(model, path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        X = np.random.default_rng(1).integers(0, 65, (T, B))
        logits, _ = model.logits(X)
        z = np.zeros((2, B, H), np.float32)
        feeds = {"tokens": X.astype(np.int64), "h0": z}
        if cell == "lstm":
            feeds["c0"] = z
        row(f"LM {cell} 2x{H} logits", diff([logits], sess.run(None, feeds)[:1]))


def torch_vs_load(tmp, T, B, D, H):
    try:
        import torch
    except ImportError:
        print("torch not installed: torch.onnx.export -> load skipped")
        return
    torch.manual_seed(0)
    for name, kw in (("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})):
        net = getattr(torch.nn, name)(D, H, num_layers=3, bidirectional=True, **kw).eval()
        x = torch.randn(T, B, D)
        path = os.path.join(tmp, "t.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), path, dynamo=False)
        with torch.no_grad():
            y_t = net(x)[0].numpy()
        y = x.numpy()
        for part in fo.load(path):
            y, _ = part.eval().forward(y)
        row(f"torch.nn.{name}{kw or ''} L=3 bi -> load", diff([y_t], [y]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in (("T", 35), ("B", 32), ("D", 28), ("H", 256)):
        p.add_argument(f"--{k}", type=int, default=v)
    a = p.parse_args()
    print(f"T={a.T} B={a.B} D={a.D} H={a.H}, float32; onnxruntime {ort.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        layers_vs_ort(tmp, a.T, a.B, a.D, a.H)
        lm_vs_ort(tmp, a.T, a.B, a.H)
        torch_vs_load(tmp, a.T, a.B, a.D, a.H)


if __name__ == "__main__":
    main()
