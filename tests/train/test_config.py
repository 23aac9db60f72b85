from __future__ import annotations

from pathlib import Path

import pytest
import timm

import kcl_models  # noqa: F401
from kcl_models.train.config import METHODS, TrainConfig, load_config, parse_args

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads_and_names_a_registered_model(path):
    cfg = load_config(path)
    assert cfg.method in METHODS
    assert timm.models.get_pretrained_cfg(cfg.model) is not None, cfg.model
    assert timm.is_model(cfg.model.split(".")[0])


def test_digits_configs_cover_every_method():
    methods = {load_config(p).method for p in CONFIGS if p.name.startswith("digits_")}
    assert methods == set(METHODS)


def test_overrides_are_typed_and_unknown_keys_rejected(tmp_path):
    cfg = parse_args(["--config", str(CONFIGS[0]), "--lr", "0.5", "--kcl_k", "null", "--channels_last", "true",
                      "--crt_decay_milestones", "3,7"])
    assert cfg.lr == 0.5 and cfg.kcl_k is None and cfg.channels_last is True
    assert cfg.crt_decay_milestones == [3, 7]
    with pytest.raises(ValueError, match="unknown key 'lrr'.*did you mean lr"):
        load_config(None, {"lrr": 0.1})
    with pytest.raises(ValueError, match="unknown method 'moco'"):
        load_config(None, {"method": "moco"})
    with pytest.raises(ValueError, match="'epochs': cannot read 'ten' as int"):
        load_config(None, {"epochs": "ten"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = TrainConfig(method="kcl", kcl_k=None, lr=0.3, data_kwargs={"a": 1})
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
