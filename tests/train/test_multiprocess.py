"""Two real CPU ranks (gloo) train digits-LT to the end through train.py.

`accelerate launch --cpu --num_processes 2` would start ONE process; torchrun with
ACCELERATE_USE_CPU=1 starts two, and the run itself records the world size it saw.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(method: str, out: Path, **overrides) -> dict:
    args = dict(output_dir=str(out), epochs=2, batch_size=16, log_with="none",
                eval_every=0, warmup_epochs=0, input_size=8, data_kwargs="{img_size: 8}", debug_checks="true",
                checkpoint_every=1000)
    if method == "kcl":
        args.update(crt_epochs=1, queue_size=64)
    args.update(overrides)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(ROOT / "train.py"), "--config", str(ROOT / f"configs/digits_{method}.yaml")]
    for key, value in args.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "debug_checks.json").read_text())


@pytest.mark.slow
def test_kcl_two_ranks_share_queue_and_key_encoder(tmp_path):
    checks = _launch("kcl", tmp_path / "kcl")
    assert checks["world_size"] == 2
    assert checks["key_encoder_in_sync"] is True
    assert checks["queue_in_sync"] is True
    assert checks["eval_samples"] == 500          # the balanced test set, each image once
    assert (tmp_path / "kcl" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_bcl_loss_sees_the_gathered_global_batch(tmp_path):
    checks = _launch("bcl", tmp_path / "bcl")
    assert checks["world_size"] == 2
    assert checks["gathered_batch"] == [32]       # 2 ranks x 16 images
    assert checks["eval_samples"] == 500
