"""Fault injection: SIGKILL a training process at many moments (many land inside checkpoint
writes, since it checkpoints after every step), resume each with ``--resume auto``, and require
weights and loss history bit-identical to the uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).parents[2]
TRIALS = 20
ARGS = ["--config", str(ROOT / "configs/digits_kcl.yaml"), "--input_size", "8", "--data_kwargs", "{img_size: 8}",
        "--batch_size", "32", "--epochs", "1", "--crt_epochs", "1", "--queue_size", "64", "--checkpoint_every", "1",
        "--keep_checkpoints", "2", "--log_with", "none", "--eval_every", "0", "--warmup_epochs", "0"]
ENV = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _train(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *ARGS, "--output_dir", str(out), *extra],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text[-3000:]
    return text


def _result(out: Path) -> tuple[dict, list]:
    return load_file(str(out / "model" / "model.safetensors")), \
        json.loads((out / "train_metrics.json").read_text())["loss_history"]


def _trial(out: Path, fraction: float, span: float) -> dict:
    """Kill at ``fraction`` of the training phase (timed from the first checkpoint folder), resume."""
    proc = _train(out)
    ckpts = out / "checkpoints"
    while not ckpts.exists() and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(fraction * span)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    left = sorted(p.name for p in ckpts.iterdir()) if ckpts.exists() else []
    inside_write = any(n.startswith(".tmp-") for n in left)
    _finish(_train(out, "--resume", "auto"))
    return {"fraction": round(fraction, 3), "killed": killed, "inside_write": inside_write, "left": left}


@pytest.mark.slow
def test_every_kill_resumes_to_bit_identical_weights(tmp_path):
    start = time.perf_counter()
    ref = _train(tmp_path / "ref")
    ckpts = tmp_path / "ref" / "checkpoints"
    while not ckpts.exists() and ref.poll() is None:
        time.sleep(0.005)
    first_ckpt = time.perf_counter()
    _finish(ref)
    span = time.perf_counter() - first_ckpt           # the training phase, 18 steps, a checkpoint each
    ref_weights, ref_history = _result(tmp_path / "ref")
    fractions = [i / (TRIALS - 1) for i in range(TRIALS)]
    with ThreadPoolExecutor(2) as pool:
        trials = list(pool.map(lambda i: _trial(tmp_path / f"t{i}", fractions[i], span), range(TRIALS)))
    mismatched = []
    for i, trial in enumerate(trials):
        weights, history = _result(tmp_path / f"t{i}")
        same = weights.keys() == ref_weights.keys() and all(weights[k].equal(ref_weights[k]) for k in weights)
        if not (same and history == ref_history):
            mismatched.append(trial)
    summary = {"trials": TRIALS, "killed": sum(t["killed"] for t in trials),
               "inside_write": sum(t["inside_write"] for t in trials), "seconds": round(time.perf_counter() - start)}
    print("fault injection:", json.dumps(summary))
    assert not mismatched, mismatched
    assert summary["killed"] >= TRIALS - 2            # nearly every trial really was killed mid-run
