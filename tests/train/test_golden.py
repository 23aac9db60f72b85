"""Behaviour kept through refactors: the first optimizer steps' losses of every built-in method on
digits equal those recorded before the trainer became a platform of methods (golden_losses.json,
written by record_golden.py at the commit it names), to 1e-6."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from record_golden import CONFIGS, RUNS, overrides

GOLDEN = json.loads((Path(__file__).parent / "golden_losses.json").read_text())


@pytest.mark.parametrize("name", list(RUNS))
def test_first_steps_match_the_recorded_losses(name, tmp_path):
    from kcl_models.train.config import load_config
    from kcl_models.train.trainer import train

    method, values = overrides(name, tmp_path)
    cfg = load_config(CONFIGS / f"digits_{method}.yaml", values)
    train(cfg)
    history = json.loads((Path(cfg.output_dir) / "train_metrics.json").read_text())["loss_history"]
    expected = GOLDEN["losses"][name]
    assert len(history) == len(expected)
    torch.testing.assert_close(torch.tensor(history, dtype=torch.float64),
                               torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6)
