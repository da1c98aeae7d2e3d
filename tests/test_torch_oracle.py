"""Both backends against torch.nn.RNN / GRU / LSTM and autograd on the same weights.

PyTorch's layout is fastgates' layout, so the parameters of a torch module are
passed as they are.  The reset-before GRU (linear_before_reset=False) has no
torch counterpart; finite differences cover it (test_reference_gradients.py).
"""

import numpy as np
import pytest

from conftest import (TORCH_CELLS, TORCH_IDS, BACKENDS, DTYPE_IDS, DTYPES, assert_matches_torch,
                      case_id, forward, import_backend, torch_case)

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
    net, params, p, x, h0, c0, (dy, dh_n, dc_n), x_t = torch_case(rng, cell, variant, T, B, D, H,
                                                                  dtype, tokens)

    # torch: zeros for missing states
    h0_t = torch.tensor(h0 if states == "given" else np.zeros_like(h0), requires_grad=True)
    c0_t = torch.tensor(c0 if states == "given" else np.zeros_like(c0), requires_grad=True)
    if lstm:
        y_t, (hn_t, cn_t) = net(x_t, (h0_t[None], c0_t[None]))
        loss = (y_t * torch.tensor(dy)).sum() + (hn_t[0] * torch.tensor(dh_n)).sum() \
            + (cn_t[0] * torch.tensor(dc_n)).sum()
    else:
        y_t, hn_t = net(x_t, h0_t[None])
        cn_t = None
        loss = (y_t * torch.tensor(dy)).sum() + (hn_t[0] * torch.tensor(dh_n)).sum()
    loss.backward()

    s_h0, s_c0 = (h0, c0) if states == "given" else (None, None)
    out = forward(mod, cell, variant, x, s_h0, s_c0, p)
    assert_matches_torch(mod, cell, out, (dy, dh_n, dc_n), (y_t, hn_t, cn_t), (x_t, h0_t, c0_t),
                         params, dtype, tokens, case)
