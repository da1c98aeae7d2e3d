"""fastgates: fast CPU kernels for recurrent networks (RNN, GRU, LSTM) with BPTT.

The six kernels run the whole sequence in compiled code (Cython + C + OpenMP);
``fastgates.reference`` implements the same functions in NumPy.
"""

from ._checks import Cache, Grads, LSTMGrads
from ._fast import (gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_backward,
                    rnn_forward)
from ._config import show_config
from . import reference

__version__ = "0.1.0"

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward", "lstm_forward",
           "lstm_backward", "Grads", "LSTMGrads", "Cache", "reference", "show_config",
           "__version__"]
