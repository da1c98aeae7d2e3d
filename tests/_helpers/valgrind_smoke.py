"""Every kernel once per cell form, dtype, input kind and thread count, checked against the
reference: the workload of tools/valgrind.sh (small, because memcheck is ~50x slower)."""

import numpy as np

import fastgates
import fastgates.reference as ref
from fastgates import cells

#: (kernel family, the keyword that picks the cell) of every cell of the table.
CELLS = [(c.kernel, dict([c.option]) if c.option else {}) for c in cells.CELLS.values()]


def main():
    rng = np.random.default_rng(0)
    T, B, D, H = 5, 3, 7, 19           # H not a multiple of the 8/16-unit blocks: tail paths
    n = 0
    for cell, kw in CELLS:
        G = cells.families()[cell][0].G
        for dtype in (np.float32, np.float64):
            w = [(rng.standard_normal(s) * 0.3).astype(dtype)
                 for s in ((G * H, D), (G * H, H), (G * H,), (G * H,))]
            h0 = rng.standard_normal((B, H)).astype(dtype)
            dy = rng.standard_normal((T, B, H)).astype(dtype)
            for x in (rng.standard_normal((T, B, D)).astype(dtype), rng.integers(0, D, (T, B))):
                for nt in (1, 2):
                    states = (h0, h0) if cell == "lstm" else (h0,)
                    outs = []
                    for mod in (fastgates, ref):
                        o = getattr(mod, f"{cell}_forward")(x, *states, *w, n_threads=nt, **kw)
                        grads = (dy, h0, h0) if cell == "lstm" else (dy, h0)
                        g = getattr(mod, f"{cell}_backward")(*grads, o[-1], n_threads=nt)
                        y = getattr(mod, f"{cell}_forward")(x, *states, *w, training=False,
                                                            n_threads=nt, **kw)[0]
                        outs.append((o[0], y, g))
                    (y1, yi1, g1), (y2, yi2, g2) = outs
                    tol = 1e-4 if dtype == np.float32 else 1e-10
                    assert np.allclose(y1, y2, rtol=tol, atol=tol), (cell, kw, dtype, nt)
                    assert np.allclose(yi1, y1, rtol=tol, atol=tol), (cell, kw, dtype, nt)
                    for a, b in zip(g1, g2):
                        assert (a is None) == (b is None)
                        if a is not None:
                            assert np.allclose(a, b, rtol=tol, atol=tol), (cell, kw, dtype, nt)
                    n += 1
    print(f"valgrind smoke: {n} forward/backward/inference cases agree with the reference")


if __name__ == "__main__":
    main()
