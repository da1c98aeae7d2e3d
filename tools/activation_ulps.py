"""Exhaustive accuracy of the kernels' float32 sigmoid and tanh at the active level.

    python tools/activation_ulps.py [LIMIT]          # every float32 in [-LIMIT, LIMIT], default 100
    FASTGATES_ISA=generic python tools/activation_ulps.py

Every float32 x with |x| <= LIMIT (about 2.2e9 values at the default) through
fastgates._recurrence.activation (the vector code the gate math inlines), against the
exactly rounded value from float64 (sigmoid 1/(1+exp(-x)), tanh(x): errors of ~1e-16,
negligible at float32's 6e-8).  Prints, per function and sign, the largest error in units
in the last place of the exact value and where it occurs, and counts results outside
[0, 1] resp. [-1, 1].  Exit status 1 when an error exceeds --max-ulps (default 3: the
tests allow 4 on sampled points).  Where the exact sigmoid is subnormal (x below ~-87.3)
the kernels return it or 0 (the exp is clamped at 2^-127 resp. +inf): there the check is
only 0 <= s <= 2^-125.  Takes about two minutes (single-threaded NumPy).
"""

import argparse
import sys

import numpy as np

from fastgates import _recurrence

CHUNK = 1 << 22
TINY = np.float32(2.0 ** -126)


def _ulp_of(exact64):
    """The spacing of float32 at each exactly rounded value (below the value for exact
    powers of two approached from below is not distinguished: at most a factor 2 looser)."""
    e = np.abs(exact64.astype(np.float32))
    return np.spacing(e).astype(np.float64)


def check(kind, negative, limit):
    """Largest ulp error and its x over every float32 of one sign up to limit."""
    top = int(np.float32(limit).view(np.uint32))
    worst, at, outside = 0.0, 0.0, 0
    for start in range(0, top + 1, CHUNK):
        bits = np.arange(start, min(start + CHUNK, top + 1), dtype=np.uint32)
        x = bits.view(np.float32)
        if negative:
            x = -x
        got = _recurrence.activation(kind, x)
        x64 = x.astype(np.float64)
        with np.errstate(over="ignore"):
            exact = 1 / (1 + np.exp(-x64)) if kind == 0 else np.tanh(x64)
        lo, hi = (0, 1) if kind == 0 else (-1, 1)
        outside += int(np.count_nonzero((got < lo) | (got > hi) | np.isnan(got)))
        keep = slice(None)
        if kind == 0 and negative:     # a subnormal exact sigmoid: only its size is checked
            sub = exact < TINY
            outside += int(np.count_nonzero(sub & (got > 2 * TINY)))
            keep = ~sub
        err = np.abs(got[keep].astype(np.float64) - exact[keep]) / _ulp_of(exact[keep])
        if err.size:
            i = int(np.argmax(err))
            if err[i] > worst:
                worst, at = float(err[i]), float(x[keep][i])
    return worst, at, outside


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("limit", nargs="?", type=float, default=100.0)
    p.add_argument("--max-ulps", type=float, default=3.0)
    args = p.parse_args(argv)
    print(f"level {_recurrence.isa_active()}, every float32 in [-{args.limit:g}, {args.limit:g}]")
    ok = True
    for kind, name in ((0, "sigmoid"), (1, "tanh")):
        for negative in (False, True):
            worst, at, outside = check(kind, negative, args.limit)
            bad = worst > args.max_ulps or outside
            ok &= not bad
            print(f"{name:8s} {'x < 0' if negative else 'x >= 0'}: max {worst:.3f} ulp at "
                  f"x = {at:.9g}; outside the range: {outside}{'   FAIL' if bad else ''}",
                  flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
