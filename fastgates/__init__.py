"""fastgates: fast CPU kernels for recurrent networks (RNN, GRU, LSTM) with BPTT.

The six kernels run the whole sequence in compiled code (Cython + C + OpenMP);
``fastgates.reference`` implements the same functions in NumPy.  ``cell_forward`` /
``cell_backward`` run any cell of ``fastgates.cells`` (the table every part of the package
reads) with its parameters by name.  ``fastgates.layers`` (``RNN``, ``GRU``, ``LSTM``, and a
class for every other layer the table names) stacks them into PyTorch-style layers over
NumPy arrays, and ``layer.freeze()`` makes a ``Runner`` of one for inference (weights packed
once, a streaming ``step``); ``fastgates.torch`` (imported on demand, needs PyTorch) makes them
``torch.nn`` modules.
"""

from ._checks import Cache, Grads, LSTMGrads
from ._fast import (cell_backward, cell_forward, gru_backward, gru_forward, lstm_backward,
                    lstm_forward, rnn_backward, rnn_forward)
from ._config import show_config
from . import cells, layers, reference
from .layers import GRU, LSTM, RNN
from ._runner import Runner

globals().update(layers.CLASSES)     # the layer classes of the other cells of the table

__version__ = "0.1.0"

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward", "lstm_forward",
           "lstm_backward", "cell_forward", "cell_backward", "Grads", "LSTMGrads", "Cache",
           "reference", "cells", "layers", "RNN", "GRU", "LSTM", "Runner", "show_config",
           "__version__"]
__all__ += [name for name in layers.CLASSES if name not in __all__]
