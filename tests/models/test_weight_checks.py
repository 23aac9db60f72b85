"""Weights are never silently wrong: a head that does not fit config.json, a truncated file, a
malformed config.json and non-finite tensors are refused at load, each with one line naming the
file (and tensor or numbers) and the fix."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.models import save_for_hf

import kcl_models  # noqa: F401
from kcl_models.models import InvalidWeightsError, check_model_folder

NAME = "resnet32_kcl.digits_lt"


@pytest.fixture
def folder(tmp_path) -> Path:
    torch.manual_seed(0)
    out = tmp_path / "model"
    save_for_hf(timm.create_model(NAME, num_classes=10).eval(), out, safe_serialization=True)
    return out


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def _edit_weights(folder: Path, fn) -> None:
    state = load_file(str(folder / "model.safetensors"))
    fn(state)
    save_file(state, str(folder / "model.safetensors"))


def test_config_num_classes_that_disagrees_with_the_head_is_refused(folder):
    _edit_config(folder, num_classes=20)
    with pytest.raises(InvalidWeightsError) as info:
        timm.create_model(f"local-dir:{folder}", pretrained=True)
    msg = str(info.value)
    assert str(folder / "config.json") in msg and "num_classes is 20 but 'fc.weight'" in msg and "has 10 classes" in msg
    assert '"num_classes": 10' in msg and "\n" not in msg
    with pytest.raises(InvalidWeightsError, match="num_classes is 20"):
        check_model_folder(folder)


def test_config_num_classes_without_a_head_in_the_weights_is_refused(folder):
    _edit_weights(folder, lambda s: (s.pop("fc.weight"), s.pop("fc.bias")))
    with pytest.raises(InvalidWeightsError,
                       match=r"num_classes is 10 but the weights in .* have no classifier \('fc.weight' absent\)"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)


def test_a_new_head_on_a_consistent_folder_still_loads(folder):
    ref = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    new = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=4).eval()
    x = torch.randn(2, 3, 16, 16)
    assert new.get_classifier().weight.shape == (4, 64)
    with torch.no_grad():
        torch.testing.assert_close(new.forward_features(x), ref.forward_features(x))
    assert check_model_folder(folder)["num_classes"] == 10


def test_pretrained_cfg_num_classes_that_disagrees_with_a_weights_file_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(timm.create_model(NAME, num_classes=7).state_dict(), str(path))
    with pytest.raises(InvalidWeightsError, match=r"num_classes is 10 but 'fc.weight' in weights file .*w.safetensors "
                                                  r"has 7 classes"):
        timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    model = timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=7))
    assert model.num_classes == 7


def test_truncated_weights_are_named(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidWeightsError, match=rf"{folder / 'model.safetensors'}: not a readable safetensors file"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)
    with pytest.raises(InvalidWeightsError, match="truncated or damaged"):
        check_model_folder(folder)


def test_malformed_config_json_is_named_with_its_line(folder):
    (folder / "config.json").write_text('{\n  "architecture": "resnet32_kcl",\n  "num_classes": 10,,\n}')
    with pytest.raises(InvalidWeightsError, match=rf"{folder / 'config.json'}: not valid JSON \(line 3"):
        check_model_folder(folder)
    (folder / "config.json").write_text('{"num_classes": "ten"}')
    with pytest.raises(InvalidWeightsError, match="'num_classes' must be an integer"):
        check_model_folder(folder)


@pytest.mark.parametrize("key,value", [("layer2.1.bn1.running_var", float("inf")), ("conv1.weight", float("nan"))])
def test_non_finite_weights_are_refused_naming_the_first_bad_tensor(folder, key, value):
    def poison(state):
        state[key].view(-1)[:3] = value
    _edit_weights(folder, poison)
    with pytest.raises(InvalidWeightsError) as info:
        timm.create_model(f"local-dir:{folder}", pretrained=True)
    msg = str(info.value)
    assert f"tensor '{key}' holds 3 non-finite value(s)" in msg and str(folder) in msg
    with pytest.raises(InvalidWeightsError, match=f"tensor '{key}'"):
        timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors")))
