"""``fastgates.show_config()``: how this fastgates was built and what it runs on.

Design: one dict, gathered from three places, printed as sections (in the spirit of
``numpy.show_config()`` and ``sklearn.show_versions()``):

build     what setup.py decided (fastgates/_build_info.py, written next to the
          extensions at build time): compiler, flags, OpenMP or serial and why
runtime   the compiled core's answers (the instruction-set level the kernels run, the
          levels the CPU and the build offer, OpenMP on/off,
          the default thread count), the OpenMP runtime library it is bound to
threads   threadpoolctl's view of every loaded OpenMP and BLAS library, with ours and
          SciPy's BLAS (the one the kernels call) marked
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Literal, overload

__all__ = ["show_config"]


def _build_info() -> dict[str, Any]:
    try:
        from ._build_info import BUILD_INFO
    except ImportError:  # built by something other than setup.py's build_ext
        return {"compiler": "unknown (no fastgates/_build_info.py)"}
    return dict(BUILD_INFO)


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def _cpus() -> dict[str, Any]:
    out: dict[str, Any] = {"logical_cpus": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        out["usable_cpus"] = len(os.sched_getaffinity(0))
    return out


def _openmp() -> dict[str, Any]:
    from . import _recurrence, _threads

    if not _recurrence.have_openmp():
        return {"enabled": False, "default_n_threads": 1}
    path = _threads.openmp_runtime_path()
    controlled = [c for c, ours in _threads.openmp_controllers() if ours]
    info: dict[str, Any] = {
        "enabled": True,
        "runtime": _threads.openmp_runtime_name(path),
        "library": path or "unknown",
        "controlled_by_threadpoolctl": bool(controlled),
        "default_n_threads": _recurrence.resolve_threads(None),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    if path is None:  # Windows: name the runtime from what threadpoolctl found
        found = [c for c, _ in _threads.openmp_controllers()]
        if found:
            info["runtime"] = _threads.openmp_runtime_name(found[0].prefix)
            info["library"] = found[0].filepath
    return info


def _pools() -> list[dict[str, Any]]:
    from threadpoolctl import ThreadpoolController

    from . import _threads

    ours = _threads.openmp_runtime_path()
    scipy_blas = {os.path.realpath(c.filepath) for c in _threads._scipy_blas_controllers()}
    pools = []
    for c in ThreadpoolController().lib_controllers:
        info = c.info()
        path = os.path.realpath(c.filepath)
        used = []
        if c.user_api == "openmp" and path == ours:
            used.append("the fastgates kernels")
        if c.user_api == "blas" and path in scipy_blas:
            used.append("fastgates GEMMs via scipy.linalg.cython_blas")
        info["used_by"] = ", ".join(used) or "-"
        pools.append(info)
    return pools


def config() -> dict[str, Any]:
    """Everything ``show_config`` prints, as a dict of sections."""
    from . import __version__, _recurrence

    return {
        "fastgates": {"version": __version__,
                      "location": os.path.dirname(os.path.abspath(__file__))},
        "build": _build_info(),
        "runtime": {
            "python": f"{platform.python_version()} ({sys.platform}, {platform.machine()})",
            "numpy": _version("numpy"),
            "scipy": _version("scipy"),
            "threadpoolctl": _version("threadpoolctl"),
            "isa": _recurrence.isa_active(),
            "isa_cpu": " ".join(_recurrence.isa_supported()),
            "isa_build": " ".join(_recurrence.isa_compiled()),
            "FASTGATES_ISA": os.environ.get("FASTGATES_ISA", "unset"),
            **_cpus(),
        },
        "openmp": _openmp(),
        "threadpools": _pools(),
    }


def _format(cfg: dict[str, Any]) -> str:
    lines = []
    for section, body in cfg.items():
        lines.append(f"{section}:")
        if isinstance(body, dict):
            width = max((len(k) for k in body), default=0)
            lines += [f"  {k:<{width}} : {v}" for k, v in body.items() if v != ""]
        else:
            for pool in body:
                lines.append(f"  - {pool.get('user_api')} ({pool.get('internal_api')}"
                             f"{' ' + pool['version'] if pool.get('version') else ''})")
                width = max(len(k) for k in pool)
                lines += [f"      {k:<{width}} : {v}" for k, v in pool.items()
                          if k not in ("user_api", "internal_api", "version")]
    return "\n".join(lines)


@overload
def show_config(mode: Literal["stdout"] = ...) -> None: ...
@overload
def show_config(mode: Literal["dicts"]) -> dict[str, Any]: ...


def show_config(mode: Literal["stdout", "dicts"] = "stdout") -> dict[str, Any] | None:
    """Print (or return) how fastgates was built and what it runs on.

    The report covers the fastgates version; the compiler, its flags and whether the
    kernels were built with OpenMP (and why not, for a serial build); the SIMD level
    the gate math picked at run time; the OpenMP runtime the kernels are bound to
    (GNU libgomp, LLVM libomp, ...), the default thread count and OMP_NUM_THREADS;
    every thread pool threadpoolctl sees (BLAS and OpenMP), with the ones fastgates
    uses marked; and the NumPy/SciPy versions.  Attach it to bug reports
    (``python -m fastgates --info``, ``--info --json``).

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default "stdout"
        "stdout" prints the report; "dicts" returns it instead.

    Returns
    -------
    dict or None
        With ``mode="dicts"``, the sections ``fastgates``, ``build``, ``runtime``,
        ``openmp`` (dicts) and ``threadpools`` (a list of dicts, one per pool);
        None otherwise.

    Raises
    ------
    ValueError
        An unknown ``mode``.

    Examples
    --------
    >>> cfg = fastgates.show_config(mode="dicts")
    >>> sorted(cfg)
    ['build', 'fastgates', 'openmp', 'runtime', 'threadpools']
    >>> cfg["fastgates"]["version"] == fastgates.__version__
    True
    >>> fastgates.show_config()                     # doctest: +ELLIPSIS
    fastgates:
      version  : ...
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    cfg = config()
    if mode == "dicts":
        return cfg
    build = cfg["build"]
    if build.get("openmp") is False:
        print("NOTE: this fastgates is a SERIAL build (" + (build.get("serial_reason") or "no OpenMP")
              + "): every kernel runs on one thread.")
    print(_format(cfg))
    return None
