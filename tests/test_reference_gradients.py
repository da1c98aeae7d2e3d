"""The reference's backward pass against central finite differences (float64).

The scalar loss is L = sum(dy * y) + sum(dh_n * h_n) (+ sum(dc_n * c_n) for the
LSTM), so the backward pass called with (dy, dh_n, dc_n) must return dL/d(every
input).  Each entry of every input is perturbed by +-EPS; the relative error
max|numerical - analytical| / max|gradient| must stay below 1e-6.  A comparison of zero
with zero proves nothing (a forward pass that ignores a parameter and a backward pass
that returns zeros for it would agree), so every gradient checked here must be non-zero;
the case with no gradient source at all is checked exactly, by
test_no_gradient_sources_give_zero_gradients.
"""

import numpy as np
import pytest

from conftest import (CELL_IDS, CELLS, backward, numerical_gradient, case_id, forward, grad_sources,
                      make_grad_outputs, make_params, make_state, make_x)

T, B, D, H = 3, 2, 3, 4
EPS = 1e-6
MAX_REL_ERR = 1e-6




def relative_error(numerical, analytical, what):
    scale = max(np.abs(numerical).max(initial=0), np.abs(analytical).max(initial=0))
    assert scale > 0, (f"{what}: the loss does not depend on it and its gradient is zero: "
                       "a comparison of 0 with 0 checks nothing")
    return np.abs(numerical - analytical).max(initial=0) / scale


SOURCES = [pytest.param(cell, variant, source, id=f"{cid}-{source}")
           for (cell, variant), cid in zip(CELLS, CELL_IDS) for source in grad_sources(cell)
           if source != "none"]


@pytest.mark.parametrize("states", ["given", "none"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("cell,variant,source", SOURCES)
def test_gradients_match_finite_differences(ref, cell, variant, source, tokens, states, rng):
    use_dy, use_dh, use_dc = grad_sources(cell)[source]
    case = case_id(cell=cell, variant=variant, tokens=tokens, states=states, source=source)
    lstm = cell == "lstm"

    p = make_params(rng, cell, D, H, np.float64)
    x = make_x(rng, T, B, D, np.float64, tokens)
    h0, c0 = make_state(rng, B, H, np.float64), make_state(rng, B, H, np.float64)
    dy, dh_n, dc_n = make_grad_outputs(rng, T, B, H, np.float64)
    dy, dh_n = (dy if use_dy else None), (dh_n if use_dh else None)
    dc_n = dc_n if use_dc and lstm else None
    if states == "none":
        h0_arg = c0_arg = None
        h0[...] = 0          # the finite differences then run around the zero state
        c0[...] = 0
    else:
        h0_arg, c0_arg = h0, c0

    out = forward(ref, cell, variant, x, h0_arg, c0_arg if lstm else None, p)
    grads = backward(ref, cell, dy, dh_n, dc_n, out.cache)

    def loss():
        o = forward(ref, cell, variant, x, h0, c0, p, training=False)
        total = 0.0
        for d, v in ((dy, o.y), (dh_n, o.h_n), (dc_n, o.c_n)):
            if d is not None:
                total += float(np.sum(d * v))
        return total

    wrt = {"dh0": h0, "dw_ih": p.w_ih, "dw_hh": p.w_hh, "db_ih": p.b_ih, "db_hh": p.b_hh}
    if not tokens:
        wrt["dx"] = x
    if lstm:
        wrt["dc0"] = c0
    if tokens:
        assert grads["dx"] is None, f"dx must be None for token ids [{case}]"
    for name, arr in wrt.items():
        analytical = grads[name]
        assert analytical.shape == arr.shape, f"{name} shape {analytical.shape} [{case}]"
        assert analytical.dtype == np.float64, f"{name} dtype {analytical.dtype} [{case}]"
        err = relative_error(numerical_gradient(loss, arr), analytical, f"{name} [{case}]")
        assert err < MAX_REL_ERR, f"{name}: relative error {err:.3g} [{case}]"


@pytest.mark.parametrize("cell,variant", CELLS, ids=CELL_IDS)
def test_no_gradient_sources_give_zero_gradients(ref, cell, variant, rng):
    """dy = dh_n = dc_n = None: every gradient is exactly zero, dh0/dc0 included."""
    p = make_params(rng, cell, D, H, np.float64)
    out = forward(ref, cell, variant, make_x(rng, T, B, D, np.float64, False), None, None, p)
    grads = backward(ref, cell, None, None, None, out.cache)
    case = case_id(cell=cell, variant=variant)
    for name, g in grads.items():
        assert g is not None and not np.any(g), f"{name} is not zero [{case}]"


def test_lstm_mixed_initial_states(ref, rng):
    """h0 given with c0 None, and the other way round, against finite differences."""
    p = make_params(rng, "lstm", D, H, np.float64)
    x = make_x(rng, T, B, D, np.float64, False)
    dy, dh_n, dc_n = make_grad_outputs(rng, T, B, H, np.float64)
    for given in ("h0", "c0"):
        h0 = make_state(rng, B, H, np.float64) if given == "h0" else np.zeros((B, H))
        c0 = make_state(rng, B, H, np.float64) if given == "c0" else np.zeros((B, H))
        out = forward(ref, "lstm", "", x, h0 if given == "h0" else None,
                      c0 if given == "c0" else None, p)
        grads = backward(ref, "lstm", dy, dh_n, dc_n, out.cache)

        def loss():
            o = forward(ref, "lstm", "", x, h0, c0, p, training=False)
            return float(np.sum(dy * o.y) + np.sum(dh_n * o.h_n) + np.sum(dc_n * o.c_n))

        for name, arr in (("dh0", h0), ("dc0", c0), ("dw_hh", p.w_hh)):
            err = relative_error(numerical_gradient(loss, arr), grads[name], f"{name} [{given}]")
            assert err < MAX_REL_ERR, f"{name}: relative error {err:.3g} [only {given} given]"
