"""Every kernel once per cell form, dtype, input kind and thread count, checked against the
reference: the workload of tools/valgrind.sh (small, because memcheck is ~50x slower).
Every cell of the table runs through ``cell_forward`` / ``cell_backward`` with its
parameters by name."""

import numpy as np

import fastgates
import fastgates.reference as ref
from fastgates import cells


def main():
    rng = np.random.default_rng(0)
    T, B, D, H = 5, 3, 7, 19           # H not a multiple of the 8/16-unit blocks: tail paths
    n = 0
    for cell in cells.CELLS.values():
        shapes = cells.param_shapes(cell, D, H)
        for dtype in (np.float32, np.float64):
            p = {s: (rng.standard_normal(v) * 0.3).astype(dtype) for s, v in shapes.items()}
            h0 = rng.standard_normal((B, H)).astype(dtype)
            dy = rng.standard_normal((T, B, H)).astype(dtype)
            states = {s: h0 for s in cell.states}
            for x in (rng.standard_normal((T, B, D)).astype(dtype), rng.integers(0, D, (T, B))):
                for nt in (1, 2):
                    outs = []
                    for mod in (fastgates, ref):
                        y, _, cache = mod.cell_forward(cell, x, states, p, n_threads=nt)
                        g = mod.cell_backward(cell, dy, states, cache, n_threads=nt)
                        yi = mod.cell_forward(cell, x, states, p, training=False, n_threads=nt)[0]
                        outs.append((y, yi, [g.dx, *g.state_grads.values(), *g.param_grads.values()]))
                    (y1, yi1, g1), (y2, yi2, g2) = outs
                    tol = 1e-4 if dtype == np.float32 else 1e-10
                    assert np.allclose(y1, y2, rtol=tol, atol=tol), (cell, dtype, nt)
                    assert np.allclose(yi1, y1, rtol=tol, atol=tol), (cell, dtype, nt)
                    for a, b in zip(g1, g2):
                        assert (a is None) == (b is None)
                        if a is not None:
                            assert np.allclose(a, b, rtol=tol, atol=tol), (cell, dtype, nt)
                    n += 1
    print(f"valgrind smoke: {n} forward/backward/inference cases agree with the reference")


if __name__ == "__main__":
    main()
