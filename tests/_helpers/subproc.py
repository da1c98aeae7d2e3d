"""Run Python in a child process with a timeout, so that a crash or a hang in compiled
code becomes a test failure with a reason instead of taking the test run down.

The child imports the same fastgates as the parent (built in place or installed) and
runs outside the checkout, so the uncompiled source tree cannot shadow it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import NamedTuple, Optional

import fastgates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastgates.__file__)))
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTSIDE = os.path.dirname(os.path.abspath(os.sep))


class Result(NamedTuple):
    returncode: Optional[int]     # None: killed after the timeout
    stdout: str
    stderr: str
    timed_out: bool

    def how_it_ended(self) -> str:
        if self.timed_out:
            return "did not finish before the timeout (hang?) and was killed"
        if self.returncode is not None and self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"died of {name}"
        return f"exited with code {self.returncode}"

    def report(self, tail=3000) -> str:
        return (f"child process {self.how_it_ended()}\n--- stdout (tail) ---\n{self.stdout[-tail:]}"
                f"\n--- stderr (tail) ---\n{self.stderr[-tail:]}")


def child_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONFAULTHANDLER"] = "1"        # a segfault prints the Python stack
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(args, *, timeout: float, env: Optional[dict] = None, cwd: str = OUTSIDE,
               stdin: Optional[str] = None) -> Result:
    """``python <args>`` in a new session; on timeout the whole process group is killed."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            text=True, env=env or child_env(), cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
        return Result(proc.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Result(None, out, err, True)


def run_code(code: str, *, timeout: float, env: Optional[dict] = None) -> Result:
    return run_python(["-c", code], timeout=timeout, env=env)
