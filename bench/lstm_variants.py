"""The LSTM variants (issue 13) against their references, interleaved, separate processes.

    PYTHONPATH=. python bench/lstm_variants.py SHAPE [ROUNDS] [--which proj|peep|all]

SHAPE is d2l (T35 B32 D28 H256, P = 128) or mid (T50 B64 D256 H512, P = 256); float32,
2 threads.  Every measurement runs in its own process (one implementation per process,
the best of n calls after a warm-up); the implementations take turns, ROUNDS times
(default 3), and each line reports the median of the per-round ratios:

* proj fwd+bwd:  torch.nn.LSTM(proj_size=P) time / fastgates.lstm_forward(w_hr=...) +
  lstm_backward time (the same gradients: x, h0, c0 and every weight);
* peep fwd:      ONNX Runtime's LSTM operator with input P (2 intra-op threads, the
  same weights) / fastgates.lstm_forward(w_peep=..., training=False);
* peep fwd+bwd:  fastgates plain LSTM fwd+bwd / the peephole LSTM's (>= 0.9: within 10 %);
* context:       the plain LSTM forward against ONNX Runtime's LSTM without P (the
  peephole row's ratio is this one's: the peepholes cost neither side measurable time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

SHAPES = {"d2l": (35, 32, 28, 256, 128), "mid": (50, 64, 256, 512, 256)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = r'''
import json, time, numpy as np
T, B, D, H, P = %r
rng = np.random.default_rng(0); k = 1 / np.sqrt(H)
def u(*s): return rng.uniform(-k, k, s).astype(np.float32)
x = rng.standard_normal((T, B, D)).astype(np.float32)
n = 30 if T * B < 3000 else 10
def best(f):
    f(); ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
'''

FG = COMMON + r'''
import fastgates
proj, peep, training = %r, %r, %r
R = P if proj else H
w = [u(4 * H, D), u(4 * H, R), u(4 * H), u(4 * H)]
kw = dict(w_hr=u(P, H) if proj else None, w_peep=u(3, H) if peep else None, n_threads=2)
h0, c0 = np.zeros((B, R), np.float32), np.zeros((B, H), np.float32)
def fb():
    y, h, c, cache = fastgates.lstm_forward(x, h0, c0, *w, **kw)
    fastgates.lstm_backward(np.ones_like(y), np.ones_like(h), np.ones_like(c), cache, n_threads=2)
def fwd():
    fastgates.lstm_forward(x, h0, c0, *w, training=False, **kw)
print(json.dumps(best(fb if training else fwd)))
'''

TORCH = COMMON + r'''
import torch
torch.set_num_threads(2)
m = torch.nn.LSTM(D, H, proj_size=P)
xt = torch.from_numpy(x).requires_grad_()
h0 = torch.zeros(1, B, P, requires_grad=True); c0 = torch.zeros(1, B, H, requires_grad=True)
ps = [xt, h0, c0] + list(m.parameters())
def fb():
    y, (h, c) = m(xt, (h0, c0))
    torch.autograd.grad([y, h, c], ps, [torch.ones_like(y), torch.ones_like(h), torch.ones_like(c)])
print(json.dumps(best(fb)))
'''

ORT = COMMON + r'''
import onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
peep = %r
W, R, Bi, Pp = u(1, 4 * H, D), u(1, 4 * H, H), u(1, 8 * H), u(1, 3 * H)
inits = [numpy_helper.from_array(a, name) for a, name in ((W, "W"), (R, "R"), (Bi, "B"), (Pp, "P"))]
node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "", "", "P" if peep else ""], ["Y"],
                        hidden_size=H)
g = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, D])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
print(json.dumps(best(lambda: sess.run(None, {"X": x}))))
'''


def run(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(label, slow, fast, rounds, target):
    """Interleaved rounds of (slow, fast); the median ratio slow / fast against ``target``."""
    times = [(run(slow), run(fast)) for _ in range(rounds)]
    ratios = [s / f for s, f in times]
    med = statistics.median(ratios)
    print(f"{label:<34} {statistics.median(f for _, f in times) * 1e3:8.2f} ms  vs "
          f"{statistics.median(s for s, _ in times) * 1e3:8.2f} ms   ratio {med:.3f} "
          f"(rounds {' '.join(f'{r:.2f}' for r in ratios)})  target >= {target}  "
          f"{'met' if med >= target else 'MISSED'}", flush=True)


def main(argv):
    ap = argparse.ArgumentParser(description="The LSTM variants against their references "
                                 "(issue 13), interleaved, one process per measurement.")
    ap.add_argument("shape", nargs="?", default="d2l", choices=sorted(SHAPES))
    ap.add_argument("rounds", nargs="?", type=int, default=3,
                    help="interleaved rounds; each line reports their median ratio [3]")
    ap.add_argument("--which", default="all", choices=["proj", "peep", "context", "all"])
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"rounds must be >= 1, got {args.rounds}")
    shape, rounds, which = args.shape, args.rounds, args.which
    S = SHAPES[shape]
    print(f"{shape}: T, B, D, H, P = {S}, float32, 2 threads")
    if which in ("proj", "all"):
        compare(f"proj P={S[4]} fwd+bwd vs torch", TORCH % (S,), FG % (S, True, False, True),
                rounds, 2.0)
    if which in ("peep", "all"):
        compare("peep fwd vs ORT LSTM(P)", ORT % (S, True), FG % (S, False, True, False), rounds,
                1.1)
        compare("peep fwd+bwd vs plain fwd+bwd", FG % (S, False, False, True),
                FG % (S, False, True, True), rounds, 0.9)
    if which in ("context", "all"):
        compare("(plain fwd vs ORT LSTM, no P)", ORT % (S, False), FG % (S, False, False, False),
                rounds, 1.1)


if __name__ == "__main__":
    main(sys.argv[1:])
