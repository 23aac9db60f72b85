"""Every recipe in configs/ starts: its method and model are built and one optimizer step runs on
synthetic data of the recipe's shape (classes from the model cfg, the recipe's image size; the
224-px recipes at 64 px, the same code paths at a twelfth of the FLOPs)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from kcl_models.train.config import load_config
from kcl_models.train.trainer import train

RECIPES = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_takes_one_step_on_data_of_its_shape(recipe, tmp_path):
    raw = load_config(recipe)
    pcfg = timm.models.get_pretrained_cfg(raw.model)
    size = min(raw.input_size or pcfg.input_size[-1], 64)
    values = dict(data="synthetic", train_split=None, test_split=None, val_split=None, data_root=None,
                  num_classes=pcfg.num_classes, data_kwargs={"img_size": size, "n_max": 2, "test_per_class": 1},
                  imbalance_factor=2, input_size=size, batch_size=4, max_steps=1, epochs=1, workers=0,
                  log_with=None, eval_every=0, compile_losses="no", mixed_precision="no", output_dir=str(tmp_path))
    if "queue_size" in raw.options:
        values["queue_size"] = 8
    cfg = load_config(recipe, values)
    assert cfg.method == raw.method and cfg.model == raw.model
    train(cfg)
    history = json.loads((tmp_path / "train_metrics.json").read_text())["loss_history"]
    assert len(history) == 1 and torch.isfinite(torch.tensor(history)).all()
