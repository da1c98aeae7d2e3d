"""Who owns the cores: our OpenMP threads, in every phase of a call.

Inside a kernel call the large GEMMs are split by rows over our OpenMP threads and
each slab is a single-threaded BLAS call, so BLAS must not start its own threads
there (two pools on two cores ran 10x slower when measured).  Only the backward pass
calls BLAS (its dW_ih and dx products; the forward pass and the streaming step run
entirely in the compiled kernels), so only the backward holds scipy's BLAS (the one
scipy.linalg.cython_blas calls) at one thread, with :func:`blas_hold` /
:func:`blas_release` around the call; the caller's setting comes back afterwards, and
nested and concurrent calls share one reference count so the setting always returns.

The hold is a cached handle: the addresses of scipy's ``openblas_get_num_threads`` /
``openblas_set_num_threads`` (found once through threadpoolctl) bound in the compiled
core, so a hold and its release cost one get and, when the caller runs more than one
BLAS thread, two sets.  Measured per hold + release on an AMD EPYC (Zen 4, 2 cores),
scipy 1.x's OpenBLAS (pthreads), threadpoolctl 3.8:

    threadpoolctl round trip (get, set 1, set back)   3.9 - 5.9 us
    ctypes calls of the same two functions             0.56 us
    compiled handle (this module)                      0.07 us

Where scipy's BLAS is not a pthreads OpenBLAS (an OpenMP build, MKL, ...) the hold
falls back to the threadpoolctl round trip.  threadpoolctl >= 3.6 lets only one Python
thread at a time change OpenBLAS's count (the others' calls are silently ignored),
which the compiled handle does not suffer from.

Small work runs on one thread (:func:`small_work_threads`): a parallel region costs
about 0.7 us to start on this machine and each step's barrier 0.05 us, which a step too
small cannot pay back (the crossover is lower for a sequence than for a single step).  The kernels' results are bit-identical for every thread count, so the
policy never changes a result.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Any, int]] = []   # (threadpoolctl controller, thread count to restore)
_controllers: list[Any] | None = None
_bound: bool | None = None           # None: not tried yet; True: the compiled handle holds


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


def _openblas_functions(controller) -> tuple[int, int] | None:
    """Addresses of a pthreads OpenBLAS's get/set_num_threads (with its symbol affixes)."""
    if getattr(controller, "internal_api", None) != "openblas":
        return None
    if getattr(controller, "threading_layer", None) != "pthreads":
        return None          # an OpenMP OpenBLAS keeps per-thread counts: threadpoolctl knows
    lib = getattr(controller, "dynlib", None)
    pre = getattr(controller, "_symbol_prefix", "")
    post = getattr(controller, "_symbol_suffix", "")
    try:
        get = getattr(lib, f"{pre}openblas_get_num_threads{post}")
        put = getattr(lib, f"{pre}openblas_set_num_threads{post}")
    except AttributeError:
        return None
    return (ctypes.cast(get, ctypes.c_void_p).value, ctypes.cast(put, ctypes.c_void_p).value)


def _bind() -> bool:
    """Bind the compiled hold to scipy's OpenBLAS when it can be (once)."""
    global _bound, _compiled_hold, _compiled_release
    if _bound is None:
        from . import _recurrence

        found = [_openblas_functions(c) for c in _scipy_blas_controllers()]
        _bound = len(found) == 1 and found[0] is not None and _recurrence.blas_bind(*found[0])
        _compiled_hold, _compiled_release = _recurrence.blas_hold, _recurrence.blas_release
    return _bound


_compiled_hold = _compiled_release = None    # the compiled hold and release, found by _bind


def _tpc_hold() -> None:
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


def _tpc_release() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            for c, n in _saved:
                c.set_num_threads(n)
            _saved.clear()


def blas_hold() -> None:
    """Hold scipy's BLAS at one thread until the matching :func:`blas_release`."""
    if _bound or (_bound is None and _bind()):
        _compiled_hold()
    else:
        _tpc_hold()


def blas_release() -> None:
    """End a :func:`blas_hold`; the last one restores the caller's thread count."""
    if _bound:
        _compiled_release()
    else:
        _tpc_release()


@contextmanager
def blas_single() -> Iterator[None]:
    """Run the block with scipy's BLAS limited to one thread."""
    blas_hold()
    try:
        yield
    finally:
        blas_release()


# Small-work thread policy.
#
# One step of a layer streams its weights, G*H*(D+H) elements (w_ih and w_hh), and does
# B*G*H*(D+H) multiply-adds; a forward pass over T steps does the same per step on
# average (the input projection of all steps, then one recurrent product per step).  A
# second thread halves that work but costs a parallel region per call (~0.7 us to start
# here) and a barrier per layer and step (0.05 us with the kernels' own barrier,
# src_c/barrier.h; libgomp's took 0.33 us).  So the crossover depends on how many steps
# a call runs: one step per call pays the region's start every time, a sequence pays it
# once.  Token ids read one row of w_ih^T per batch row: count them as D = 0.
#
# One step per call (the streaming step, ``Runner.step``), measured with ``python
# bench/small_work.py step 1,2`` (one layer's step, float32, best of 7 interleaved
# rounds; B 1-16, D 8/64/256, H 32-384, G 1/3/4) on an AMD EPYC (Zen 4, 2 cores, 1 MiB
# L2 per core), time with 1 thread / time with 2 threads:
#
#   weights (G*H*(D+H)*4 bytes)   B = 1         B = 2         B = 4         B = 16
#   < 128 KiB                     0.39 - 0.91   0.41 - 0.85   0.31 - 0.59   0.38 - 1.15
#   128 - 256 KiB                 0.87 - 1.12   0.75 - 1.14   0.58 - 0.84   0.69 - 1.07
#   256 - 512 KiB                 1.07 - 1.27   0.95 - 1.34   0.74 - 0.96   0.84 - 1.21
#   0.5 - 1 MiB                   1.26 - 1.89   1.23 - 1.90   0.94 - 1.36   0.93 - 1.56
#   > 1 MiB                       1.53 - 1.82   1.58 - 1.96   1.20 - 1.69   1.50 - 1.90
#
# so the crossover sits at about 256 KiB of weights per layer whatever the batch (B = 4
# crosses later, near 600 KiB, which the rule does not chase: it loses at most ~25 %
# there), the region's start dominating a single step: SMALL_STEP_BYTES.
#
# A sequence (T = 25), ``python bench/small_work.py seq 1,4``: the same sizes plus
# H = 100, the forward pass in inference (inf) and a training step (forward + BPTT,
# fb), the median ratio (and the range) of the sizes in each row; measured again on
# 2026-12-04 (same machine type, after the training forward's copies moved into its
# region and the cache kept w_hh packed: a two-thread training step costs less than it
# did when the rule was first set at 128 KiB):
#
#   weights            inf B = 1          inf B = 4          fb B = 1           fb B = 4
#   < 32 KiB           0.85 (0.78-0.90)   0.91 (0.88-0.99)   0.85 (0.80-0.87)   0.85 (0.80-1.02)
#   32 - 64 KiB        0.94 (0.84-1.16)   1.14 (0.90-1.35)   0.96 (0.86-1.08)   0.99 (0.88-1.13)
#   64 - 96 KiB        1.11 (0.95-1.18)   1.07 (0.93-1.26)   1.03 (0.97-1.08)   1.03 (0.96-1.13)
#   96 - 128 KiB       1.22 (1.12-1.27)   1.30 (1.14-1.42)   1.21 (1.05-1.33)   1.21 (1.02-1.29)
#   128 - 256 KiB      1.21 (1.11-1.47)   1.27 (0.75-1.54)   1.23 (1.06-1.33)   1.15 (1.02-1.38)
#   256 - 512 KiB      1.50 (1.24-1.81)   1.52 (1.08-1.66)   1.36 (1.23-1.51)   1.33 (0.83-1.47)
#   0.5 - 1 MiB        1.56 (1.39-1.70)   1.62 (1.48-1.81)   1.38 (1.29-1.50)   1.42 (1.26-1.83)
#
# so a call of at least SEQ_STEPS steps uses SMALL_SEQ_BYTES = 64 KiB (below it one
# thread wins by 5-15 %; from it two threads win, by 20-30 % from 96 KiB: the RNN with
# D = 65, H = 100, 66 KB, trains 1.08x faster on two).  The forward and the backward
# pass of a training step use the same rule: a one-thread forward followed by a
# two-thread backward costs more than either alone (the second thread sleeps through
# the forward and must be woken).  The rule: a call of L layers whose weights average
# W bytes per layer runs on at most 1 + W // unit threads.  Only 1 vs 2 threads was
# measured (the machine has 2 cores); one more thread per unit beyond is the same model,
# not a measurement.

#: Weight bytes per layer that pay for each thread beyond the first, one step per call.
SMALL_STEP_BYTES = 256 * 1024
#: The same for a call of at least SEQ_STEPS steps (forward or backward).
SMALL_SEQ_BYTES = 64 * 1024
#: Steps from which a call counts as a sequence.
SEQ_STEPS = 8


def unit_for_steps(T: int) -> int:
    """The bytes per extra thread for a call of T steps (see the measurements above)."""
    return SMALL_SEQ_BYTES if T >= SEQ_STEPS else SMALL_STEP_BYTES


def small_work_threads(nt: int, G: int, H: int, D: int, itemsize: int, L: int = 1,
                       D_rest: int | None = None, unit: int = SMALL_STEP_BYTES) -> int:
    """The threads a call of ``nt`` resolved threads runs with, given the size of a step.

    ``G, H, D`` the cell's gates, units and (first layer's) input width, ``L`` layers
    (``D_rest``: the input width of layers 1 .. L-1), ``itemsize`` 4 or 8, ``unit`` the
    bytes per extra thread (:func:`unit_for_steps` of the call's steps).  Never more than
    ``nt``; see the measurements above.
    """
    if nt <= 1:
        return nt
    elems = G * H * (D + H) + (L - 1) * G * H * ((D_rest if D_rest is not None else H) + H)
    per_layer = elems * itemsize // max(L, 1)
    return min(nt, 1 + per_layer // unit)


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
