"""The performance report of issue 4: ``python bench/report.py [--json PATH]``.

Design: one quick pass (a few minutes on 2 cores) over the target cases.  Every
implementation runs in its own worker process (see ``_harness``: PyTorch's
bundled OpenMP runtime, the system libgomp of fastgates, OpenBLAS and XLA must
not share a process).  Per case the implementations are interleaved: three
passes, each giving every implementation a share of the time budget (N adaptive:
as many calls as fit, at least one per pass), a short pause after each turn so
the previous worker's idle threads have parked; the time of a case is the best
of all its calls.  The sgemm rate of this machine (NumPy float32 matmul of
2048 x 2048 matrices, best of several) is measured at the start and at the end
of the same run.

Output: Markdown on stdout — the machine, the kernel table (time, GFLOP/s of the
GEMM work every implementation must do: forward 2·T·B·(D+H)·G·H, forward+backward
three times that, D = 0 for token ids; fraction of the sgemm rate; ratios
peer time / fastgates time), generation, LM training, memory and the targets of
issue 4 with the measured value and met / NOT met — and the JSON (``--json``,
default ``bench/results.json``).  Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as H  # noqa: E402

CELLS = list(H.CELLS)           # rnn, gru_lbr, gru_rb, lstm
FG = "fastgates-2t"

#: (shape, dtype, tokens) of the kernel rows of the default pass; all fwd+bwd.
TARGET_CASES = [("tiny", "float32", False), ("d2l", "float32", False), ("mid", "float32", False),
                ("d2l", "float64", False)]
#: extra rows of --full: token-id input at d2l and forward-only rows
FULL_EXTRA = [("d2l", "float32", True)]


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def fmt_time(s):
    if s is None or not math.isfinite(s):
        return "–"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs" if s >= 1e-5 else f"{s * 1e6:.2f} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_ratio(r):
    return "–" if r is None else (f"{r:.3g}×" if r < 100 else f"{r:.0f}×")


def best(times):
    return min(times) if times else None


def median(times):
    if not times:
        return None
    s = sorted(times)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


class Runner:
    def __init__(self, pool, budget, passes, pause, reference_pause):
        self.pool, self.budget, self.passes = pool, budget, passes
        self.pause, self.reference_pause = pause, reference_pause

    def available(self, impl):
        w = self.pool.worker(impl)
        return w.available

    def _pause(self, impl, kind):
        # OpenBLAS threads spin up to ~0.1 s after work (NumPy: reference; the LM output layer)
        slow = H.GROUP.get(impl, impl) == "reference" or kind == "lm"
        time.sleep(self.reference_pause if slow else self.pause)

    def run(self, specs):
        """Interleaved best-of-N of several specs of one case -> {impl: result dict}."""
        preps, times, spent, out = {}, {}, {}, {}
        for spec in specs:
            impl = spec["impl"]
            w = self.pool.worker(impl)
            if not w.available:
                out[impl] = {"skipped": w.info.get("reason")}
                continue
            try:
                preps[impl] = w.call("prepare", spec)
            except H.WorkerError as exc:
                log(f"  {impl}: failed: {exc}")
                out[impl] = {"error": str(exc).splitlines()[-1]}
                continue
            times[impl], spent[impl] = [], 0.0
            self._pause(impl, spec["kind"])
        impls = [s["impl"] for s in specs if s["impl"] in preps]
        share = self.budget / self.passes
        for p in range(self.passes):
            order = impls[p % len(impls):] + impls[:p % len(impls)] if impls else []
            for impl in order:
                prep = preps[impl]
                per_call = (best(times[impl]) or prep["estimate"]) * prep["units"]
                reps = max(1, min(1000, int(share / max(per_call, 1e-7))))
                t0 = time.perf_counter()
                ts = self.pool.worker(impl).call("time", prep["key"], reps)
                spent[impl] += time.perf_counter() - t0
                times[impl] += ts
                self._pause(impl, specs[0]["kind"])
        for impl in impls:
            self.pool.worker(impl).call("drop", preps[impl]["key"])
            ts = times[impl]
            out[impl] = {"best": best(ts), "median": median(ts), "n": len(ts),
                         "spread": median(ts) / best(ts) if ts and best(ts) > 0 else None,
                         "first_call": preps[impl]["first"], "n_threads": preps[impl]["n_threads"],
                         "units": preps[impl]["units"]}
        return out


def measure_sgemm(pool, reps):
    w = pool.worker("reference")
    n = 2048
    ts = w.call("sgemm", n, reps)
    return {"n": n, "best_s": min(ts), "gflops": 2.0 * n ** 3 / min(ts) / 1e9, "reps": reps,
            "library": "numpy.matmul float32 (NumPy's BLAS, default threads)"}


def rss_probe(cell, shape, mode, T=None):
    spec = {"cell": cell, "shape": shape, "mode": mode}
    if T:
        spec["T"] = T
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (H.fastgates_root(), env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, H.__file__, "rss", json.dumps(spec)], capture_output=True,
                       text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"rss probe {spec} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure_memory(cell="lstm", shape="mid"):
    """Peak RSS growth of fastgates calls, each in a fresh process (ru_maxrss)."""
    T0 = H.SHAPES[shape][0]
    rows = [rss_probe(cell, shape, "inference", T0), rss_probe(cell, shape, "inference", 4 * T0),
            rss_probe(cell, shape, "training", T0), rss_probe(cell, shape, "fwdbwd", T0)]
    _, B, D, Hd = H.SHAPES[shape]
    G = H.CELLS[cell][2]
    itemsize = 4
    inf1, inf4 = rows[0], rows[1]
    extra1 = inf1["peak_rss_growth"] - inf1["y_bytes"]
    extra4 = inf4["peak_rss_growth"] - inf4["y_bytes"]
    per_step_gates = B * G * Hd * itemsize
    growth = extra4 - extra1
    return {"cell": cell, "shape": shape, "rows": rows,
            "inference_extra_T": extra1, "inference_extra_4T": extra4,
            "inference_growth_per_step": growth / (3 * T0),
            "gates_bytes_per_step": per_step_gates,
            "inference_no_per_step": growth < 0.1 * 3 * T0 * per_step_gates,
            "cache_bytes": rows[2]["cache_bytes"],
            "training_forward_peak": rows[2]["peak_rss_growth"],
            "fwdbwd_peak": rows[3]["peak_rss_growth"]}


def isolation_check(budget, log_dir=None):
    """fastgates and torch in ONE process (default and OMP_WAIT_POLICY=passive) vs their
    own processes: the evidence for running every implementation in its own worker."""
    res = {}
    specs = [H.kernel_spec(FG, "gru_lbr", "d2l", "fwdbwd"), H.kernel_spec("torch", "gru_lbr", "d2l", "fwdbwd")]
    passive = {"OMP_WAIT_POLICY": "passive"}
    configs = [("own processes", False, {}), ("own processes, OMP_WAIT_POLICY=passive", False, passive),
               ("one process", True, {}), ("one process, OMP_WAIT_POLICY=passive", True, passive)]
    for label, mixed, env in configs:
        log(f"  isolation check: {label}")
        if not mixed:
            pool = H.Pool(env={"fastgates": env, "torch": env}, log_dir=log_dir)
            ws = {s["impl"]: pool.worker(s["impl"]) for s in specs}
        else:
            pool = H.Pool(env={"mixed": env}, log_dir=log_dir)
            ws = {s["impl"]: pool.worker("mixed") for s in specs}
        if not all(w.available for w in ws.values()):
            pool.close()
            return {"skipped": "torch not importable"}
        keys = {}
        for s in specs:
            p = ws[s["impl"]].call("prepare", s)
            keys[s["impl"]] = (p["key"], p["estimate"])
        reps = {i: max(3, int(budget / max(e, 1e-6))) for i, (k, e) in keys.items()}
        row = {}
        for impl, (k, _) in keys.items():           # back to back, after the other one ran
            row[impl] = ws[impl].call("time", k, reps[impl])
            time.sleep(0.05)
        if mixed:
            alt = ws[FG].call("alternate", [keys["torch"][0], keys[FG][0]], min(reps.values()))
            row[FG + " alternating"] = alt[keys[FG][0]]
            row["torch alternating"] = alt[keys["torch"][0]]
        res[label] = {k: {"best": best(v), "median": median(v), "n": len(v)} for k, v in row.items()}
        pool.close()
    return res


# -- the tables ------------------------------------------------------------------------------

def case_label(spec):
    s = f"{spec['shape']} {H.CELL_LABEL[spec['cell']]}"
    if spec["dtype"] == "float64":
        s += " f64"
    if spec["tokens"]:
        s += " tokens"
    return s + (" fwd" if spec["direction"] == "fwd" else "")


def ratio(res, impl, ref_impl=FG):
    a, b = res.get(impl, {}).get("best"), res.get(ref_impl, {}).get("best")
    return a / b if a and b else None


def kernel_table(kernels, sgemm_gflops, fma=None):
    """The kernel rows; ``fma``: {"isa", "gflops"} of fastgates' level (and "avx2": the
    same for the forced AVX2 level) -- the share of the FMA peak and the level's gain."""
    fma = fma or {}
    peak = (fma.get("fastgates") or {}).get("gflops")
    isa = (fma.get("fastgates") or {}).get("isa", "–")
    avx2 = any("fastgates-avx2" in k["results"] for k in kernels)
    out = ["| case | ISA | fastgates (2 thr) | GFLOP/s | of sgemm | of FMA peak | fastgates (1 thr) | "
           "1→2 thr | torch | jax | reference | ×torch | ×jax | ×reference |"
           + (" avx2 forced (2 thr) | of its FMA peak | ×avx2 |" if avx2 else ""),
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
           + ("---:|---:|---:|" if avx2 else "")]
    peak2 = (fma.get("fastgates_avx2") or {}).get("gflops")
    for k in kernels:
        r, spec = k["results"], k["spec"]
        fg = r.get(FG, {}).get("best")
        gf = k["gflop"] / fg if fg else None
        noisy = any((v.get("spread") or 1) > 1.5 for v in r.values() if isinstance(v, dict))
        label = case_label(spec) + (" ⚠" if noisy else "")
        note = "¹" if spec["cell"] == "gru_rb" else ""
        row = [label, isa, fmt_time(fg), f"{gf:.1f}" if gf else "–",
               f"{gf / sgemm_gflops:.0%}" if gf and sgemm_gflops else "–",
               f"{gf / peak:.0%}" if gf and peak else "–",
               fmt_time(r.get("fastgates-1t", {}).get("best")),
               fmt_ratio(ratio(r, "fastgates-1t")),
               fmt_time(r.get("torch", {}).get("best")) + note,
               fmt_time(r.get("jax", {}).get("best")),
               fmt_time(r.get("reference", {}).get("best")),
               fmt_ratio(ratio(r, "torch")), fmt_ratio(ratio(r, "jax")),
               fmt_ratio(ratio(r, "reference"))]
        if avx2:
            t2 = r.get("fastgates-avx2", {}).get("best")
            row += [fmt_time(t2), f"{k['gflop'] / t2 / peak2:.0%}" if t2 and peak2 else "–",
                    fmt_ratio(ratio(r, "fastgates-avx2"))]
        out.append("| " + " | ".join(row) + " |")
    return out


def evaluate_targets(kernels, generation, lm, memory, sgemm_gflops):
    by = {(k["spec"]["shape"], k["spec"]["cell"], k["spec"]["dtype"], k["spec"]["tokens"],
           k["spec"]["direction"]): k for k in kernels}

    def kr(shape, cell, peer, dtype="float32"):
        k = by.get((shape, cell, dtype, False, "fwdbwd"))
        return ratio(k["results"], peer) if k else None

    def row(name, items):
        """items: (label, measured or None, required)."""
        if not items:
            return {"target": name, "measured": "–", "status": "n/a (not measured)", "values": {}}
        parts, fails, missing = [], [], []
        for label, v, req in items:
            parts.append(f"{label} {fmt_ratio(v) if v is not None else '–'} (≥{req:g})")
            if v is None:
                missing.append(label)
            elif v < req:
                fails.append(label)
        status = ("NOT met: " + ", ".join(fails)) if fails else (
            "n/a (not measured: " + ", ".join(missing) + ")" if len(missing) == len(items)
            else "met" + (f" (not measured: {', '.join(missing)})" if missing else ""))
        return {"target": name, "measured": "; ".join(parts), "status": status,
                "values": {lab: v for lab, v, _ in items}}

    def kf(shape, cell, peer):
        k = by.get((shape, cell, "float32", False, "fwd"))
        return ratio(k["results"], peer) if k else None

    # the targets of the kernels-on-every-CPU issue (float32, 2 threads, the best level)
    L = H.CELL_LABEL
    t = []
    t.append(row("LSTM fwd+bwd vs torch", [("d2l", kr("d2l", "lstm", "torch"), 1.1),
                                           ("mid", kr("mid", "lstm", "torch"), 1.0)]))
    t.append(row("LSTM forward-only vs torch", [("d2l", kf("d2l", "lstm", "torch"), 1.0),
                                                         ("mid", kf("mid", "lstm", "torch"), 1.0)]))
    t.append(row("GRU fwd+bwd vs torch", [("d2l", kr("d2l", "gru_lbr", "torch"), 1.5),
                                          ("mid", kr("mid", "gru_lbr", "torch"), 1.5)]))
    t.append(row("GRU forward-only vs torch at mid", [("mid", kf("mid", "gru_lbr", "torch"), 1.3)]))
    t.append(row("RNN fwd+bwd vs torch at mid", [("mid", kr("mid", "rnn", "torch"), 1.2)]))
    t.append(row("tiny fwd+bwd vs torch", [(L["rnn"], kr("tiny", "rnn", "torch"), 10),
                                           (L["gru_lbr"], kr("tiny", "gru_lbr", "torch"), 10),
                                           (L["gru_rb"] + "¹", kr("tiny", "gru_rb", "torch"), 10),
                                           (L["lstm"], kr("tiny", "lstm", "torch"), 5)]))
    t.append(row("tiny fwd+bwd vs jax", [(L[c], kr("tiny", c, "jax"), 2) for c in CELLS]))
    frac = []
    for c in CELLS:
        k = by.get(("mid", c, "float32", False, "fwdbwd"))
        fg = k["results"].get(FG, {}).get("best") if k else None
        frac.append((L[c], (k["gflop"] / fg / sgemm_gflops) if fg and sgemm_gflops else None, 0.8))
    r = row("mid fwd+bwd, fraction of sgemm rate", frac)
    r["measured"] = "; ".join(f"{lab} {v:.0%} (≥80%)" if v is not None else f"{lab} –"
                              for lab, v, _ in frac)
    t.append(r)
    t.append(row("d2l float64 fwd+bwd vs torch",
                 [(L[c] + ("¹" if c == "gru_rb" else ""), kr("d2l", c, "torch", "float64"), 1.5)
                  for c in CELLS]))
    t.append(row("generation per character vs torch loop",
                 [(L[g["cell"]], ratio(g["results"], "torch", "fastgates"), 20) for g in generation]))
    lm_req = {"lstm": 1.1, "gru_lbr": 1.8}
    lm_items = []
    for g in lm:
        if g["cell"] in lm_req:
            f, tr = g["results"].get("fastgates", {}), g["results"].get("torch", {})
            v = tr["best"] / f["best"] if f.get("best") and tr.get("best") else None
            lm_items.append((L[g["cell"]], v, lm_req[g["cell"]]))
    t.append(row("LM training tokens/s vs torch loop", lm_items))
    t.append(row("d2l fwd+bwd vs reference", [(L[c], kr("d2l", c, "reference"), 1.5) for c in CELLS]))
    thr = []
    for c in CELLS:
        k = by.get(("mid", c, "float32", False, "fwdbwd"))
        thr.append((L[c], ratio(k["results"], "fastgates-1t") if k else None, 1.7))
    t.append(row("threads 1 → 2, mid fwd+bwd", thr))
    if memory and "error" not in memory:
        ok = memory["inference_no_per_step"]
        t.append({"target": "memory: training=False keeps no per-step activations",
                  "measured": (f"{memory['shape']} {L[memory['cell']]}: peak RSS beyond y "
                               f"{mb(memory['inference_extra_T'])} at T, "
                               f"{mb(memory['inference_extra_4T'])} at 4T "
                               f"({memory['inference_growth_per_step'] / 1024:.1f} KiB/step vs "
                               f"{memory['gates_bytes_per_step'] / 1024:.0f} KiB/step of gates)"),
                  "status": "met" if ok else "NOT met"})
        t.append({"target": "memory: training cache size measured",
                  "measured": (f"cache {mb(memory['cache_bytes'])} (arrays), peak RSS growth: "
                               f"forward {mb(memory['training_forward_peak'])}, forward+backward "
                               f"{mb(memory['fwdbwd_peak'])}"),
                  "status": "measured"})
    return t


def mb(b):
    return f"{b / 2 ** 20:.1f} MiB"


def markdown(res):
    m = res["machine"]
    lines = ["## Machine", "",
             f"- CPU: {m.get('cpu')} — {m.get('affinity')} usable cores "
             f"({m.get('physical_cores')} physical), flags {', '.join(m.get('flags') or []) or '–'}",
             f"- sgemm (NumPy float32 matmul 2048³, best of {res['sgemm']['start']['reps']}): "
             f"{res['sgemm']['start']['gflops']:.1f} GFLOP/s at the start, "
             f"{res['sgemm']['end']['gflops']:.1f} at the end of the run"
             if res["sgemm"].get("end") else
             f"- sgemm: {res['sgemm']['start']['gflops']:.1f} GFLOP/s",
             *([f"- FMA peak (fastgates' timed loop of independent vector FMAs, float32, "
                f"{H.THREADS} threads): " + ", ".join(
                    f"{v['gflops']:.1f} GFLOP/s at {v['isa']}" for v in res['fma'].values() if v)]
               if res.get("fma") else []),
             f"- load average at start {fmt_load(m.get('loadavg'))}, at end "
             f"{fmt_load(res.get('loadavg_end'))}",
             "- " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
             f"- threads: fastgates n_threads={H.THREADS} and 1, torch.set_num_threads({H.THREADS}), "
             "jax/XLA default (all cores), reference: NumPy's BLAS default",
             f"- command: `{res['command']}` ({res['seconds']:.0f} s)", ""]
    if (m.get("loadavg") or [0])[0] > 0.5:
        lines += [f"> ⚠ the machine was not idle (load average {m['loadavg'][0]:.2f} at the start): "
                  "the numbers below are not reliable.", ""]
    lines += ["## Kernels (forward + backward unless marked fwd; best of N)", ""]
    lines += kernel_table(res["kernels"], res["sgemm"]["gflops"], res.get("fma"))
    lines += ["", "Ratios are peer time / fastgates (2 threads) time: above 1 fastgates is faster. "
              "ISA: the instruction-set level fastgates ran (its best on this CPU); 'of FMA "
              "peak': GFLOP/s over the level's measured FMA peak (2 threads, independent vector "
              "FMAs); 'avx2 forced': the same run with FASTGATES_ISA=avx2 (×avx2 = its time / "
              "the best level's time: what the best level gains). "
              "GFLOP/s counts the GEMM work every implementation must do (forward 2·T·B·(D+H)·G·H, "
              "forward+backward 3×; D = 0 for token ids). ¹ torch has no reset-before GRU: its "
              "column is torch.nn.GRU (linear before reset). ⚠: median/best > 1.5 for some "
              "implementation (noisy).", ""]
    if res["generation"]:
        lines += ["## Generation (B = 1, H = 256, vocabulary 28, time per character)", "",
                  "| cell | fastgates (compiled loop) | torch loop | NumPy loop | ×torch | ×NumPy |",
                  "|---|---:|---:|---:|---:|---:|"]
        for g in res["generation"]:
            r = g["results"]
            lines.append(f"| {H.CELL_LABEL[g['cell']]} | {fmt_time(r.get('fastgates', {}).get('best'))} | "
                         f"{fmt_time(r.get('torch', {}).get('best'))} | "
                         f"{fmt_time(r.get('reference', {}).get('best'))} | "
                         f"{fmt_ratio(ratio(r, 'torch', 'fastgates'))} | "
                         f"{fmt_ratio(ratio(r, 'reference', 'fastgates'))} |")
        lines.append("")
    if res["lm"]:
        R = H.LM_RECIPE
        lines += [f"## LM training (textbook recipe: {R['tokens']}, hidden {R['hidden']}, batch "
                  f"{R['batch']} × {R['steps']} steps, SGD lr {R['lr']:g}, clip {R['clip']:g}; "
                  f"best of N calls of {res['lm'][0]['steps']} steps)", "",
                  "| cell | fastgates tokens/s | torch tokens/s | ratio |", "|---|---:|---:|---:|"]
        tok = R["batch"] * R["steps"]
        for g in res["lm"]:
            f, t = g["results"].get("fastgates", {}).get("best"), g["results"].get("torch", {}).get("best")
            lines.append(f"| {H.CELL_LABEL[g['cell']]} | {tok / f:,.0f} | " if f else f"| {H.CELL_LABEL[g['cell']]} | – | ")
            lines[-1] += (f"{tok / t:,.0f} | " if t else "– | ") + (fmt_ratio(t / f) if f and t else "–") + " |"
        lines.append("")
    if res.get("memory") and "error" not in res["memory"]:
        mem = res["memory"]
        lines += [f"## Memory (fastgates, {mem['shape']} {H.CELL_LABEL[mem['cell']]} float32, peak RSS "
                  "growth of one call in a fresh process)", "",
                  "| call | T | peak RSS growth | y | cache arrays |", "|---|---:|---:|---:|---:|"]
        for r in mem["rows"]:
            lines.append(f"| {r['mode']} | {r['T']} | {mb(r['peak_rss_growth'])} | {mb(r['y_bytes'])} | "
                         f"{mb(r['cache_bytes']) if r['cache_bytes'] else '–'} |")
        lines.append("")
    if res.get("isolation_check"):
        lines += ["## Isolation check (d2l GRU lbr fwd+bwd; best / median)", "",
                  "| configuration | fastgates (2 thr) | torch | fastgates alternating with torch | torch alternating |",
                  "|---|---:|---:|---:|---:|"]
        for label, r in res["isolation_check"].items():
            if not isinstance(r, dict) or "skipped" in r:
                continue
            cell = lambda k: (f"{fmt_time(r[k]['best'])} / {fmt_time(r[k]['median'])}" if k in r else "–")  # noqa: E731
            lines.append(f"| {label} | {cell(FG)} | {cell('torch')} | {cell(FG + ' alternating')} | "
                         f"{cell('torch alternating')} |")
        lines.append("")
    lines += ["## Targets (kernels issue; float32 unless stated, 2 threads, the best level, ratio = peer time / "
              "fastgates time in the same run)", "", "| target | measured | status |", "|---|---|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {t['status']} |")
    lines += ["", "¹ against torch.nn.GRU (torch has no reset-before GRU)."]
    return "\n".join(lines)


def fmt_load(l):
    return "–" if not l else " / ".join(f"{x:.2f}" for x in l)


# -- main ------------------------------------------------------------------------------------

def draw_figures(res, json_path):
    """The figures of bench/plots.py, next to the JSON (``results-kernels.png``, ...)."""
    import plots

    stem = os.path.splitext(os.path.basename(json_path))[0]
    out = plots.plot_results(res, os.path.dirname(os.path.abspath(json_path)), stem)
    log(f"no figures: {out}" if isinstance(out, str) else "wrote " + ", ".join(out))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="fastgates performance report (issue 4)")
    p.add_argument("--json", default=os.path.join(H.BENCH_DIR, "results.json"),
                   help="where to write the JSON [bench/results.json]; '' to skip")
    p.add_argument("--budget", type=float, default=0.5,
                   help="seconds of timed calls per implementation and case [0.5]")
    p.add_argument("--passes", type=int, default=3, help="interleaved passes per case [3]")
    p.add_argument("--pause", type=float, default=0.03, help="pause after a worker's turn [0.03 s]")
    p.add_argument("--reference-pause", type=float, default=0.15,
                   help="pause after NumPy-BLAS turns (reference, LM) [0.15 s]")
    p.add_argument("--quick", action="store_true",
                   help="development smoke run: tiny + d2l LSTM only, tiny budget (numbers meaningless)")
    p.add_argument("--full", action="store_true", help="also token-id input at d2l and forward-only rows")
    p.add_argument("--big", action="store_true", help="also the big shape (slow)")
    p.add_argument("--cases", default=None, help="regex over kernel case names (e.g. 'd2l-lstm')")
    p.add_argument("--impls", default=",".join(H.KERNEL_IMPLS),
                   help=f"kernel implementations [{','.join(H.KERNEL_IMPLS)}]")
    p.add_argument("--skip", default="", help="comma list of sections to skip: kernels,generation,lm,memory")
    p.add_argument("--isolation-check", action="store_true",
                   help="also time fastgates and torch in one process (the reason for the workers)")
    return p.parse_args(argv)


def kernel_specs(args):
    shapes = list(TARGET_CASES)
    if args.full:
        shapes += FULL_EXTRA
    if args.big:
        shapes.append(("big", "float32", False))
    directions = ["fwdbwd"] + (["fwd"] if args.full else [])
    out = []
    for direction in directions:
        for shape, dtype, tokens in shapes:
            for cell in CELLS:
                out.append(H.kernel_spec("?", cell, shape, direction, dtype, tokens))
    if not args.full:    # the forward-only rows the targets name
        out += [H.kernel_spec("?", c, shape, "fwd") for c, shape in
                (("lstm", "d2l"), ("lstm", "mid"), ("gru_lbr", "mid"))]
    if args.quick:
        out = [s for s in out if s["shape"] == "tiny" and s["dtype"] == "float32"] + \
              [H.kernel_spec("?", "lstm", "d2l", "fwdbwd")]
    if args.cases:
        rx = re.compile(args.cases)
        out = [s for s in out if rx.search(H.case_name(s))]
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.budget, args.passes = min(args.budget, 0.05), min(args.passes, 2)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    t_start = time.perf_counter()
    res = {"schema": 1, "command": " ".join(["python bench/report.py"] + (argv if argv is not None else sys.argv[1:])),
           "started": datetime.datetime.now().isoformat(timespec="seconds"),
           "machine": H.machine_info(), "config": vars(args)}
    log_dir = tempfile.mkdtemp(prefix="fastgates-bench-")
    pool = H.Pool(log_dir=log_dir)
    groups = sorted({H.GROUP[i] for i in impls} | {"fastgates", "reference", "torch"})
    pool.start(groups)
    versions, tp = {}, {}
    for g in groups:
        w = pool.worker(g)
        if w.available:
            info = w.call("info")
            for k in ("fastgates", "numpy", "torch", "jax"):
                if k in info:
                    versions[k] = info[k]
            tp[g] = info.get("threadpool_info")
        else:
            log(f"{g}: not available ({w.info.get('reason')}); its columns stay empty")
    # the forced-AVX2 rows say what the best level gains: only where the best is above AVX2
    best_isa = pool.worker("fastgates").info.get("isa") if pool.worker("fastgates").available else None
    if "fastgates-avx2" in impls and best_isa in (None, "generic", "avx2"):
        impls.remove("fastgates-avx2")
        log(f"fastgates-avx2: left out (fastgates' best level here is {best_isa})")
    versions["python"] = res["machine"]["python"]
    res["versions"], res["threadpool_info"] = versions, tp
    res["unavailable"] = {g: pool.worker(g).info.get("reason") for g in groups
                          if not pool.worker(g).available}
    runner = Runner(pool, args.budget, args.passes, args.pause, args.reference_pause)
    ok = False
    try:
        log("sgemm rate ...")
        res["sgemm"] = {"start": measure_sgemm(pool, 3 if args.quick else 7)}
        log("FMA peak ...")
        res["fma"] = {g: pool.worker(g).call("fma_peak", H.THREADS)
                      for g in ("fastgates", "fastgates_avx2")
                      if g in groups and pool.worker(g).available}
        res["kernels"], res["generation"], res["lm"], res["memory"] = [], [], [], None
        if "kernels" not in skip:
            for base in kernel_specs(args):
                name = H.case_name(base)
                log(f"{name} ...")
                specs = [dict(base, impl=i) for i in impls]
                r = runner.run(specs)
                res["kernels"].append({"case": name, "spec": dict(base, impl=None),
                                       "gflop": H.kernel_gflop(base), "results": r})
                log("  " + ", ".join(f"{i} {fmt_time(v.get('best'))}" for i, v in r.items()))
        if "generation" not in skip:
            for cell in ("rnn", "gru_lbr", "lstm"):
                log(f"generation {cell} ...")
                chars = 50 if args.quick else 200
                r = runner.run([H.generate_spec(i, cell, chars=chars) for i in H.GENERATE_IMPLS])
                res["generation"].append({"cell": cell, "chars": chars, "results": r})
        if "lm" not in skip:
            steps = 2 if args.quick else 10
            for cell in ("rnn", "gru_lbr", "lstm"):
                log(f"LM training {cell} ...")
                r = runner.run([H.lm_spec(i, cell, steps) for i in H.LM_IMPLS])
                res["lm"].append({"cell": cell, "steps": steps, "results": r})
        if "memory" not in skip:
            log("memory ...")
            try:
                res["memory"] = measure_memory("lstm", "d2l" if args.quick else "mid")
            except Exception as exc:  # report, do not lose the rest of the run
                res["memory"] = {"error": str(exc)}
                log(f"  memory probe failed: {exc}")
        res["sgemm"]["end"] = measure_sgemm(pool, 3 if args.quick else 7)
        ok = True
    finally:
        pool.close()
        if not ok:
            log(f"worker logs kept in {log_dir}")
    res["sgemm"]["gflops"] = max(res["sgemm"]["start"]["gflops"], res["sgemm"].get("end", {}).get("gflops", 0))
    if args.isolation_check:
        log("isolation check ...")
        res["isolation_check"] = isolation_check(max(args.budget, 0.3), log_dir)
    res["loadavg_end"] = list(os.getloadavg())
    res["targets"] = evaluate_targets(res["kernels"], res["generation"], res["lm"], res["memory"],
                                      res["sgemm"]["gflops"])
    res["seconds"] = time.perf_counter() - t_start
    text = markdown(res)
    print(text)
    res["markdown"] = text
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
        log(f"wrote {args.json}")
        draw_figures(res, args.json)
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
