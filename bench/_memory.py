"""Memory probes: the peak RSS growth of one fastgates call, in a fresh process
(``_harness.py rss SPEC_JSON``, run by report.py)."""

from __future__ import annotations

import gc
import json

try:      # as part of the package bench (pytest), or from bench/ on sys.path
    from ._specs import CELLS, SHAPES, THREADS, cell_option, kernel_spec
    from ._data import kernel_data
except ImportError:
    from _specs import CELLS, SHAPES, THREADS, cell_option, kernel_spec
    from _data import kernel_data


def _rss_now_and_reset_peak():
    """Current RSS after returning free heap memory to the system, with the peak (VmHWM)
    reset to it (Linux: /proc/self/clear_refs).  Returns (rss bytes, reset worked)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    ok = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        ok = False
    return _proc_status("VmRSS"), ok


def _proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_rss_probe(spec_json: str) -> dict:
    """In a fresh process: peak RSS growth (VmHWM - VmRSS before) of one fastgates call."""
    import fastgates

    p = json.loads(spec_json)
    spec = kernel_spec("fastgates-2t", p["cell"], p["shape"], "fwd", p.get("dtype", "float32"))
    T = p.get("T")
    if T:
        SHAPES[spec["shape"]] = (T,) + SHAPES[spec["shape"]][1:]
    d = kernel_data(spec)
    cell = CELLS[spec["cell"]][0]
    W = (d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    training = p["mode"] != "inference"

    def forward(x, training):
        if cell == "lstm":
            out = fastgates.lstm_forward(x, d["h0"], d["c0"], *W, training=training,
                                         n_threads=THREADS)
            return out[0], out[3]
        if cell == "gru":
            out = fastgates.gru_forward(x, d["h0"], *W, training=training, n_threads=THREADS,
                                        **cell_option(spec["cell"]))
        else:
            out = fastgates.rnn_forward(x, d["h0"], *W, training=training, n_threads=THREADS)
        return out[0], out[2]

    forward(d["x"][:1], True)        # thread pool, lazy imports: not part of the measurement
    gc.collect()
    before, reset = _rss_now_and_reset_peak()
    y, cache = forward(d["x"], training)
    if p["mode"] == "fwdbwd":
        if cell == "lstm":
            fastgates.lstm_backward(d["dy"], d["dh_n"], d["dc_n"], cache, n_threads=THREADS)
        elif cell == "gru":
            fastgates.gru_backward(d["dy"], d["dh_n"], cache, n_threads=THREADS)
        else:
            fastgates.rnn_backward(d["dy"], d["dh_n"], cache, n_threads=THREADS)
    peak = _proc_status("VmHWM")
    cache_bytes = 0 if cache is None else cache.nbytes
    return {"peak_rss_growth": peak - before, "peak_reset": reset, "y_bytes": y.nbytes,
            "cache_bytes": cache_bytes, "T": SHAPES[spec["shape"]][0], "mode": p["mode"],
            "cell": p["cell"], "shape": p["shape"]}
