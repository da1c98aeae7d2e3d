"""The character language model as an ONNX model (``fastgates-lm export``).

Design: the whole :class:`~fastgates.lm.model.CharRNN` in one graph, built with the
recurrent-stack builder of :mod:`fastgates.onnx` (one ONNX recurrent operator per
layer), so that a served model is stepped with its state like the compiled sampler::

    x      = OneHot(tokens, V)          or   Gather(embedding.weight, tokens)   (T, B, .)
    y, h_n, c_n = the stack (x, h0, c0)                                         (T, B, H)
    logits = y fc.weightᵀ + fc.bias                                             (T, B, V)

Inputs ``tokens`` (T, B) int64, ``h0`` (and ``c0`` for an LSTM) (layers, B, H) float32;
outputs ``logits`` (T, B, V), ``h_n`` (and ``c_n``).  T and B are dynamic: feed a
prefix at once, then one token at a time with the returned state.  The vocabulary
(JSON list, id order), the tokenizer and the model's configuration are stored in the
model's metadata (``fastgates.lm.vocab``, ``fastgates.lm.tokens``,
``fastgates.lm.config``).  Dropout is a training-only operation and is left out.
"""

from __future__ import annotations

import json

import numpy as np

__all__ = ["export_model", "describe"]


def _cell_name(config):
    """The table's cell of the model; ValueError when ONNX has no operator for it."""
    cell = config.celldef
    if cell.onnx is None:
        raise ValueError(f"ONNX has no operator for the {cell.name!r} cell (its layer "
                         f"normalisation); the model cannot be exported to ONNX")
    return cell.name


def describe(config):
    """One line on the exported model of ``config``: its cell, size, inputs and outputs."""
    c = config
    state = "h0, c0" if "c" in c.celldef.states else "h0"
    return (f"{c.cell} {c.layers} x {c.hidden}, vocabulary {c.vocab_size}; inputs tokens "
            f"(T, B) int64, {state} ({c.layers}, B, {c.hidden}); outputs logits "
            f"(T, B, {c.vocab_size}), {state.replace('0', '_n')}")


def export_model(model, path, *, vocab=None, tokens="char", opset=None):
    """Write a :class:`~fastgates.lm.model.CharRNN` to an ONNX file.

    Parameters
    ----------
    model : fastgates.lm.CharRNN
    path : str or path-like
        The ``.onnx`` file to write (atomically).
    vocab : fastgates.lm.Vocab or None
        Stored in the metadata (``fastgates.lm.vocab``) so the file is self-contained.
    tokens : str
        The tokenizer of the training text ("char" or "letters"), stored likewise.
    opset : int or None
        ONNX opset, 14 or later (None: ``fastgates.onnx.DEFAULT_OPSET``).

    Returns
    -------
    onnx.ModelProto
        The model that was written: inputs ``tokens`` (T, B) int64, ``h0`` (and ``c0``)
        (layers, B, H) float32; outputs ``logits`` (T, B, V), ``h_n`` (and ``c_n``).

    Raises
    ------
    ImportError
        The onnx package is not installed (``pip install "fastgates[onnx]"``).
    ValueError
        ``opset`` out of range, or a cell ONNX has no operator for (the LayerNorm cells).

    Warns
    -----
    UserWarning
        For a float64 model: the file holds float32 weights (ONNX Runtime runs its
        recurrent operators in float32).

    Examples
    --------
    >>> from fastgates import lm
    >>> from fastgates.lm.onnx_export import export_model
    >>> model = lm.CharRNN(lm.ModelConfig(30, cell="gru", hidden=32, layers=2))
    >>> [o.name for o in export_model(model, "lm.onnx").graph.output]
    ['logits', 'h_n']
    """
    from .. import cells
    from ..onnx import _export
    from ..onnx._graph import Graph, add_stack, float_input, int_input

    cfg, p = model.config, model.params
    cell = cells.get(_cell_name(cfg))
    opset = _export.check_opset(_export.DEFAULT_OPSET if opset is None else opset)
    what = f"the {cfg.dtype} language model"
    precision = _export.float32_note(model.dtype, what)
    if cfg.proj:
        raise _export.ExportError(f"{what} has an LSTM projection (proj={cfg.proj}), which "
                                  "ONNX's LSTM operator cannot express")
    stems = [s.stem for s in cells.param_specs(cell, peephole=cfg.peephole)]
    params = [{s: p[f"rnn.{n}"] for s, n in zip(stems, cells.param_names(stems, k))}
              for k in range(cfg.layers)]
    L, H, V = cfg.layers, cfg.hidden, cfg.vocab_size
    lstm = cell.onnx.op == "LSTM"

    g = Graph()
    inputs = [int_input("tokens", ["T", "B"]), float_input("h0", [L, "B", H])]
    if lstm:
        inputs.append(float_input("c0", [L, "B", H]))
    if cfg.embedding:
        emb = g.const("embedding.weight", np.asarray(p["embedding.weight"], np.float32))
        x = g.op("Gather", [emb, "tokens"], name="embedding", axis=0)
    else:
        x = g.op("OneHot", ["tokens", g.ints("vocab_size", [V]),
                            g.const("off_on", np.array([0, 1], np.float32))],
                 name="one_hot", axis=-1)
    y, h_n, c_n = add_stack(g, cell, params, x, num_layers=L, num_dirs=1, hidden_size=H,
                            h0="h0", c0="c0" if lstm else None)
    fc_t = g.const("fc.weight_T", np.ascontiguousarray(np.asarray(p["fc.weight"], np.float32).T))
    z = g.op("MatMul", [y, fc_t], name="fc_matmul")
    g.op("Add", [z, g.const("fc.bias", np.asarray(p["fc.bias"], np.float32))], name="fc",
         outputs=["logits"])
    g.op("Identity", [h_n], name="h_n", outputs=["h_n"])
    outputs = [float_input("logits", ["T", "B", V]), float_input("h_n", [L, "B", H])]
    if lstm:
        g.op("Identity", [c_n], name="c_n", outputs=["c_n"])
        outputs.append(float_input("c_n", [L, "B", H]))
    meta = {"fastgates.lm.config": json.dumps(cfg.to_dict()), "fastgates.lm.tokens": tokens,
            "fastgates.weights": precision}
    if vocab is not None:
        meta["fastgates.lm.vocab"] = json.dumps(list(vocab.tokens), ensure_ascii=False)
    doc = (f"fastgates-lm character model ({cfg.cell}, {L} x {H}, vocabulary {V}): "
           "tokens (T, B) int64 and the state in; logits (T, B, V) and the state out. "
           f"Weights {precision}.")
    model_proto = g.model(inputs, outputs, opset=opset, name="fastgates_lm", doc=doc,
                          metadata=meta)
    _export.save_model(model_proto, path)
    return model_proto
