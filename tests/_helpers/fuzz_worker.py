"""Hypothesis fuzzing of the six public kernels, run in a child process by tests/test_fuzz.py.

Every case starts from a valid call and makes it hostile: random shapes (0 included),
dtypes (float16, ints, complex, bool, object, mixed), layouts (Fortran order, strided
and reversed views, zero strides, read-only arrays, nested lists), None in optional and
required places, bad keywords, wrong caches, token ids out of range and dimensions far
beyond what fits in memory or in a C int.  The same arguments go to ``fastgates`` and
to ``fastgates.reference``; the contract checked is

* both accept: the results agree within the per-dtype tolerance, inputs are unchanged;
* both reject: with the same exception type, ValueError or TypeError, and a message
  that names an argument;
* anything else (one accepts and one rejects, another exception type, a crash) fails.

A crash cannot be caught in-process, so the parent runs this module in a subprocess:
before each call the case is written to ``--trace``, and a child killed by a signal
is reported with the case it was running.  Results go to ``--out`` as JSON.

    python -m _helpers.fuzz_worker --examples 400 --seed 0 --out r.json --trace t.txt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import traceback
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import fastgates
import fastgates.reference as reference
from conftest import ATOL, CELLS, GATES, RTOL, cell_kwargs
BACKENDS = {"fast": fastgates, "reference": reference}
ARG_NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n", "dc_n", "cache",
             "n_threads", "training", "nonlinearity", "linear_before_reset", "T", "B", "D", "H",
             "T*B", "G*H", "B*H", "T=")
NAME_RE = re.compile("|".join(rf"(?<![\w*]){re.escape(n)}(?![\w*])" for n in ARG_NAMES))

BAD_DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint64",
              "complex64", "complex128", "bool", "object", "longdouble"]
LAYOUTS = ["c", "c", "c", "fortran", "strided", "reversed", "readonly", "broadcast", "list"]
CORRUPTIONS = ["none"] * 20 + ["dtype", "dtype", "grow", "shrink", "extra-dim", "drop-dim",
                               "None", "scalar", "nan", "inf"]
N_THREADS = [None] * 8 + [1, 1, 2, 2, -1, -2, -100, 0, "2", 1.5, True, np.int64(2), np.int32(-1),
             10**20, -(10**20), 2**31]
TRAINING = [True] * 8 + [False] * 3 + ["yes", 1, None, np.bool_(True)]
NONLIN = ["tanh", "relu", "tanh", "relu", "sigmoid", None, "TANH", 1]
LBR = [True, False, True, False, 1, "yes", None, np.bool_(False)]
CACHES = ["own", "own", "own", "cross", "other-cell", "None", "dict", "inference"]

# Dimensions far beyond a C int or any machine's memory, as zero-strided views that cost
# nothing.  (T, B, D, H) for float x; token ids use (T, B).  INT = 2**31 - 1.
HUGE = [
    ("T*B>int", (2**16, 2**15 + 1, 3, 2)),
    ("T>int,B=0", (2**31 + 5, 0, 3, 2)),
    ("B>int,T=0", (0, 2**31 + 5, 3, 2)),
    ("B*H>int", (1, 2**20, 3, 2**12)),
    ("memory>RAM", (2**20, 2**10, 3, 2**14)),
    ("memory-tokens>RAM", (2**20, 2**10, 2**10, 2**12)),
    ("D>int", (2, 2, 2**31 + 7, 2)),
    ("weights>RAM", (2, 2, 3, 2**20)),
]


class Mismatch(AssertionError):
    """fast and reference disagree, or one of them broke the contract."""


class Stats:
    def __init__(self):
        self.calls = 0
        self.backward_calls = 0
        self.keys = set()
        self.outcomes = Counter()
        self.exceptions = Counter()


STATS = Stats()
TRACE = None


def trace(text):
    with open(TRACE, "w") as f:
        f.write(text)


# -- building arguments -------------------------------------------------------------------------

def apply_layout(a, layout):
    """The same values as ``a`` in another memory layout (a new object)."""
    if layout == "c" or a.ndim == 0:
        return a.copy()
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "readonly":
        b = a.copy()
        b.setflags(write=False)
        return b
    if layout == "broadcast":
        first = a.reshape(-1)[:1] if a.size else np.zeros(1, a.dtype)
        return np.broadcast_to(first.reshape((1,) * a.ndim), a.shape)
    if layout == "list":
        return a.tolist()
    raise AssertionError(layout)


def corrupt(a, how, dtype_name, dim):
    """``a`` made wrong (or unusual) in the way ``how`` says."""
    if how == "none":
        return a
    if how == "None":
        return None
    if how == "scalar":
        return 1.0
    if how == "dtype":
        if dtype_name == "object":
            return a.astype(object)
        return a.astype(np.dtype(dtype_name))
    if how in ("nan", "inf"):
        b = a.astype(a.dtype, copy=True)
        if b.size and b.dtype.kind == "f":
            b.reshape(-1)[dim % b.size] = np.nan if how == "nan" else -np.inf
        return b
    if a.ndim == 0:
        return a
    k = dim % a.ndim
    if how == "grow":
        shape = list(a.shape)
        shape[k] += 1
        return np.resize(a, shape) if a.size else np.zeros(shape, a.dtype)
    if how == "shrink":
        return np.take(a, range(a.shape[k] - 1), axis=k) if a.shape[k] else a[None]
    if how == "extra-dim":
        return a[None]
    if how == "drop-dim":
        return a[0] if a.shape[0] else np.zeros(a.shape[1:], a.dtype)
    raise AssertionError(how)


@st.composite
def arg_change(draw):
    """(layout, corruption, dtype for 'dtype', index/axis) for one argument."""
    return (draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(CORRUPTIONS)),
            draw(st.sampled_from(BAD_DTYPES)), draw(st.integers(0, 7)))


def finish(a, change):
    layout, how, dtype_name, dim = change
    a = corrupt(a, how, dtype_name, dim)
    return apply_layout(a, layout) if isinstance(a, np.ndarray) else a


def copies(values):
    """Deep copies of the ndarray arguments, to check that no call modified them."""
    return [v.copy() if isinstance(v, np.ndarray) and v.flags.writeable else None
            for v in values]      # read-only arrays (zero-strided views among them) cannot change


def unchanged(before, values):
    return all(b is None or (isinstance(v, np.ndarray) and b.shape == v.shape and
                             np.array_equal(b, v, equal_nan=b.dtype.kind in "fc"))
               for b, v in zip(before, values))


# -- calling both backends ----------------------------------------------------------------------

def call(fn, args, kw):
    """('ok', result) or ('raise', exception)."""
    try:
        return "ok", fn(*args, **kw)
    except Exception as exc:  # the contract is judged by the caller
        return "raise", exc


def judge_raise(case, outcomes, count=True):
    (fs, fe), (rs, re_) = outcomes
    for name, exc in (("fast", fe), ("reference", re_)):
        if not isinstance(exc, (ValueError, TypeError)):
            tb = "".join(traceback.format_exception(exc))
            raise Mismatch(f"{name} raised {type(exc).__name__} (expected ValueError/TypeError): "
                           f"{exc}\n{tb}\ncase: {case}")
        if not NAME_RE.search(str(exc)):
            raise Mismatch(f"{name}'s {type(exc).__name__} message names no argument: "
                           f"{str(exc)!r}\ncase: {case}")
    if type(fe) is not type(re_):
        raise Mismatch(f"different exceptions: fast {type(fe).__name__}({fe}) vs reference "
                       f"{type(re_).__name__}({re_})\ncase: {case}")
    STATS.exceptions[type(fe).__name__] += count


def close(got, want, what, case):
    if want is None or got is None:
        if (want is None) != (got is None):
            raise Mismatch(f"{what}: fast gives {type(got).__name__}, reference "
                           f"{type(want).__name__}\ncase: {case}")
        return
    if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype != want.dtype:
        raise Mismatch(f"{what}: fast {getattr(got, 'shape', got)}/{getattr(got, 'dtype', '')} vs "
                       f"reference {want.shape}/{want.dtype}\ncase: {case}")
    finite = want[np.isfinite(want)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    dt = want.dtype
    if not np.allclose(got, want, rtol=RTOL[dt], atol=ATOL[dt] * max(scale, 1.0), equal_nan=True):
        bad = ~np.isclose(got, want, rtol=RTOL[dt], atol=ATOL[dt] * max(scale, 1.0), equal_nan=True)
        raise Mismatch(f"{what}: {int(bad.sum())} of {got.size} entries differ (first fast "
                       f"{got[bad][:3]}, reference {want[bad][:3]})\ncase: {case}")


def compare(case, outcomes, names, count=True):
    """Both backends ran: same status; same values if both returned."""
    (fs, fr), (rs, rr) = outcomes
    if fs != rs:
        ok, bad = ("fast", "reference") if fs == "ok" else ("reference", "fast")
        exc = rr if fs == "ok" else fr
        raise Mismatch(f"{ok} accepted but {bad} raised {type(exc).__name__}: {exc}\ncase: {case}")
    if fs == "raise":
        judge_raise(case, outcomes, count)
        STATS.outcomes["rejected"] += count
        return False
    for name, got, want in zip(names, fr, rr):
        if name == "cache":
            if (got is None) != (want is None):
                raise Mismatch(f"cache: fast {got!r} vs reference {want!r}\ncase: {case}")
            continue
        close(got, want, name, case)
    STATS.outcomes["agreed"] += count
    return True


def forward_fn(mod, cell):
    return getattr(mod, f"{cell}_forward")


def backward_fn(mod, cell):
    return getattr(mod, f"{cell}_backward")


# -- one case -----------------------------------------------------------------------------------

@st.composite
def forward_case(draw):
    cell, variant = draw(st.sampled_from(CELLS))
    G = GATES[cell]
    huge = draw(st.sampled_from([None] * 15 + HUGE))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    tokens = draw(st.booleans())
    if huge is None:
        T, B = draw(st.integers(0, 5)), draw(st.integers(0, 4))
        D, H = draw(st.integers(1, 5)), draw(st.integers(1, 6))
        if draw(st.integers(0, 15)) == 0:        # zero-sized D or H: a clear error
            D, H = draw(st.sampled_from([(0, H), (D, 0)]))
    else:
        T, B, D, H = huge[1]
    token_dtype = draw(st.sampled_from(["int64", "int64", "int32", "uint8", "int8", "uint64"]))
    token_range = draw(st.sampled_from(["ok"] * 6 + ["negative", "too-large", "huge"]))
    changes = {name: draw(arg_change()) if draw(st.integers(0, 2)) == 0 else ("c", "none", "", 0)
               for name in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")}
    states = {name: draw(st.sampled_from(["given", "given", "None"])) for name in ("h0", "c0")}
    kw = {"training": draw(st.sampled_from(TRAINING)), "n_threads": draw(st.sampled_from(N_THREADS))}
    if cell == "rnn":
        kw["nonlinearity"] = variant if draw(st.integers(0, 3)) else draw(st.sampled_from(NONLIN))
    elif cell == "gru":
        kw["linear_before_reset"] = cell_kwargs(cell, variant)["linear_before_reset"] \
            if draw(st.integers(0, 3)) else \
            draw(st.sampled_from(LBR))
    value_seed = draw(st.integers(0, 2**32 - 1))
    key = (cell, variant, dtype, tokens, huge[0] if huge else (T, B, D, H), token_dtype,
           token_range if tokens else "", tuple(sorted((k, v[:2] + ((v[2],) if v[1] == "dtype" else ()))
                                                      for k, v in changes.items())),
           tuple(sorted(states.items())), tuple(sorted((k, repr(v)) for k, v in kw.items())))
    return dict(cell=cell, variant=variant, G=G, T=T, B=B, D=D, H=H, dtype=dtype, tokens=tokens,
                huge=huge[0] if huge else None, token_dtype=token_dtype, token_range=token_range,
                changes=changes, states=states, kw=kw, seed=value_seed, key=key)


def build_forward_args(c):
    rng = np.random.default_rng(c["seed"])
    T, B, D, H, G, dt = c["T"], c["B"], c["D"], c["H"], c["G"], np.dtype(c["dtype"])
    k = 1 / np.sqrt(max(H, 1))

    def arr(shape, scale=1.0):
        if c["huge"] is not None and np.prod(shape, dtype=object) > 2**20:
            return np.broadcast_to(dt.type(scale * 0.1), shape)       # costs no memory
        return (scale * rng.uniform(-1, 1, shape)).astype(dt)

    if c["tokens"]:
        tdt = np.dtype(c["token_dtype"])
        hi = min(D, np.iinfo(tdt).max + 1)
        if c["huge"] is not None and T * B > 2**20:
            x = np.broadcast_to(np.zeros((1, 1), tdt), (T, B))
        else:
            x = rng.integers(0, max(hi, 1), (T, B)).astype(tdt)
            if x.size and c["token_range"] != "ok":
                bad = {"negative": -1, "too-large": D, "huge": 2**62}[c["token_range"]]
                info = np.iinfo(tdt)
                if info.min <= bad <= info.max:
                    x.reshape(-1)[c["seed"] % x.size] = bad
    else:
        x = arr((T, B, D))
    vals = {"x": x, "h0": arr((B, H), 0.5), "c0": arr((B, H), 0.5),
            "w_ih": arr((G * H, D), k), "w_hh": arr((G * H, H), k),
            "b_ih": arr((G * H,), k), "b_hh": arr((G * H,), k)}
    for name in ("h0", "c0"):
        if c["states"][name] == "None":
            vals[name] = None
    out = {}
    for name, v in vals.items():
        change = c["changes"][name]
        if v is None or (c["huge"] is not None and max(v.size, *v.shape) > 2**20):
            out[name] = v            # no copies of a huge view
        else:
            out[name] = finish(v, change)
    if c["cell"] == "lstm":
        return [out["x"], out["h0"], out["c0"], out["w_ih"], out["w_hh"], out["b_ih"], out["b_hh"]]
    return [out["x"], out["h0"], out["w_ih"], out["w_hh"], out["b_ih"], out["b_hh"]]


def describe(c, extra=""):
    d = {k: v for k, v in c.items() if k != "key"}
    return json.dumps(d, default=repr) + extra


@st.composite
def backward_case(draw):
    return {"dy": draw(st.sampled_from(["given", "given", "None"])),
            "dh_n": draw(st.sampled_from(["given", "None"])),
            "dc_n": draw(st.sampled_from(["given", "None"])),
            "changes": {n: draw(arg_change()) if draw(st.integers(0, 3)) == 0 else ("c", "none", "", 0)
                        for n in ("dy", "dh_n", "dc_n")},
            "cache": draw(st.sampled_from(CACHES)),
            "n_threads": draw(st.sampled_from(N_THREADS)),
            "seed": draw(st.integers(0, 2**32 - 1))}


def run_backward(c, b, fwd_outcomes, args):
    cell, variant = c["cell"], c["variant"]
    T, B, H, dt = c["T"], c["B"], c["H"], np.dtype(c["dtype"])
    rng = np.random.default_rng(b["seed"])
    grads = {"dy": (T, B, H), "dh_n": (B, H), "dc_n": (B, H)}
    vals = {}
    for name, shape in grads.items():
        vals[name] = None if b[name] == "None" else finish(rng.standard_normal(shape).astype(dt),
                                                            b["changes"][name])
    own = {"fast": fwd_outcomes[0][1][-1], "reference": fwd_outcomes[1][1][-1]}
    other_cell = "gru" if cell != "gru" else "lstm"
    if b["cache"] == "other-cell":
        oc = [(cc, vv) for cc, vv in CELLS if cc == other_cell][0]
        p = [np.zeros((GATES[other_cell] * 2, 3)), np.zeros((GATES[other_cell] * 2, 2)),
             np.zeros(GATES[other_cell] * 2), np.zeros(GATES[other_cell] * 2)]
        x = np.zeros((1, 1, 3))
        kwo = {"nonlinearity": oc[1]} if other_cell == "rnn" else \
            {"linear_before_reset": True} if other_cell == "gru" else {}
        pre = [x, None, None] if other_cell == "lstm" else [x, None]
        oth = forward_fn(fastgates, other_cell)(*pre, *p, **kwo)[-1]
    caches = {"own": own, "cross": {"fast": own["reference"], "reference": own["fast"]},
              "None": {"fast": None, "reference": None},
              "dict": {"fast": {"hs": 1}, "reference": {"hs": 1}}}
    if b["cache"] == "other-cell":
        caches["other-cell"] = {"fast": oth, "reference": oth}
    if b["cache"] == "inference":
        kw = dict(c["kw"], training=False)
        caches["inference"] = {n: forward_fn(m, cell)(*args, **kw)[-1] for n, m in BACKENDS.items()}
    chosen = caches[b["cache"]]
    gargs = [vals["dy"], vals["dh_n"]] + ([vals["dc_n"]] if cell == "lstm" else [])
    before = copies(gargs)
    case = describe(c, " backward=" + json.dumps(b, default=repr))
    trace(case)
    outcomes = [call(backward_fn(m, cell), gargs + [chosen[n]], {"n_threads": b["n_threads"]})
                for n, m in BACKENDS.items()]
    if not unchanged(before, gargs):
        raise Mismatch(f"backward modified its inputs\ncase: {case}")
    names = ["dx", "dh0"] + (["dc0"] if cell == "lstm" else []) + ["dw_ih", "dw_hh", "db_ih", "db_hh"]
    ok = compare(case, outcomes, names)
    if ok:   # a second backward of the same cache returns the same (overwrite, not accumulate)
        again = call(backward_fn(fastgates, cell), gargs + [chosen["fast"]], {"n_threads": 1})
        compare(case + " (second call, n_threads=1)", [again, outcomes[1]], names, count=False)
    return (b["cache"], b["dy"], b["dh_n"], b["dc_n"],
            tuple(sorted((k, v[:2]) for k, v in b["changes"].items())), repr(b["n_threads"]))


def one_case(data):
    c = data.draw(forward_case())
    args = build_forward_args(c)
    case = describe(c)
    trace(case)
    before = copies(args)
    kw = c["kw"]
    outcomes = [call(forward_fn(m, c["cell"]), args, kw) for m in BACKENDS.values()]
    STATS.calls += 1
    if not unchanged(before, args):
        raise Mismatch(f"forward modified its inputs\ncase: {case}")
    names = ["y", "h_n"] + (["c_n"] if c["cell"] == "lstm" else []) + ["cache"]
    ok = compare(case, outcomes, names)
    key = c["key"]
    if ok and outcomes[0][1][-1] is not None:
        b = data.draw(backward_case())
        key = key + run_backward(c, b, outcomes, args)
        STATS.calls += 1
        STATS.backward_calls += 1
    STATS.keys.add(key)


def main(argv=None):
    global TRACE
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--memory-limit-gb", type=float, default=8.0)
    a = ap.parse_args(argv)
    TRACE = a.trace
    # A missing size guard must fail as MemoryError here, not take the machine's memory.
    # (Not under AddressSanitizer: its shadow memory reserves terabytes of address space.)
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        lim = int(a.memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    @seed(a.seed)
    @settings(max_examples=a.examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data):
        one_case(data)

    failure = None
    try:
        fuzz()
    except Exception as exc:  # hypothesis re-raises the shrunk failing case
        subs = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
        failure = "\n\n".join(f"{type(e).__name__}: {e}" if isinstance(e, Mismatch) else
                                "".join(traceback.format_exception(e)) for e in subs)
    with open(a.out, "w") as f:
        json.dump({"examples": a.examples, "seed": a.seed, "calls": STATS.calls,
                   "backward_calls": STATS.backward_calls, "distinct": len(STATS.keys),
                   "outcomes": dict(STATS.outcomes), "exceptions": dict(STATS.exceptions),
                   "failure": failure}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
