# Types of the public classes of fastgates/_checks.py; the validation helpers stay untyped.
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[np.floating[Any]]

# Both tuples also give their gradients by name: param_grads (parameter stem -> gradient,
# extra parameters of a cell included) and state_grads (state name -> gradient).
class Grads(NamedTuple):
    dx: _Array | None
    dh0: _Array
    dw_ih: _Array
    dw_hh: _Array
    db_ih: _Array
    db_hh: _Array
    @property
    def param_grads(self) -> dict[str, _Array]: ...
    @property
    def state_grads(self) -> dict[str, _Array]: ...

class LSTMGrads(NamedTuple):
    @property
    def param_grads(self) -> dict[str, _Array]: ...
    @property
    def state_grads(self) -> dict[str, _Array]: ...
    dx: _Array | None
    dh0: _Array
    dc0: _Array
    dw_ih: _Array
    dw_hh: _Array
    db_ih: _Array
    db_hh: _Array

class Cache:
    cell: str
    variant: str
    dtype: np.dtype[Any]
    x: NDArray[Any]
    tokens: bool
    D: int
    w_ih: _Array | None
    w_hh: _Array
    hs: _Array
    gates: _Array | None
    extra: _Array | None
    cs: _Array | None
    tc: _Array | None
    lengths: NDArray[np.int64] | None
    packing: Any
    params: dict[str, _Array] | None
    saved: dict[str, _Array] | None
    def __init__(self, **fields: Any) -> None: ...
    @property
    def shape(self) -> tuple[int, int, int, int]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def proj_size(self) -> int: ...
    @property
    def celldef(self) -> Any: ...

def __getattr__(name: str) -> Any: ...
