"""Pure-NumPy reference of the fastgates kernels: the readable specification.

Design: the same six public functions as the compiled fast path, with the same
signatures, validation (``fastgates._checks``) and results, written for clarity
rather than speed, plus the same generic pair :func:`cell_forward` /
:func:`cell_backward` for every cell of :mod:`fastgates.cells`.  One time loop
(:func:`_run_forward`) drives every cell through its per-step helper, named by the
table (``CellDef.step`` = "gru" -> ``_gru_step``), and one backward loop
(:func:`_run_backward`) walks ``t = T-1 ... 0`` through the matching
``_<step>_step_backward``.  As in the compiled core, the input projection
``x_t w_ih^T`` of all ``T*B`` rows is one product before the loop (a gather of
columns of ``w_ih`` for token ids; each step adds ``b_ih``), and the weight, bias and
input gradients are single products/reductions over all ``T*B`` rows after it.
The backward pass differentiates through the cached post-activations
(sigmoid' = s(1-s), tanh' = 1-t^2, relu' = [h > 0]).

Variable lengths (``lengths=``) are a mask on the same loops: step t updates only
the rows whose sequence is still running (``lengths > t``), every other row keeps
its state (so h_n is each row's state after its last step), y stays zero there, and
backward takes gradients at the running rows only.  The cache stores its arrays in
the packed layout of :class:`fastgates._checks.Packing`, the same as the fast path's.

Conventions shared with the fast path:

* Sequence first: ``x`` is ``(T, B, D)`` (or ``(T, B)`` integer token ids in
  ``[0, D)``, meaning one-hot inputs), ``y`` is ``(T, B, H)``, states are ``(B, H)``.
* PyTorch's weight layout, so a ``torch.nn.RNN/GRU/LSTM`` state_dict loads as is:
  ``w_ih`` is ``(G*H, D)``, ``w_hh`` is ``(G*H, H)``, ``b_ih`` and ``b_hh`` are
  ``(G*H,)``; gate order GRU ``r, z, n`` and LSTM ``i, f, g, o``.
* float32 or float64; every array of a call has the same dtype, and all
  arithmetic happens in that dtype (float32 is never silently upcast).
* Inputs are never modified; returned arrays are freshly allocated and never
  share memory with the cache.  Backward overwrites, it does not accumulate.
* NaN and Inf propagate to the outputs; floating-point warnings are silenced.
* The LayerNorm cells (``lnlstm``, ``lngru``) normalise rows over all their G*H gate
  entries (and the LSTM's c_t over H) with the biased variance and eps = 1e-5 inside
  the square root, PyTorch's ``nn.LayerNorm``; their steps run through
  :func:`cell_forward` / :func:`cell_backward`.
* ``n_threads`` is validated like in the fast path and otherwise ignored.
"""

from __future__ import annotations

import sys
from typing import NamedTuple, Optional

import numpy as np

from fastgates import cells
from fastgates._checks import (
    Cache,
    Grads,
    LSTMGrads,
    check_backward,
    check_forward,
    check_mapping,
    check_n_threads,
    kernel_params,
    make_grads,
    select_cell,
)

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward",
           "lstm_forward", "lstm_backward", "cell_forward", "cell_backward", "cell_step",
           "Cache", "Grads", "LSTMGrads"]


# Element-wise activations.  All of them keep the dtype of their argument.

def _sigmoid(a):
    """Logistic sigmoid 1 / (1 + exp(-a)) without overflow.

    exp(-|a|) lies in [0, 1], so 1/(1+e) (a >= 0) and e/(1+e) (a < 0) never
    overflow; NaN stays NaN and +-Inf map to exactly 1 and 0.
    """
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _relu(a):
    """max(a, 0), propagating NaN."""
    return np.maximum(a, 0)


# One time step of each cell.  Every forward step gets the precomputed input
# projection xw = x_t w_ih^T of shape (B, G*H), the previous state, the layer's
# parameters by stem (``p["weight_hh"]``, ``p["bias_ih"]``, ...) and its CellDef (the
# cells that share a step tell themselves apart by name), and returns the new state plus
# what backward needs.

class _Step(NamedTuple):
    h: np.ndarray                       # (B, H) h_t
    c: Optional[np.ndarray] = None      # (B, H) c_t (lstm)
    gates: Optional[np.ndarray] = None  # (B, G*H) post-activation gates (gru, lstm)
    extra: Optional[np.ndarray] = None  # (B, H) gru: h W_hn^T + b_hn (lbr) or r * h (rb)
    tc: Optional[np.ndarray] = None     # (B, H) lstm tanh(c_t)
    saved: Optional[dict] = None        # name -> (B, X): anything else a cell keeps (Cache.saved)


class _StepGrad(NamedTuple):
    da_x: np.ndarray                    # (B, G*H) dL/d(input-side pre-activation incl. b_ih)
    da_h: np.ndarray                    # (B, G*H) dL/d(recurrent pre-activation incl. b_hh)
    dh: np.ndarray                      # (B, H) dL/dh_{t-1}
    dc: Optional[np.ndarray] = None     # (B, H) dL/dc_{t-1} (lstm)
    dxw: Optional[np.ndarray] = None    # (B, G*H) dL/d(x_t w_ih^T) where it is not da_x
    dhw: Optional[np.ndarray] = None    # (B, G*H) dL/d(h_{t-1} w_hh^T) where it is not da_h
    dparams: Optional[dict] = None      # stem -> this step's share of an extra parameter's grad


def _rnn_step(xw, h, c, p, cell):
    """h_t = phi(x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh), phi = tanh or relu."""
    a = xw + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    return _Step(h=np.tanh(a) if cell.name == "rnn_tanh" else _relu(a))


class _Saved(NamedTuple):
    """What the forward pass saved for one step (the rows being differentiated)."""
    h_prev: np.ndarray                  # (B, H) h_{t-1}
    h: np.ndarray                       # (B, H) h_t
    gates: Optional[np.ndarray]         # (B, G*H)
    extra: Optional[np.ndarray]         # (B, H) gru
    c_prev: Optional[np.ndarray]        # (B, H) lstm c_{t-1}
    tc: Optional[np.ndarray]            # (B, H) lstm tanh(c_t)
    w_hh: np.ndarray
    cell: cells.CellDef
    p: dict                             # the parameters by stem (the biases are not kept)
    saved: Optional[dict]               # name -> (B, X) rows of Cache.saved
    c: Optional[np.ndarray] = None      # (B, H) lstm c_t


def _rnn_step_backward(dh, dc, s):
    """da = dh * phi'(h_t) with tanh' = 1 - h_t^2, relu' = [h_t > 0]; dh_{t-1} = da w_hh."""
    h = s.h
    da = dh * (1 - h * h) if s.cell.name == "rnn_tanh" else dh * (h > 0)
    return _StepGrad(da_x=da, da_h=da, dh=da @ s.w_hh)


def _gru_step(xw, h, c, p, cell):
    """One GRU step, gates r, z, n.

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))      linear before reset ("gru")
    n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn)      reset before ("gru_rb")
    h_t = z * h + (1 - z) * n
    """
    H = h.shape[1]
    w_hh, b_hh = p["weight_hh"], p["bias_hh"]
    xp = xw + p["bias_ih"]
    xr, xz, xn = xp[:, :H], xp[:, H:2 * H], xp[:, 2 * H:]
    if cell.name == "gru":
        hp = h @ w_hh.T + b_hh
        r = _sigmoid(xr + hp[:, :H])
        z = _sigmoid(xz + hp[:, H:2 * H])
        extra = hp[:, 2 * H:]                              # h W_hn^T + b_hn
        n = np.tanh(xn + r * extra)
    else:
        hp = h @ w_hh[:2 * H].T + b_hh[:2 * H]
        r = _sigmoid(xr + hp[:, :H])
        z = _sigmoid(xz + hp[:, H:])
        extra = r * h                                      # r * h
        n = np.tanh(xn + extra @ w_hh[2 * H:].T + b_hh[2 * H:])
    h_new = z * h + (1 - z) * n
    return _Step(h=h_new, gates=np.concatenate([r, z, n], axis=1), extra=extra)


def _gru_step_backward(dh, dc, s):
    """Gradients of one GRU step through the cached r, z, n.

    dn = dh (1 - z),  dz = dh (h_{t-1} - n),  dn_pre = dn (1 - n^2),
    gru:    dr = dn_pre * (h W_hn^T + b_hn); the recurrent n-gradient is r * dn_pre,
    gru_rb: d(r h) = dn_pre W_hn, dr = d(r h) * h_{t-1}; the recurrent n-gradient is
         dn_pre (its weight gradient pairs with r * h, see _run_backward).
    dr_pre = dr r (1 - r),  dz_pre = dz z (1 - z).
    """
    H = dh.shape[1]
    gates, h_prev, extra, w_hh = s.gates, s.h_prev, s.extra, s.w_hh
    r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    dn_pre = dh * (1 - z) * (1 - n * n)
    dz_pre = dh * (h_prev - n) * z * (1 - z)
    if s.cell.name == "gru":
        dr_pre = dn_pre * extra * r * (1 - r)
        da_x = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        da_h = np.concatenate([dr_pre, dz_pre, r * dn_pre], axis=1)
        dh_prev = dh * z + da_h @ w_hh
    else:
        drh = dn_pre @ w_hh[2 * H:]
        dr_pre = drh * h_prev * r * (1 - r)
        da_x = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        da_h = da_x
        dh_prev = dh * z + da_x[:, :2 * H] @ w_hh[:2 * H] + drh * r
    return _StepGrad(da_x=da_x, da_h=da_h, dh=dh_prev)


def _lstm_step(xw, h, c, p, cell):
    """One LSTM step, gates i, f, g, o, with the optional peepholes and projection.

    [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](x w_ih^T + b_ih + h w_hh^T + b_hh)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

    Peepholes (``weight_peep`` (3, H), rows i, f, o; ONNX's semantics): i and f add
    p_i * c_{t-1} and p_f * c_{t-1} to their pre-activations, o adds p_o * c_t.
    Projection (``weight_hr`` (P, H), PyTorch's proj_size): m_t = o * tanh(c_t) and
    h_t = m_t w_hr^T, so h (and the columns of w_hh) are P wide; m_t is saved.
    """
    H = c.shape[1]
    peep, w_hr = p.get("weight_peep"), p.get("weight_hr")
    a = xw + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    ai, af, ao = a[:, :H], a[:, H:2 * H], a[:, 3 * H:]
    if peep is not None:
        ai, af = ai + peep[0] * c, af + peep[1] * c
    i = _sigmoid(ai)
    f = _sigmoid(af)
    g = np.tanh(a[:, 2 * H:3 * H])
    c_new = f * c + i * g
    if peep is not None:
        ao = ao + peep[2] * c_new
    o = _sigmoid(ao)
    tc = np.tanh(c_new)
    m = o * tc
    return _Step(h=m if w_hr is None else m @ w_hr.T, c=c_new,
                 gates=np.concatenate([i, f, g, o], axis=1), tc=tc,
                 saved=None if w_hr is None else {"m": m})


def _lstm_step_backward(dh, dc, s):
    """Gradients of one LSTM step through the cached i, f, g, o and tanh(c_t).

    With a projection first dm = dh w_hr (and dw_hr gets dh^T m); then, with dm for dh:
    dc_t += dm o (1 - tanh(c_t)^2),  do = dm tanh(c_t),  di = dc_t g,  dg = dc_t i,
    df = dc_t c_{t-1},  dc_{t-1} = dc_t f,  then through sigmoid'/tanh' of each gate
    (pre-activation gradients da_i, da_f, da_g, da_o); dh_{t-1} = da w_hh.  Peepholes add
    da_o p_o to dc_t (before it is used) and da_i p_i + da_f p_f to dc_{t-1}; their
    gradients are da_i c_{t-1}, da_f c_{t-1}, da_o c_t summed over the rows.
    """
    H = s.tc.shape[1]
    gates, tc, c_prev = s.gates, s.tc, s.c_prev
    peep, w_hr = s.p.get("weight_peep"), s.p.get("weight_hr")
    dparams = {}
    if w_hr is not None:
        dparams["weight_hr"] = dh.T @ s.saved["m"]
        dh = dh @ w_hr                                   # dL/dm_t
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    dao = dh * tc * o * (1 - o)
    dc = dc + dh * o * (1 - tc * tc)
    if peep is not None:
        dc = dc + dao * peep[2]
    dai = dc * g * i * (1 - i)
    daf = dc * c_prev * f * (1 - f)
    da = np.concatenate([dai, daf, dc * i * (1 - g * g), dao], axis=1)
    dc_prev = dc * f
    if peep is not None:
        dc_prev = dc_prev + dai * peep[0] + daf * peep[1]
        dparams["weight_peep"] = np.stack([(dai * c_prev).sum(axis=0), (daf * c_prev).sum(axis=0),
                                           (dao * s.c).sum(axis=0)])
    return _StepGrad(da_x=da, da_h=da, dh=da @ s.w_hh, dc=dc_prev, dparams=dparams or None)


#: LayerNorm's epsilon, inside the square root (PyTorch's ``nn.LayerNorm`` default).
LN_EPS = 1e-5


def _ln(v):
    """LN over each row of ``v`` (B, N): (xhat, rstd) with xhat = (v - mean) * rstd,
    rstd = 1 / sqrt(var + eps), the biased variance; rstd has shape (B,)."""
    d = v - v.mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt((d * d).mean(axis=1, keepdims=True) + v.dtype.type(LN_EPS))
    return d * rstd, rstd[:, 0]


def _ln_backward(d, xhat, rstd, gamma):
    """dL/dv of ``gamma * LN(v) + beta`` from d = dL/d(output), per row:
    rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gamma * d."""
    g = d * gamma
    return rstd[:, None] * (g - g.mean(axis=1, keepdims=True)
                            - xhat * (g * xhat).mean(axis=1, keepdims=True))


def _lnlstm_step(xw, h, c, p, cell):
    """One LayerNorm LSTM step (gates i, f, g, o; each LN over the 4H entries of a row).

    a = ln_ih_weight * LN(x w_ih^T) + b_ih + ln_hh_weight * LN(h w_hh^T) + b_hh
    i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g),  c_t = f * c_{t-1} + i * g
    h_t = o * tanh(ln_c_weight * LN(c_t) + ln_c_bias)       (LN over the H entries)
    Keeps xhat (xn), hhat (hn), chat (cn) and the rows' rstd (B, 3: x, h, c) in ``saved``.
    """
    H = h.shape[1]
    xn, rx = _ln(xw)
    hn, rh = _ln(h @ p["weight_hh"].T)
    a = p["ln_ih_weight"] * xn + p["bias_ih"] + p["ln_hh_weight"] * hn + p["bias_hh"]
    i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H])
    g, o = np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
    c_new = f * c + i * g
    cn, rc = _ln(c_new)
    tc = np.tanh(p["ln_c_weight"] * cn + p["ln_c_bias"])
    return _Step(h=o * tc, c=c_new, gates=np.concatenate([i, f, g, o], axis=1), tc=tc,
                 saved={"xn": xn, "hn": hn, "cn": cn, "rstd": np.stack([rx, rh, rc], axis=1)})


def _lnlstm_step_backward(dh, dc, s):
    """Gradients of one LayerNorm LSTM step (tc = tanh(ln_c_weight * chat + ln_c_bias)).

    dy_c = dh o (1 - tc^2);  dc_t += LN backward of dy_c (gain ln_c_weight);
    da as in the LSTM;  dL/d(h w_hh^T), dL/d(x w_ih^T) = LN backward of da (gains
    ln_hh_weight, ln_ih_weight);  the gains' gradients sum da * hhat, da * xhat,
    dy_c * chat and dy_c over the rows.
    """
    H = dh.shape[1]
    gates, tc, c_prev, p, sv = s.gates, s.tc, s.c_prev, s.p, s.saved
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    xn, hn, cn, rs = sv["xn"], sv["hn"], sv["cn"], sv["rstd"]
    dyc = dh * o * (1 - tc * tc)
    dc = dc + _ln_backward(dyc, cn, rs[:, 2], p["ln_c_weight"])
    da = np.concatenate([dc * g * i * (1 - i),
                         dc * c_prev * f * (1 - f),
                         dc * i * (1 - g * g),
                         dh * tc * o * (1 - o)], axis=1)
    dhw = _ln_backward(da, hn, rs[:, 1], p["ln_hh_weight"])
    dparams = {"ln_ih_weight": (da * xn).sum(axis=0), "ln_hh_weight": (da * hn).sum(axis=0),
               "ln_c_weight": (dyc * cn).sum(axis=0), "ln_c_bias": dyc.sum(axis=0)}
    return _StepGrad(da_x=da, da_h=da, dh=dhw @ s.w_hh, dc=dc * f, dhw=dhw,
                     dxw=_ln_backward(da, xn, rs[:, 0], p["ln_ih_weight"]), dparams=dparams)


def _lngru_step(xw, h, c, p, cell):
    """One LayerNorm GRU step (gates r, z, n; each LN over the 3H entries of a row).

    u = ln_ih_weight * LN(x w_ih^T) + b_ih,   v = ln_hh_weight * LN(h w_hh^T) + b_hh
    r = sigmoid(u_r + v_r),  z = sigmoid(u_z + v_z),  n = tanh(u_n + r * v_n)
    h_t = z * h_{t-1} + (1 - z) * n
    Keeps v_n (extra), xhat (xn), hhat (hn) and the rows' rstd (B, 3: x, h, 0) in ``saved``.
    """
    H = h.shape[1]
    xn, rx = _ln(xw)
    hn, rh = _ln(h @ p["weight_hh"].T)
    u = p["ln_ih_weight"] * xn + p["bias_ih"]
    v = p["ln_hh_weight"] * hn + p["bias_hh"]
    r = _sigmoid(u[:, :H] + v[:, :H])
    z = _sigmoid(u[:, H:2 * H] + v[:, H:2 * H])
    n = np.tanh(u[:, 2 * H:] + r * v[:, 2 * H:])
    return _Step(h=z * h + (1 - z) * n, gates=np.concatenate([r, z, n], axis=1),
                 extra=v[:, 2 * H:],
                 saved={"xn": xn, "hn": hn, "rstd": np.stack([rx, rh, 0 * rx], axis=1)})


def _lngru_step_backward(dh, dc, s):
    """Gradients of one LayerNorm GRU step.

    dn = dh (1 - z)(1 - n^2),  dz = dh (h_{t-1} - n) z (1 - z),  dr = dn v_n r (1 - r);
    the input side's du = (dr, dz, dn), the recurrent side's dv = (dr, dz, r dn), each
    through its LN backward; dh_{t-1} = dh z + dL/d(h w_hh^T) w_hh.
    """
    H = dh.shape[1]
    p, sv, h_prev = s.p, s.saved, s.h_prev
    r, z, n = s.gates[:, :H], s.gates[:, H:2 * H], s.gates[:, 2 * H:]
    xn, hn, rs = sv["xn"], sv["hn"], sv["rstd"]
    dn = dh * (1 - z) * (1 - n * n)
    dz = dh * (h_prev - n) * z * (1 - z)
    dr = dn * s.extra * r * (1 - r)
    du = np.concatenate([dr, dz, dn], axis=1)
    dv = np.concatenate([dr, dz, r * dn], axis=1)
    dhw = _ln_backward(dv, hn, rs[:, 1], p["ln_hh_weight"])
    dparams = {"ln_ih_weight": (du * xn).sum(axis=0), "ln_hh_weight": (dv * hn).sum(axis=0)}
    return _StepGrad(da_x=du, da_h=dv, dh=dh * z + dhw @ s.w_hh, dhw=dhw,
                     dxw=_ln_backward(du, xn, rs[:, 0], p["ln_ih_weight"]), dparams=dparams)


def _gru_dw_hh(dw_hh, dah, extra, cell):
    """The reset-before n gate multiplies W_hn with r * h_{t-1}, not h_{t-1}: its rows of
    dw_hh pair the n-gradients with the cached r * h (``extra``)."""
    if cell.name == "gru_rb":
        H = extra.shape[-1]
        dw_hh[2 * H:] = dah[:, 2 * H:].T @ extra.reshape(-1, H)


def _steps(cell):
    """The step functions the table names: ``_<step>_step``, ``_<step>_step_backward`` and,
    when a cell needs to correct the generic ``dw_hh = da_h^T h_{t-1}``, ``_<step>_dw_hh``."""
    mod = sys.modules[__name__]
    return (getattr(mod, f"_{cell.step}_step"), getattr(mod, f"_{cell.step}_step_backward"),
            getattr(mod, f"_{cell.step}_dw_hh", None))


# The shared time loops.

def _state(s, B, H, dtype):
    """A fresh (B, H) copy of ``s``, or zeros when it is None."""
    return np.zeros((B, H), dtype) if s is None else np.array(s, dtype=dtype, copy=True)


def _running(lengths, t):
    """The rows still running at step t: every row (a slice) without lengths."""
    if lengths is None or (lengths > t).all():
        return slice(None)
    return np.flatnonzero(lengths > t)


def _valid(lengths, T, B):
    """(T, B) mask of the valid steps."""
    if lengths is None:
        return np.ones((T, B), bool)
    return np.arange(T)[:, None] < lengths[None, :]


def _pack(a, pk):
    """Padded (T, B, ...) -> packed (N, ...) rows (see fastgates._checks.Packing)."""
    return a.reshape((pk.T * pk.B,) + a.shape[2:])[pk.flat]


def _unpack(p, pk, fill=0):
    """Packed (N, ...) -> padded (T, B, ...) with ``fill`` past each row's end."""
    out = np.full((pk.T * pk.B,) + p.shape[1:], fill, p.dtype)
    out[pk.flat] = p
    return out.reshape((pk.T, pk.B) + p.shape[1:])


def _pack_states(s, pk):
    """Padded (T+1, B, H) states -> (B + N, H): initial states in sorted order, then packed."""
    return np.concatenate([s[0][pk.order], _pack(s[1:], pk)])


def _unpack_states(p, pk):
    s = np.zeros((pk.T + 1, pk.B, p.shape[1]), p.dtype)
    s[0][pk.order] = p[:pk.B]
    s[1:] = _unpack(p[pk.B:], pk)
    return s


#: NumPy's floating-point error handling inside every public call: NaN and Inf propagate
#: to the results by design, so the warnings are off.  (The tests switch it to "raise" to
#: check that finite, saturating inputs raise no floating-point error here.)
_FP_ERRORS = {"all": "ignore"}


def _kept_rows(s):
    """(name, rows) of what a training forward keeps of one step: the Cache fields
    gates, extra, tc and the entries of ``saved`` (as "saved.<name>")."""
    out = [(k, v) for k, v in (("gates", s.gates), ("extra", s.extra), ("tc", s.tc))
           if v is not None]
    return out + [("saved." + k, v) for k, v in (s.saved or {}).items()]


def _run_forward(f, training):
    """Run the time loop of a validated :class:`fastgates._checks.Forward`.

    Returns (y, h_n, c_n, cache); c_n is None unless the cell carries a cell state,
    cache is None unless ``training``.
    """
    cell = f.celldef
    step = _steps(cell)[0]
    T, B, H, G, dtype = f.T, f.B, f.H, f.G, f.dtype
    R = f.w_hh.shape[1]                     # width of h: H, or P with a projection
    lstm = "c" in cell.states
    valid = _valid(f.lengths, T, B)
    p = {"weight_ih": f.w_ih, "weight_hh": f.w_hh, "bias_ih": f.b_ih, "bias_hh": f.b_hh,
         **(f.params or {})}

    # Input projection x_t w_ih^T of all T*B rows at once: a product, or a gather of
    # columns of w_ih for one-hot token ids (padding ids, never read, may be anything).
    if f.tokens:
        xw = f.w_ih.T[np.where(valid, f.x, 0)]                       # (T, B, G*H)
    else:
        xw = (f.x.reshape(T * B, f.D) @ f.w_ih.T).reshape(T, B, G * H)

    h = _state(f.h0, B, R, dtype)
    c = _state(f.c0, B, H, dtype) if lstm else None
    hs = np.zeros((T + 1, B, R), dtype)
    hs[0] = h
    kept = {}                               # name -> (T, B, X): what training keeps per step
    if training:                            # which arrays: a step over zero rows tells
        for k, v in _kept_rows(step(np.zeros((0, G * H), dtype), h[:0], c[:0] if lstm else None,
                                    p, cell)):
            kept[k] = np.zeros((T, B) + v.shape[1:], dtype)
    cs = np.zeros((T + 1, B, H), dtype) if training and lstm else None
    if cs is not None:
        cs[0] = c

    for t in range(T):
        a = _running(f.lengths, t)          # rows past their end keep their state
        if not valid[t].any():
            break
        s = step(xw[t, a], h[a], c[a] if lstm else None, p, cell)
        h[a] = s.h
        hs[t + 1, a] = s.h
        if lstm:
            c[a] = s.c
            if cs is not None:
                cs[t + 1, a] = s.c
        if training:
            for k, v in _kept_rows(s):
                kept[k][t, a] = v

    y = hs[1:].copy()
    h_n = h
    c_n = c if lstm else None
    cache = None
    if training:
        x = np.array(f.x, copy=True)
        pk = f.packing
        if pk is not None:       # the packed layout shared with the fast path
            x = _pack(x, pk)
            hs, cs = _pack_states(hs, pk), (_pack_states(cs, pk) if lstm else None)
            kept = {k: _pack(v, pk) for k, v in kept.items()}
        saved = {k[6:]: v for k, v in kept.items() if k.startswith("saved.")}
        cache = Cache(cell=f.cell, variant=f.variant, dtype=dtype,
                      x=x, tokens=f.tokens, D=f.D,
                      w_ih=None if f.tokens else f.w_ih.copy(), w_hh=f.w_hh.copy(),
                      hs=hs, gates=kept.get("gates"), extra=kept.get("extra"), cs=cs,
                      tc=kept.get("tc"), lengths=f.lengths, packing=pk,
                      params=None if not f.params else {k: v.copy() for k, v in f.params.items()},
                      saved=saved or None)
    return y, h_n, c_n, cache


def _run_backward(bw, cache):
    """BPTT over a cache for a validated :class:`fastgates._checks.Backward`.

    Returns (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dparams); dc0 is None unless the
    cell carries a cell state, dparams maps the stems of extra parameters to gradients.
    """
    cell = cache.celldef
    _, step_backward, fix_dw_hh = _steps(cell)
    T, B, D, H, G, dtype = bw.T, bw.B, bw.D, bw.H, bw.G, cache.dtype
    R = cache.w_hh.shape[1]                 # width of h: H, or P with a projection
    lstm = "c" in cell.states
    hs, x, gates, extra, cs, tc = cache.hs, cache.x, cache.gates, cache.extra, cache.cs, cache.tc
    saved = dict(cache.saved or {})
    pk, lengths = cache.packing, cache.lengths
    if pk is not None:           # back to the padded (T, B, ...) layout, zeros past the ends
        hs, x = _unpack_states(hs, pk), _unpack(x, pk)
        cs = _unpack_states(cs, pk) if lstm else None
        gates, extra, tc = (None if a is None else _unpack(a, pk) for a in (gates, extra, tc))
        saved = {k: _unpack(v, pk) for k, v in saved.items()}
    valid = _valid(lengths, T, B)
    p = {"weight_ih": cache.w_ih, "weight_hh": cache.w_hh, **(cache.params or {})}

    da_x = np.zeros((T, B, G * H), dtype)    # gradients of the input-side pre-activations
    da_h = np.zeros((T, B, G * H), dtype)    # ... and of the recurrent-side ones
    dxw = dhw = None                          # ... of x w_ih^T and h w_hh^T, where they differ
    dparams = {}
    dh = _state(bw.dh_n, B, R, dtype)
    dc = _state(bw.dc_n, B, H, dtype) if lstm else None
    for t in range(T - 1, -1, -1):
        if not valid[t].any():
            continue
        a = _running(lengths, t)              # the other rows pass dh, dc through unchanged
        dh_t = dh[a] + bw.dy[t, a] if bw.dy is not None else dh[a]
        s = _Saved(h_prev=hs[t, a], h=hs[t + 1, a],
                   gates=None if gates is None else gates[t, a],
                   extra=None if extra is None else extra[t, a],
                   c_prev=cs[t, a] if lstm else None, tc=tc[t, a] if lstm else None,
                   w_hh=cache.w_hh, cell=cell, p=p,
                   saved={k: v[t, a] for k, v in saved.items()},
                   c=cs[t + 1, a] if lstm else None)
        g = step_backward(dh_t, dc[a] if lstm else None, s)
        da_x[t, a] = g.da_x
        da_h[t, a] = g.da_h
        if g.dxw is not None:
            dxw = np.zeros_like(da_x) if dxw is None else dxw
            dxw[t, a] = g.dxw
        if g.dhw is not None:
            dhw = np.zeros_like(da_h) if dhw is None else dhw
            dhw[t, a] = g.dhw
        for k, v in (g.dparams or {}).items():
            dparams[k] = v if k not in dparams else dparams[k] + v
        dh[a] = g.dh
        if lstm:
            dc[a] = g.dc

    for k, v in (cache.params or {}).items():      # no step ran: zero gradients
        dparams.setdefault(k, np.zeros_like(v))

    # Weight, bias and input gradients: one product / reduction over all T*B rows
    # (rows past a sequence's end have zero gradients).
    dax = da_x.reshape(T * B, G * H)
    dah = da_h.reshape(T * B, G * H)
    db_ih = dax.sum(axis=0)
    db_hh = dah.sum(axis=0)
    dxw = dax if dxw is None else dxw.reshape(T * B, G * H)
    dhw = dah if dhw is None else dhw.reshape(T * B, G * H)
    dw_hh = dhw.T @ hs[:-1].reshape(T * B, R)
    if fix_dw_hh is not None:
        fix_dw_hh(dw_hh, dhw, extra, cell)
    if cache.tokens:
        dw_ih = np.zeros((G * H, D), dtype)
        np.add.at(dw_ih.T, x.reshape(T * B), dxw)                  # scatter-add per token
        dx = None
    else:
        dw_ih = dxw.T @ x.reshape(T * B, D)
        dx = (dxw @ cache.w_ih).reshape(T, B, D)
        dx[~valid] = 0                                            # no input read there
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dparams


def cell_forward(cell, x, state, params, *, training=True, n_threads=None, lengths=None):
    """Forward pass of any cell of :mod:`fastgates.cells` (the twin of :func:`fastgates.cell_forward`).

    The six public functions call it with the cell their keyword picks; the layers
    call it with the table's cells.

    Parameters
    ----------
    cell : str or fastgates.cells.CellDef
        A cell of :data:`fastgates.cells.CELLS`, or its name.
    x : ndarray of shape (T, B, D), float32 or float64; or (T, B) integer token ids
        Sequence-first input.
    state : dict of str to ndarray or None
        State name ("h", "c") -> initial state (B, width) or None (zeros); missing
        names are None.
    params : dict of str to ndarray
        Parameter stem -> array: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``
        and the cell's optional ones in use (``weight_hr``, ``weight_peep``).
    training : bool, default True
        False: no cache.
    n_threads : int or None, default None
        Validated and ignored.
    lengths : array_like of shape (B,), integers in [0, T], or None
        Valid steps per row; None: all T.

    Returns
    -------
    y : ndarray of shape (T, B, width)
        The hidden state at every step.
    state_n : dict of str to ndarray
        The final states, named like ``state``.
    cache : Cache or None
        What :func:`cell_backward` needs; None when ``training=False``.

    Raises
    ------
    TypeError, ValueError
        As the public functions: an unknown cell, arrays of the wrong type, dtype or
        shape, bad ``lengths`` or ``n_threads``.

    Examples
    --------
    >>> import numpy as np, fastgates.reference as ref
    >>> from fastgates import cells
    >>> shapes = cells.param_shapes(cells.get("gru_rb"), 4, 8)      # D = 4, H = 8
    >>> params = {stem: np.full(shape, 0.1) for stem, shape in shapes.items()}
    >>> y, state_n, cache = ref.cell_forward("gru_rb", np.ones((5, 3, 4)), {}, params)
    >>> y.shape, list(state_n)
    ((5, 3, 8), ['h'])
    """
    cell = cells.get(cell)
    check_n_threads(n_threads)
    f = check_forward(cell, x, state, params, training=training, lengths=lengths)
    with np.errstate(**_FP_ERRORS):
        y, h_n, c_n, cache = _run_forward(f, training)
    return y, {"h": h_n, "c": c_n} if "c" in cell.states else {"h": h_n}, cache


def cell_backward(cell, dy, dstate, cache, *, n_threads=None):
    """BPTT of :func:`cell_forward` (the twin of :func:`fastgates.cell_backward`).

    Parameters
    ----------
    cell : str or fastgates.cells.CellDef
        The cell of the forward pass.
    dy : ndarray of shape (T, B, width) or None
        Gradient with respect to ``y``; None means zero.
    dstate : dict of str to ndarray or None
        State name -> gradient with respect to its final value, or None (zero).
    cache : Cache
        The cache of a ``training=True`` forward pass of ``cell``.
    n_threads : int or None, default None
        Validated and ignored.

    Returns
    -------
    Grads or LSTMGrads
        The cell's gradient tuple; ``param_grads`` / ``state_grads`` give the gradients
        by parameter stem and state name (the extra parameters' too).

    Raises
    ------
    TypeError, ValueError
        Gradients of the wrong dtype or shape, a cache of another cell.

    Examples
    --------
    >>> import numpy as np, fastgates.reference as ref
    >>> from fastgates import cells
    >>> shapes = cells.param_shapes(cells.get("lstm"), 4, 8, peephole=True)
    >>> params = {stem: np.full(shape, 0.1) for stem, shape in shapes.items()}
    >>> y, _, cache = ref.cell_forward("lstm", np.ones((5, 3, 4)), {}, params)
    >>> g = ref.cell_backward("lstm", np.ones_like(y), {}, cache)
    >>> list(g.param_grads), list(g.state_grads)
    (['weight_ih', 'weight_hh', 'bias_ih', 'bias_hh', 'weight_peep'], ['h', 'c'])
    """
    cell = cells.get(cell)
    check_n_threads(n_threads)
    dstate = check_mapping("dstate", dstate, "state name -> gradient or None")
    bw = check_backward(cell.kernel, dy, dstate.get("h"), dstate.get("c"), cache)
    with np.errstate(**_FP_ERRORS):
        *g, dparams = _run_backward(bw, cache)
    return make_grads(cache.celldef, *g, extra=dparams)


def cell_step(cell, x_t, state, params):
    """One time step of ``cell`` for a batch, in the dtype of ``params`` (no validation).

    :func:`cell_forward` over one step, without the cache; fastgates.lm's NumPy
    sampler runs it in float64.

    Parameters
    ----------
    cell : str or fastgates.cells.CellDef
        A cell of :data:`fastgates.cells.CELLS`, or its name.
    x_t : ndarray of shape (B, D), float; or (B,) integer token ids
        The input of the step (ids stand for one-hot rows).
    state : dict of str to ndarray
        State name -> (B, width) array; every state of the cell.
    params : dict of str to ndarray
        Stem -> array, every parameter of the cell (biases included).

    Returns
    -------
    dict of str to ndarray
        The new state, named like ``state`` (fresh arrays).

    Examples
    --------
    >>> import numpy as np, fastgates.reference as ref
    >>> from fastgates import cells
    >>> shapes = cells.param_shapes(cells.get("rnn_tanh"), 4, 8)
    >>> params = {stem: np.full(shape, 0.1) for stem, shape in shapes.items()}
    >>> new = ref.cell_step("rnn_tanh", np.ones((3, 4)), {"h": np.zeros((3, 8))}, params)
    >>> new["h"].shape
    (3, 8)
    """
    cell = cells.get(cell)
    w_ih = params["weight_ih"]
    x_t = np.asarray(x_t)
    xw = w_ih.T[x_t] if x_t.dtype.kind in "iu" else x_t @ w_ih.T
    with np.errstate(**_FP_ERRORS):
        s = _steps(cell)[0](xw, state["h"], state.get("c"), params, cell)
    return {"h": s.h, "c": s.c} if "c" in cell.states else {"h": s.h}


# The public functions.  Their docstrings are built from the fragments below (the text
# the three forward passes, and the three backward passes, have in common).

_X_H0_PARAMS = """
    x : ndarray of shape (T, B, D), float32 or float64; or (T, B) integer token ids
        Sequence-first input.  Integer ids in ``[0, D)`` stand for one-hot rows: the
        input projection is then a gather of columns of ``w_ih`` and backward returns
        ``dx=None``.
    h0 : ndarray of shape (B, H) or None
        Initial hidden state; None means zeros."""

_WEIGHT_PARAMS = """
    w_ih : ndarray of shape ({GH}, D)
        Input weights, stacked in gate order ({gates}).
    w_hh : ndarray of shape ({GH}, H)
        Recurrent weights, stacked the same way.
    b_ih, b_hh : ndarray of shape ({GH},)
        The two biases (PyTorch's layout).  Every float array of a call has one dtype,
        float32 or float64, and all arithmetic happens in it."""

# The outputs y and h_n of the GRU and the LSTM (R = H, or P with a projection).
_Y_H_N_RETURNS = """
    y : ndarray of shape (T, B, {R})
        Hidden state at every step (zero past each row's end with ``lengths``).
    h_n : ndarray of shape (B, {R})
        Last hidden state."""

_FORWARD_KW = """
    training : bool, default True
        False: no cache is kept and ``cache`` is None.
    n_threads : int or None, default None
        Validated like the fast path's (0 is an error) and otherwise ignored: the
        reference is single-threaded.
    lengths : array_like of shape (B,), integers in [0, T], or None
        Row b runs ``lengths[b]`` steps (rows in any order); ``y`` is zero past its end
        and the final states hold its state after its last step (``h0`` for length
        0).  None: all rows run T steps."""

_EXAMPLE_SETUP = """
    >>> import numpy as np
    >>> import fastgates, fastgates.reference as ref
    >>> T, B, D, H, G = 5, 3, 4, 8, {G}
    >>> rng = np.random.default_rng(0)
    >>> w_ih, w_hh = rng.uniform(-0.3, 0.3, (G * H, D)), rng.uniform(-0.3, 0.3, (G * H, H))
    >>> b_ih, b_hh = rng.uniform(-0.3, 0.3, G * H), rng.uniform(-0.3, 0.3, G * H)
    >>> x = rng.standard_normal((T, B, D))"""

# Raises to the head of Examples, for forward pass ``{name}`` with G = ``{G}``.
_FORWARD_TAIL = """
    Raises
    ------
    TypeError
        An argument of the wrong type or dtype (mixed float dtypes, non-integer
        ``lengths``, ...).
    ValueError
        Shapes that do not match, token ids or lengths out of range, ``n_threads=0``.
        The checks are the fast path's (:mod:`fastgates._checks`), so both raise the
        same errors.

    See Also
    --------
    fastgates.{name}_forward : The compiled twin (same signature and results).

    Examples
    --------""" + _EXAMPLE_SETUP

_BACKWARD_DOC = """Backward pass through time of :func:`{name}_forward`, in NumPy.

    Walks ``t = T-1, ..., 0`` through the cache, then forms the weight, bias and input
    gradients as single products over all ``T*B`` rows.  The gradients are freshly
    allocated and overwritten, not accumulated.{notes}

    Parameters
    ----------
    dy : ndarray of shape (T, B, R) or None
        Gradient of the loss with respect to ``y`` (R = H, or P for a projected
        LSTM); None means zero.
    dh_n : ndarray of shape (B, R) or None
        Gradient with respect to ``h_n``; None means zero.{dc_n}
    cache : Cache
        The cache of a ``training=True`` forward pass (of either backend).
    n_threads : int or None, default None
        Validated and ignored.

    Returns
    -------
    {returns}

    Raises
    ------
    TypeError, ValueError
        Gradients of the wrong dtype or shape, a cache of another cell, a bad
        ``n_threads``.

    See Also
    --------
    fastgates.{name}_backward : The compiled twin.

    Examples
    --------""" + _EXAMPLE_SETUP + """
    >>> {call}
    >>> g = ref.{name}_backward(np.ones_like(y), {dstate}cache)        # dL/dy = 1
    >>> g.dw_hh.shape, g.dx.shape
    (({GH}, 8), (5, 3, 4))
    """


# The GRU equations (both gate forms); fastgates._fast shows them too.
_GRU_MATH = r"""
    .. math::

        r_t &= \sigma(x_t W_{ir}^\top + b_{ir} + h_{t-1} W_{hr}^\top + b_{hr}) \\
        z_t &= \sigma(x_t W_{iz}^\top + b_{iz} + h_{t-1} W_{hz}^\top + b_{hz}) \\
        n_t &= \tanh(x_t W_{in}^\top + b_{in} + r_t \odot (h_{t-1} W_{hn}^\top + b_{hn}))
        \quad \text{(linear before reset)} \\
        n_t &= \tanh(x_t W_{in}^\top + b_{in} + (r_t \odot h_{t-1}) W_{hn}^\top + b_{hn})
        \quad \text{(reset before)} \\
        h_t &= z_t \odot h_{t-1} + (1 - z_t) \odot n_t"""


def _h_forward(kernel, options, x, h0, weights, training, n_threads, lengths):
    """A one-state family's public forward: the cell its keyword picks, then cell_forward."""
    check_n_threads(n_threads)
    cell = select_cell(kernel, **options)
    y, s, cache = cell_forward(cell, x, {"h": h0}, kernel_params(*weights), training=training,
                               n_threads=n_threads, lengths=lengths)
    return y, s["h"], cache


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, nonlinearity="tanh", training=True,
                n_threads=None, lengths=None):
    return _h_forward("rnn", {"nonlinearity": nonlinearity}, x, h0, (w_ih, w_hh, b_ih, b_hh),
                      training, n_threads, lengths)


rnn_forward.__doc__ = rf"""Forward pass of an Elman RNN over a whole sequence (G = 1), in NumPy.

    .. math::

        h_t = \phi\left(x_t W_{{ih}}^\top + b_{{ih}} + h_{{t-1}} W_{{hh}}^\top + b_{{hh}}\right),
        \qquad \phi = \tanh \text{{ or }} \max(\cdot, 0)

    Parameters
    ----------{_X_H0_PARAMS}{_WEIGHT_PARAMS.format(GH="H", gates="one block: h")}
    nonlinearity : {{"tanh", "relu"}}, default "tanh"
        The activation :math:`\phi`.{_FORWARD_KW}

    Returns
    -------
    y : ndarray of shape (T, B, H)
        Hidden state at every step (zero past each row's end with ``lengths``).
    h_n : ndarray of shape (B, H)
        Last hidden state (``h0``, or zeros, when T = 0).
    cache : Cache or None
        What :func:`rnn_backward` (of either backend) needs; None when
        ``training=False``.
{_FORWARD_TAIL.format(name="rnn", G=1)}
    >>> y, h_n, cache = ref.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    >>> y.shape, h_n.shape
    ((5, 3, 8), (3, 8))
    >>> y_fast, _, _ = fastgates.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh)
    >>> bool(np.allclose(y, y_fast))
    True
    """


def rnn_backward(dy, dh_n, cache, *, n_threads=None):
    return cell_backward("rnn_tanh", dy, {"h": dh_n}, cache, n_threads=n_threads)


rnn_backward.__doc__ = _BACKWARD_DOC.format(
    name="rnn", G=1, GH=8, notes="", dc_n="", dstate="None, ",
    returns="""Grads
        ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``: ``dx`` (T, B, D) (None for token-id
        inputs), ``dh0`` (B, H) (also when ``h0`` was None), ``dw_ih`` (H, D),
        ``dw_hh`` (H, H), ``db_ih`` and ``db_hh`` (H,).""",
    call="y, h_n, cache = ref.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh)")


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, linear_before_reset=True, training=True,
                n_threads=None, lengths=None):
    return _h_forward("gru", {"linear_before_reset": linear_before_reset}, x, h0,
                      (w_ih, w_hh, b_ih, b_hh), training, n_threads, lengths)


gru_forward.__doc__ = rf"""Forward pass of a GRU over a whole sequence (G = 3, gate order r, z, n), in NumPy.
{_GRU_MATH}

    Parameters
    ----------{_X_H0_PARAMS}{_WEIGHT_PARAMS.format(GH="3*H", gates="r, z, n")}
    linear_before_reset : bool, default True
        True: the form of PyTorch, cuDNN and oneDNN ("lbr"); False: the textbook form
        of Cho et al. (2014).{_FORWARD_KW}

    Returns
    -------{_Y_H_N_RETURNS.format(R="H")}
    cache : Cache or None
        What :func:`gru_backward` needs; None when ``training=False``.
{_FORWARD_TAIL.format(name="gru", G=3)}
    >>> y, h_n, cache = ref.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh,
    ...                                 linear_before_reset=False)
    >>> y_fast, _, _ = fastgates.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh,
    ...                                      linear_before_reset=False)
    >>> y.shape, bool(np.allclose(y, y_fast))
    ((5, 3, 8), True)
    """


def gru_backward(dy, dh_n, cache, *, n_threads=None):
    return cell_backward("gru", dy, {"h": dh_n}, cache, n_threads=n_threads)


gru_backward.__doc__ = _BACKWARD_DOC.format(
    name="gru", G=3, GH=24, dc_n="", dstate="None, ",
    notes="""
    ``db_ih`` and ``db_hh`` differ only in the n gate of the linear-before-reset
    form, where ``db_hn`` is ``r * dn_pre``; in the reset-before form the n rows
    of ``dw_hh`` pair ``dn_pre`` with ``r * h_{t-1}``.""",
    returns="""Grads
        ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``: ``dx`` (T, B, D) or None for token
        ids, ``dh0`` (B, H), ``dw_ih`` (3*H, D), ``dw_hh`` (3*H, H), ``db_ih`` and
        ``db_hh`` (3*H,).""",
    call="y, h_n, cache = ref.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh)")


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, training=True, n_threads=None,
                 lengths=None, w_hr=None, w_peep=None):
    y, s, cache = cell_forward("lstm", x, {"h": h0, "c": c0},
                               kernel_params(w_ih, w_hh, b_ih, b_hh, w_hr=w_hr, w_peep=w_peep),
                               training=training, n_threads=n_threads, lengths=lengths)
    return y, s["h"], s["c"], cache


lstm_forward.__doc__ = rf"""Forward pass of an LSTM over a whole sequence (G = 4, gate order i, f, g, o), in NumPy.

    .. math::

        i_t &= \sigma(x_t W_{{ii}}^\top + b_{{ii}} + h_{{t-1}} W_{{hi}}^\top + b_{{hi}}
        \; [+\, p_i \odot c_{{t-1}}]) \\
        f_t &= \sigma(x_t W_{{if}}^\top + b_{{if}} + h_{{t-1}} W_{{hf}}^\top + b_{{hf}}
        \; [+\, p_f \odot c_{{t-1}}]) \\
        g_t &= \tanh(x_t W_{{ig}}^\top + b_{{ig}} + h_{{t-1}} W_{{hg}}^\top + b_{{hg}}) \\
        c_t &= f_t \odot c_{{t-1}} + i_t \odot g_t \\
        o_t &= \sigma(x_t W_{{io}}^\top + b_{{io}} + h_{{t-1}} W_{{ho}}^\top + b_{{ho}}
        \; [+\, p_o \odot c_t]) \\
        h_t &= o_t \odot \tanh(c_t) \quad \text{{or, projected,}} \quad
        h_t = (o_t \odot \tanh(c_t)) W_{{hr}}^\top

    The bracketed terms are the peepholes (``w_peep``).

    Parameters
    ----------
    x : ndarray of shape (T, B, D), float32 or float64; or (T, B) integer token ids
        Sequence-first input; integer ids in ``[0, D)`` stand for one-hot rows.
    h0 : ndarray of shape (B, R) or None
        Initial hidden state (R = H, or P with ``w_hr``); None means zeros.
    c0 : ndarray of shape (B, H) or None
        Initial cell state; None means zeros.
    w_ih : ndarray of shape (4*H, D)
        Input weights, stacked in gate order (i, f, g, o).
    w_hh : ndarray of shape (4*H, R)
        Recurrent weights, stacked the same way.
    b_ih, b_hh : ndarray of shape (4*H,)
        The two biases (PyTorch's layout); every float array has one dtype.{_FORWARD_KW}
    w_hr : ndarray of shape (P, H) with 0 < P < H, or None
        The projection (PyTorch's ``proj_size``); None: no projection.
    w_peep : ndarray of shape (3, H) or None
        Peephole weights, rows i, f, o (ONNX's ``P`` in fastgates' row order); None:
        none.

    Returns
    -------{_Y_H_N_RETURNS.format(R="R")}
    c_n : ndarray of shape (B, H)
        Last cell state.
    cache : Cache or None
        What :func:`lstm_backward` needs; None when ``training=False``.
{_FORWARD_TAIL.format(name="lstm", G=4)}
    >>> y, h_n, c_n, cache = ref.lstm_forward(x, None, None, w_ih, w_hh, b_ih, b_hh,
    ...                                       w_peep=np.full((3, H), 0.1))
    >>> y.shape, c_n.shape
    ((5, 3, 8), (3, 8))
    >>> y_fast, *_ = fastgates.lstm_forward(x, None, None, w_ih, w_hh, b_ih, b_hh,
    ...                                     w_peep=np.full((3, H), 0.1))
    >>> bool(np.allclose(y, y_fast))
    True
    """


def lstm_backward(dy, dh_n, dc_n, cache, *, n_threads=None):
    return cell_backward("lstm", dy, {"h": dh_n, "c": dc_n}, cache, n_threads=n_threads)


lstm_backward.__doc__ = _BACKWARD_DOC.format(
    name="lstm", G=4, GH=32, notes="", dstate="None, None, ",
    dc_n="""
    dc_n : ndarray of shape (B, H) or None
        Gradient with respect to ``c_n``; None means zero.""",
    returns="""LSTMGrads
        ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``: ``dx`` (T, B, D) or None for
        token ids, ``dh0`` (B, R) and ``dc0`` (B, H), ``dw_ih`` (4*H, D), ``dw_hh``
        (4*H, R), ``db_ih`` and ``db_hh`` (4*H,); with ``w_hr`` / ``w_peep`` their
        gradients in ``param_grads["weight_hr"]`` (P, H) and
        ``param_grads["weight_peep"]`` (3, H).""",
    call="y, h_n, c_n, cache = ref.lstm_forward(x, None, None, w_ih, w_hh, b_ih, b_hh)")
