"""save_for_hub: files, timm config.json, model card metadata and numbers."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from conftest import make_results, write_results
from huggingface_hub import ModelCard
from safetensors.torch import load_file

import kcl_models  # noqa: F401
from kcl_models.hub import (
    PLOT_FILE,
    card_metric_name,
    load_results,
    save_for_hub,
    sha256_file,
    write_model_card,
)

VARIANT = "resnet32_bcl.digits_lt"


@pytest.fixture
def bcl_model():
    torch.manual_seed(0)
    return timm.create_model(VARIANT).eval()


def test_folder_holds_weights_config_card_results_and_plot(bcl_model, tmp_path):
    results = make_results(VARIANT, "resnet32_bcl", 10)
    out = save_for_hub(bcl_model, write_results(tmp_path / "r.json", results), tmp_path / "out",
                       train_config={"method": "bcl", "epochs": 200}, source_checkpoint=None)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.safetensors", "config.json", "README.md", "results.json", PLOT_FILE])
    weights = load_file(str(out / "model.safetensors"))
    assert weights.keys() == bcl_model.state_dict().keys()  # backbone + classifier only
    assert weights["fc.weight"].shape == (10, 64)

    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet32_bcl"
    assert config["num_classes"] == 10 and config["num_features"] == 64
    assert config["label_names"] == [f"digit_{i}" for i in range(10)]
    assert config["pretrained_cfg"]["tag"] == "digits_lt"
    assert config["pretrained_cfg"]["mean"] == list(timm.models.get_pretrained_cfg(VARIANT).mean)
    assert config["model_args"]["cls_scale"] == 30.0
    prov = config["kcl_models"]
    assert prov["variant"] == VARIANT and prov["method"] == "bcl"
    assert prov["train_config"] == {"method": "bcl", "epochs": 200}
    assert set(prov["software"]) >= {"kcl_models", "torch", "timm", "huggingface_hub", "python"}
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_results(out / "results.json") == results


def test_card_metadata_parses_and_numbers_equal_results(bcl_model, tmp_path):
    results = make_results(VARIANT, "resnet32_bcl", 10)
    out = save_for_hub(bcl_model, results, tmp_path / "out")
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.license == "apache-2.0"
    assert {"bcl", "digits-lt", "arxiv:2207.09052", "image-classification"} <= set(data.tags)
    by_name = {r.metric_name: r for r in data.eval_results}
    for key in ("top1", "top5", "many", "medium", "few", "balancedness"):
        result = by_name[card_metric_name(key)]
        assert result.metric_value == results["metrics"][key], key
        assert result.dataset_split == "test" and result.task_type == "image-classification"
    assert by_name["Top-1 accuracy [linear_probe]"].metric_value == results["probes"]["linear_probe"]["top1"]
    text = card.text
    assert "| 71.23 | 97.50 | 88.12 | 70.06 | 51.88 | 0.8123 | 0.0456 |" in text
    assert f"![Per-class accuracy, classes sorted by training images]({PLOT_FILE})" in text
    assert "hf-hub:kcl-models/resnet32_bcl.digits_lt" in text and "import kcl_models" in text
    assert "@inproceedings{zhu2022balanced" in text
    assert sha256_file(out / "model.safetensors") in text
    assert "epochs: 3" in text  # training recipe from results['config']


def test_standard_variant_names_plain_timm_architecture(tmp_path):
    model = timm.create_model("resnet50_kcl.imagenet_lt", num_classes=0)  # a KCL stage-1 backbone
    results = make_results("resnet50_kcl.imagenet_lt", "resnet50_kcl", 10, protocol="linear_probe")
    results["config"] = {"method": "kcl"}
    out = save_for_hub(model, results, tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet50" and config["num_classes"] == 0
    assert config["kcl_models"]["architecture"] == "resnet50_kcl"
    card = ModelCard.load(out / "README.md")
    names = {r.metric_name for r in card.data.eval_results}
    assert card_metric_name("top1", "linear_probe") in names
    snippet = card.text.split("## Usage")[1].split("```")[1]
    assert "\nimport kcl_models" not in snippet and "hf-hub:kcl-models/resnet50_kcl.imagenet_lt" in snippet
    assert "timm.create_model(\"resnet50_kcl.imagenet_lt\"" not in snippet  # 1000-class cfg: not for a backbone
    assert "backbone only" in card.text and "@inproceedings{kang2021exploring" in card.text


def test_results_must_fit_the_model(bcl_model, tmp_path):
    wrong = make_results(VARIANT, "resnet32_bcl", 7)
    with pytest.raises(ValueError, match="results are for 7 classes, the model has num_classes=10"):
        save_for_hub(bcl_model, wrong, tmp_path / "a")
    broken = make_results(VARIANT, "resnet32_bcl", 10)
    del broken["metrics"]["few"]
    with pytest.raises(ValueError, match="metrics.few"):
        save_for_hub(bcl_model, broken, tmp_path / "b")
    backbone = timm.create_model("resnet32_bcl", num_classes=0)
    with pytest.raises(ValueError, match="no classifier"):
        save_for_hub(backbone, make_results(VARIANT, "resnet32_bcl", 10), tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_refuses_foreign_files_and_silent_overwrite(bcl_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        save_for_hub(bcl_model, None, out)
    (out / "pytorch_model.bin").unlink()
    save_for_hub(bcl_model, make_results(VARIANT, "resnet32_bcl", 10), out)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_for_hub(bcl_model, None, out)
    save_for_hub(bcl_model, None, out, overwrite=True)  # stale results/plot of the old export go away
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "Not evaluated yet" in (out / "README.md").read_text()


def test_refuses_a_model_that_would_not_load(tmp_path):
    model = timm.create_model("resnet32_bcl", num_classes=10)
    model.extra = torch.nn.Linear(2, 2)  # e.g. a leftover projection head
    with pytest.raises(ValueError, match=r"(?s)unexpected keys.*extra\.weight"):
        save_for_hub(model, None, tmp_path / "out", variant=VARIANT)
    scaled = timm.create_model("resnet32_bcl", num_classes=10, cls_scale=16.0)
    with pytest.raises(ValueError, match="scale 16.0"):
        save_for_hub(scaled, None, tmp_path / "out2", variant=VARIANT)


def test_write_model_card_later_adds_results(bcl_model, tmp_path):
    out = save_for_hub(bcl_model, None, tmp_path / "out")
    results = make_results(VARIANT, "resnet32_bcl", 10)
    write_model_card(out, results, repo_id="someone/my-digits")
    card = ModelCard.load(out / "README.md")
    assert card.data.eval_results[0].metric_value == results["metrics"]["top1"]
    assert "hf-hub:someone/my-digits" in card.text
    assert (out / PLOT_FILE).is_file() and (out / "results.json").is_file()
