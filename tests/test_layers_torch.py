"""fastgates.layers against torch.nn.RNN / GRU / LSTM loaded with the same weights.

Stacked, bidirectional, ragged (torch: a PackedSequence of unsorted rows) and
batch_first cases, float64 to 1e-10 and float32 to 1e-4 (conftest's tolerances):
outputs, final states and every gradient (input, initial states, all parameters).
"""

import numpy as np
import pytest

import fastgates
from conftest import DTYPE_IDS, DTYPES, assert_close, case_id

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

KINDS = {"rnn-tanh": ("RNN", {"nonlinearity": "tanh"}),
         "rnn-relu": ("RNN", {"nonlinearity": "relu"}),
         "gru": ("GRU", {}),
         "lstm": ("LSTM", {})}

# name -> (num_layers, bidirectional, ragged, batch_first, initial states given)
CONFIGS = {
    "stacked": (3, False, False, False, True),
    "bidirectional": (1, True, False, False, False),
    "stacked-bidir": (2, True, False, False, True),
    "ragged": (2, False, True, False, True),
    "bidir-ragged": (2, True, True, False, False),
    "batch-first": (2, True, False, True, True),
    "bidir-ragged-batch-first": (2, True, True, True, True),
}


pytestmark = pytest.mark.usefixtures("single_threaded_torch")


def torch_run(net, x, state, lengths, dy, dstate, batch_first):
    """Outputs (zero-padded) and gradients of ``sum(y*dy) + sum(state_n*dstate)`` in torch."""
    x_t = torch.tensor(x, requires_grad=True)
    s_t = None if state is None else tuple(torch.tensor(s, requires_grad=True) for s in state)
    hx = None if s_t is None else (s_t if len(s_t) == 2 else s_t[0])
    if lengths is None:
        y_t, st = net(x_t, hx)
    else:
        packed = pack_padded_sequence(x_t, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        y_p, st = net(packed, hx)
        y_t, _ = pad_packed_sequence(y_p, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    st = st if isinstance(st, tuple) else (st,)
    loss = (y_t * torch.tensor(dy)).sum() + sum((a * torch.tensor(w)).sum() for a, w in zip(st, dstate))
    loss.backward()
    out = {"y": y_t.detach().numpy(), "dx": x_t.grad.numpy()}
    for i, a in enumerate(st):
        out[f"state{i}"] = a.detach().numpy()
        if s_t is not None:
            out[f"state_grad{i}"] = s_t[i].grad.numpy()
    out.update({n: p.grad.numpy() for n, p in net.named_parameters()})
    return out


def fastgates_run(layer, x, state, lengths, dy, dstate):
    y, st = layer.forward(x, None if state is None else (state if len(state) == 2 else state[0]),
                          lengths=lengths)
    st = st if isinstance(st, tuple) else (st,)
    dx = layer.backward(dy, dstate if len(dstate) == 2 else dstate[0])
    out = {"y": y, "dx": dx}
    sg = layer.state_grad if isinstance(layer.state_grad, tuple) else (layer.state_grad,)
    for i, a in enumerate(st):
        out[f"state{i}"] = a
        if state is not None:
            out[f"state_grad{i}"] = sg[i]
    out.update(layer.grads)
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_matches_torch(kind, dtype, config, rng):
    L, bidir, ragged, batch_first, given = CONFIGS[config]
    cls, kw = KINDS[kind]
    T, B, D, H = 7, 4, 5, 6
    dirs = 2 if bidir else 1
    case = case_id(kind=kind, dtype=dtype, config=config)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    torch.manual_seed(T * B + L)
    net = getattr(torch.nn, cls)(D, H, num_layers=L, bidirectional=bidir, batch_first=batch_first,
                                 dtype=tdtype, **kw)
    layer = getattr(fastgates, cls)(D, H, num_layers=L, bidirectional=bidir,
                                    batch_first=batch_first, dtype=dtype, **kw)
    layer.load_state_dict(net.state_dict())                    # torch tensors load as they are

    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(dtype)
    lengths = np.array([4, 7, 1, 6]) if ragged else None       # unsorted
    n_states = 2 if cls == "LSTM" else 1
    shape = (L * dirs, B, H)
    state = tuple((0.5 * rng.standard_normal(shape)).astype(dtype)
                  for _ in range(n_states)) if given else None
    dy = rng.standard_normal((B, T, dirs * H) if batch_first else (T, B, dirs * H)).astype(dtype)
    if ragged:   # torch's padded output does not depend on anything: no gradient there
        valid = np.arange(T)[:, None] < lengths[None, :]
        dy *= (valid.T if batch_first else valid)[..., None]
    dstate = tuple(rng.standard_normal(shape).astype(dtype) for _ in range(n_states))

    want = torch_run(net, x, state, lengths, dy, dstate, batch_first)
    got = fastgates_run(layer, x, state, lengths, dy, dstate)
    assert sorted(got) == sorted(want), case
    for name in want:
        assert_close(got[name], want[name], dtype, f"{name} [{case}]")


def test_torch_state_dict_keys_match(rng):
    for cls in ("RNN", "GRU", "LSTM"):
        for bias in (True, False):
            net = getattr(torch.nn, cls)(3, 4, num_layers=2, bidirectional=True, bias=bias)
            layer = getattr(fastgates, cls)(3, 4, num_layers=2, bidirectional=True, bias=bias)
            assert list(layer.state_dict()) == list(net.state_dict())
            assert [v.shape for v in layer.state_dict().values()] == \
                [tuple(v.shape) for v in net.state_dict().values()]
