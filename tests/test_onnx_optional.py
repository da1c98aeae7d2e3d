"""onnx stays optional: ``import fastgates`` (and the LM) never imports it, and
``import fastgates.onnx`` / ``fastgates-lm export`` without it explain how to get it.
(No importorskip here: these run whether or not onnx is installed.)"""

from _helpers.subproc import run_code


def run_python(code):
    """``python -c code`` outside the checkout, with the fastgates under test on the path."""
    return run_code(code, timeout=120)


def test_import_fastgates_does_not_import_onnx():
    r = run_python("import sys, fastgates, fastgates.layers, fastgates.cells, fastgates.lm, "
                   "fastgates.lm.cli, fastgates.lm.onnx_export; "
                   "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_without_onnx_the_package_explains():
    code = """
import sys
sys.modules['onnx'] = None          # as if onnx were not installed
try:
    import fastgates.onnx
except ImportError as exc:
    print("ImportError:", exc)
from fastgates.lm import cli
try:
    cli.main(["export", "--checkpoint", "x.npz", "--onnx", "m.onnx"])
except SystemExit as exc:
    print("exit", exc.code)
"""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "ImportError: fastgates.onnx needs the onnx package: pip install 'fastgates[onnx]'" \
        in r.stdout
    assert "exit 2" in r.stdout and "fastgates[onnx]" in r.stderr
