# Types of the public kernels (fastgates/_fast.py).  The overloads on ``training`` let a
# checker know that the default call returns a Cache for backward, training=False None.
# ``lengths`` (variable-length batches) is keyword-only after n_threads.
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import Cache, Grads, LSTMGrads

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward",
           "lstm_forward", "lstm_backward", "cell_forward", "cell_backward"]

_Array = NDArray[np.floating[Any]]
_Threads = int | np.integer[Any] | None
_Nonlinearity = Literal["tanh", "relu"]

@overload
def rnn_forward(x: ArrayLike, h0: ArrayLike | None, w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: ArrayLike, b_hh: ArrayLike, *, nonlinearity: _Nonlinearity = ...,
                training: Literal[True] = ..., n_threads: _Threads = ...,
                lengths: ArrayLike | None = ...) -> tuple[_Array, _Array, Cache]: ...
@overload
def rnn_forward(x: ArrayLike, h0: ArrayLike | None, w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: ArrayLike, b_hh: ArrayLike, *, nonlinearity: _Nonlinearity = ...,
                training: Literal[False], n_threads: _Threads = ...,
                lengths: ArrayLike | None = ...) -> tuple[_Array, _Array, None]: ...
@overload
def rnn_forward(x: ArrayLike, h0: ArrayLike | None, w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: ArrayLike, b_hh: ArrayLike, *, nonlinearity: _Nonlinearity = ...,
                training: bool, n_threads: _Threads = ...,
                lengths: ArrayLike | None = ...) -> tuple[_Array, _Array, Cache | None]: ...
def rnn_backward(dy: ArrayLike | None, dh_n: ArrayLike | None, cache: Cache, *,
                 n_threads: _Threads = ...) -> Grads: ...

@overload
def gru_forward(x: ArrayLike, h0: ArrayLike | None, w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: ArrayLike, b_hh: ArrayLike, *, linear_before_reset: bool = ...,
                training: Literal[True] = ..., n_threads: _Threads = ...,
                lengths: ArrayLike | None = ...) -> tuple[_Array, _Array, Cache]: ...
@overload
def gru_forward(x: ArrayLike, h0: ArrayLike | None, w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: ArrayLike, b_hh: ArrayLike, *, linear_before_reset: bool = ...,
                training: Literal[False], n_threads: _Threads = ...,
                lengths: ArrayLike | None = ...) -> tuple[_Array, _Array, None]: ...
@overload
def gru_forward(x: ArrayLike, h0: ArrayLike | None, w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: ArrayLike, b_hh: ArrayLike, *, linear_before_reset: bool = ...,
                training: bool, n_threads: _Threads = ...,
                lengths: ArrayLike | None = ...) -> tuple[_Array, _Array, Cache | None]: ...
def gru_backward(dy: ArrayLike | None, dh_n: ArrayLike | None, cache: Cache, *,
                 n_threads: _Threads = ...) -> Grads: ...

@overload
def lstm_forward(x: ArrayLike, h0: ArrayLike | None, c0: ArrayLike | None, w_ih: ArrayLike,
                 w_hh: ArrayLike, b_ih: ArrayLike, b_hh: ArrayLike, *,
                 training: Literal[True] = ..., n_threads: _Threads = ...,
                 lengths: ArrayLike | None = ..., w_hr: ArrayLike | None = ...,
                 w_peep: ArrayLike | None = ...) -> tuple[_Array, _Array, _Array, Cache]: ...
@overload
def lstm_forward(x: ArrayLike, h0: ArrayLike | None, c0: ArrayLike | None, w_ih: ArrayLike,
                 w_hh: ArrayLike, b_ih: ArrayLike, b_hh: ArrayLike, *,
                 training: Literal[False], n_threads: _Threads = ...,
                 lengths: ArrayLike | None = ..., w_hr: ArrayLike | None = ...,
                 w_peep: ArrayLike | None = ...) -> tuple[_Array, _Array, _Array, None]: ...
@overload
def lstm_forward(x: ArrayLike, h0: ArrayLike | None, c0: ArrayLike | None, w_ih: ArrayLike,
                 w_hh: ArrayLike, b_ih: ArrayLike, b_hh: ArrayLike, *,
                 training: bool, n_threads: _Threads = ...,
                 lengths: ArrayLike | None = ..., w_hr: ArrayLike | None = ...,
                 w_peep: ArrayLike | None = ...) -> tuple[_Array, _Array, _Array, Cache | None]: ...
def lstm_backward(dy: ArrayLike | None, dh_n: ArrayLike | None, dc_n: ArrayLike | None,
                  cache: Cache, *, n_threads: _Threads = ...) -> LSTMGrads: ...

# The generic pair behind the six functions (every cell of fastgates.cells; used by the layers).
def cell_forward(cell: Any, x: ArrayLike, state: dict[str, ArrayLike | None],
                 params: dict[str, ArrayLike], *, training: bool = ..., n_threads: _Threads = ...,
                 lengths: ArrayLike | None = ...) -> tuple[_Array, dict[str, _Array], Cache | None]: ...
def cell_backward(cell: Any, dy: ArrayLike | None, dstate: dict[str, ArrayLike | None],
                  cache: Cache, *, n_threads: _Threads = ...) -> Grads | LSTMGrads: ...
