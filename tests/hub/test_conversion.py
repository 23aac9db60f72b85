"""Conversion provenance: the card states the file name and sha256, and calls the weights the
authors' only when hub/manifest.yaml records that sha256; non-finite checkpoints are refused."""
from __future__ import annotations

import json

import pytest
import timm
import torch
import yaml
from conftest import REPO_ROOT

import kcl_models  # noqa: F401
from kcl_models.eval.report import file_sha256
from kcl_models.hub import authors_release_for, convert_checkpoint, load_manifest
from kcl_models.utils import NonFiniteWeightsError


@pytest.fixture
def plain_checkpoint(tmp_path):
    """A plain ResNet state dict (what torchvision or any trainer saves): the kcl-stage2 layout."""
    torch.manual_seed(0)
    model = timm.create_model("resnet32_kcl", num_classes=10)
    path = tmp_path / "resnet32_from_somewhere.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 7}, path)
    return path


def _manifest_with(tmp_path, sha256):
    data = yaml.safe_load((REPO_ROOT / "hub" / "manifest.yaml").read_text())
    entry = next(v for v in data["variants"] if v["name"] == "resnet32_kcl.digits_lt")
    entry["authors_release"] = {"file": "released.pth", "url": "https://example.org/released.pth", "sha256": sha256}
    path = tmp_path / "hub" / "manifest.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_checkpoint_is_described_not_attributed(plain_checkpoint, tmp_path):
    out, conv = convert_checkpoint(plain_checkpoint, "resnet32_kcl.digits_lt", tmp_path / "out")
    assert conv.layout == "kcl-stage2"
    card = (out / "README.md").read_text()
    sha = file_sha256(plain_checkpoint)
    assert f"Converted from `resnet32_from_somewhere.pth`, sha256 `{sha}`" in card
    assert "not an authors' release recorded" in card and "makes no claim about who trained" in card
    assert "authors" not in card.split("## Training recipe", 1)[1].split("## Provenance", 1)[0]
    assert "Trained by the paper's authors" not in card and "trained with KCL" not in card
    config = json.loads((out / "config.json").read_text())
    assert config["kcl_models"]["method"] == "unknown" and config["kcl_models"]["license"] == "other"
    assert config["kcl_models"]["source"]["authors_release"] is None
    assert "license: other" in card


def test_recorded_sha256_is_called_the_authors_release(plain_checkpoint, tmp_path):
    manifest = _manifest_with(tmp_path, file_sha256(plain_checkpoint))
    out, _ = convert_checkpoint(plain_checkpoint, "resnet32_kcl.digits_lt", tmp_path / "out", manifest=manifest)
    card = (out / "README.md").read_text()
    assert "is the authors' release recorded in kcl-models' `hub/manifest.yaml` for `resnet32_kcl.digits_lt`" in card
    assert "Trained by the paper's authors" in card
    prov = json.loads((out / "config.json").read_text())["kcl_models"]
    assert prov["method"] == "kcl" and prov["license"] == "cc-by-nc-4.0"  # the KCL code's license
    assert authors_release_for("0" * 64, manifest) is None


def test_manifest_records_no_invented_sha256():
    releases = [v["authors_release"] for v in load_manifest()["variants"] if v.get("authors_release")]
    assert releases, "the BCL authors' ResNeXt-50 release is listed"
    assert all(r["sha256"] is None or len(r["sha256"]) == 64 for r in releases)


def test_bad_authors_release_entry_is_refused(tmp_path):
    with pytest.raises(ValueError, match="authors_release.sha256 'abc' is not 64"):
        load_manifest(_manifest_with(tmp_path, "abc"))


def test_non_finite_checkpoint_is_refused_naming_the_tensor(plain_checkpoint, tmp_path):
    ckpt = torch.load(plain_checkpoint, weights_only=True)
    ckpt["state_dict"]["module.layer2.3.bn2.running_var"][5] = float("inf")
    torch.save(ckpt, plain_checkpoint)
    with pytest.raises(NonFiniteWeightsError, match=r"'module\.layer2\.3\.bn2\.running_var' holds 1 non-finite"):
        convert_checkpoint(plain_checkpoint, "resnet32_kcl.digits_lt", tmp_path / "out")
    assert not (tmp_path / "out").exists()
