"""Kernels in a child forked after the parent ran OpenMP threads run on one thread.

GNU libgomp does not survive ``fork``: once a process has run a parallel region with
more than one thread, its thread pool does not exist in a forked child, yet the
child's next multi-threaded region waits for it and never returns (measured here:
``multiprocessing`` with the ``fork`` start method hung in the first kernel call,
while ``n_threads=1`` worked).  A one-thread region needs no pool, and the results
are bit-identical for every thread count, so in such a child the kernels run on one
thread and say so once with a RuntimeWarning.  Workers that need threads should use
the ``spawn`` or ``forkserver`` start methods.  (OpenBLAS re-initialises its own pool
after fork; the BLAS calls need nothing from here.)
"""

import os
import warnings

_threads_started = False    # this process ran (or is about to run) a region with > 1 thread
_forked = False             # ... and then forked: we are the child
_warned = False


def _after_fork_in_child():
    global _forked, _warned
    if _threads_started:
        _forked, _warned = True, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def safe_threads(nt: int) -> int:
    """The thread count a kernel may use in this process, given the resolved request ``nt``."""
    global _threads_started, _warned
    if nt <= 1:
        return nt
    if _forked:
        if not _warned:
            _warned = True
            warnings.warn(
                f"fastgates: this process was forked after its parent ran multi-threaded kernels; "
                f"GNU OpenMP cannot start threads here, so the kernels run on 1 thread instead of "
                f"{nt} (same results, slower).  Use multiprocessing's 'spawn' or 'forkserver' "
                f"start method for multi-threaded kernels in worker processes.",
                RuntimeWarning, stacklevel=5)
        return 1
    _threads_started = True
    return nt
