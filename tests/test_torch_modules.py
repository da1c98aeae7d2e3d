"""fastgates.torch.RNN / GRU / LSTM as drop-ins for torch.nn's: same initialisation and
names, same outputs and gradients (tensors, PackedSequence, unbatched, (h0, c0)),
gradcheck, the same training run, and clear errors for what is not supported."""

import numpy as np
import pytest

import fastgates
from conftest import assert_close, case_id

torch = pytest.importorskip("torch")
import fastgates.torch as ft  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

KINDS = {"rnn-tanh": ("RNN", {"nonlinearity": "tanh"}),
         "rnn-relu": ("RNN", {"nonlinearity": "relu"}),
         "gru": ("GRU", {}),
         "lstm": ("LSTM", {})}
NP = {torch.float32: np.float32, torch.float64: np.float64}


pytestmark = pytest.mark.usefixtures("single_threaded_torch")


def pair(kind, seed=0, **kw):
    """(torch.nn module, fastgates.torch module) built under the same seed."""
    cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    ref = getattr(torch.nn, cls)(5, 6, **extra, **kw)
    torch.manual_seed(seed)
    mine = getattr(ft, cls)(5, 6, **extra, **kw, n_threads=1)
    return ref, mine


def flat(out):
    """All tensors of a module's output: (y, h) / (y, (h, c)); PackedSequence -> its data."""
    y, s = out
    y = y.data if isinstance(y, torch.nn.utils.rnn.PackedSequence) else y
    return [y, *(s if isinstance(s, tuple) else (s,))]


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_initialisation_and_names(kind):
    for bias in (True, False):
        ref, mine = pair(kind, seed=3, num_layers=2, bidirectional=True, bias=bias)
        assert list(mine.state_dict()) == list(ref.state_dict())
        assert [n for n, _ in mine.named_parameters()] == [n for n, _ in ref.named_parameters()]
        for (n, a), b in zip(ref.state_dict().items(), mine.state_dict().values()):
            assert torch.equal(a, b), n
    if kind != "rnn-relu":      # torch's repr leaves the nonlinearity out; ours shows it
        assert repr(mine) == repr(ref)


# input kinds: how the batch is given
INPUTS = ["tensor", "batch-first", "unbatched", "packed-unsorted", "packed-sorted"]


@pytest.mark.parametrize("states", ["given", "none"])
@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch_nn(kind, dtype, inputs, states):
    T, B = 6, 4
    batch_first = inputs == "batch-first"
    ref, mine = pair(kind, seed=1, num_layers=2, bidirectional=True, batch_first=batch_first,
                     dtype=dtype)
    case = case_id(kind=kind, dtype=NP[dtype], inputs=inputs, states=states)
    g = torch.Generator().manual_seed(7)
    shape = {"batch-first": (B, T, 5), "unbatched": (T, 5)}.get(inputs, (T, B, 5))
    x = torch.randn(shape, dtype=dtype, generator=g)
    sshape = (4, 6) if inputs == "unbatched" else (4, B, 6)
    s0 = [0.5 * torch.randn(sshape, dtype=dtype, generator=g) for _ in range(2)]

    results = []
    for net in (ref, mine):
        net.zero_grad()
        xx = x.clone().requires_grad_()
        ss = [s.clone().requires_grad_() for s in s0]
        inp = xx
        if inputs.startswith("packed"):
            lengths = torch.tensor([6, 5, 3, 1] if inputs == "packed-sorted" else [3, 6, 1, 5])
            inp = pack_padded_sequence(xx, lengths, enforce_sorted=inputs == "packed-sorted")
        hx = None if states == "none" else (tuple(ss) if KINDS[kind][0] == "LSTM" else ss[0])
        out = net(inp, hx)
        tensors = flat(out)
        w = torch.Generator().manual_seed(11)
        loss = sum((t * torch.randn(t.shape, dtype=dtype, generator=w)).sum() for t in tensors)
        loss.backward()
        if inputs.startswith("packed"):
            packed = out[0]
            extra = [packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices]
        else:
            extra = []
        grads = [xx.grad] + ([s.grad for s in ss[:len(tensors) - 1]] if states == "given" else [])
        results.append((tensors, extra, grads, [p.grad for p in net.parameters()]))
    (t_ref, e_ref, g_ref, p_ref), (t_me, e_me, g_me, p_me) = results
    for i, (a, b) in enumerate(zip(t_me, t_ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, (case, i)
        assert_close(a.detach().numpy(), b.detach().numpy(), NP[dtype], f"output {i} [{case}]")
    for a, b in zip(e_me, e_ref):
        assert (a is None and b is None) or torch.equal(a, b), case
    for i, (a, b) in enumerate(zip(g_me + p_me, g_ref + p_ref)):
        assert_close(a.numpy(), b.numpy(), NP[dtype], f"gradient {i} [{case}]")


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradcheck_float64(kind):
    """gradcheck of the module w.r.t. input, states and every parameter: stacked,
    bidirectional, packed unsorted rows, dropout (the seed is reset inside the function,
    so every evaluation draws the same masks)."""
    cls, extra = KINDS[kind]
    lstm = cls == "LSTM"
    torch.manual_seed(0)
    net = getattr(ft, cls)(3, 4, num_layers=2, bidirectional=True, dropout=0.4,
                           dtype=torch.float64, **extra)
    names = [n for n, _ in net.named_parameters()]
    ps = [p.detach().clone().requires_grad_() for p in net.parameters()]
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
              for _ in range(2 if lstm else 1)]
    lengths = torch.tensor([3, 5, 2])

    def f(x, *args):
        st, ps_in = args[:len(states)], args[len(states):]
        torch.manual_seed(1)
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        y, s = torch.func.functional_call(net, dict(zip(names, ps_in)),
                                          (packed, tuple(st) if lstm else st[0]))
        return (y.data, *(s if isinstance(s, tuple) else (s,)))

    assert torch.autograd.gradcheck(f, (x, *states, *ps), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_swapped_model_trains_to_the_same_loss(dtype):
    """The same model built on torch.nn.LSTM and on fastgates.torch.LSTM, same seed, same
    data, 15 Adam steps: the same losses at every step."""

    class Tagger(torch.nn.Module):
        def __init__(self, rnn_cls):
            super().__init__()
            self.rnn = rnn_cls(4, 8, num_layers=2, bidirectional=True, batch_first=True,
                               dtype=dtype)
            self.head = torch.nn.Linear(16, 3, dtype=dtype)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 10, 4, dtype=dtype, generator=g)
    target = (x.sum(-1).cumsum(1) > 0).long() + (x[..., 0] > 1).long()
    losses = {}
    for name, cls in (("torch", torch.nn.LSTM), ("fastgates", ft.LSTM)):
        torch.manual_seed(42)
        model = Tagger(cls)
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        run = []
        for _ in range(15):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 3), target.reshape(-1))
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses[name] = np.array(run)
    assert losses["torch"][-1] < 0.8 * losses["torch"][0]            # it did train
    rtol = 1e-9 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(losses["fastgates"], losses["torch"], rtol=rtol)


def test_eval_no_grad_and_dropout_seeding():
    torch.manual_seed(0)
    net = ft.GRU(5, 6, num_layers=3, dropout=0.5, dtype=torch.float64)
    x = torch.randn(7, 2, 5, dtype=torch.float64)
    torch.manual_seed(5)
    a = net(x)[0]
    torch.manual_seed(5)
    b = net(x)[0]
    assert torch.equal(a, b) and a.grad_fn is not None           # masks follow torch's seed
    assert not torch.equal(net(x)[0], a)
    net.eval()
    with torch.no_grad():
        c = net(x)[0]
    assert c.grad_fn is None
    plain = ft.GRU(5, 6, num_layers=3, dtype=torch.float64)
    plain.load_state_dict(net.state_dict())
    assert torch.equal(plain(x)[0], c)
    layer = fastgates.GRU(5, 6, num_layers=3, dtype=np.float64)
    layer.load_state_dict(net.state_dict())
    np.testing.assert_array_equal(layer.eval().forward(x.numpy())[0], c.numpy())


def test_reset_before_gru_extra_keyword():
    torch.manual_seed(0)
    net = ft.GRU(5, 6, num_layers=2, linear_before_reset=False, dtype=torch.float64)
    assert "linear_before_reset=False" in repr(net)
    layer = fastgates.GRU(5, 6, num_layers=2, linear_before_reset=False, dtype=np.float64)
    layer.load_state_dict(net.state_dict())
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    y, h = net(x)
    y2, h2 = layer.forward(x.numpy())
    np.testing.assert_array_equal(y.detach().numpy(), y2)
    np.testing.assert_array_equal(h.detach().numpy(), h2)


def test_torch_nn_loads_our_state_dict():
    torch.manual_seed(0)
    mine = ft.LSTM(5, 6, num_layers=2, bidirectional=True)
    ref = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True)
    ref.load_state_dict(mine.state_dict())
    x = torch.randn(3, 2, 5)
    assert_close(mine(x)[0].detach().numpy(), ref(x)[0].detach().numpy(), np.float32, "y")


def test_unsupported_options_raise_clear_errors():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size=6"):
        ft.LSTM(5, 6, proj_size=6)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        ft.GRU(5, 6, proj_size=3)
    with pytest.raises(ValueError, match="device='cuda' is not supported.*CPU"):
        ft.LSTM(5, 6, device="cuda")
    with pytest.raises(TypeError, match="dtype=torch.float16 is not supported"):
        ft.RNN(5, 6, dtype=torch.float16)
    net = ft.LSTM(5, 6)
    with pytest.raises(ValueError, match="input is on device meta"):
        net(torch.empty(3, 2, 5, device="meta"))
    with pytest.raises(TypeError, match="input has dtype torch.float64 but the parameters are torch.float32"):
        net(torch.zeros(3, 2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="input has 4 features, expected input_size=5"):
        net(torch.zeros(3, 2, 4))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\) must have shape \(1, 2, 6\)"):
        net(torch.zeros(3, 2, 5), (torch.zeros(1, 2, 6), torch.zeros(2, 2, 6)))
    with pytest.raises(TypeError, match=r"hx of an LSTM must be a tuple \(h_0, c_0\)"):
        net(torch.zeros(3, 2, 5), torch.zeros(1, 2, 6))
    with pytest.raises(ValueError, match="input must be 2-D .* or 3-D"):
        net(torch.zeros(3))
    net.half()
    with pytest.raises(TypeError, match="parameter weight_ih_l0 has dtype torch.float16"):
        net(torch.zeros(3, 2, 5, dtype=torch.float16))
