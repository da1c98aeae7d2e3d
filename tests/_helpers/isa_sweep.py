"""Run in a child process under one instruction-set level (FASTGATES_ISA): every kernel
against the NumPy reference at sizes that exercise every tail of every level's vectors
and tiles, dense and ragged, float input and token ids, float32 and float64; every output
bit-identical for n_threads 1, 2 and 3; and the streaming step bit-identical to the
sequence forward.  First the level's vector sigmoid/tanh (_helpers.activations).  Prints one line "ok <level> <cases>"; any mismatch raises."""

import sys

import numpy as np

import conftest as C
import fastgates
from fastgates import _recurrence, cells, reference

from _helpers import activations

# H: below one vector, odd, just past 16 and 32 lanes, not a multiple of any panel;
# B: one row, a partial tile, several tiles with a remainder, enough rows for BPTT to form
# dx inside its loop (_recurrence's RIDE_DX_ROWS); D: 1, odd, past one panel of 4 vectors;
# T*B past OWN_GEMM_ROWS (the weight gradients by the kernels' product, gemm_tn, with the
# GRU lbr's n-gate columns of dW_ih from dnx in a panel that straddles 2H)
SHAPES = [(3, 1, 1, 1), (4, 5, 7, 17), (3, 13, 29, 33), (2, 7, 3, 70), (2, 35, 70, 21),
          (9, 29, 11, 37)]


def check_gemm_tn(rng):
    """The weight-gradient product alone: K past its chunk of 1536 rows (the chunks after
    the first add to C), a second left operand whose columns past N1 come from B2, stored
    plain and transposed; bit-identical for 1, 2 and 3 threads."""
    for dtype in C.DTYPES:
        for K, M, N, M2, N2 in [(3100, 13, 75, 5, 21), (300, 37, 111, 19, 37), (7, 3, 9, 2, 0)]:
            A, B = rng.standard_normal((K, M)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
            A2, B2 = rng.standard_normal((K, M2)).astype(dtype), rng.standard_normal((K, N2)).astype(dtype)
            want = (A.T.astype(np.float64) @ B, A2.T.astype(np.float64) @ np.hstack([B[:, :N - N2], B2]))
            first = None
            for trans in (False, True):
                for nt in (1, 2, 3):
                    got = _recurrence.gemm_tn(A, B, nt, A2, B2 if N2 else None, trans=trans)
                    case = f"gemm_tn K={K} M={M} N={N} M2={M2} N2={N2} {dtype.__name__} trans={trans} nt={nt}"
                    if first is None:
                        for g, w in zip(got, want):
                            np.testing.assert_allclose(g, w, rtol=0, atol=C.ATOL[np.dtype(dtype)] * K,
                                                       err_msg=case)
                        first = got
                    for g, f in zip(got, first):
                        C.assert_equal(g, f, case)


def run(level):
    assert _recurrence.isa_active() == level, (_recurrence.isa_active(), level)
    activations.check_all()
    rng = np.random.default_rng(7)
    check_gemm_tn(rng)
    n = 0
    for cell, variant in C.CELLS:
        for dtype in C.DTYPES:
            for T, B, D, H in SHAPES:
                for tokens in (False, True):
                    for ragged in (False, True):
                        p = C.make_params(rng, cell, D, H, dtype)
                        x = C.make_x(rng, T, B, D, dtype, tokens)
                        h0, c0 = C.make_state(rng, B, H, dtype), C.make_state(rng, B, H, dtype)
                        kw = {"lengths": rng.integers(0, T + 1, B)} if ragged else {}
                        case = C.case_id(level=level, cell=cell, variant=variant, dtype=dtype,
                                         shape=(T, B, D, H), tokens=tokens, ragged=ragged)
                        dy, dh, dc = C.make_grad_outputs(rng, T, B, H, dtype)
                        ref = C.forward(reference, cell, variant, x, h0, c0, p, **kw)
                        gref = C.backward(reference, cell, dy, dh, dc, ref.cache)
                        first = None
                        for nt in (1, 2, 3):
                            out = C.forward(fastgates, cell, variant, x, h0, c0, p, n_threads=nt, **kw)
                            g = C.backward(fastgates, cell, dy, dh, dc, out.cache, n_threads=nt)
                            if first is None:
                                C.assert_outputs_close(out, ref, dtype, case)
                                C.assert_grads_close(g, gref, dtype, case)
                                first = (out, g)
                            else:
                                for name in ("y", "h_n", "c_n"):
                                    C.assert_equal(getattr(out, name), getattr(first[0], name),
                                                   f"{name} [{case} n_threads={nt} vs 1]")
                                for name in g:
                                    C.assert_equal(g[name], first[1][name], f"{name} [{case} n_threads={nt} vs 1]")
                            inf = C.forward(fastgates, cell, variant, x, h0, c0, p, n_threads=nt,
                                            training=False, **kw)
                            for name in ("y", "h_n", "c_n"):
                                C.assert_equal(getattr(inf, name), getattr(first[0], name),
                                               f"{name} [{case} inference n_threads={nt}]")
                        if not ragged:
                            _check_step(cell, variant, x, h0, c0, p, first[0], case)
                        n += 1
    print("ok", level, n)


def _check_step(cell, variant, x, h0, c0, p, full, case):
    """T calls of the streaming step equal one forward over T steps, bit for bit."""
    code = next(c.code for c in cells.CELLS.values() if (c.kernel, c.variant) == (cell, variant))
    layer = _recurrence.pack_layer(code, *(np.ascontiguousarray(a) for a in p), 2)
    h = h0[None].copy()
    c = c0[None].copy() if cell == "lstm" else None
    for t in range(x.shape[0]):
        xt = np.ascontiguousarray(x[t]) if x.dtype.kind == "f" else np.ascontiguousarray(x[t], np.int64)
        h, c = _recurrence.step([layer], xt, h, c, 2)
        C.assert_equal(h[0], full.y[t], f"step {t} [{case}]")


if __name__ == "__main__":
    run(sys.argv[1])
