# The compiled sampling loop (fastgates/lm/_sampling.pyx); private, called by generation.py.
from typing import Any

import numpy as np
from numpy.typing import NDArray

CELLS: dict[str, int]

def random_doubles(seed: int, n: int) -> list[float]: ...
def sample(cell: int, layers: list[Any], fc_w: NDArray[np.floating[Any]],
           fc_b: NDArray[np.floating[Any]], embedding: NDArray[np.floating[Any]] | None,
           h_state: NDArray[np.floating[Any]], c_state: NDArray[np.floating[Any]],
           prefix: NDArray[np.int64], out: NDArray[np.int64], temperature: float, top_k: int,
           seed: int, n_threads: int = ...) -> None: ...
def resolve_threads(n_threads: int | None) -> int: ...
