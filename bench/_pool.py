"""The worker pool: one long-lived process per group of implementations.

The parent sends plain tuples/dicts (pickled) on the worker's stdin and reads pickled
replies from its stdout; the worker times the calls with ``perf_counter`` and returns
per-unit durations (unit = one call for the kernels, one character for generation, one
optimizer step for LM training).  Why processes: see bench/_harness.py.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback

try:      # as part of the package bench (pytest), or from bench/ on sys.path
    from ._specs import BENCH_DIR, GROUP, GROUP_ENV, REPO_ROOT, THREADS, fastgates_root, spec_key
    from ._impls import _generate, _inference, _jax_kernel, _lm, _numpy_kernel, _torch_kernel
except ImportError:
    from _specs import BENCH_DIR, GROUP, GROUP_ENV, REPO_ROOT, THREADS, fastgates_root, spec_key
    from _impls import _generate, _inference, _jax_kernel, _lm, _numpy_kernel, _torch_kernel


def _threadpool_info():
    try:
        from threadpoolctl import threadpool_info
        return threadpool_info()
    except Exception as exc:  # pragma: no cover
        return [{"error": repr(exc)}]


class _WorkerState:
    def __init__(self, group):
        self.group = group
        self.cases = {}
        self.info = {"group": group, "pid": os.getpid(), "available": True}
        try:
            self._import()
        except Exception as exc:
            self.info.update(available=False, reason=f"{type(exc).__name__}: {exc}")

    def _import(self):
        import numpy as np
        self.info["numpy"] = np.__version__
        g = self.group
        if g in ("fastgates", "fastgates_avx2", "reference", "mixed", "fgtorch", "onnxruntime",
                 "openvino"):
            import fastgates
            from fastgates import _recurrence
            self.info["fastgates"] = fastgates.__version__
            self.info["fastgates_path"] = os.path.dirname(fastgates.__file__)
            self.info["isa"] = _recurrence.isa_active()
            self.info["isa_cpu"] = _recurrence.isa_supported()
        if g == "onnxruntime":
            import onnxruntime
            self.info["onnxruntime"] = onnxruntime.__version__
        if g == "openvino":
            import openvino
            self.info["openvino"] = openvino.__version__
        if g in ("torch", "mixed", "fgtorch"):
            import torch
            # fastgates.torch runs its own threads: torch's pool would only spin against them
            torch.set_num_threads(1 if g == "fgtorch" else THREADS)
            self.info["torch"] = torch.__version__
            self.info["torch_threads"] = torch.get_num_threads()
            self.info["torch_config"] = torch.__config__.parallel_info()
        if g == "jax":
            import jax
            jax.config.update("jax_enable_x64", True)
            self.info["jax"] = jax.__version__
            self.info["jax_devices"] = [str(x) for x in jax.devices()]

    def n_threads(self, impl):
        """The thread count an implementation runs with (for extra_info)."""
        if impl == "fastgates-1t":
            return 1
        if impl in ("fastgates-2t", "fastgates", "fastgates-avx2"):
            return THREADS
        if impl == "torch":
            import torch
            return torch.get_num_threads()
        if impl == "reference":
            blas = [p for p in _threadpool_info() if p.get("user_api") == "blas"]
            return max((p.get("num_threads") or 0 for p in blas), default=None)
        return os.cpu_count()            # XLA's CPU pool uses every core

    def build(self, spec):
        impl, kind = spec["impl"], spec["kind"]
        if kind == "kernel":
            if impl in ("fastgates-2t", "fastgates-1t", "fastgates-avx2"):
                import fastgates
                return _numpy_kernel(fastgates, spec, 1 if impl == "fastgates-1t" else THREADS), 1
            if impl == "reference":
                import fastgates.reference
                return _numpy_kernel(fastgates.reference, spec, None), 1
            if impl == "torch":
                return _torch_kernel(spec), 1
            if impl == "jax":
                return _jax_kernel(spec), 1
        elif kind == "infer":
            return _inference(spec), 1
        elif kind == "generate":
            return _generate(spec), spec["chars"]
        elif kind == "lm":
            return _lm(spec), spec["steps"]
        raise ValueError(f"unknown spec {spec!r}")

    def handle(self, msg):
        cmd = msg[0]
        if cmd == "info":
            return dict(self.info, threadpool_info=_threadpool_info())
        if cmd == "prepare":
            spec = msg[1]
            key = spec_key(spec)
            if key not in self.cases:
                fn, units = self.build(spec)
                times = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                    if times[0] >= 0.5 and spec["impl"] != "jax":
                        break
                self.cases[key] = (fn, units, times)
            fn, units, times = self.cases[key]
            return {"key": key, "first": times[0] / units, "estimate": min(times) / units,
                    "units": units, "n_threads": self.n_threads(spec["impl"])}
        if cmd == "time":
            key, reps = msg[1], int(msg[2])
            fn, units, _ = self.cases[key]
            gc.collect()
            out = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) / units)
            return out
        if cmd == "alternate":
            # run the prepared cases one after the other, ``reps`` times: interference check
            keys, reps = msg[1], int(msg[2])
            out = {k: [] for k in keys}
            for _ in range(reps):
                for k in keys:
                    fn, units, _ = self.cases[k]
                    t0 = time.perf_counter()
                    fn()
                    out[k].append((time.perf_counter() - t0) / units)
            return out
        if cmd == "drop":
            self.cases.pop(msg[1], None)
            gc.collect()
            return None
        if cmd == "sgemm":
            import numpy as np
            n, reps = int(msg[1]), int(msg[2])
            rng = np.random.default_rng(0)
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            a @ b
            out = []
            for _ in range(reps):
                t0 = time.perf_counter()
                a @ b
                out.append(time.perf_counter() - t0)
            return out
        if cmd == "fma_peak":
            # the FMA peak of fastgates' active level: independent vector FMAs, f32, n threads
            from fastgates import _recurrence
            return {"isa": _recurrence.isa_active(),
                    "gflops": _recurrence.fma_peak(int(msg[1]), seconds=0.3)}
        raise ValueError(f"unknown command {cmd!r}")


def worker_main(group):
    """Serve requests on stdin/stdout until EOF (the body of a worker process)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                    # stray prints (C or Python) go to the log, not the pipe
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    sys.path.insert(0, BENCH_DIR)
    state = _WorkerState(group)

    def send(obj):
        pickle.dump(obj, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    send(("ok", state.info))
    while True:
        try:
            msg = pickle.load(inp)
        except EOFError:
            break
        try:
            send(("ok", state.handle(msg)))
        except Exception:
            send(("error", traceback.format_exc()))


# -- the parent side --------------------------------------------------------------------------

#: The script a worker process runs (``_harness.py worker GROUP``).
HARNESS = os.path.join(BENCH_DIR, "_harness.py")


class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process running one group of implementations."""

    def __init__(self, group, env=None, log_dir=None):
        self.group = group
        log_dir = log_dir or tempfile.gettempdir()
        fd, self.log_path = tempfile.mkstemp(prefix=f"fastgates-bench-{group}-", suffix=".log",
                                             dir=log_dir)
        self._log = os.fdopen(fd, "wb")
        e = os.environ.copy()
        e["PYTHONPATH"] = os.pathsep.join(p for p in (fastgates_root(), e.get("PYTHONPATH")) if p)
        e.update(env or {})
        self.proc = subprocess.Popen([sys.executable, HARNESS, "worker", group],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, env=e, cwd=REPO_ROOT)
        self._hello = None

    @property
    def info(self) -> dict:
        if self._hello is None:
            self._hello = self._recv()
        return self._hello

    @property
    def available(self) -> bool:
        return bool(self.info.get("available"))

    def _tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def _recv(self):
        try:
            status, payload = pickle.load(self.proc.stdout)
        except (EOFError, pickle.UnpicklingError) as exc:
            raise WorkerError(f"{self.group} worker died ({exc!r}); its log "
                              f"{self.log_path} ends with:\n{self._tail()}") from None
        if status == "error":
            raise WorkerError(f"{self.group} worker: {payload}")
        return payload

    def call(self, *msg):
        self.info  # noqa: B018  (the hello comes first)
        pickle.dump(msg, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        return self._recv()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Pool:
    """One worker per group, started on first use (``start`` starts several at once)."""

    def __init__(self, env=None, log_dir=None):
        self.workers = {}
        self.env = env or {}
        self.log_dir = log_dir

    def start(self, groups):
        for g in groups:
            if g not in self.workers:
                env = dict(GROUP_ENV.get(g, {}), **(self.env.get(g) or {}))
                self.workers[g] = Worker(g, env, self.log_dir)

    def worker(self, impl_or_group) -> Worker:
        g = GROUP.get(impl_or_group, impl_or_group)
        self.start([g])
        return self.workers[g]

    def close(self):
        for w in self.workers.values():
            w.close()
        self.workers.clear()
