"""PyTorch stays optional: ``import fastgates`` never imports it, the NumPy layers work
without it, and ``import fastgates.torch`` without it fails with an actionable message.
(No importorskip here: these run whether or not torch is installed.)"""

from _helpers.subproc import run_code


def run_python(code):
    """``python -c code`` outside the checkout, with the fastgates under test on the path."""
    return run_code(code, timeout=120)


def test_import_fastgates_does_not_import_torch():
    r = run_python("import sys, fastgates, fastgates.layers; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_without_torch_layers_work_and_the_adapter_explains():
    code = """
import sys
sys.modules['torch'] = None          # as if torch were not installed
import numpy as np
import fastgates
y, (h, c) = fastgates.LSTM(3, 4, num_layers=2, bidirectional=True).forward(
    np.zeros((5, 2, 3), np.float32), lengths=np.array([5, 2]))
print(y.shape, h.shape)
try:
    import fastgates.torch
except ImportError as exc:
    print("ImportError:", exc)
"""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "(5, 2, 8) (4, 2, 4)"
    assert lines[1] == ("ImportError: fastgates.torch needs PyTorch: pip install torch "
                        "(or pip install 'fastgates[torch]')")
