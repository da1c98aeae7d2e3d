"""fastgates.torch.to_torch / from_torch, and torch's exporters on fastgates modules.

The converted copies compute what the originals compute, with the same weights,
requires_grad flags and mode, inside any model; modules without a twin are refused
by their path.  ``torch.onnx.export`` (dynamo=False; dynamo=True when onnxscript is
installed), ``torch.jit.trace`` and ``torch.export`` work on fastgates modules directly:
while they record, a fastgates module runs torch.nn's operators on its own parameters.
"""

import io
import warnings

import numpy as np
import pytest

import fastgates

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastgates.torch")

CASES = [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})]
IDS = ["lstm", "gru", "rnn-tanh", "rnn-relu"]


class Model(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        dtype = next(rnn.parameters()).dtype
        self.head = torch.nn.Sequential(
            torch.nn.Linear(rnn.hidden_size * (1 + rnn.bidirectional), 3, dtype=dtype))

    def forward(self, x):
        return self.head(self.rnn(x)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_to_torch_and_back(name, kw, dtype):
    torch.manual_seed(0)
    fg = getattr(ft, name)(5, 7, num_layers=2, bidirectional=True, batch_first=True,
                           dtype=dtype, **kw)
    fg.weight_hh_l1.requires_grad_(False)
    model = Model(fg).eval()
    tn = ft.to_torch(model)
    assert type(tn.rnn) is getattr(torch.nn, name) and tn.rnn is not fg
    assert model.rnn is fg, "the original is not modified"
    assert not tn.training and not tn.rnn.weight_hh_l1.requires_grad
    assert tn.rnn.weight_ih_l0.dtype == dtype
    x = torch.randn(3, 6, 5, dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        assert (model(x) - tn(x)).abs().max() < tol
    for n, p in fg.state_dict().items():
        q = tn.rnn.state_dict()[n]
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), "a copy with equal values"
    back = ft.from_torch(tn, n_threads=1)
    assert type(back.rnn) is type(fg) and back.rnn.n_threads == 1
    assert not back.rnn.weight_hh_l1.requires_grad
    with torch.no_grad():
        assert (back(x) - tn(x)).abs().max() < tol
    assert type(tn.rnn) is getattr(torch.nn, name), "from_torch does not modify its input"


def test_root_module_shared_modules_and_numpy_layers():
    fg = ft.GRU(3, 4)
    tn = ft.to_torch(fg)
    assert type(tn) is torch.nn.GRU
    shared = torch.nn.ModuleList([fg, fg])
    out = ft.to_torch(shared)
    assert out[0] is out[1] and type(out[0]) is torch.nn.GRU
    layer = fastgates.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)
    tl = ft.to_torch(layer)
    assert type(tl) is torch.nn.LSTM and tl.weight_ih_l0.dtype == torch.float64
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    with torch.no_grad():
        y_t = tl(torch.from_numpy(x))[0].numpy()
    assert np.abs(layer.eval().forward(x)[0] - y_t).max() < 1e-10


def test_modules_without_a_twin_are_refused_by_name():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), ft.GRU(3, 4, linear_before_reset=False))
    with pytest.raises(ValueError, match=r"^cannot convert: 1 \(fastgates.torch.GRU\): the "
                                         "textbook GRU"):
        ft.to_torch(model)
    with pytest.raises(ValueError, match="textbook GRU"):
        ft.to_torch(fastgates.GRU(3, 4, linear_before_reset=False))
    with pytest.raises(ValueError, match="peepholes"):
        ft.to_torch(torch.nn.Sequential(ft.LSTM(3, 4, peephole=True)))
    with pytest.raises(ValueError, match="peepholes"):
        ft.to_torch(fastgates.LSTM(3, 4, proj_size=2, peephole=True))
    gru = ft.GRU(3, 4)                      # stands in for a LayerNorm cell
    gru.ln_weight_l0 = torch.nn.Parameter(torch.ones(4))
    with pytest.raises(ValueError, match=r"parameters \['ln_weight_l0'\] have no counterpart"):
        ft.to_torch(gru)
    with pytest.raises(TypeError):
        ft.to_torch("lstm")


def test_from_torch_refuses_what_fastgates_cannot_run():
    with pytest.raises(ValueError, match=r"rnn .*torch.float16"):
        ft.from_torch(Model(torch.nn.GRU(3, 4).half()))

    class MyLSTM(torch.nn.LSTM):
        pass

    with pytest.raises(ValueError, match="subclass of torch.nn.LSTM"):
        ft.from_torch(MyLSTM(3, 4))
    with pytest.raises(TypeError):
        ft.from_torch(fastgates.LSTM(3, 4))


def test_to_torch_result_scripts():
    model = Model(ft.LSTM(4, 6, num_layers=2)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # torch.jit.script is deprecated
        scripted = torch.jit.script(ft.to_torch(model))
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        assert (scripted(x) - model(x)).abs().max() < 1e-5


# -- torch's exporters on fastgates modules ---------------------------------------------------

def legacy_export(module, args, **kw):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, dynamo=False, **kw)
    return f.getvalue()


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_torch_onnx_export_of_fastgates_modules(name, kw, grad):
    """Before: a PythonOp error with grad enabled, and -- worse -- a graph of constants
    (the outputs of the example input) under no_grad.  Now: torch.nn's operators."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = Model(getattr(ft, name)(5, 7, num_layers=2, bidirectional=True, **kw)).eval()
    x = torch.randn(6, 3, 5)
    with torch.set_grad_enabled(grad):
        data = legacy_export(net, (x,), input_names=["x"], dynamic_axes={"x": {0: "T", 1: "B"}})
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    import onnx
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert name in ops, ops
    x2 = torch.randn(9, 4, 5)                    # another T and B: not a constant graph
    with torch.no_grad():
        want = net(x2).numpy()
    assert np.abs(sess.run(None, {"x": x2.numpy()})[0] - want).max() < 1e-4


def test_export_of_a_module_without_twin_is_refused():
    net = ft.GRU(3, 4, linear_before_reset=False)
    with pytest.raises(RuntimeError, match="textbook GRU.*fastgates.onnx.export"):
        legacy_export(net, (torch.randn(2, 1, 3),))


def test_jit_trace_and_torch_export_of_fastgates_modules():
    torch.manual_seed(0)
    net = Model(ft.LSTM(5, 7, num_layers=2)).eval()
    x, x2 = torch.randn(6, 3, 5), torch.randn(6, 3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, (x,))
    with torch.no_grad():
        want = net(x2)
        assert (traced(x2) - want).abs().max() < 1e-5
        ep = torch.export.export(net, (x,))
        assert (ep.module()(x2) - want).abs().max() < 1e-5
    # outside tracing the kernels run (the traced twin never replaces the module)
    assert type(net.rnn) is ft.LSTM


def test_torch_onnx_export_dynamo_of_fastgates_modules():
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = Model(ft.GRU(5, 7, num_layers=2)).eval()
    x = torch.randn(6, 3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), dynamo=True, verbose=False)
    sess = ort.InferenceSession(program.model_proto.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    x2 = torch.randn(6, 3, 5)
    with torch.no_grad():
        want = net(x2).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x2.numpy()})[0]
    assert np.abs(got - want).max() < 1e-4
