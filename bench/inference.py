"""Inference and fixed-cost rows against ONNX Runtime, OpenVINO, PyTorch and JAX.

    python bench/inference.py [--budget 0.4] [--passes 3] [--pause 0.1] [--json PATH]

Design: the rows of issue 12, each implementation in its own worker process (see
``_harness``), interleaved best-of-N per row as in ``report.py``:

* streaming step, B = 1, D = 40, H = 256: ``runner.step`` (``layer.freeze()``, state fed
  back) vs one ``session.run`` per frame of the layer exported by ``fastgates.onnx.export``
  (the recurrent operator with ``initial_h``/``initial_c`` inputs) in ONNX Runtime and in
  OpenVINO (``INFERENCE_PRECISION_HINT=f32``: its default on CPUs with AVX-512 BF16 is bf16);
* tiny sequence (T 25, B 1, D 65, H 100): ``runner(x)`` vs the same two runtimes;
* fixed costs at B = 1, D = H = 8: ``runner.step`` and the functional ``*_forward``
  (T = 1, ``training=False``);
* ``fastgates.torch`` vs ``torch.nn`` under ``torch.no_grad()``, T = 1, B = 1, D = 40, H = 256;
* the tiny training step (functional forward + backward) vs JAX (jit, lax.scan).

Each implementation's turn is followed by a rest (``--pause``, 0.1 s) so that the next one
starts on an idle machine: after its last call ONNX Runtime keeps one intra-op thread
spinning for about 50 ms (the process used 45 ms of CPU in the 50 ms after its work, 2-core
Zen 4), libgomp's (fastgates, torch) about 10 ms; a tiny GRU sequence measured 39-43 µs in
the 50 ms after ONNX Runtime's calls against 31-32 µs later (one process, same machine).

Every implementation runs ``FASTGATES_BENCH_THREADS`` (default 2) threads.  OpenVINO and
JAX are optional: a row whose peer does not import says so.  Prints Markdown: the machine,
one table per kind of row with the times and the ratio peer time / fastgates time, and the
targets of issue 12 with the measured value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as H  # noqa: E402
from _specs import infer_spec  # noqa: E402
from report import Runner, fmt_ratio, fmt_time, log  # noqa: E402

CELLS = ["rnn", "gru_lbr", "lstm"]
PEERS = ["onnxruntime", "openvino"]

#: (title, case, peers, target ratio or None, the cells the target names)
TABLES = [
    ("Streaming step, B = 1, D = 40, H = 256 (`runner.step` vs one `session.run` per frame)",
     "stream", PEERS, 2.0, CELLS),
    ("Tiny sequence (T 25, B 1, D 65, H 100): `runner(x)` vs `session.run`", "tiny_seq", PEERS, 1.5,
     CELLS),
    ("`fastgates.torch` vs `torch.nn` under `no_grad`, T = 1, B = 1, D = 40, H = 256",
     "torch_nograd", ["torch"], 3.0, ["lstm"]),      # RNN and GRU rows are context
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=0.4, help="seconds per row and implementation")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--pause", type=float, default=0.1,
                    help="seconds of rest after each implementation's turn [0.1]")
    ap.add_argument("--json", default=None)
    ap.add_argument("--rows", default="stream,tiny_seq,torch_nograd,fixed,train",
                    help="which kinds of rows (comma-separated), e.g. to fit quiet windows")
    args = ap.parse_args(argv)
    kinds = set(args.rows.split(","))
    pool = H.Pool()
    timer = Runner(pool, args.budget, args.passes, pause=args.pause, reference_pause=0.2)
    results = {"machine": H.machine_info(), "threads": H.THREADS, "rows": {}}
    m = results["machine"]
    out = [f"# Inference rows (issue 12)\n", f"Machine: {m.get('cpu')}, {m.get('cpu_count')} cores; "
           f"{H.THREADS} threads for every implementation; ratio = peer time / fastgates time "
           "(> 1: fastgates faster); best of interleaved calls.\n"]
    targets = []
    try:
        for title, case, peers, target, target_cells in TABLES:
            if case not in kinds:
                continue
            log(f"{case}")
            out += [f"\n## {title}\n", "| cell | fastgates | " + " | ".join(peers) + " | "
                    + " | ".join(f"ratio vs {p}" for p in peers) + " |",
                    "|---|---:|" + "---:|" * (2 * len(peers))]
            for cell in CELLS:
                fg = "fastgates.torch" if case == "torch_nograd" else "fastgates"
                res = timer.run([infer_spec(i, cell, case) for i in [fg] + peers])
                results["rows"][f"{case}-{cell}"] = res
                t_fg = res[fg].get("best")
                times, ratios = [], []
                for p in peers:
                    t = res[p].get("best")
                    times.append(fmt_time(t) if t else res[p].get("skipped", res[p].get("error", "–"))[:40])
                    r = t / t_fg if t and t_fg else None
                    ratios.append(fmt_ratio(r))
                    if target and r is not None and p != "openvino" and cell in target_cells:
                        targets.append((f"{case} {cell} vs {p}", f"≥ {target}×", r, r >= target))
                out.append(f"| {H.CELL_LABEL[cell]} | {fmt_time(t_fg)} | " + " | ".join(times)
                           + " | " + " | ".join(ratios) + " |")
        if "fixed" in kinds:
            log("fixed costs")
            out += ["\n## Fixed cost per call, B = 1, D = H = 8\n", "| cell | `runner.step` | "
                    "functional `*_forward`, T = 1 |", "|---|---:|---:|"]
        for cell in CELLS if "fixed" in kinds else []:
            step = timer.run([infer_spec("fastgates", cell, "fixed_step")])["fastgates"].get("best")
            fn = timer.run([infer_spec("fastgates", cell, "fixed_fn")])["fastgates"].get("best")
            results["rows"][f"fixed-{cell}"] = {"step": step, "fn": fn}
            out.append(f"| {H.CELL_LABEL[cell]} | {fmt_time(step)} | {fmt_time(fn)} |")
            targets += [(f"runner.step, D = H = 8 ({cell})", "≤ 3 µs", step * 1e6, step <= 3e-6)]
            if cell == "lstm":
                targets += [("lstm_forward T = 1, D = H = 8", "≤ 10 µs", fn * 1e6, fn <= 10e-6)]
        if "train" in kinds:
            log("tiny training step vs jax")
            out += ["\n## Tiny training step (T 25, B 1, D 65, H 100, forward + backward) vs JAX\n",
                "| cell | fastgates | JAX | ratio |", "|---|---:|---:|---:|"]
        for cell in ["rnn", "gru_lbr", "gru_rb", "lstm"] if "train" in kinds else []:
            res = timer.run([H.kernel_spec("fastgates-2t", cell, "tiny", "fwdbwd"),
                             H.kernel_spec("jax", cell, "tiny", "fwdbwd")])
            results["rows"][f"train-tiny-{cell}"] = res
            a, b = res["fastgates-2t"].get("best"), res["jax"].get("best")
            r = b / a if a and b else None
            out.append(f"| {H.CELL_LABEL[cell]} | {fmt_time(a)} | {fmt_time(b)} | {fmt_ratio(r)} |")
            if r is not None:
                targets.append((f"tiny fwd+bwd {cell} vs JAX", "≥ 2×", r, r >= 2))
    finally:
        pool.close()
    out += ["\n## Targets (ONNX Runtime, torch and JAX rows)\n", "| target | goal | measured | |",
            "|---|---|---:|---|"]
    for name, goal, value, ok in targets:
        shown = f"{value:.2f} µs" if "µs" in goal else f"{value:.2f}×"
        out.append(f"| {name} | {goal} | {shown} | {'met' if ok else 'NOT met'} |")
    print("\n".join(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
