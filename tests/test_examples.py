"""The examples in examples/ run as scripts against the installed package and learn.

Each example asserts its own success (exit code 0 only when its accuracy is well above
chance) and prints a JSON summary last; these tests run them in subprocesses outside
the checkout, so the package they import is the installed (or in-place built) one.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

import fastgates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastgates.__file__)))
OUTSIDE = os.path.dirname(os.path.abspath(os.sep))
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")


def run_example(name, *args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True,
                       text=True, timeout=timeout, env=env, cwd=OUTSIDE)
    assert "Traceback" not in r.stderr, r.stderr
    return r, json.loads(r.stdout.strip().splitlines()[-1])


def test_many_to_one_classifies_ragged_sequences():
    r, res = run_example("classify_sequences.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert res["task"] == "classify" and res["accuracy"] > res["chance"] + 0.3


def test_many_to_many_tags_every_position():
    r, res = run_example("tag_sequences.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert res["task"] == "tag" and res["accuracy"] > res["baseline"] + 0.3


def test_one_to_many_generates_text():
    r, res = run_example("generate_text.py", "--steps", "200")
    assert r.returncode == 0, r.stdout + r.stderr
    assert res["task"] == "generate" and res["val_ppl"] < 0.75 * res["unigram_ppl"]
    assert r.stdout.count("--- temperature") == 3


def test_streaming_one_frame_at_a_time_equals_the_whole_sequence():
    r, res = run_example("stream_sequences.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert res["task"] == "stream" and res["streaming_equals_whole"]
    assert res["accuracy"] > res["chance"] + 0.3


@pytest.mark.parametrize("name", ["classify_sequences.py", "tag_sequences.py",
                                  "stream_sequences.py"])
def test_plot_draws_the_figure_or_says_why_not(name, tmp_path):
    """--plot PNG saves the figure with matplotlib, and says it skipped it without."""
    png = tmp_path / "figure.png"
    r, res = run_example(name, "--steps", "30", "--plot", str(png))
    assert "Traceback" not in r.stderr
    if importlib.util.find_spec("matplotlib") is None:
        assert "skipping the figure: matplotlib is not installed" in r.stdout
        assert not png.exists()
    else:
        assert f"figure: {png}" in r.stdout
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_untrained_example_reports_failure():
    """The success criterion can fail: with one step the classifier is at chance."""
    r, res = run_example("classify_sequences.py", "--steps", "1")
    assert r.returncode == 1 and res["accuracy"] < res["chance"] + 0.3
