"""Ragged-batch cost: ``python bench/ragged.py [--passes N] [--cells lstm,gru_lbr]``.

Design: the d2l shape (T=35, B=32, D=28, H=256, float32), forward + backward, with
lengths uniform in [1, 35] from a fixed seed (mean 18.3, ``_harness.ragged_lengths``).
Four ways side by side: fastgates with ``lengths=`` (ragged) and without (padded),
torch's PackedSequence path (pack_padded_sequence(enforce_sorted=False) -> module ->
pad_packed_sequence, autograd) and torch on the padded batch.  fastgates and torch run
in their own worker processes (see ``_harness``: their OpenMP runtimes must not share
one); the four are interleaved call by call for ``--passes`` rounds with a short pause
after each call so the other runtime's idle threads have parked, and each time is the
best of its calls.  Machine load moves every figure: compare the ratios of one run.

Prints a Markdown table (also pasted into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as H  # noqa: E402

WAYS = [("fastgates ragged", "fastgates-2t", True), ("fastgates padded", "fastgates-2t", False),
        ("torch packed", "torch", True), ("torch padded", "torch", False)]


def measure(pool, cell, passes, pause):
    specs = {name: H.kernel_spec(impl, cell, "d2l", "fwdbwd", ragged=ragged)
             for name, impl, ragged in WAYS}
    keys, times = {}, {}
    for name, spec in specs.items():
        w = pool.worker(spec["impl"])
        if not w.available:
            sys.stderr.write(f"{name}: skipped ({w.info.get('reason')})\n")
            continue
        keys[name] = w.call("prepare", spec)["key"]
        times[name] = []
        time.sleep(pause)
    for p in range(passes):
        names = list(keys)
        names = names[p % len(names):] + names[:p % len(names)]     # rotate who goes first
        for name in names:
            times[name] += pool.worker(specs[name]["impl"]).call("time", keys[name], 1)
            time.sleep(pause)
    for name, key in keys.items():
        pool.worker(specs[name]["impl"]).call("drop", key)
    return {name: min(ts) for name, ts in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=20, help="calls per way (best of them)")
    ap.add_argument("--cells", default="lstm,gru_lbr")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds after each call")
    args = ap.parse_args(argv)

    spec0 = H.kernel_spec("fastgates-2t", "lstm", "d2l", "fwdbwd", ragged=True)
    lengths = H.ragged_lengths(spec0)
    T, B, D, Hd = H.kernel_dims(spec0)
    m = H.machine_info()
    print(f"d2l shape T={T} B={B} D={D} H={Hd}, float32, forward + backward; lengths uniform in "
          f"[1, {T}], mean {lengths.mean():.1f} ({lengths.sum()} of {T * B} steps valid); "
          f"fastgates n_threads={H.THREADS}, torch {H.THREADS} threads; best of {args.passes} "
          f"interleaved calls; {m.get('cpu')}, load average "
          f"{', '.join(f'{x:.1f}' for x in m.get('loadavg') or [])}\n")
    print("| cell | fastgates ragged | fastgates padded | torch packed | torch padded "
          "| ragged / padded (fastgates) | torch packed / fastgates ragged |")
    print("|---|---|---|---|---|---|---|")
    pool = H.Pool()
    try:
        for cell in args.cells.split(","):
            r = measure(pool, cell, args.passes, args.pause)
            cells = [f"{r[name] * 1e3:.1f} ms" if name in r else "–" for name, _, _ in WAYS]
            fr, fp, tp = (r.get(k) for k in ("fastgates ragged", "fastgates padded", "torch packed"))
            cells.append(f"{fr / fp:.2f}" if fr and fp else "–")
            cells.append(f"{tp / fr:.2f}×" if tp and fr else "–")
            print(f"| {H.CELL_LABEL[cell]} | " + " | ".join(cells) + " |", flush=True)
    finally:
        pool.close()


if __name__ == "__main__":
    main()
