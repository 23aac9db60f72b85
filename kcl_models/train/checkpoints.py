"""Checkpoints that are complete or absent, and resumes that never lose or silently change a run.

Layout: ``<output_dir>/checkpoints/checkpoint_<n>``, ``n`` counting up across the run's life (a
resume from an older checkpoint never reuses a number). Each is written by Accelerate's
``save_state`` into ``.tmp-checkpoint_<n>``; its files are fsynced, a ``COMPLETE.json`` listing
every file and its size is added, and the folder is renamed into place. A kill at any moment
therefore leaves either the finished folder or a ``.tmp-`` one that resume skips (and the next
save removes). Rotation keeps the ``keep`` newest complete checkpoints and runs only after a newer
one exists, so the checkpoint a run resumed from outlives it until then.

The rule for config changes on resume (:func:`resume_changes`): run-control keys (logging,
evaluation cadence, checkpointing, ``max_steps``, workers) may change freely; the keys in
``APPLICABLE`` are applied only with ``--resume_apply`` (the optimizer's lr and the schedules are
rebuilt from the new values); any other difference is refused, listing the keys, since it would
be a different run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from kcl_models.utils.io import atomic_write_text, finish_tree, fsync_dir

CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")
STAGING = re.compile(r"^\.tmp-checkpoint_(\d+)$")
MARKER = "COMPLETE.json"
RESULTS = ("model", "best", "train_metrics.json")  # an earlier run's outputs (config.yaml alone: a run cut short)

# may differ between the checkpoint and the resumed run
RUN_CONTROL = frozenset({"resume", "resume_apply", "overwrite", "output_dir", "log_with", "log_every", "eval_every",
                         "checkpoint_every", "keep_checkpoints", "max_steps", "workers", "debug_checks", "extra",
                         "compile_model", "compile_losses", "data_pipeline"})
# applied on resume with --resume_apply (e.g. after a non-finite loss)
APPLICABLE = frozenset({"lr", "min_lr", "clip_grad", "crt_lr", "mixed_precision"})


def _index(path: Path) -> int:
    m = CHECKPOINT.match(path.name) or STAGING.match(path.name)
    return int(m.group(1)) if m else -1


def why_incomplete(folder: Path) -> str | None:
    """None for a complete checkpoint, else the reason it is not one."""
    if STAGING.match(folder.name):
        return "its write was interrupted (temporary folder)"
    marker = folder / MARKER
    if not marker.is_file():
        return f"it has no {MARKER} (written by an interrupted or older run)"
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MARKER} is unreadable"
    for name, size in files.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} expected"
    return None


class Checkpoints:
    """The checkpoint folders of one output directory (see the module docstring)."""

    def __init__(self, output_dir: str | Path, keep: int, accelerator: Any) -> None:
        self.root = Path(output_dir) / "checkpoints"
        self.keep, self.acc = max(1, keep), accelerator

    def folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if _index(p) >= 0), key=_index)

    def any(self) -> bool:
        return bool(self.folders())

    def complete(self) -> list[Path]:
        return [p for p in self.folders() if why_incomplete(p) is None]

    def latest(self, log=print) -> Path | None:
        """The newest complete checkpoint; every newer folder it passes over is named with why."""
        for folder in reversed(self.folders()):
            reason = why_incomplete(folder)
            if reason is None:
                return folder
            log(f"resume: skipping {folder}: {reason}")
        return None

    def save(self, before_rename=None) -> Path:
        """Write the next checkpoint atomically; ``before_rename(staging)`` adds files (main process)."""
        acc = self.acc
        n = max((_index(p) for p in self.folders()), default=-1) + 1
        staging, final = self.root / f".tmp-checkpoint_{n}", self.root / f"checkpoint_{n}"
        acc.wait_for_everyone()
        if acc.is_main_process:
            for stale in self.root.glob(".tmp-checkpoint_*") if self.root.is_dir() else []:
                shutil.rmtree(stale, ignore_errors=True)   # a write a kill interrupted
            staging.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(staging))
        acc.wait_for_everyone()
        if acc.is_main_process:
            if before_rename is not None:
                before_rename(staging)
            finish_tree(staging)                            # fsync every file (and default modes)
            files = {str(p.relative_to(staging)): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
            atomic_write_text(staging / MARKER, json.dumps({"files": files}, indent=1))
            os.rename(staging, final)
            fsync_dir(self.root)
            for old in self.complete()[:-self.keep]:         # only once a newer complete one exists
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final


def resume_changes(saved: dict[str, Any], current: dict[str, Any]) -> tuple[dict, dict]:
    """``(applicable, refused)``: differing keys as ``{key: (saved, current)}``, run-control ones left out."""
    applicable, refused = {}, {}
    for key in sorted(set(saved) | set(current)):
        if key in RUN_CONTROL or saved.get(key) == current.get(key):
            continue
        (applicable if key in APPLICABLE else refused)[key] = (saved.get(key), current.get(key))
    return applicable, refused


def describe(changes: dict) -> str:
    return ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in changes.items())


def resume_path(cfg: Any, ckpts: Checkpoints, out: Path, log) -> Path | None:
    """The checkpoint to resume from, None for a fresh run; refuses to replace an earlier run's outputs."""
    earlier = [n for n in RESULTS if (out / n).exists()]
    if cfg.resume == "auto":
        path = ckpts.latest(log)
        if path is not None:
            return path
        if earlier and not cfg.overwrite:
            raise ValueError(f"--resume auto: '{out}' has no complete checkpoint but holds an earlier run's "
                             f"{', '.join(earlier)}; pass --overwrite true to start again there, or choose "
                             f"another output_dir")
        log(f"resume auto: no complete checkpoint in {ckpts.root}; starting from scratch")
    elif cfg.resume:
        path = Path(cfg.resume)
        if not path.is_dir():
            raise FileNotFoundError(f"resume checkpoint not found: {cfg.resume}")
        reason = why_incomplete(path)
        if reason is not None:
            raise ValueError(f"cannot resume from {path}: {reason}; use --resume auto for the newest complete one")
        return path
    elif ckpts.any() or earlier:
        if not cfg.overwrite:
            what = "checkpoints" if ckpts.any() else ", ".join(earlier)
            raise ValueError(f"output_dir '{out}' already holds {what} of an earlier run: pass --resume auto to "
                             f"continue it, --overwrite true to replace it, or choose another output_dir")
    if cfg.overwrite and (ckpts.any() or earlier):
        from accelerate import PartialState

        if PartialState().is_main_process:
            for name in (*RESULTS, "checkpoints", "config.yaml", "debug_checks.json"):
                target = out / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        PartialState().wait_for_everyone()
    return None


def check_resume_config(cfg: Any, path: Path) -> dict:
    """The changes to apply on resume; refuses those that would make it another run (see .checkpoints)."""
    saved_file = path / "config.yaml"
    if not saved_file.is_file():
        raise ValueError(f"cannot resume from {path}: it has no config.yaml to compare with")
    saved = yaml.safe_load(saved_file.read_text()) or {}
    applicable, refused = resume_changes(saved, cfg.to_dict())
    if refused:
        raise ValueError(f"cannot resume {path} with a different config: {describe(refused)}; "
                         f"these define the run: drop the overrides, or start a new run in another output_dir")
    if applicable and not cfg.resume_apply:
        raise ValueError(f"resuming {path} with changed {describe(applicable)}: pass --resume_apply true to "
                         f"train on with the new value(s), or drop the override(s)")
    return applicable
