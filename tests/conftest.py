"""Shared helpers for the fastgates tests.

Every cell is described by a ``(cell, variant)`` pair with the variant names of
``fastgates._checks.Cache``, read from the table of ``fastgates.cells`` (the ids are the
table's cell names); ``forward``/``backward`` call either backend (the
compiled ``fastgates`` or ``fastgates.reference``) through one uniform interface,
and the comparison helpers put a case description in every failure message.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple, Optional

import numpy as np
import pytest

from fastgates import cells as _cells

#: (cell, variant) of every cell of the table that has the positional public kernels
#: (``fastgates.<kernel>_forward(x, h0, [c0,] w_ih, w_hh, b_ih, b_hh)``), and their test ids
#: (the table's names).  Cells with parameters beyond those four (the LayerNorm cells) run
#: through ``cell_forward`` with parameters by name and have their own test files.
_POSITIONAL = [c for c in _cells.CELLS.values()
               if {p.stem for p in c.params if p.when is None} == {"weight_ih", "weight_hh",
                                                                   "bias_ih", "bias_hh"}]
CELLS = [(c.kernel, c.variant) for c in _POSITIONAL]
CELL_IDS = [c.name for c in _POSITIONAL]
#: Gates per kernel family (of the cells above).
GATES = {c.kernel: c.G for c in _POSITIONAL}
#: The cells torch.nn has a module for (the oracle tests' cells).
TORCH_CELLS = [(c.kernel, c.variant) for c in _cells.CELLS.values() if c.torch]
TORCH_IDS = [c.name for c in _cells.CELLS.values() if c.torch]

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]

#: Relative tolerances per dtype; the absolute floor is ATOL times the largest
#: magnitude of the expected array, so that entries that cancel to ~0 are judged
#: on the array's scale.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
ATOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

BACKENDS = ["fastgates", "fastgates.reference"]


def case_id(**kw) -> str:
    """'cell=gru-rb dtype=f32 ...': which case of a sweep failed."""
    def fmt(v):
        if isinstance(v, type) and issubclass(v, np.generic):
            return np.dtype(v).name
        return v
    return " ".join(f"{k}={fmt(v)}" for k, v in kw.items())


def import_backend(name):
    """Import ``fastgates`` (the compiled path) or ``fastgates.reference``.

    A missing compiled path is a test failure, not a skip: the fast path is
    part of the package.
    """
    try:
        mod = importlib.import_module(name)
        mod.lstm_forward  # noqa: B018  (the public API must be there)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"cannot use backend {name!r}: {type(exc).__name__}: {exc}")
    return mod


@pytest.fixture(scope="session")
def fast():
    """The compiled fast path (``import fastgates``)."""
    return import_backend("fastgates")


@pytest.fixture(scope="session")
def ref():
    """The NumPy reference (``fastgates.reference``)."""
    return import_backend("fastgates.reference")


@pytest.fixture(params=BACKENDS, ids=["fast", "reference"])
def backend(request):
    """Each backend in turn."""
    return import_backend(request.param)


@pytest.fixture(scope="module")
def single_threaded_torch():
    """torch.set_num_threads(1) for a module's tests (then restored); skips without torch."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(20240527)


# Problem construction.

class Params(NamedTuple):
    w_ih: np.ndarray    # (G*H, D)
    w_hh: np.ndarray    # (G*H, H)
    b_ih: np.ndarray    # (G*H,)
    b_hh: np.ndarray    # (G*H,)


def make_params(rng, cell, D, H, dtype) -> Params:
    """Uniform(-1/sqrt(H), 1/sqrt(H)) weights and biases, PyTorch's default init."""
    shapes = _cells.param_shapes(_cells.families()[cell][0], D, H)
    k = 1.0 / np.sqrt(H)
    return Params(*(rng.uniform(-k, k, shapes[s]).astype(dtype)
                    for s in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))


def make_x(rng, T, B, D, dtype, tokens):
    """(T, B) int64 token ids in [0, D), or (T, B, D) standard normal floats."""
    if tokens:
        return rng.integers(0, D, size=(T, B), dtype=np.int64)
    return rng.standard_normal((T, B, D)).astype(dtype)


def make_state(rng, B, H, dtype):
    return (0.5 * rng.standard_normal((B, H))).astype(dtype)


def cell_kwargs(cell, variant):
    """The keyword that selects ``variant`` in ``<cell>_forward`` (the table's ``option``)."""
    option = _cells.by_kernel(cell, variant).option
    return {} if option is None else {option[0]: option[1]}


class Out(NamedTuple):
    y: np.ndarray
    h_n: np.ndarray
    c_n: Optional[np.ndarray]
    cache: object


def forward(mod, cell, variant, x, h0, c0, p, **kw) -> Out:
    """``<cell>_forward`` of backend ``mod``; ``c0`` is ignored unless lstm."""
    if cell == "lstm":
        return Out(*mod.lstm_forward(x, h0, c0, *p, **kw))
    fn = getattr(mod, f"{cell}_forward")
    y, h_n, cache = fn(x, h0, *p, **cell_kwargs(cell, variant), **kw)
    return Out(y, h_n, None, cache)


def backward(mod, cell, dy, dh_n, dc_n, cache, **kw) -> dict:
    """``<cell>_backward`` of backend ``mod`` as a dict name -> gradient."""
    if cell == "lstm":
        g = mod.lstm_backward(dy, dh_n, dc_n, cache, **kw)
    else:
        g = getattr(mod, f"{cell}_backward")(dy, dh_n, cache, **kw)
    return g._asdict()


def grad_sources(cell):
    """Which of dy, dh_n, dc_n are given: name -> (use_dy, use_dh_n, use_dc_n)."""
    src = {"all": (True, True, True), "dy": (True, False, False),
           "dh_n": (False, True, False), "none": (False, False, False)}
    if cell == "lstm":
        src["dc_n"] = (False, False, True)
    return src


def make_grad_outputs(rng, T, B, H, dtype):
    """Random dy (T, B, H), dh_n and dc_n (B, H)."""
    return (rng.standard_normal((T, B, H)).astype(dtype),
            rng.standard_normal((B, H)).astype(dtype),
            rng.standard_normal((B, H)).astype(dtype))


# Comparisons.

def assert_close(actual, desired, dtype, what):
    """allclose with the per-dtype tolerance; also checks shape and dtype."""
    dtype = np.dtype(dtype)
    if desired is None:
        assert actual is None, f"{what}: expected None, got {type(actual).__name__}"
        return
    assert actual is not None, f"{what}: got None, expected an array of shape {desired.shape}"
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}, not an ndarray"
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    assert actual.dtype == desired.dtype, f"{what}: dtype {actual.dtype} != {desired.dtype}"
    finite = desired[np.isfinite(desired)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=RTOL[dtype],
                               atol=ATOL[dtype] * max(scale, 1.0), err_msg=what)


def assert_outputs_close(actual: Out, desired: Out, dtype, case):
    for name in ("y", "h_n", "c_n"):
        assert_close(getattr(actual, name), getattr(desired, name), dtype, f"{name} [{case}]")


def assert_grads_close(actual: dict, desired: dict, dtype, case):
    assert list(actual) == list(desired), f"gradient fields {list(actual)} != {list(desired)}"
    for name in desired:
        assert_close(actual[name], desired[name], dtype, f"{name} [{case}]")


# The torch oracle: torch.nn's modules on the same weights (callers skip without torch).

class TorchCase(NamedTuple):
    net: object          # the torch.nn module
    params: list         # its weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0
    p: list              # NumPy copies of params
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    grad_outputs: tuple  # dy, dh_n, dc_n
    x_t: object          # x as a torch leaf (one-hot rows for token ids)


def torch_case(rng, cell, variant, T, B, D, H, dtype, tokens) -> TorchCase:
    """The one-layer ``torch.nn`` twin of ``cell`` in ``dtype`` (initialised under
    ``torch.manual_seed(T * B)``) and a problem for it drawn from ``rng``."""
    import torch
    torch.manual_seed(T * B)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    net = (torch.nn.RNN(D, H, nonlinearity=variant) if cell == "rnn" else
           {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](D, H)).to(tdtype)
    params = [net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0, net.bias_hh_l0]
    p = [q.detach().numpy().copy() for q in params]
    x = make_x(rng, T, B, D, dtype, tokens)
    h0, c0 = make_state(rng, B, H, dtype), make_state(rng, B, H, dtype)
    grad_outputs = make_grad_outputs(rng, T, B, H, dtype)
    x_t = torch.tensor(np.eye(D, dtype=dtype)[x] if tokens else x, requires_grad=True)
    return TorchCase(net, params, p, x, h0, c0, grad_outputs, x_t)


def assert_matches_torch(mod, cell, out, grad_outputs, torch_out, leaves, params, dtype, tokens,
                         case):
    """A backend's forward ``out`` and its backward from ``grad_outputs`` (dy, dh_n, dc_n)
    against torch: its outputs ``torch_out`` (y, h_n, c_n; c_n None but for the LSTM) and
    the gradients autograd left on ``leaves`` (x, h0, c0) and ``params``; dx is None for
    token ids."""
    lstm = cell == "lstm"
    y_t, hn_t, cn_t = torch_out
    assert_close(out.y, y_t.detach().numpy(), dtype, f"y [{case}]")
    assert_close(out.h_n, hn_t[0].detach().numpy(), dtype, f"h_n [{case}]")
    if lstm:
        assert_close(out.c_n, cn_t[0].detach().numpy(), dtype, f"c_n [{case}]")
    dy, dh_n, dc_n = grad_outputs
    g = backward(mod, cell, dy, dh_n, dc_n if lstm else None, out.cache)
    x_t, h0_t, c0_t = leaves
    assert_close(g["dx"], None if tokens else x_t.grad.numpy(), dtype, f"dx [{case}]")
    assert_close(g["dh0"], h0_t.grad.numpy(), dtype, f"dh0 [{case}]")
    if lstm:
        assert_close(g["dc0"], c0_t.grad.numpy(), dtype, f"dc0 [{case}]")
    for name, q in zip(("dw_ih", "dw_hh", "db_ih", "db_hh"), params):
        assert_close(g[name], q.grad.numpy(), dtype, f"{name} [{case}]")


#: The layer classes of the five cell forms: (class, constructor keywords, test id).
def _layer_kinds():
    import fastgates
    return [(fastgates.RNN, {"nonlinearity": "tanh"}, "rnn-tanh"),
            (fastgates.RNN, {"nonlinearity": "relu"}, "rnn-relu"),
            (fastgates.GRU, {}, "gru-lbr"),
            (fastgates.GRU, {"linear_before_reset": False}, "gru-rb"),
            (fastgates.LSTM, {}, "lstm")]


KINDS = _layer_kinds()
KIND_IDS = [k[2] for k in KINDS]
KIND_ARGS = [k[:2] for k in KINDS]


def numerical_gradient(loss, arr, eps=1e-6):
    """Central differences of ``loss()`` with respect to every entry of ``arr``.

    ``arr`` is perturbed in place and restored entry by entry.
    """
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        up = loss()
        arr[idx] = old - eps
        down = loss()
        arr[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def assert_backward_sources(fast, ref, cell, sources, grad_outputs, want_cache, got_cache,
                            dtype, where, **kw):
    """For each gradient source (name -> which of dy, dh_n, dc_n are given), the fast
    backward on ``got_cache`` gives the reference backward's gradients on ``want_cache``."""
    dy, dh_n, dc_n = grad_outputs
    for source, (use_dy, use_dh, use_dc) in sources.items():
        args = (dy if use_dy else None, dh_n if use_dh else None,
                dc_n if use_dc and cell == "lstm" else None)
        want_g = backward(ref, cell, *args, want_cache)
        got_g = backward(fast, cell, *args, got_cache, **kw)
        assert_grads_close(got_g, want_g, dtype, f"{where} grads-from={source}")


#: The array fields of a cache that both backends fill alike.
CACHE_ARRAYS = ("x", "w_ih", "w_hh", "hs", "gates", "extra", "cs", "tc")


def assert_caches_cross(fast, ref, cell, fc, rc, dtype, tokens, dy, dh_n, dc_n, where):
    """The fast cache ``fc`` holds what the reference's ``rc`` holds, and each backend's
    backward on the other's cache gives the reference's gradients."""
    for field in CACHE_ARRAYS:
        want, got = getattr(rc, field), getattr(fc, field)
        if field == "x" and tokens:
            assert got.dtype == np.int64 and np.array_equal(got, want), f"cache.x [{where}]"
        else:
            assert_close(got, want, dtype, f"cache.{field} [{where}]")
    g_ref = backward(ref, cell, dy, dh_n, dc_n, rc)
    assert_grads_close(backward(ref, cell, dy, dh_n, dc_n, fc), g_ref, dtype,
                       f"fast forward -> reference backward [{where}]")
    assert_grads_close(backward(fast, cell, dy, dh_n, dc_n, rc), g_ref, dtype,
                       f"reference forward -> fast backward [{where}]")


def assert_equal(actual, desired, what):
    """Bit-identical (NaN in the same places counts as equal)."""
    if desired is None:
        assert actual is None, f"{what}: expected None"
        return
    assert actual.shape == desired.shape and actual.dtype == desired.dtype, (
        f"{what}: {actual.shape}/{actual.dtype} != {desired.shape}/{desired.dtype}")
    same = np.array_equal(actual, desired, equal_nan=True)
    if not same:
        differ = int(np.sum(~((actual == desired) | (np.isnan(actual) & np.isnan(desired)))))
        raise AssertionError(f"{what}: not bit-identical: {differ} of {actual.size} entries "
                             f"differ, max |diff| = {np.nanmax(np.abs(actual - desired)):.3g}")


def assert_outputs_equal(actual: Out, desired: Out, case, what=""):
    """assert_equal on y, h_n and c_n (``what`` heads the messages)."""
    for name in ("y", "h_n", "c_n"):
        assert_equal(getattr(actual, name), getattr(desired, name), f"{what}{name} [{case}]")


def assert_grads_equal(actual: dict, desired: dict, case):
    """assert_equal on every gradient of ``desired``."""
    for name in desired:
        assert_equal(actual[name], desired[name], f"{name} [{case}]")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` are opt-in: they run only when ``-m`` selects them (``-m slow``)."""
    if config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with -m slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
