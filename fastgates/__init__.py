"""fastgates: fast CPU kernels for recurrent networks (RNN, GRU, LSTM) with BPTT.

The six kernels run the whole sequence in compiled code (Cython + C + OpenMP);
``fastgates.reference`` implements the same functions in NumPy.  ``fastgates.layers``
(``RNN``, ``GRU``, ``LSTM``) stacks them into PyTorch-style layers over NumPy arrays;
``fastgates.torch`` (imported on demand, needs PyTorch) makes them ``torch.nn`` modules.
"""

from ._checks import Cache, Grads, LSTMGrads
from ._fast import (gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_backward,
                    rnn_forward)
from ._config import show_config
from . import layers, reference
from .layers import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward", "lstm_forward",
           "lstm_backward", "Grads", "LSTMGrads", "Cache", "reference", "layers", "RNN", "GRU",
           "LSTM", "show_config", "__version__"]
