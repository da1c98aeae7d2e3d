# The common call end to end, compiled (included by _recurrence.pyx after _lean_checks.pxi).
#
# A small call (T = 25, B = 1, H = 100) spends as long in the interpreter around the
# kernels as in them: the checks, the thread count, the hold on BLAS's threads, building
# the results.  run_forward / run_backward do all of it for the calls lean_forward /
# lean_backward accept, in one compiled call; for anything else they return None and
# fastgates._fast runs its general path (the full checks, which normalise or raise the
# error that names the argument).  Both paths share every piece: the same checks, the
# same thread policy (forward_threads, backward_threads), the same kernels.

from fastgates._checks import (Grads as _Grads, LSTMGrads as _LSTMGrads,
                               MAX_THREADS as _MAX_THREADS, make_grads as _make_grads)
from fastgates._threads import (SEQ_STEPS as _SEQ_STEPS, small_work_threads as _small_work_threads,
                                unit_for_steps as _unit_for_steps)

cdef dict _CAPPED = {}      # the small-work policy's answers (a pure function of the key)


def forward_threads(n_threads, f):
    """The thread count of the forward call ``f`` (a _checks.Forward): ``n_threads``
    (validated by _checks.check_n_threads) resolved, capped by the small-work policy for
    its step (fastgates._threads.small_work_threads with unit_for_steps(T); token ids
    count as D = 0), then the fork guard (fastgates._fork.safe_threads)."""
    return _forward_threads(n_threads, f)


def backward_threads(n_threads, b, cache):
    """forward_threads for the backward call ``b`` (a _checks.Backward) of ``cache``."""
    return _backward_threads(n_threads, b, cache)


cdef int _forward_threads(n_threads, f) except -1:
    return _call_threads(n_threads, f.G, f.H, 0 if f.tokens else f.D, f.dtype.itemsize, f.T)


cdef int _backward_threads(n_threads, b, cache) except -1:
    return _call_threads(n_threads, b.G, b.H, 0 if cache.tokens else b.D,
                         cache.dtype.itemsize, b.T)


cdef int _call_threads(object n_threads, int G, int H, int D, int itemsize, int T) except -1:
    cdef int nt = _resolve_threads(n_threads)
    if nt <= 1:
        return nt
    key = (nt, G, H, D, itemsize, T >= _SEQ_STEPS)
    capped = _CAPPED.get(key)
    if capped is None:
        capped = _small_work_threads(nt, G, H, D, itemsize, 1, None, _unit_for_steps(T))
        if len(_CAPPED) < 256:
            _CAPPED[key] = capped
    nt = capped
    return _fork.safe_threads(nt) if nt > 1 else nt


cdef inline bint _plain_threads(object n_threads) noexcept:
    """n_threads is one check_n_threads passes unchanged without a word: None or 1..MAX."""
    return n_threads is None or (type(n_threads) is int and 0 < n_threads <= _MAX_THREADS)


def run_forward(cell, x, state, params, training, n_threads, lengths):
    """cell_forward's common call: (y, h_n, c_n, cache) as _fast's general path returns
    them, or None when lean_forward does not accept the call (or n_threads needs the
    full check)."""
    if not _plain_threads(n_threads):
        return None
    f = _lean_forward(cell, x, state, params, training, lengths)
    if f is None:
        return None
    return _forward_any(f, training, _forward_threads(n_threads, f), None)


def run_backward(kernel, dy, dh_n, dc_n, cache, n_threads):
    """cell_backward's common call: the gradient tuple (Grads or LSTMGrads), or None when
    lean_backward does not accept the call, n_threads needs the full check, the cell has
    parameters beyond the four, or BLAS's thread count is not held here (_threads binds
    the compiled hold on its first use)."""
    if not _plain_threads(n_threads) or _blas_get == NULL:
        return None
    b = _lean_backward(kernel, dy, dh_n, dc_n, cache)
    if b is None:
        return None
    cdef int nt = _backward_threads(n_threads, b, cache)
    _blas_hold()
    try:
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dparams = _backward_any(cache, b, nt)
    finally:
        _blas_release()
    if dparams:           # (lean_backward accepts no cache with extra parameters)
        return _make_grads(cache.celldef, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, extra=dparams)
    if dc0 is not None:   # the cells with a cell state (make_grads' choice)
        return tuple.__new__(_LSTMGrads, (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh))
    return tuple.__new__(_Grads, (dx, dh0, dw_ih, dw_hh, db_ih, db_hh))
