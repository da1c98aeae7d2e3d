"""Keep BLAS single-threaded around the language model's own NumPy work.

Design: the kernels run their time loops on OpenMP threads; the output layer,
the loss and the clipping between kernel calls are NumPy operations whose BLAS
(OpenBLAS) has its own thread pool.  Both pools busy-wait for a while after
each call, so alternating between them on two cores makes each wait for the
other: measured here (LSTM, H 256, B 32, T 35, 2 cores), a training step took
113 ms with NumPy's BLAS at two threads against 47 ms with it at one thread
(the output-layer products themselves cost 3.7 ms either way).  Training,
evaluation and generation therefore hold every BLAS library at one thread while
they run; the kernels' OpenMP threads keep the cores.
"""

from __future__ import annotations

import contextlib

_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def blas_limit(n: int | None = 1):
    """Context manager: every BLAS library at ``n`` threads (None: leave them alone)."""
    if n is None:
        return contextlib.nullcontext()
    return _get_controller().limit(limits=int(n), user_api="blas")
