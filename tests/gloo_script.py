"""Run a test file as a script whose ``__main__`` spawns gloo workers, and require each rank to
report success. As a script, the spawned workers import the file by its path, which works whatever
import mode pytest uses for test modules."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist


def run_gloo_script(script: str, tmp_path: Path, world: int) -> None:
    """``python script <init file>``; each rank must print ``rank ok <rank>``."""
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])  # finds this file
    proc = subprocess.run([sys.executable, script, str(tmp_path / "pg_init")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
    assert proc.returncode == 0, f"{world}-process run failed:\n{proc.stdout}\n{proc.stderr[-5000:]}"
    assert proc.stdout.count("rank ok") == world, proc.stdout
