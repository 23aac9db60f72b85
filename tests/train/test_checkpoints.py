"""Checkpoints are complete or absent; resume never loses, deletes or silently changes a run;
diverged weights are never checkpointed or exported."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kcl_models.train.checkpoints import MARKER
from kcl_models.train.config import load_config
from kcl_models.train.trainer import train
from kcl_models.utils.tensors import NonFiniteWeightsError

CONFIGS = Path(__file__).parents[2] / "configs"
FAST = dict(log_with=None, eval_every=0, warmup_epochs=0, input_size=8, data_kwargs={"img_size": 8}, batch_size=32,
            randaug=None)


def _cfg(out: Path, method: str = "ce", **kw):
    return load_config(CONFIGS / f"digits_{method}.yaml", {**FAST, "output_dir": str(out), **kw})


def _reset():
    from accelerate.state import AcceleratorState, GradientState, PartialState
    AcceleratorState._reset_state(True), GradientState._reset_state(), PartialState._reset_state()


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def _history(out: Path) -> list[float]:
    return json.loads((out / "train_metrics.json").read_text())["loss_history"]


def test_resume_auto_skips_incomplete_folders_and_says_why(tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg(out, epochs=1, checkpoint_every=3, keep_checkpoints=5, max_steps=6))
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint_0", "checkpoint_1"]
    assert all((p / MARKER).is_file() for p in ckpts.iterdir())
    # what kills leave behind: an interrupted write, and a folder whose file was cut short
    shutil.copytree(ckpts / "checkpoint_1", ckpts / ".tmp-checkpoint_3")
    shutil.copytree(ckpts / "checkpoint_1", ckpts / "checkpoint_2")
    weights = ckpts / "checkpoint_2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    _reset()
    train(_cfg(out, epochs=1, checkpoint_every=3, keep_checkpoints=5, resume="auto"))
    said = capsys.readouterr().out
    assert ".tmp-checkpoint_3: its write was interrupted" in said
    assert "checkpoint_2: model.safetensors has 100 bytes" in said
    assert f"resumed from {ckpts / 'checkpoint_1'}: stage 1, epoch 0, batch 6, step 6" in said
    assert len(_history(out)) == 9                  # the whole run, not only the resumed part


def test_resume_from_an_older_checkpoint_keeps_it_until_a_newer_one_exists(tmp_path):
    out = tmp_path / "run"
    train(_cfg(out, epochs=1, checkpoint_every=2, keep_checkpoints=2))
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint_2", "checkpoint_3"]
    reference = _weights(out)
    _reset()
    older = ckpts / "checkpoint_2"                  # steps 6 of 9: resume from the older of the two
    shutil.rmtree(out / "model"), (out / "train_metrics.json").unlink()
    train(_cfg(out, epochs=1, checkpoint_every=2, keep_checkpoints=2, resume=str(older)))
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint_3", "checkpoint_4"]   # numbers never reused
    for key, value in _weights(out).items():
        assert torch.equal(value, reference[key]), key


def test_config_changes_on_resume_are_refused_or_applied_explicitly(tmp_path):
    out = tmp_path / "run"
    train(_cfg(out, epochs=2, checkpoint_every=4, max_steps=8))
    _reset()
    with pytest.raises(ValueError, match=r"different config: batch_size \(32 -> 16\).*start a new run"):
        train(_cfg(out, epochs=2, checkpoint_every=4, resume="auto", batch_size=16))
    _reset()
    with pytest.raises(ValueError, match=r"changed lr \(0.05 -> 0.0001\): pass --resume_apply true"):
        train(_cfg(out, epochs=2, checkpoint_every=4, resume="auto", lr=1e-4))
    _reset()
    cfg = _cfg(out, epochs=2, checkpoint_every=4, resume="auto", lr=1e-4, resume_apply=True, log_every=1,
               log_with="tensorboard")
    train(cfg)
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["config"]["lr"] == 1e-4 and load_config(out / "config.yaml").lr == 1e-4   # the config that ran
    assert len(saved["loss_history"]) == 18
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(next((out / "train").rglob("events.out.tfevents*")).parent))
    events.Reload()
    lrs = {e.step: e.value for e in events.Scalars("train/lr")}
    assert sorted(lrs) == list(range(9, 19))         # the resumed steps; the first 8 ran without a tracker
    for step, lr in lrs.items():                     # the new cosine schedule over the run's 18 updates
        assert lr == pytest.approx(0.5 * 1e-4 * (1 + math.cos(math.pi * step / 18)), rel=1e-5, abs=1e-12)


def test_a_rerun_never_replaces_an_earlier_runs_results(tmp_path):
    out = tmp_path / "run"
    train(_cfg(out, epochs=1, checkpoint_every=0, keep_checkpoints=1))
    shutil.rmtree(out / "checkpoints")              # results, but no checkpoints
    before = (out / "model" / "model.safetensors").read_bytes()
    _reset()
    with pytest.raises(ValueError, match=rf"output_dir '{out}' already holds model, train_metrics.json"):
        train(_cfg(out, epochs=1))
    assert (out / "model" / "model.safetensors").read_bytes() == before
    _reset()
    with pytest.raises(ValueError, match="no complete checkpoint but holds an earlier run's model"):
        train(_cfg(out, epochs=1, resume="auto"))
    _reset()
    train(_cfg(out, epochs=1, overwrite=True, lr=0.01))
    assert (out / "model" / "model.safetensors").read_bytes() != before


def test_diverged_weights_stop_the_run_and_the_advice_works(tmp_path):
    out = tmp_path / "run"
    kw = dict(epochs=2, crt_epochs=1, queue_size=64, checkpoint_every=1, keep_checkpoints=20, warmup_epochs=2)
    with pytest.raises(NonFiniteWeightsError, match=r"tensor 'model\.backbone\..*running_var' holds .* NaN/inf"):
        train(_cfg(out, "kcl", lr=1e6, **kw))       # the loss stays finite; BN statistics do not
    assert not (out / "model").exists()
    for ckpt in (out / "checkpoints").iterdir():     # every checkpoint left is all finite
        weights = load_file(str(ckpt / "model.safetensors"))
        assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()), ckpt
    _reset()  # the newest finite checkpoint may be too far gone: the advice names an earlier one
    train(_cfg(out, "kcl", lr=0.05, resume=str(out / "checkpoints" / "checkpoint_1"), resume_apply=True, **kw))
    assert all(torch.isfinite(w).all() for w in _weights(out).values() if w.is_floating_point())
