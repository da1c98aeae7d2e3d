"""fastgates-lm command line: end to end in a subprocess, and clear usage errors (exit code 2)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastgates
from fastgates.lm import cli
from fastgates.lm.checkpoint import load_checkpoint

# The subprocesses import the same fastgates as this process (installed or built in place),
# and run outside the checkout so its uncompiled source tree cannot shadow it.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastgates.__file__)))
OUTSIDE = os.path.dirname(os.path.abspath(os.sep))
TINY_SHAKESPEARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                "corpora", "tinyshakespeare.txt")

SMALL = ["--hidden", "16", "--batch", "4", "--steps", "10", "--sample-length", "20", "--threads", "1",
         "--log-every", "10"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    from fastgates.lm.data import default_text

    p = tmp_path_factory.mktemp("corpus") / "text.txt"
    p.write_text(default_text()[:6000], encoding="utf-8")
    return str(p)


def run_cli(*args, timeout=120, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    kw.setdefault("cwd", OUTSIDE)
    return subprocess.run([sys.executable, "-m", "fastgates.lm", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_train_generate_eval_end_to_end(tmp_path, text_file):
    out = str(tmp_path / "run")
    r = run_cli("train", "--text", text_file, *SMALL, "--epochs", "2", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    res = last_json(r.stdout)
    for key in ("train_ppl", "val_ppl", "val_bpc", "tokens_per_s", "epochs", "seconds", "cell",
                "hidden", "params"):
        assert key in res
    assert res["epochs"] == 2 and res["cell"] == "lstm" and res["hidden"] == 16
    assert 1 < res["val_ppl"] < 80 and res["val_bpc"] == pytest.approx(np.log2(res["val_ppl"]))
    assert "epoch 1/2: train ppl" in r.stdout and "sample:" in r.stdout
    assert sorted(os.listdir(out))[:2] == ["checkpoint.npz", "log.csv"]
    try:
        import matplotlib  # noqa: F401
        assert os.path.exists(os.path.join(out, "perplexity.png"))
        assert f"perplexity curve: {os.path.join(out, 'perplexity.png')}" in r.stdout
    except ImportError:
        assert "skipping perplexity.png: matplotlib is not installed" in r.stdout
    rows = open(os.path.join(out, "log.csv")).read().splitlines()
    assert rows[0].startswith("kind,epoch,step") and sum(x.startswith("epoch,") for x in rows) == 2

    g1 = run_cli("generate", "--checkpoint", out, "--prefix", "The ", "--length", "50", "--seed", "7")
    g2 = run_cli("generate", "--checkpoint", os.path.join(out, "checkpoint.npz"), "--prefix", "The ",
                 "--length", "50", "--seed", "7")
    assert g1.returncode == 0, g1.stderr
    assert g1.stdout == g2.stdout and g1.stdout.startswith("The ") and len(g1.stdout) == 55
    greedy = [run_cli("generate", "--checkpoint", out, "--temperature", "0", "--length", "30").stdout
              for _ in range(2)]
    assert greedy[0] == greedy[1]
    w = run_cli("generate", "--checkpoint", out, "--prefix", "Th€ ", "--length", "5", "--seed", "1")
    assert w.returncode == 0 and "warning: prefix characters not in the vocabulary are mapped to <unk>: '€'" in w.stderr

    e = run_cli("eval", "--checkpoint", out, "--json")
    assert e.returncode == 0, e.stderr
    ev = last_json(e.stdout)
    assert ev["ppl"] == pytest.approx(res["val_ppl"], rel=1e-9)
    e2 = run_cli("eval", "--checkpoint", out, "--text", text_file)
    assert e2.returncode == 0 and "perplexity" in e2.stdout and "bits/char" in e2.stdout


def test_resume_via_cli_equals_uninterrupted_run(tmp_path, text_file):
    common = ["train", "--text", text_file, *SMALL, "--cell", "gru", "--json"]
    full = run_cli(*common, "--epochs", "2", "--out", str(tmp_path / "full"))
    half = run_cli(*common, "--epochs", "1", "--out", str(tmp_path / "half"))
    rest = run_cli("train", "--resume", "--out", str(tmp_path / "half"), "--epochs", "2", "--json")
    for r in (full, half, rest):
        assert r.returncode == 0, r.stderr
    a, b = last_json(full.stdout), last_json(rest.stdout)
    assert a["val_ppl"] == b["val_ppl"] and a["train_ppl"] == b["train_ppl"]
    wa, _ = load_checkpoint(tmp_path / "full" / "checkpoint.npz")
    wb, _ = load_checkpoint(tmp_path / "half" / "checkpoint.npz")
    for k in wa:
        if k.startswith("params/"):
            assert (wa[k] == wb[k]).all(), k


def _default_sigint():
    # a shell that starts a job in the background (a CI runner, `cmd &`) passes SIGINT on as
    # ignored, and Python then keeps ignoring it: give the trainer the terminal's default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, text_file):
    out = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "fastgates.lm", "train", "--text", text_file, *SMALL,
                          "--epochs", "100000", "--out", out, "--log-every", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=OUTSIDE, preexec_fn=_default_sigint if os.name == "posix" else None)
    try:
        deadline = time.time() + 60
        line = ""
        while not line.startswith("epoch 1 batch") and time.time() < deadline:
            line = p.stdout.readline()
        assert line.startswith("epoch 1 batch"), "training did not start"
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "checkpoint saved to" in stderr and "--resume" in stderr
    arrays, meta = load_checkpoint(os.path.join(out, "checkpoint.npz"))
    assert meta["progress"]["step"] >= 1
    r = run_cli("train", "--resume", "--out", out, "--epochs", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert last_json(r.stdout)["epochs"] == 1


# -- usage errors: argparse style, exit code 2, the message names the problem --------------------

@pytest.mark.parametrize("argv, message", [
    (["train", "--hidden", "-5"], "argument --hidden: must be a positive integer, got -5"),
    (["train", "--hidden", "abc"], "argument --hidden: expected an integer, got 'abc'"),
    (["train", "--dropout", "1"], r"argument --dropout: must be in [0, 1), got 1"),
    (["train", "--dropout", "-0.1"], r"argument --dropout: must be in [0, 1)"),
    (["train", "--val-fraction", "0"], "argument --val-fraction: must be strictly between 0 and 1"),
    (["train", "--val-fraction", "1.5"], "argument --val-fraction: must be strictly between 0 and 1"),
    (["train", "--cell", "transformer"], "argument --cell: invalid choice: 'transformer'"),
    (["train", "--tokens", "words"], "argument --tokens: invalid choice"),
    (["train", "--lr", "0"], "argument --lr: must be positive, got 0"),
    (["train", "--lr", "nan"], "argument --lr: expected a finite number"),
    (["train", "--threads", "0"], "argument --threads: must not be 0"),
    (["train", "--epochs", "0"], "argument --epochs: must be a positive integer"),
    (["train", "--batch", "2.5"], "argument --batch: expected an integer"),
    (["train", "--max-minutes", "-1"], "argument --max-minutes: must be positive"),
    (["train", "--clip", "-1"], "argument --clip: must be >= 0"),
    (["train", "--dtype", "float16"], "argument --dtype: invalid choice"),
    (["train", "--resume"], "--resume needs --out DIR"),
    (["generate"], "the following arguments are required: --checkpoint"),
    (["generate", "--checkpoint", "x.npz", "--temperature", "-1"], "argument --temperature: must be >= 0"),
    ([], "the following arguments are required"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "is empty"),
    ("na\u00efve".encode("latin-1"), "is not valid utf-8 (byte 0xef at offset 2); pass --encoding"),
])
def test_bad_text_files_are_usage_errors(tmp_path, capsys, content, message):
    p = tmp_path / "corpus.txt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--text", str(p), "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: --text:" in err and message in err and "corpus.txt" in err


def test_bad_checkpoints_and_run_directories(tmp_path, capsys, text_file):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    for argv in (["generate", "--checkpoint", str(bad)], ["eval", "--checkpoint", str(bad)]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        assert "error: --checkpoint: checkpoint" in capsys.readouterr().err
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--text", text_file, "--out", str(out)])
    assert exc.value.code == 2 and "already holds a run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--resume", "--out", str(out)])
    assert exc.value.code == 2 and "truncated or corrupted" in capsys.readouterr().err


def test_resume_refuses_a_different_model(tmp_path, capsys, text_file):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--text", text_file, *SMALL, "--epochs", "1", "--out", out,
                     "--max-minutes", "0.001"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--resume", "--out", out, "--hidden", "32"])
    assert exc.value.code == 2
    assert "--hidden 32 differs from the resumed run's 16" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists(TINY_SHAKESPEARE), reason="tiny shakespeare not available")
def test_tiny_shakespeare_corpus():
    from fastgates.lm import CharRNN, ModelConfig, Trainer, load_text, make_corpus

    corpus = make_corpus(load_text(TINY_SHAKESPEARE), "char", 0.1)
    assert len(corpus.vocab) == 66                        # 65 characters + <unk>
    model = CharRNN(ModelConfig(len(corpus.vocab), hidden=32), rng=np.random.default_rng(0))
    tr = Trainer(model, corpus.train[:20000], corpus.val[:2000], batch=8, steps=20)
    before = tr.validate().ppl
    tr.run(1)
    assert tr.history[0]["val_ppl"] < 0.6 * before


def test_matplotlib_stays_optional():
    """Importing the package, the LM and its CLI never imports matplotlib (only drawing does)."""
    from _helpers.subproc import run_code   # outside the checkout: the installed fastgates

    code = ("import sys, fastgates, fastgates.lm, fastgates.lm.cli, fastgates.lm.report; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    r = run_code(code, timeout=120)
    assert r.returncode == 0, r.report()
