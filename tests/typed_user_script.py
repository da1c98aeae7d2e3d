"""A user's script that calls every public function of fastgates; ``mypy --strict`` passes it.

tests/test_packaging.py type-checks it against the fastgates that is imported (the wheel's
stubs and py.typed when installed) and runs it.
"""

from typing import Any

import numpy as np
from numpy.typing import NDArray

import fastgates
from fastgates import Cache, Grads, LSTMGrads, reference

T, B, D, H = 5, 3, 4, 8
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, D))
tokens = rng.integers(0, D, (T, B))


def params(G: int) -> tuple[NDArray[np.float64], ...]:
    return (rng.standard_normal((G * H, D)), rng.standard_normal((G * H, H)),
            rng.standard_normal(G * H), rng.standard_normal(G * H))


y, h_n, cache = fastgates.rnn_forward(x, None, *params(1), nonlinearity="relu", n_threads=1)
g: Grads = fastgates.rnn_backward(np.ones_like(y), h_n, cache)
dx: NDArray[Any] | None = g.dx
y, h_n, cache = fastgates.gru_forward(tokens, None, *params(3), linear_before_reset=False)
g = fastgates.gru_backward(y, None, cache, n_threads=-1)
y, h_n, c_n, lcache = fastgates.lstm_forward(x, h_n, None, *params(4), n_threads=np.int64(2))
lg: LSTMGrads = fastgates.lstm_backward(None, h_n, c_n, lcache)
y, h_n, c_n, nothing = fastgates.lstm_forward(x, None, None, *params(4), training=False)
assert nothing is None
maybe: Cache | None = fastgates.lstm_forward(x, None, None, *params(4), training=bool(T))[3]
r_cache: Cache = reference.gru_forward(x, None, *params(3))[2]
rg: Grads = reference.gru_backward(None, None, r_cache)
y2, _, rc = reference.rnn_forward(x, None, *params(1))
reference.rnn_backward(y2, None, rc)
y3, _, _, rl = reference.lstm_forward(x, None, None, *params(4))
reference.lstm_backward(y3, None, None, rl)
shape: tuple[int, int, int, int] = lcache.shape
states: NDArray[np.floating[Any]] = lcache.hs
fastgates.show_config()
cfg: dict[str, Any] = fastgates.show_config(mode="dicts")
version: str = fastgates.__version__
print(lg.dc0.shape, rg.dw_hh.dtype, shape, states.shape, len(cfg), version, dx is None, maybe)
