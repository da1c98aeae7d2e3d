"""Who owns the cores: our OpenMP threads, in every phase of a call.

Inside a kernel call the large GEMMs are split by rows over our OpenMP threads and
each slab is a single-threaded BLAS call, so BLAS must not start its own threads
there (two pools on two cores ran 10x slower when measured).  ``blas_single``
holds scipy's BLAS (the one scipy.linalg.cython_blas calls) at one thread for the
duration of a call and restores the caller's setting afterwards; nested and
concurrent calls share one reference count so the setting always comes back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Any, int]] = []   # (threadpoolctl controller, thread count to restore)
_controllers: list[Any] | None = None


def _scipy_blas_controllers() -> list[Any]:
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
def blas_single() -> Iterator[None]:
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


# Which OpenMP runtime the kernels use.  Several can be loaded at once (PyTorch bundles
# its own libgomp, and after ``auditwheel repair`` ours is fastgates.libs/libgomp-<hash>.so);
# threadpoolctl limits every one it finds, and these helpers say which one is ours.

_OPENMP_NAMES = {"libgomp": "GNU libgomp", "libomp": "LLVM libomp", "libiomp": "Intel libiomp",
                 "vcomp": "MSVC vcomp"}


def openmp_runtime_path() -> str | None:
    """Real path of the OpenMP runtime library the compiled kernels call, or None.

    None for a serial build, and where it cannot be told (no ``dladdr``: Windows).
    ``omp_get_max_threads`` is looked up through the extension's own handle, so the
    dynamic linker answers with the library the extension is bound to.
    """
    import ctypes
    import ctypes.util
    import sys

    from . import _recurrence

    if not _recurrence.have_openmp() or sys.platform == "win32":
        return None

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    try:
        func = ctypes.CDLL(_recurrence.__file__).omp_get_max_threads
        dladdr = None
        for lib in (None, ctypes.util.find_library("dl")):  # glibc < 2.34 keeps it in libdl
            try:
                dladdr = ctypes.CDLL(lib).dladdr
                break
            except (OSError, AttributeError):
                continue
        if dladdr is None:
            return None
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
        info = DlInfo()
        if not dladdr(ctypes.cast(func, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
            return None
        return os.path.realpath(os.fsdecode(info.dli_fname))
    except (OSError, AttributeError):
        return None


def openmp_runtime_name(path_or_prefix: str | None) -> str:
    """'GNU libgomp', 'LLVM libomp', ... from a library path or threadpoolctl prefix."""
    if not path_or_prefix:
        return "unknown"
    base = os.path.basename(path_or_prefix).lower()
    for prefix in sorted(_OPENMP_NAMES, key=len, reverse=True):  # libiomp before libomp
        if base.startswith(prefix):
            return _OPENMP_NAMES[prefix]
    return base


def openmp_controllers() -> list[tuple[Any, bool]]:
    """threadpoolctl's controllers of every loaded OpenMP runtime, ours marked.

    Returns a list of (controller, is_ours); on a platform where our runtime's path
    cannot be told, no entry is marked.
    """
    from threadpoolctl import ThreadpoolController

    ours = openmp_runtime_path()
    out = []
    for c in ThreadpoolController().lib_controllers:
        if c.user_api != "openmp":
            continue
        out.append((c, ours is not None and os.path.realpath(c.filepath) == ours))
    return out
