"""fastgates.torch's inference cache: packed weights reused across no_grad / inference_mode
calls, and every change of a parameter that bumps its identity, storage or version seen by
the next call (in-place ops under no_grad, load_state_dict, optimizer steps, .to());
``clear_inference_cache`` for the writes that bump none (``.data``, NumPy views)."""

import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastgates.torch as ft  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_threaded_torch")


def fresh_result(m, x):
    """What the module computes from its current parameters, without any cache."""
    m.clear_inference_cache()
    with torch.no_grad():
        y, _ = m(x)
    m.clear_inference_cache()
    return y


def cached_call(m, x, mode="no_grad"):
    ctx = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with ctx:
        return m(x)[0]


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
def test_packed_weights_are_reused_and_equal_the_autograd_path(cls, mode):
    torch.manual_seed(0)
    m = getattr(ft, cls)(5, 7, num_layers=2, bidirectional=True)
    x = torch.randn(4, 3, 5)
    y1 = cached_call(m, x, mode)
    runner = m._inference_cache[1]
    y2 = cached_call(m, x, mode)
    assert m._inference_cache[1] is runner, "the second call packed again"
    assert torch.equal(y1, y2)
    assert torch.equal(y1, m(x)[0].detach()), "cached inference differs from the autograd path"


def test_in_place_change_under_no_grad_is_seen():
    torch.manual_seed(1)
    m = ft.LSTM(5, 7)
    x = torch.randn(4, 2, 5)
    y0 = cached_call(m, x)
    with torch.no_grad():
        m.weight_hh_l0.add_(1)
    y1 = cached_call(m, x)
    assert not torch.equal(y0, y1)
    assert torch.equal(y1, fresh_result(m, x))


def test_load_state_dict_is_seen():
    torch.manual_seed(2)
    m, other = ft.GRU(5, 7), ft.GRU(5, 7)
    x = torch.randn(4, 2, 5)
    cached_call(m, x)
    m.load_state_dict(other.state_dict())
    assert torch.equal(cached_call(m, x), fresh_result(other, x))


@pytest.mark.parametrize("opt", ["sgd", "adam", "adam-foreach"])
def test_optimizer_step_is_seen(opt):
    torch.manual_seed(3)
    m = ft.LSTM(5, 7, num_layers=2)
    x = torch.randn(4, 2, 5)
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1),
            "adam": lambda p: torch.optim.Adam(p, lr=0.1, foreach=False),
            "adam-foreach": lambda p: torch.optim.Adam(p, lr=0.1, foreach=True)}[opt]
    o = make(m.parameters())
    y0 = cached_call(m, x)
    m(x)[0].sum().backward()
    o.step()
    y1 = cached_call(m, x)
    assert not torch.equal(y0, y1)
    assert torch.equal(y1, fresh_result(m, x))


def test_dtype_conversion_is_seen():
    torch.manual_seed(4)
    m = ft.RNN(5, 7)
    x = torch.randn(4, 2, 5)
    cached_call(m, x)
    m.double()
    y = cached_call(m, x.double())
    assert y.dtype == torch.float64 and torch.equal(y, fresh_result(m, x.double()))


def test_writes_through_data_need_clear_inference_cache():
    """The documented escape: ``.data`` has a version counter of its own."""
    torch.manual_seed(5)
    m = ft.GRU(5, 7)
    x = torch.randn(4, 2, 5)
    y0 = cached_call(m, x)
    m.weight_ih_l0.data.mul_(0)                     # not seen (documented)
    assert torch.equal(cached_call(m, x), y0)
    m.clear_inference_cache()
    assert not torch.equal(cached_call(m, x), y0)
    np_view = m.weight_hh_l0.detach().numpy()       # a NumPy view: not seen either
    np_view[...] = 0
    m.clear_inference_cache()
    assert torch.equal(cached_call(m, x), fresh_result(m, x))


def test_dropout_under_no_grad_in_training_mode_does_not_use_the_cache():
    torch.manual_seed(6)
    m = ft.LSTM(5, 7, num_layers=2, dropout=0.5).train()
    x = torch.randn(4, 2, 5)
    with torch.no_grad():
        a, _ = m(x)
        b, _ = m(x)
    assert not torch.equal(a, b), "dropout masks must be drawn in training mode"
    assert m._inference_cache is None


def test_modules_with_a_cache_copy_and_pickle():
    torch.manual_seed(7)
    m = ft.LSTM(5, 7)
    x = torch.randn(4, 2, 5)
    y = cached_call(m, x)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone._inference_cache is None
        assert torch.equal(cached_call(clone, x), y)
    assert m._inference_cache is not None


def test_n_threads_change_is_taken():
    torch.manual_seed(8)
    m = ft.GRU(5, 7)
    x = torch.randn(4, 2, 5)
    y = cached_call(m, x)
    m.n_threads = 1
    assert torch.equal(cached_call(m, x), y)
    assert m._inference_cache[1].n_threads == 1
    assert np.isfinite(y.numpy()).all()


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unidirectional_inference_runs_the_compiled_stack_with_the_same_bits(cls, T, batch_first):
    """A unidirectional stack's inference call goes through the runner's compiled stack
    (Runner._run -> StepPlan.sequence): the autograd path's results, bit for bit, with and
    without an initial state."""
    torch.manual_seed(1)
    m = getattr(ft, cls)(5, 7, num_layers=2, batch_first=batch_first)
    x = torch.randn(3, T, 5) if batch_first else torch.randn(T, 3, 5)
    h = torch.randn(2, 3, 7)
    for hx in (None, (h, torch.randn(2, 3, 7)) if cls == "LSTM" else h):
        with torch.no_grad():
            y, s = m(x, hx)
        runner = m._inference_cache[1]
        assert runner._plan is not None
        y_ref, s_ref = m(x.requires_grad_(), hx)
        x = x.detach()
        assert torch.equal(y, y_ref.detach())
        for a, b in zip(s if cls == "LSTM" else (s,), s_ref if cls == "LSTM" else (s_ref,)):
            assert torch.equal(a, b.detach())
