"""Both backends against torch.nn.RNN / GRU / LSTM and autograd on the same weights.

PyTorch's layout is fastgates' layout, so the parameters of a torch module are
passed as they are.  The reset-before GRU (linear_before_reset=False) has no
torch counterpart; finite differences cover it (test_reference_gradients.py).
"""

import numpy as np
import pytest

from conftest import (TORCH_CELLS, TORCH_IDS, BACKENDS, DTYPE_IDS, DTYPES, assert_close, backward,
                      case_id, forward, import_backend, make_grad_outputs, make_state, make_x)

torch = pytest.importorskip("torch")

SHAPES = {"odd": (7, 3, 5, 9), "larger": (12, 8, 16, 24)}


@pytest.fixture(scope="module", autouse=True)
def single_threaded_torch():
    """Torch's idle OpenMP threads spin and starve the other libraries' threads on a
    small machine (10x slower tests); the oracle does not need them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def torch_module(cell, variant, D, H, dtype, seed):
    torch.manual_seed(seed)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    if cell == "rnn":
        return torch.nn.RNN(D, H, nonlinearity=variant).to(tdtype)
    return {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](D, H).to(tdtype)


@pytest.mark.parametrize("backend_name", BACKENDS, ids=["fast", "reference"])
@pytest.mark.parametrize("states", ["given", "none"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float-x", "token-ids"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cell,variant", TORCH_CELLS, ids=TORCH_IDS)
def test_matches_torch(backend_name, cell, variant, dtype, shape, tokens, states, rng):
    mod = import_backend(backend_name)
    T, B, D, H = shape
    case = case_id(backend=backend_name, cell=cell, variant=variant, dtype=dtype, shape=shape,
                   tokens=tokens, states=states)
    lstm = cell == "lstm"
    net = torch_module(cell, variant, D, H, dtype, seed=T * B)
    params = [net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0, net.bias_hh_l0]
    p = [q.detach().numpy().copy() for q in params]

    x = make_x(rng, T, B, D, dtype, tokens)
    h0, c0 = make_state(rng, B, H, dtype), make_state(rng, B, H, dtype)
    dy, dh_n, dc_n = make_grad_outputs(rng, T, B, H, dtype)

    # torch: one-hot rows for token ids, zeros for missing states
    x_t = torch.tensor(np.eye(D, dtype=dtype)[x] if tokens else x, requires_grad=True)
    h0_t = torch.tensor(h0 if states == "given" else np.zeros_like(h0), requires_grad=True)
    c0_t = torch.tensor(c0 if states == "given" else np.zeros_like(c0), requires_grad=True)
    if lstm:
        y_t, (hn_t, cn_t) = net(x_t, (h0_t[None], c0_t[None]))
        loss = (y_t * torch.tensor(dy)).sum() + (hn_t[0] * torch.tensor(dh_n)).sum() \
            + (cn_t[0] * torch.tensor(dc_n)).sum()
    else:
        y_t, hn_t = net(x_t, h0_t[None])
        loss = (y_t * torch.tensor(dy)).sum() + (hn_t[0] * torch.tensor(dh_n)).sum()
    loss.backward()

    s_h0, s_c0 = (h0, c0) if states == "given" else (None, None)
    out = forward(mod, cell, variant, x, s_h0, s_c0, p)
    assert_close(out.y, y_t.detach().numpy(), dtype, f"y [{case}]")
    assert_close(out.h_n, hn_t[0].detach().numpy(), dtype, f"h_n [{case}]")
    if lstm:
        assert_close(out.c_n, cn_t[0].detach().numpy(), dtype, f"c_n [{case}]")

    g = backward(mod, cell, dy, dh_n, dc_n if lstm else None, out.cache)
    if tokens:
        assert g["dx"] is None, f"dx must be None for token ids [{case}]"
    else:
        assert_close(g["dx"], x_t.grad.numpy(), dtype, f"dx [{case}]")
    assert_close(g["dh0"], h0_t.grad.numpy(), dtype, f"dh0 [{case}]")
    if lstm:
        assert_close(g["dc0"], c0_t.grad.numpy(), dtype, f"dc0 [{case}]")
    for name, q in zip(("dw_ih", "dw_hh", "db_ih", "db_hh"), params):
        assert_close(g[name], q.grad.numpy(), dtype, f"{name} [{case}]")
