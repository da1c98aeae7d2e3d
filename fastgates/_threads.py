"""Who owns the cores: our OpenMP threads, in every phase of a call.

Inside a kernel call the large GEMMs are split by rows over our OpenMP threads and
each slab is a single-threaded BLAS call, so BLAS must not start its own threads
there (two pools on two cores ran 10x slower when measured).  ``blas_single``
holds scipy's BLAS (the one scipy.linalg.cython_blas calls) at one thread for the
duration of a call and restores the caller's setting afterwards; nested and
concurrent calls share one reference count so the setting always comes back.
"""

import os
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_saved = []
_controllers = None


def _scipy_blas_controllers():
    """threadpoolctl controllers of the BLAS libraries scipy loaded (found once)."""
    global _controllers
    if _controllers is None:
        import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
        from threadpoolctl import ThreadpoolController

        scipy_dir = os.path.dirname(os.path.dirname(os.path.abspath(scipy.linalg.__file__)))
        site = os.path.dirname(scipy_dir)
        blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        mine = [c for c in blas
                if os.path.abspath(c.filepath).startswith((scipy_dir + os.sep, os.path.join(site, "scipy.libs")))]
        _controllers = mine or blas
    return _controllers


@contextmanager
def blas_single():
    """Run the block with scipy's BLAS limited to one thread."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved.clear()
            for c in _scipy_blas_controllers():
                n = c.get_num_threads()
                if n is not None and n != 1:
                    _saved.append((c, n))
                    c.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for c, n in _saved:
                    c.set_num_threads(n)
                _saved.clear()
