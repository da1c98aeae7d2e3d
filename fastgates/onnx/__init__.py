"""ONNX export and import of fastgates layers: ``fastgates.onnx.export`` / ``load``.

Design: ONNX's recurrent operators (``LSTM``, ``GRU``, ``RNN``) compute what fastgates'
cells compute -- both GRU forms included (``linear_before_reset`` 1 is PyTorch's, 0 the
textbook's) -- but store it differently: gate orders (LSTM i, o, f, c; GRU z, r, h),
both biases in one row, peepholes i, o, f, both directions in one tensor.  Those
conversions live in :mod:`fastgates.cells`, next to the cell definitions; this package
builds graphs (``_graph``), writes layers (``_export``) and reads models (``_load``).

:func:`export` writes one operator per stacked layer with the glue between them;
:func:`load` reads every recurrent operator of a model (e.g. one written by
``torch.onnx.export`` for ``torch.nn.LSTM/GRU/RNN``) as a fastgates layer.  The
character language model exports with ``fastgates-lm export`` (see
:mod:`fastgates.lm.onnx_export`).

Needs the ``onnx`` package (``pip install "fastgates[onnx]"``); ``import fastgates``
never imports it.  Running the exported models needs a runtime such as ONNX Runtime
(``pip install onnxruntime``), which runs its recurrent operators in float32 only.

Ragged batches: ONNX Runtime (1.32) accepts ``sequence_lens`` of 0 and then returns
zeros for that row's ``Y`` (as fastgates does) *and* for its ``Y_h`` / ``Y_c``, where
fastgates returns the initial state; the ONNX spec does not say what 0 means.  Exported
models never pass a 0 to the operators: they clamp ``lengths`` to at least 1 and select
zeros (``y``) and ``h0`` / ``c0`` (states) for length-0 rows with ``Where``.
"""

try:
    import onnx  # noqa: F401
except ImportError as exc:  # onnx is an optional extra
    raise ImportError("fastgates.onnx needs the onnx package: pip install 'fastgates[onnx]' "
                      "(or pip install onnx)") from exc

from ._export import DEFAULT_OPSET, MIN_OPSET, ExportError, export
from ._load import OnnxModelError, load

__all__ = ["export", "load", "ExportError", "OnnxModelError", "DEFAULT_OPSET", "MIN_OPSET"]
