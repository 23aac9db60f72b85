from __future__ import annotations

from pathlib import Path

import pytest
import timm

import kcl_models  # noqa: F401
from kcl_models.methods import available_methods
from kcl_models.train.config import TrainConfig, load_config, parse_args

# FCL is KCL with every same-class sample a positive (k = null): one config covers both.
DIGITS_METHODS = set(available_methods()) - {"fcl"}

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads_and_names_a_registered_model(path):
    cfg = load_config(path)
    assert cfg.method in available_methods()
    assert timm.models.get_pretrained_cfg(cfg.model) is not None, cfg.model
    assert timm.is_model(cfg.model.split(".")[0])


def test_digits_configs_cover_every_method():
    methods = {load_config(p).method for p in CONFIGS if p.name.startswith("digits_")}
    assert methods == DIGITS_METHODS


def test_overrides_are_typed_and_unknown_keys_rejected(tmp_path):
    kcl = next(p for p in CONFIGS if p.name == "digits_kcl.yaml")
    cfg = parse_args(["--config", str(kcl), "--lr", "0.5", "--k", "null", "--channels-last",
                      "--crt_decay_milestones", "3,7"])
    assert cfg.lr == 0.5 and cfg.options["k"] is None and cfg.channels_last is True
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
    cfg = TrainConfig(method="kcl", options={"k": None}, lr=0.3, data_kwargs={"a": 1})
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_method_options_belong_to_their_method():
    cfg = load_config(None, {"method": "bcl", "alpha": "2", "temperature": 0.1})
    assert cfg.options["alpha"] == 2.0 and cfg.options["beta"] == 0.35     # typed, defaults filled in
    assert cfg.to_dict()["alpha"] == 2.0 and "options" not in cfg.to_dict()  # flat, as a recipe
    with pytest.raises(ValueError, match="method 'ce' has no option 'temperature' .it is an option of .*supcon"):
        load_config(None, {"method": "ce", "temperature": 0.1})
    with pytest.raises(ValueError, match="method 'kcl' has no option 'alpha' .*option of bcl"):
        load_config(None, {"method": "kcl", "alpha": 1.0})
    with pytest.raises(ValueError, match="option 'key_momentum' must be >= 0.0 and < 1.0, got 1.5"):
        load_config(None, {"method": "kcl", "key_momentum": 1.5})
    with pytest.raises(ValueError, match="option 'k' of method fcl must be null"):
        load_config(None, {"method": "fcl", "k": 3})


@pytest.mark.parametrize(("old", "new"), [("kcl_k", "k"), ("moco_m", "key_momentum")])
def test_old_keys_name_their_new_name(old, new, tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"method: kcl\n{old}: 6\n")
    with pytest.raises(ValueError, match=rf"old.yaml: config key '{old}' was renamed to '{new}'"):
        load_config(recipe)


def test_cli_spellings_help_and_no_abbreviations(capsys):
    cfg = parse_args(["--method", "la", "--output-dir", "a", "--la_tau=0.5", "--max-steps", "3"])
    assert cfg.output_dir == "a" and cfg.options["la_tau"] == 0.5 and cfg.max_steps == 3
    with pytest.raises(ValueError, match=r"unknown key 'epoch' \(did you mean epochs"):
        parse_args(["--epoch", "3"])  # no prefix abbreviation
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    shown = capsys.readouterr().out
    for key in ("--lr", "--val_split", "--crt_epochs", "--key_momentum", "--alpha", "--la_tau"):
        assert key in shown
    assert "method kcl (+ cRT stage)" in shown and "default 0.999" in shown


def test_bad_yaml_names_file_and_line(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("method: bcl\nlr: [0.1\nepochs: 3\n")
    with pytest.raises(ValueError, match=r"broken.yaml:\d+: not valid YAML"):
        load_config(recipe)
