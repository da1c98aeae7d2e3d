"""Benchmarks: fastgates against the NumPy reference, PyTorch and JAX.

Run with ``pytest bench/ --benchmark-only`` (add ``FASTGATES_BENCH_BIG=1`` for the
big shape, ``-k 'd2l and lstm'`` to select).  Each table (benchmark group) is one
case with the implementations side by side:

- ``fastgates-2t`` / ``fastgates-1t``: the compiled kernels, n_threads 2 / 1;
- ``reference``: ``fastgates.reference`` (NumPy);
- ``torch``: torch.nn.RNN/GRU/LSTM + autograd on the same weights, 2 threads
  (the reset-before GRU has no torch form: its torch row is torch's GRU);
- ``jax``: a jit-compiled ``lax.scan`` of the same cell, forward and ``jax.grad``.

Kernel cases: cell x shape x direction (fwd: training=False / no_grad; fwdbwd:
forward + BPTT), float32, plus float64 and token-id input at d2l, and ragged
batches (``lengths=`` / torch's pack_padded_sequence) at d2l.  Generation:
time per character of the compiled sampling loop against the PyTorch loop (a
module call, softmax and multinomial per character).  LM training: time per
optimizer step of the textbook recipe (tokens/s in extra_info).

Every implementation is timed inside its own worker process; see conftest.py.
"""

import pytest

from . import _harness as H

pytest.importorskip("pytest_benchmark")

pytestmark = pytest.mark.benchmark(timer=H.CLOCK)


def _kernel_cases():
    for shape in ("tiny", "d2l", "mid", "big"):
        for cell in H.CELLS:
            for direction in ("fwd", "fwdbwd"):
                yield shape, cell, direction, "float32", False
                if shape == "d2l":
                    yield shape, cell, direction, "float32", True
                    yield shape, cell, direction, "float64", False


def _kernel_params():
    # implementation outermost: each worker runs its cases back to back
    for impl in H.KERNEL_IMPLS:
        for shape, cell, direction, dtype, tokens in _kernel_cases():
            spec = H.kernel_spec(impl, cell, shape, direction, dtype, tokens)
            marks = [pytest.mark.big] if shape == "big" else []
            yield pytest.param(spec, id=H.spec_key(spec).replace(":", "-"), marks=marks)


@pytest.mark.parametrize("spec", list(_kernel_params()))
def test_kernel(measure, spec):
    measure(spec)


#: implementations with a ragged form (fastgates lengths=, torch pack_padded_sequence)
RAGGED_IMPLS = ["fastgates-2t", "fastgates-1t", "torch"]


@pytest.mark.parametrize("spec", [
    pytest.param(H.kernel_spec(impl, cell, "d2l", "fwdbwd", ragged=True),
                 id=f"{impl}-d2l-{cell}-f32-ragged-fwdbwd")
    for impl in RAGGED_IMPLS for cell in ("gru_lbr", "lstm")])
def test_kernel_ragged(measure, spec):
    """d2l shape, lengths uniform in [1, 35] (mean 18.3): compare with the padded
    d2l-<cell>-f32-fwdbwd group of test_kernel (bench/ragged.py puts them side by side)."""
    measure(spec)


@pytest.mark.parametrize("spec", [
    pytest.param(H.generate_spec(impl, cell), id=f"{impl}-{cell}")
    for impl in H.GENERATE_IMPLS for cell in ("rnn", "gru_lbr", "lstm")])
def test_generate_per_char(measure, spec):
    measure(spec)


@pytest.mark.parametrize("spec", [
    pytest.param(H.lm_spec(impl, cell), id=f"{impl}-{cell}")
    for impl in H.LM_IMPLS for cell in ("rnn", "gru_lbr", "lstm")])
def test_lm_train_step(measure, spec):
    measure(spec, recipe=H.LM_RECIPE)
