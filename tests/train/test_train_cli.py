"""train.py: one line for every user error, never a traceback (``--debug`` shows it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
ENV = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1")


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (["--config", "missing.yaml"], "config file not found: missing.yaml"),
    (["--method", "kcl", "--kcl_k", "3"], "config key 'kcl_k' was renamed to 'k'"),
    (["--method", "ce", "--alpha", "1"], "method 'ce' has no option 'alpha'"),
    (["--epoch", "3"], "unknown key 'epoch' (did you mean epochs"),
    (["--model", "resnet33_nope"], "unknown model 'resnet33_nope'"),
    (["--resume", "nowhere/checkpoint_3"], "resume checkpoint not found: nowhere/checkpoint_3"),
    (["--data", "split-file", "--data_root", "nowhere"], "split"),
])
def test_user_errors_are_one_line(args, message, tmp_path):
    proc = _train(*args, "--output_dir", str(tmp_path / "out"), "--log_with", "none", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("train.py: error:") and message in lines[-1], proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_debug_shows_the_traceback(tmp_path):
    proc = _train("--config", "missing.yaml", "--debug", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr


def test_help_lists_every_key(tmp_path):
    proc = _train("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for key in ("--output_dir", "--resume_apply", "--overwrite", "--k ", "--beta"):
        assert key in proc.stdout
