# The NumPy reference has the fast path's signatures and results (fastgates/reference.py).
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import Cache as Cache, Grads as Grads, LSTMGrads as LSTMGrads
from ._fast import (cell_backward as cell_backward, cell_forward as cell_forward,
                    gru_backward as gru_backward, gru_forward as gru_forward,
                    lstm_backward as lstm_backward, lstm_forward as lstm_forward,
                    rnn_backward as rnn_backward, rnn_forward as rnn_forward)

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward",
           "lstm_forward", "lstm_backward", "cell_forward", "cell_backward", "cell_step", "Cache",
           "Grads", "LSTMGrads"]

# One time step of a cell, without validation or cache (the LM's NumPy sampler).
def cell_step(cell: Any, x_t: ArrayLike, state: dict[str, NDArray[np.floating[Any]]],
              params: dict[str, NDArray[np.floating[Any]]]) -> dict[str, NDArray[np.floating[Any]]]: ...
