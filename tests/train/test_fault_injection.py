"""Fault injection: SIGKILL a training process at many moments (many land inside checkpoint
writes, since it checkpoints after every step) and require weights and loss history bit-identical
to the uninterrupted run.

The kills form two chains: each resumed process (``--resume auto``) is itself killed, until the
last one is left to finish. Every kill is a distinct moment of the run, every resume starts from
what a kill left, and a resume that restored anything wrong would change the final weights. It
takes half the process starts of resuming every kill to the end separately.
"""
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


STEPS = 18  # 9 steps of stage 1, 9 of cRT, a checkpoint after each (checkpoint_0 .. checkpoint_17)


def _newest(ckpts: Path) -> int:
    """Index of the newest checkpoint folder, complete or being written; -1 if none."""
    try:
        return max((int(p.name.rsplit("_", 1)[1]) for p in ckpts.iterdir() if "checkpoint_" in p.name), default=-1)
    except FileNotFoundError:
        return -1


def _chain(out: Path, moments: list[float], step: float) -> list[dict]:
    """Start (then resume) the run once per moment and SIGKILL it there; then resume it to the end.
    A moment m (in steps) is ``m - floor(m)`` steps after the write of checkpoint ``floor(m)`` began
    (moments past the last checkpoint fall in the export)."""
    ckpts, kills = out / "checkpoints", []
    for i, moment in enumerate(moments):
        base = min(int(moment), STEPS - 1)
        proc = _train(out, *(["--resume", "auto"] if i else []))
        while proc.poll() is None and _newest(ckpts) < base:
            time.sleep(0.002)
        time.sleep((moment - base) * step)
        if proc.poll() is not None:     # finished before the kill: the chain is done
            _finish(proc)
            return kills
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        left = sorted(p.name for p in ckpts.iterdir()) if ckpts.exists() else []
        kills.append({"moment": round(moment, 2), "inside_write": any(n.startswith(".tmp-") for n in left),
                      "left": left})
    _finish(_train(out, "--resume", "auto"))
    return kills


@pytest.mark.slow
def test_every_kill_resumes_to_bit_identical_weights(tmp_path):
    start = time.perf_counter()
    ref = _train(tmp_path / "ref")
    ckpts = tmp_path / "ref" / "checkpoints"
    while not ckpts.exists() and ref.poll() is None:
        time.sleep(0.002)
    first_ckpt = time.perf_counter()
    _finish(ref)
    assert _newest(ckpts) == STEPS - 1, sorted(p.name for p in ckpts.iterdir())
    step = (time.perf_counter() - first_ckpt) / STEPS   # then the export
    ref_weights, ref_history = _result(tmp_path / "ref")
    # TRIALS moments: checkpoints spread evenly from the first to the last, each at a phase of its
    # step from a golden-ratio sequence (evenly over the write and the step after it); the last
    # falls in the export. Alternate moments go to two chains that run side by side.
    moments = [round(j * (STEPS - 1) / (TRIALS - 1)) + (j * 0.618034) % 1 for j in range(TRIALS - 1)]
    moments.append(STEPS - 1 + 1.2)
    with ThreadPoolExecutor(2) as pool:
        chains = list(pool.map(lambda c: _chain(tmp_path / f"chain{c}", moments[c::2], step), (0, 1)))
    results = [_result(tmp_path / f"chain{c}") for c in (0, 1)]
    mismatched = [c for c, (weights, history) in enumerate(results)
                  if not (weights.keys() == ref_weights.keys() and history == ref_history
                          and all(weights[k].equal(ref_weights[k]) for k in weights))]
    kills = [k for chain in chains for k in chain]
    summary = {"kills": len(kills), "inside_write": sum(k["inside_write"] for k in kills),
               "seconds": round(time.perf_counter() - start)}
    print("fault injection:", json.dumps(summary))
    assert not mismatched, (mismatched, chains)
    assert summary["kills"] >= TRIALS - 2, chains       # nearly every planned kill landed mid-run
