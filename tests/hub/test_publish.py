"""publish (dry run and patched upload) and the kcl-hub / hub/*.py command lines."""
from __future__ import annotations

import json
import subprocess
import sys

import huggingface_hub
import pytest
import timm
import torch
from conftest import REPO_ROOT, make_results, write_results
from huggingface_hub import ModelCard

import kcl_models  # noqa: F401
from kcl_models.eval.report import file_sha256
from kcl_models.hub import ResultsMismatchError, main, publish, save_for_hub
from kcl_models.utils import NonFiniteWeightsError

VARIANT = "resnet32_bcl.digits_lt"
REPO = "kcl-models/resnet32_bcl.digits_lt"
SECRET = "hf_dontPrintThisToken123"


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model(VARIANT).eval()
    out = save_for_hub(model, None, tmp_path / "export")
    results = make_results(VARIANT, "resnet32_bcl", 10, weights_sha256=file_sha256(out / "model.safetensors"))
    publish(out, REPO, dry_run=True, results=results)  # writes results.json, the plot and the card
    return out


def test_dry_run_lists_exactly_the_files_written(folder, capsys):
    written = sorted(p.name for p in folder.iterdir())
    files = publish(folder, REPO, dry_run=True, token=SECRET)
    assert files == written
    out = capsys.readouterr().out
    for name in written:
        assert name in out
    assert "[dry run]" in out and "model-index" in out and "library_name: timm" in out
    assert SECRET not in out


@pytest.fixture
def fake_hub(monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = dict(repo_id=repo_id, **kwargs)
        calls["token"] = self.token

    def upload_folder(self, **kwargs):
        from pathlib import Path
        calls["upload_folder"] = kwargs
        calls["uploaded_files"] = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        calls["uploaded_card"] = (Path(kwargs["folder_path"]) / "README.md").read_text()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_publish_creates_repo_and_uploads_the_folder(folder, fake_hub, capsys):
    written = sorted(p.name for p in folder.iterdir())
    files = publish(folder, REPO, private=True, token=SECRET)
    assert files == written
    assert fake_hub["create_repo"] == dict(repo_id=REPO, private=True, exist_ok=True, repo_type="model")
    assert fake_hub["token"] == SECRET  # passed to HfApi, never printed
    up = fake_hub["upload_folder"]
    assert up["repo_id"] == REPO and up["repo_type"] == "model" and up["folder_path"] == str(folder)
    assert fake_hub["uploaded_files"] == written
    assert SECRET not in capsys.readouterr().out


def test_publish_with_results_rewrites_card_for_the_target_repo(tmp_path, fake_hub):
    torch.manual_seed(0)
    model = timm.create_model(VARIANT).eval()
    folder = save_for_hub(model, None, tmp_path / "export")  # as after conversion: no results yet
    assert "Not evaluated yet" in (folder / "README.md").read_text()
    results = make_results(VARIANT, "resnet32_bcl", 10, weights_sha256=file_sha256(folder / "model.safetensors"))
    results["metrics"]["few"] = None  # a shot group without classes is allowed by the schema
    publish(folder, "someone/digits-bcl", results=write_results(tmp_path / "r.json", results))
    card = ModelCard.load(folder / "README.md")
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["Top-1 accuracy"] == round(results["metrics"]["top1"], 2)
    assert "Top-1 accuracy (few-shot)" not in values
    assert "hf-hub:someone/digits-bcl" in fake_hub["uploaded_card"] and "(matches `model.safetensors`)" in card.text
    assert fake_hub["uploaded_files"] == ["README.md", "config.json", "model.safetensors", "per_class.png",
                                          "results.json"]
    assert json.loads((folder / "config.json").read_text())["kcl_models"]["repo_id"] == "someone/digits-bcl"


def test_publish_refuses_incomplete_or_pickled_folders(folder, tmp_path):
    (folder / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        publish(folder, REPO, dry_run=True)
    (folder / "pytorch_model.bin").unlink()
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        publish(folder, REPO, dry_run=True)
    with pytest.raises(ValueError, match="invalid repo id"):
        publish(folder, "bad repo id!", dry_run=True)


def test_publish_refuses_a_registry_repo_the_variant_could_not_load(tmp_path):
    backbone = timm.create_model("resnet32_bcl.digits_lt", num_classes=0)  # e.g. a stage-1 backbone
    folder = save_for_hub(backbone, None, tmp_path / "export")
    with pytest.raises(ValueError, match=r"registry's repo for resnet32_bcl.digits_lt.*num_classes 0"):
        publish(folder, REPO, dry_run=True)
    assert publish(folder, "kcl-models/resnet32_bcl.digits_lt_stage1", dry_run=True)


def test_cli_save_then_publish_dry_run(tmp_path, capsys):
    torch.manual_seed(0)
    model = timm.create_model("resnet32_kcl", num_classes=10).eval()
    from safetensors.torch import save_file
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    results = write_results(tmp_path / "r.json", make_results("resnet32_kcl.digits_lt", "resnet32_kcl", 10,
                                                              weights_sha256=file_sha256(tmp_path / "w.safetensors")))
    out = tmp_path / "export"
    assert main(["save", "--model", "resnet32_kcl.digits_lt", "--weights", str(tmp_path / "w.safetensors"),
                 "--results", str(results), "--out", str(out)]) == 0
    assert main(["publish", "--folder", str(out), "--repo", "kcl-models/resnet32_kcl.digits_lt", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for name in ("model.safetensors", "config.json", "README.md", "results.json", "per_class.png"):
        assert name in printed
    prov = json.loads((out / "config.json").read_text())["kcl_models"]
    assert prov["source"]["file"] == "w.safetensors" and len(prov["source"]["sha256"]) == 64
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_thin_scripts_run_from_a_checkout(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "hub" / "publish.py"), "--folder",
                           str(tmp_path / "missing"), "--repo", REPO, "--dry-run"],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "kcl-hub publish: error: folder not found" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_save_from_trainer_folder_records_training(tmp_path, capsys):
    """The trainer writes <out>/model (timm folder) and <out>/config.yaml; `save` picks both up."""
    torch.manual_seed(0)
    model = timm.create_model("resnet32_bcl.digits_lt").eval()
    timm.models.save_for_hf(model, str(tmp_path / "run" / "model"), safe_serialization=True)
    (tmp_path / "run" / "config.yaml").write_text("method: bcl\nepochs: 60\noutput_dir: /home/me/runs/x\n")
    results = make_results(VARIANT, "resnet32_bcl", 10,
                           weights_sha256=file_sha256(tmp_path / "run" / "model" / "model.safetensors"))
    results["config"] = {}
    out = tmp_path / "export"
    assert main(["save", "--model", f"local-dir:{tmp_path / 'run' / 'model'}", "--results",
                 str(write_results(tmp_path / "r.json", results)), "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "Trained by kcl-models with the configuration above" in card and "epochs: 60" in card
    assert "/home/me" not in card and "output_dir: <local path>" in card
    assert file_sha256(tmp_path / "run" / "model" / "model.safetensors") in card


def test_publish_refuses_results_of_other_weights_unless_forced(folder, tmp_path, fake_hub, capsys):
    good = json.loads((folder / "results.json").read_text())
    other = dict(good, model=dict(good["model"], architecture="resnet50_bcl"))
    with pytest.raises(ResultsMismatchError, match="architecture 'resnet50_bcl'"):
        publish(folder, REPO, results=other)
    stale = dict(good, model=dict(good["model"], weights_sha256="f" * 64))
    path = write_results(tmp_path / "stale.json", stale)
    assert main(["publish", "--folder", str(folder), "--repo", REPO, "--results", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256 " + "f" * 64 in err and "--force" in err
    assert "upload_folder" not in fake_hub, "nothing may be uploaded"
    assert "--force" not in (folder / "README.md").read_text()
    assert main(["publish", "--folder", str(folder), "--repo", REPO, "--results", str(path), "--force"]) == 0
    assert "**Published with `--force`:**" in fake_hub["uploaded_card"] and "f" * 64 in fake_hub["uploaded_card"]


def test_publish_refuses_non_finite_weights(folder):
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["layer3.4.bn2.running_var"][0] = float("nan")
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(NonFiniteWeightsError, match=r"'layer3\.4\.bn2\.running_var' holds 1 non-finite"):
        publish(folder, REPO, dry_run=True)
