"""What a user of the installed package sees: show_config, ``python -m fastgates --info``,
the typing files (py.typed, .pyi stubs that match the code), and mypy on a user's script.

These tests run against whichever fastgates is imported: built in place, or the installed
wheel (.ci/run runs the suite from outside the checkout against the wheel).
"""

import ast
import inspect
import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest

import fastgates
from fastgates import _recurrence

PKG = os.path.dirname(os.path.abspath(fastgates.__file__))
ROOT = os.path.dirname(PKG)
OUTSIDE = os.path.dirname(os.path.abspath(os.sep))
HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward", "lstm_forward",
           "lstm_backward"]


def run_module(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fastgates", *args], capture_output=True,
                          text=True, timeout=120, cwd=OUTSIDE, env=env)


# show_config and python -m fastgates --info

def test_show_config_dicts_agree_with_the_compiled_core():
    cfg = fastgates.show_config(mode="dicts")
    assert list(cfg) == ["fastgates", "build", "runtime", "openmp", "threadpools"]
    assert cfg["fastgates"]["version"] == fastgates.__version__
    assert cfg["fastgates"]["location"] == PKG
    build, rt, omp = cfg["build"], cfg["runtime"], cfg["openmp"]
    # the build info is written by setup.py next to the extensions
    assert build["openmp"] is _recurrence.have_openmp() is omp["enabled"]
    assert build["compiler"] and not build["compiler"].startswith("unknown")
    assert build["numpy_target_api"].startswith("NPY_")
    assert rt["numpy"] == np.__version__
    assert rt["isa"] == _recurrence.isa_active() and rt["isa"] in ("generic", "avx2", "avx512")
    assert rt["isa_cpu"].split() == _recurrence.isa_supported()
    assert omp["default_n_threads"] == _recurrence.resolve_threads(None)
    apis = {p["user_api"] for p in cfg["threadpools"]}
    assert "blas" in apis
    if omp["enabled"] and omp["library"] != "unknown" and sys.platform != "win32":
        assert omp["controlled_by_threadpoolctl"] is True
        ours = [p for p in cfg["threadpools"] if p["used_by"] == "the fastgates kernels"]
        assert len(ours) == 1 and os.path.realpath(ours[0]["filepath"]) == omp["library"]
        assert omp["runtime"] in ("GNU libgomp", "LLVM libomp", "Intel libiomp")
    assert any("cython_blas" in p["used_by"] for p in cfg["threadpools"])


def test_show_config_prints_a_report(capsys):
    assert fastgates.show_config() is None
    out = capsys.readouterr().out
    for section in ("fastgates:", "build:", "runtime:", "openmp:", "threadpools:"):
        assert section in out
    assert fastgates.__version__ in out
    assert re.search(rf"^  isa +: {_recurrence.isa_active()}$", out, re.M), out
    assert ("SERIAL build" in out) is (not _recurrence.have_openmp())


def test_show_config_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts', got 'dict'"):
        fastgates.show_config(mode="dict")


def test_python_m_fastgates_info():
    r = run_module("--info")
    assert r.returncode == 0, r.stderr
    assert f"version  : {fastgates.__version__}" in r.stdout
    assert "isa " in r.stdout and "openmp:" in r.stdout
    r = run_module("--info", "--json")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["fastgates"]["location"] == PKG
    assert cfg["openmp"]["enabled"] is _recurrence.have_openmp()


def test_python_m_fastgates_usage():
    r = run_module()
    assert r.returncode == 0 and "--info" in r.stdout
    r = run_module("--json")
    assert r.returncode == 2 and "--json goes with --info" in r.stderr


# Typing files

@pytest.mark.parametrize("name", ["py.typed", "_fast.pyi", "reference.pyi", "_checks.pyi",
                                  "_recurrence.pyi"])
def test_typing_files_ship_with_the_package(name):
    assert os.path.isfile(os.path.join(PKG, name)), f"{name} is missing next to {PKG}"


def _stub_functions(stub):
    """name -> list of ast.FunctionDef (overloads included) of a .pyi file."""
    with open(os.path.join(PKG, stub)) as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, []).append(node)
    return out


def _stub_params(fn):
    a = fn.args
    return ([(p.arg, "positional") for p in a.posonlyargs + a.args]
            + [(p.arg, "keyword") for p in a.kwonlyargs])


def _runtime_params(fn):
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "positional",
             inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.KEYWORD_ONLY: "keyword"}
    return [(p.name, kinds[p.kind]) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("module", [fastgates, fastgates.reference], ids=["fast", "reference"])
@pytest.mark.parametrize("name", KERNELS)
def test_stub_signatures_match_the_code(module, name):
    stubs = _stub_functions("_fast.pyi")[name]
    runtime = _runtime_params(getattr(module, name))
    for overload in stubs:
        declared = _stub_params(overload)
        missing = [p for p in declared if p not in runtime]
        assert not missing, f"{module.__name__}.{name}: the stub declares {missing}, the code lacks them"
        assert [p for p in declared if p in runtime] == runtime, (
            f"{module.__name__}.{name}: stub {declared} != code {runtime}")


def test_stub_classes_match_the_code():
    with open(os.path.join(PKG, "_checks.pyi")) as f:
        tree = ast.parse(f.read())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    fields = {name: [s.target.id for s in node.body if isinstance(s, ast.AnnAssign)]
              for name, node in classes.items()}
    assert fields["Grads"] == list(fastgates.Grads._fields)
    assert fields["LSTMGrads"] == list(fastgates.LSTMGrads._fields)
    # the public fields: slots, and settable properties (w_hh, kept packed until read)
    public = {s for s in fastgates.Cache.__slots__ if not s.startswith("_")} | {
        n for n, v in vars(fastgates.Cache).items() if isinstance(v, property) and v.fset}
    assert sorted(fields["Cache"]) == sorted(public), (
        "fastgates/_checks.pyi: Cache's attributes differ from Cache's public fields")


def test_public_names_are_in_the_stubs():
    typed = set(_stub_functions("_fast.pyi")) | {"Grads", "LSTMGrads", "Cache"}
    # modules, a typed .py, a str; the layer classes live in the plain .py module fastgates.layers,
    # the inference Runner in the plain .py module fastgates._runner
    untyped_ok = {"reference", "cells", "show_config", "__version__", "layers", "Runner",
                  *fastgates.layers.CLASSES}
    assert set(fastgates.__all__) - typed == untyped_ok


def test_mypy_accepts_a_user_script_and_rejects_misuse(tmp_path):
    api = pytest.importorskip("mypy.api")
    bad = tmp_path / "misuse.py"
    bad.write_text(
        "import fastgates\n"
        "y, h, c = fastgates.rnn_forward([[0]], None, [[0.]], [[0.]], [0.], [0.], training=False)\n"
        "fastgates.rnn_backward(y, h, c)\n"                       # no cache without training
        "fastgates.gru_forward([[0]], None, 1, 2, 3, 4, nonlinearity='tanh')\n"
        "n: int = fastgates.show_config()\n")
    good = os.path.join(HERE, "typed_user_script.py")
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir", os.devnull,
                                "--python-executable", sys.executable, good, str(bad)])
    lines = [ln for ln in out.splitlines() if ": error:" in ln]
    assert not [ln for ln in lines if "typed_user_script" in ln], out
    assert {ln.split(":")[1] for ln in lines if "misuse" in ln} == {"3", "4", "5"}, out


def test_the_user_script_runs():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join(HERE, "typed_user_script.py")],
                       capture_output=True, text=True, timeout=120, cwd=OUTSIDE, env=env)
    assert r.returncode == 0, r.stderr
    assert "fastgates:" in r.stdout   # show_config's report
