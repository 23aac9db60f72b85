"""Helpers for the Hub tests: a results JSON per the schema, an offline HF cache layout, and a
subprocess runner with Hub environment variables set before huggingface_hub is imported."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_results(name: str, arch: str, num_classes: int, protocol: str = "classifier",
                 weights_sha256: str | None = None) -> dict:
    """A results dict in the kcl-models/results/v1 schema with distinct, non-round numbers."""
    counts = [max(1, int(400 * (0.01 ** (i / max(1, num_classes - 1))))) for i in range(num_classes)]
    groups = ["many" if c > 100 else "few" if c < 20 else "medium" for c in counts]
    acc = [round(90.0 - 3.7 * i, 3) for i in range(num_classes)]
    per_class = {"accuracy": acc, "train_count": counts, "group": groups}
    probe = {"top1": 72.5, "top5": 98.0, "many": 89.0, "medium": 71.0, "few": 53.0, "balancedness": 0.83,
             "ece": None, "per_class": per_class, "params": {"epochs": 10}}
    return {
        "schema": "kcl-models/results/v1",
        "model": {"name": name, "architecture": arch, "source": f"local-dir:/tmp/{name}",
                  "num_classes": num_classes, "weights_sha256": weights_sha256},
        "data": {"name": "digits-lt", "split": "test", "num_samples": 50 * num_classes,
                 "num_classes": num_classes, "class_names": [f"digit_{i}" for i in range(num_classes)],
                 "train_class_counts": counts},
        "protocol": protocol,
        "shot_thresholds": {"many": 100, "few": 20, "relative": False},
        "metrics": {"top1": 71.234, "top5": 97.5, "many": 88.125, "medium": 70.0625, "few": 51.875,
                    "balancedness": 0.8123, "ece": 0.0456},
        "per_class": per_class,
        "probes": {"linear_probe": probe},
        "config": {"method": "bcl", "epochs": 3, "optimizer": {"lr": 0.15, "weight_decay": 5e-4}},
        "software": {"kcl_models": "0.1.0", "torch": "x", "timm": "y", "python": "z"},
        "created": "2026-01-01T00:00:00+00:00",
    }


def write_results(path: Path, results: dict) -> Path:
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def place_in_hf_cache(folder: Path, cache: Path, repo_id: str, commit: str = "a" * 40, ref: str = "main") -> Path:
    """Lay ``folder`` out as the HF cache does: models--org--name/{refs/<ref>, snapshots/<commit>/...}
    (files only: a sub-folder such as the ``timm/`` export is another branch)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if not f.is_file():
            continue
        try:
            os.link(f, snap / f.name)  # hard link: no copy of large weights
        except OSError:
            shutil.copy2(f, snap / f.name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)
    return snap


def code_blocks(markdown: str, lang: str = "python") -> list[str]:
    """The ``lang`` fenced blocks of a markdown text, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", markdown, flags=re.S)


def write_image(path: Path, size: int = 40) -> Path:
    """A small RGB image for the cards' usage snippets (``image.png``)."""
    from PIL import Image
    Image.new("RGB", (size, size), (120, 30, 200)).save(path)
    return path


def run_offline(code: str, cache: Path, tmp: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with HF_HUB_OFFLINE=1 and the Hub cache at ``cache``."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("HF_") or key in ("HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
            env.pop(key)
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp / "hf_home"),
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(tmp))


@pytest.fixture
def results_factory():
    return make_results
