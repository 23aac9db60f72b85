"""Every built-in method trains on any timm backbone (timm's test_convnext and test_vit), and a
method that needs something a backbone lacks says so."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from kcl_models.methods import available_methods
from kcl_models.methods.modules import BCLModel
from kcl_models.train.config import load_config
from kcl_models.train.trainer import train

BUILTIN = [m for m in available_methods() if m in ("ce", "la", "supcon", "kcl", "fcl", "bcl", "paco", "gpaco", "proco")]


@pytest.mark.parametrize("backbone", ["test_convnext", "test_vit"])
@pytest.mark.parametrize("method", BUILTIN)
def test_one_step_on_timm_test_backbones(method, backbone, tmp_path):
    values = dict(method=method, model=backbone, data="digits-lt", data_kwargs={"img_size": 8}, batch_size=8,
                  epochs=1, max_steps=2, log_with=None, eval_every=0, randaug=None, hflip=0.0, lr=0.01,
                  output_dir=str(tmp_path))
    if method in ("kcl", "fcl", "paco", "gpaco"):
        values["queue_size"] = 16
    train(load_config(None, values))
    saved = json.loads((tmp_path / "train_metrics.json").read_text())
    assert len(saved["loss_history"]) == 2 and all(map(torch.isfinite, torch.tensor(saved["loss_history"])))
    exported = timm.create_model(f"local-dir:{tmp_path / 'model'}", pretrained=True)
    assert type(exported).__name__ == type(timm.create_model(backbone)).__name__


def test_bcl_names_what_a_backbone_lacks():
    backbone = timm.create_model("test_convnext", num_classes=10)
    backbone.reset_classifier(10)
    backbone.head.fc = nn.Sequential(nn.Linear(backbone.num_features, 10))   # a head without .weight
    with pytest.raises(ValueError, match="BCL prototypes need a classifier with a weight matrix"):
        BCLModel(backbone, 16)


def test_loss_parts_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(Path(__file__).parents[2] / "configs/digits_bcl.yaml",
                      dict(output_dir=str(tmp_path), input_size=8, data_kwargs={"img_size": 8}, batch_size=32,
                           epochs=1, max_steps=4, log_every=2, eval_every=0, log_with="tensorboard"))
    train(cfg)
    events = EventAccumulator(str(next((tmp_path / "train").rglob("events.out.tfevents*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/bcl/loss", "train/bcl/la_ce", "train/bcl/bcl", "train/lr"} <= tags
    la_ce, bcl, total = (events.Scalars(t)[-1].value for t in ("train/bcl/la_ce", "train/bcl/bcl", "train/bcl/loss"))
    assert total == pytest.approx(cfg.options["alpha"] * la_ce + cfg.options["beta"] * bcl, rel=1e-5)
