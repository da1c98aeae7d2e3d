"""The vector sigmoid/tanh's properties, checked under whichever level is active (the
in-process test and every level's isa_sweep run them): a few ulps of the exact values
over [-40, 40] and down to 1e-12 (relative accuracy in the sigmoid's tiny tail and at
small tanh arguments), exact saturation, NaN propagation, odd symmetry."""

import warnings

import numpy as np

from fastgates import _recurrence

SIGMOID, TANH = 0, 1
MAX_ULPS = 4     # measured: <= 2.5 in float32 over every float in [-100, 100] (avx2, generic)


def _ulps(got, exact, dtype):
    exact = exact.astype(np.longdouble)
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - exact) / spacing


def check_accuracy(dtype):
    x = np.concatenate([np.linspace(-40, 40, 100_001), np.geomspace(1e-12, 40, 50_000),
                        -np.geomspace(1e-12, 40, 50_000)]).astype(dtype)
    xl = x.astype(np.longdouble)
    sig = _recurrence.activation(SIGMOID, x)
    tanh = _recurrence.activation(TANH, x)
    assert sig.dtype == tanh.dtype == dtype
    worst_sig = np.max(_ulps(sig, 1 / (1 + np.exp(-xl)), dtype))
    worst_tanh = np.max(_ulps(tanh, np.tanh(xl), dtype))
    assert worst_sig <= MAX_ULPS, f"sigmoid {dtype.__name__}: {worst_sig} ulps"
    assert worst_tanh <= MAX_ULPS, f"tanh {dtype.__name__}: {worst_tanh} ulps"


def check_saturation_and_nan(dtype):
    x = np.array([-1e30, -1e4, -800, -100, 100, 800, 1e4, 1e30, -np.inf, np.inf, np.nan], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sig = _recurrence.activation(SIGMOID, x)
        tanh = _recurrence.activation(TANH, x)
    assert np.array_equal(sig[[1, 2, 8]], [0, 0, 0]) and np.all(sig[[4, 5, 6, 7, 9]] == 1)
    assert np.all(sig[:-1] >= 0) and np.all(sig[:-1] <= 1)
    assert np.all(tanh[[0, 1, 2, 3, 8]] == -1) and np.all(tanh[[4, 5, 6, 7, 9]] == 1)
    assert np.isnan(sig[-1]) and np.isnan(tanh[-1])
    # never outside [0, 1] resp. [-1, 1], also in the last ulps before saturation
    y = np.linspace(-120, 120, 480_001).astype(dtype)
    s, t = _recurrence.activation(SIGMOID, y), _recurrence.activation(TANH, y)
    assert s.min() >= 0 and s.max() <= 1 and t.min() >= -1 and t.max() <= 1
    # odd symmetry (also at +-0) and tiny arguments keep full relative accuracy
    z = np.array([0.0, -0.0], dtype)
    assert np.array_equal(np.signbit(_recurrence.activation(TANH, z)), [False, True])
    assert np.array_equal(_recurrence.activation(SIGMOID, z), [0.5, 0.5])
    t = np.geomspace(1e-30, 1e-9, 50).astype(dtype)   # tanh(t) == t to the last bit here
    assert np.array_equal(_recurrence.activation(TANH, -t), -_recurrence.activation(TANH, t))
    assert np.allclose(_recurrence.activation(TANH, t), t, rtol=4 * np.finfo(dtype).eps, atol=0)
    u = np.linspace(-30, 30, 60_001).astype(dtype)
    assert np.array_equal(_recurrence.activation(TANH, -u), -_recurrence.activation(TANH, u))


def check_all():
    for dtype in (np.float32, np.float64):
        check_accuracy(dtype)
        check_saturation_and_nan(dtype)
