"""save_for_hub: files and their modes, timm config.json, the model card (stats, usage, datasets,
rounded model-index, bibtex), atomic replacement, and what it refuses."""
from __future__ import annotations

import json
import os
import stat

import pytest
import timm
import torch
from conftest import code_blocks, make_results, write_results
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

import kcl_models  # noqa: F401
from kcl_models.eval.report import file_sha256, load_results
from kcl_models.hub import (
    PLOT_FILE,
    ResultsMismatchError,
    card_metric_name,
    save_for_hub,
    write_model_card,
)
from kcl_models.utils import NonFiniteWeightsError

VARIANT = "resnet32_bcl.digits_lt"


@pytest.fixture
def bcl_model():
    torch.manual_seed(0)
    return timm.create_model(VARIANT).eval()


@pytest.fixture
def weights_and_results(bcl_model, tmp_path):
    """The weights file as eval.py would hash it, and results measured on it."""
    weights = tmp_path / "w.safetensors"
    save_file(bcl_model.state_dict(), str(weights))
    return weights, make_results(VARIANT, "resnet32_bcl", 10, weights_sha256=file_sha256(weights))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_folder_holds_weights_config_card_results_and_plot(bcl_model, weights_and_results, tmp_path):
    weights, results = weights_and_results
    old = os.umask(0o022)
    try:
        out = save_for_hub(bcl_model, write_results(tmp_path / "r.json", results), tmp_path / "out",
                           train_config={"method": "bcl", "epochs": 200}, source_checkpoint=weights)
    finally:
        os.umask(old)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.safetensors", "config.json", "README.md", "results.json", PLOT_FILE])
    # weight files get the mode of every other file (safetensors alone writes them 0600)
    assert {p.name: _mode(p) for p in out.iterdir()} == {p.name: 0o644 for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "staging folder left behind"
    tensors = load_file(str(out / "model.safetensors"))
    assert tensors.keys() == bcl_model.state_dict().keys()  # backbone + classifier only
    assert tensors["fc.weight"].shape == (10, 64)

    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet32_bcl"
    assert config["num_classes"] == 10 and config["num_features"] == 64
    assert config["label_names"] == [f"digit_{i}" for i in range(10)]
    assert config["pretrained_cfg"]["tag"] == "digits_lt"
    registry = timm.models.get_pretrained_cfg(VARIANT)
    assert config["pretrained_cfg"]["mean"] == list(registry.mean)
    assert config["pretrained_cfg"]["notes"] == registry.notes  # as written in the registry
    assert config["model_args"]["cls_scale"] == 30.0
    prov = config["kcl_models"]
    assert prov["variant"] == VARIANT and prov["method"] == "bcl"
    assert prov["train_config"] == {"method": "bcl", "epochs": 200}
    assert prov["source"] == {"kind": "checkpoint", "file": "w.safetensors", "sha256": file_sha256(weights)}
    assert set(prov["software"]) >= {"kcl_models", "torch", "timm", "huggingface_hub", "safetensors", "python"}
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_results(out / "results.json") == results


def test_card_metadata_stats_usage_and_citation(bcl_model, weights_and_results, tmp_path):
    weights, results = weights_and_results
    results["metrics"]["medium"] = 250 / 3  # 83.33333333333333, as eval.py writes it
    out = save_for_hub(bcl_model, results, tmp_path / "out", source_checkpoint=weights)
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.license == "apache-2.0"
    assert data.datasets == ["digits-lt"]
    assert {"bcl", "digits-lt", "arxiv:2207.09052", "image-classification"} <= set(data.tags)
    by_name = {r.metric_name: r for r in data.eval_results}
    for key, digits in (("top1", 2), ("top5", 2), ("many", 2), ("medium", 2), ("few", 2), ("balancedness", 4)):
        result = by_name[card_metric_name(key)]
        assert result.metric_value == round(results["metrics"][key], digits), key
        assert result.dataset_split == "test" and result.task_type == "image-classification"
    assert by_name[card_metric_name("medium")].metric_value == 83.33
    assert "83.33333" not in (out / "README.md").read_text()
    assert by_name["Top-1 accuracy [linear_probe]"].metric_value == results["probes"]["linear_probe"]["top1"]

    text = card.text
    # model stats as timm's cards give them (ResNet-32 at the cfg's 16x16 input)
    for line in ("  - Params (M): 0.464", "  - GMACs: 0.0172", "  - Activations (M): 0.0758",
                 "  - Image size: 16 x 16"):
        assert line in text.splitlines(), line
    assert "| 71.23 | 97.50 | 88.12 | 83.33 | 51.88 | 0.8123 | 0.0456 |" in text
    assert f"![Per-class accuracy, classes sorted by training images]({PLOT_FILE})" in text
    assert file_sha256(out / "model.safetensors") in text
    assert "epochs: 3" in text  # training recipe from results['config']

    # timm has no CIFAR ResNet-32: the usage starts with the install and the import
    usage = text.split("## Usage", 1)[1].split("\n## ", 1)[0]
    assert usage.lstrip().startswith("```bash\npip install kcl-models\n```")
    blocks = code_blocks(usage)
    assert [b.splitlines()[0] for b in blocks] == ["import kcl_models  # registers the kcl-models architectures "
                                                   "with timm"] * len(blocks)
    assert {"### Image classification", "### Feature maps", "### Image embeddings"} <= set(usage.splitlines())
    assert "# [1, 16, 16, 16], [1, 16, 16, 16], [1, 32, 8, 8], [1, 64, 4, 4]" in usage
    assert "hf-hub:kcl-models/resnet32_bcl.digits_lt" in usage
    # both papers: BCL (the method) and KCL (the balancedness metric), authors as printed on them
    assert "@inproceedings{zhu2022balanced" in text and "@inproceedings{kang2021exploring" in text
    assert "Kang, Bingyi and Li, Yu and Yuan, Zehuan and Feng, Jiashi" in text
    assert "Zhu, Jianggang and Wang, Zheng and Chen, Jingjing and Chen, Yi-Ping Phoebe and Jiang, Yu-Gang" in text


def test_standard_variant_names_plain_timm_architecture(tmp_path):
    model = timm.create_model("resnet50_kcl.imagenet_lt", num_classes=0)  # a KCL stage-1 backbone
    out = save_for_hub(model, None, tmp_path / "out")
    results = make_results("resnet50_kcl.imagenet_lt", "resnet50", 10, protocol="linear_probe",
                           weights_sha256=file_sha256(out / "model.safetensors"))
    results["config"] = {"method": "kcl"}
    write_model_card(out, results)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet50" and config["num_classes"] == 0
    assert config["kcl_models"]["architecture"] == "resnet50_kcl"
    assert not (out / "timm").exists(), "the folder itself is plain timm: no second export"
    card = ModelCard.load(out / "README.md")
    assert card_metric_name("top1", "linear_probe") in {r.metric_name for r in card.data.eval_results}
    usage = card.text.split("## Usage")[1].split("\n## ", 1)[0]
    assert "import kcl_models" not in usage and "pip install" not in usage
    assert "hf-hub:kcl-models/resnet50_kcl.imagenet_lt" in usage
    assert "timm.create_model(\"resnet50_kcl.imagenet_lt\"" not in usage  # 1000-class cfg: not for a backbone
    assert "backbone only" in card.text and "@inproceedings{kang2021exploring" in card.text
    assert "  - Params (M): 23.5" in card.text.splitlines() and "  - GMACs: 4.09" in card.text.splitlines()


def test_results_must_fit_the_model(bcl_model, tmp_path):
    wrong = make_results(VARIANT, "resnet32_bcl", 7)
    with pytest.raises(ValueError, match="results are for 7 classes, the model has num_classes=10"):
        save_for_hub(bcl_model, wrong, tmp_path / "a")
    broken = make_results(VARIANT, "resnet32_bcl", 10)
    del broken["metrics"]["few"]
    with pytest.raises(ValueError, match="metrics.few"):
        save_for_hub(bcl_model, broken, tmp_path / "b")
    nan = make_results(VARIANT, "resnet32_bcl", 10)
    nan["metrics"]["top1"] = float("nan")
    with pytest.raises(ValueError, match="metrics.top1' must be a finite number"):
        save_for_hub(bcl_model, nan, tmp_path / "b")
    backbone = timm.create_model("resnet32_bcl", num_classes=0)
    with pytest.raises(ValueError, match="no classifier"):
        save_for_hub(backbone, make_results(VARIANT, "resnet32_bcl", 10), tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_results_of_other_weights_are_refused_unless_forced(bcl_model, weights_and_results, tmp_path):
    weights, results = weights_and_results
    other_arch = dict(results, model=dict(results["model"], architecture="resnet32_kcl"))
    with pytest.raises(ResultsMismatchError, match="architecture 'resnet32_kcl'.*--force"):
        save_for_hub(bcl_model, other_arch, tmp_path / "a", source_checkpoint=weights)
    other_sha = dict(results, model=dict(results["model"], weights_sha256="0" * 64))
    with pytest.raises(ResultsMismatchError, match="sha256 0{64}"):
        save_for_hub(bcl_model, other_sha, tmp_path / "a", source_checkpoint=weights)
    unknown = dict(results, model=dict(results["model"], weights_sha256=None))
    with pytest.raises(ResultsMismatchError, match="record no weights sha256"):
        save_for_hub(bcl_model, unknown, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    out = save_for_hub(bcl_model, other_sha, tmp_path / "a", source_checkpoint=weights, force=True)
    text = (out / "README.md").read_text()
    assert "**Published with `--force`:**" in text and "sha256 " + "0" * 64 in text
    assert json.loads((out / "config.json").read_text())["kcl_models"]["forced_results"]


def test_refuses_foreign_files_and_silent_overwrite(bcl_model, weights_and_results, tmp_path):
    weights, results = weights_and_results
    out = tmp_path / "out"
    out.mkdir()
    (out / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        save_for_hub(bcl_model, None, out)
    (out / "pytorch_model.bin").unlink()
    save_for_hub(bcl_model, results, out, source_checkpoint=weights)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_for_hub(bcl_model, None, out)
    save_for_hub(bcl_model, None, out, overwrite=True)  # stale results/plot of the old export go away
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "Not evaluated yet" in (out / "README.md").read_text()


def test_a_failed_export_leaves_the_earlier_one_intact(bcl_model, weights_and_results, tmp_path, monkeypatch):
    weights, results = weights_and_results
    out = save_for_hub(bcl_model, results, tmp_path / "out", source_checkpoint=weights)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("kcl_models.eval.report.plot_per_class", crash)
    monkeypatch.setattr("kcl_models.hub.card.plot_per_class", crash)
    torch.manual_seed(1)
    other = timm.create_model(VARIANT).eval()
    save_file(other.state_dict(), str(weights))
    results["model"]["weights_sha256"] = file_sha256(weights)
    with pytest.raises(OSError, match="disk full"):
        save_for_hub(other, results, out, source_checkpoint=weights, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "w.safetensors"]


def test_refuses_non_finite_weights_naming_the_tensor(bcl_model, tmp_path):
    with torch.no_grad():
        bcl_model.layer2[1].bn1.running_var[3] = float("inf")  # a buffer, as after a diverged run
    with pytest.raises(NonFiniteWeightsError, match=r"'layer2\.1\.bn1\.running_var' holds 1 non-finite"):
        save_for_hub(bcl_model, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


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
    results = make_results(VARIANT, "resnet32_bcl", 10, weights_sha256=file_sha256(out / "model.safetensors"))
    write_model_card(out, results, repo_id="someone/my-digits")
    card = ModelCard.load(out / "README.md")
    assert card.data.eval_results[0].metric_value == round(results["metrics"]["top1"], 2)
    assert "hf-hub:someone/my-digits" in card.text and "(matches `model.safetensors`)" in card.text
    assert json.loads((out / "config.json").read_text())["kcl_models"]["repo_id"] == "someone/my-digits"
    assert (out / PLOT_FILE).is_file() and (out / "results.json").is_file()
