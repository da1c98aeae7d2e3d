"""The machine the benchmarks run on (CPU, cores, flags, load), for the reports."""

from __future__ import annotations

import os
import sys


def machine_info() -> dict:
    info = {"cpu": None, "flags": [], "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["affinity"] = None
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        cores = set()
        phys = None
        for line in text.splitlines():
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "model name" and info["cpu"] is None:
                info["cpu"] = v
            elif k == "flags" and not info["flags"]:
                fl = set(v.split())
                info["flags"] = [x for x in ("avx", "avx2", "fma", "avx512f", "avx512_bf16")
                                 if x in fl]
            elif k == "physical id":
                phys = v
            elif k == "core id":
                cores.add((phys, v))
        info["physical_cores"] = len(cores) or None
    except OSError:
        pass
    try:
        info["loadavg"] = list(os.getloadavg())
    except OSError:
        info["loadavg"] = None
    return info
