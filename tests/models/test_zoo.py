"""A zoo that tells the truth: listed weights load (bundled, no network, empty HF cache), planned
tags say how to make theirs, a Hub repo that cannot be had fails at once, and the registry agrees
with hub/manifest.yaml (read as data)."""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import timm
import torch
import yaml

import kcl_models
from kcl_models.models import WEIGHTS_DIR, PretrainedWeightsUnavailable, zoo_entry

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((REPO / "hub" / "manifest.yaml").read_text())["variants"]
BUNDLED = ["resnet32_bcl.digits_lt", "resnet32_kcl.digits_lt"]


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection and DNS lookup fails, as on a machine without network."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants
    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


def test_pretrained_lists_exactly_the_variants_with_weights():
    assert kcl_models.list_kcl_models(pretrained=True) == BUNDLED
    assert timm.list_models("*_kcl", pretrained=True) == ["resnet32_kcl.digits_lt"]
    assert timm.list_models("*_bcl", pretrained=True) == ["resnet32_bcl.digits_lt"]
    for name in kcl_models.list_kcl_models(include_tags=True):
        entry = zoo_entry(name)
        assert entry.status == ("bundled" if name in BUNDLED else "planned"), name
        if entry.status == "bundled":
            assert entry.file == WEIGHTS_DIR / name / "model.safetensors" and entry.file.is_file()


def test_registry_agrees_with_the_manifest():
    assert sorted(v["name"] for v in MANIFEST) == kcl_models.list_kcl_models(include_tags=True)
    for v in MANIFEST:
        entry = zoo_entry(v["name"])
        status = {"ready": "bundled", "published": "published", "planned": "planned"}[v["status"]]
        assert entry.status == status, v["name"]
        assert entry.repo == v["repo"], v["name"]
        kind, _, detail = v["source"].partition(": ")
        if kind == "trained":
            assert entry.recipe.kind == "train" and entry.recipe.config == detail, v["name"]
            assert (REPO / detail).is_file(), detail
        else:
            assert entry.recipe.kind == "convert" and detail == f"hub/convert.py {entry.recipe.layout}", v["name"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_are_the_published_results(name):
    """The bundled file is the one the recorded results were measured on (sha256 in the results
    JSON) and the same bytes as the folder under hub/models."""
    digest = hashlib.sha256((WEIGHTS_DIR / name / "model.safetensors").read_bytes()).hexdigest()
    results = json.loads((REPO / "hub" / "results" / f"{name}.json").read_text())
    assert results["model"]["weights_sha256"] == digest
    assert hashlib.sha256((REPO / "hub" / "models" / name / "model.safetensors").read_bytes()).hexdigest() == digest
    config = json.loads((WEIGHTS_DIR / name / "config.json").read_text())
    assert config["kcl_models"]["source"]["sha256"] == digest
    assert config["pretrained_cfg"]["interpolation"] == timm.models.get_pretrained_cfg(name).interpolation


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_load_offline_with_an_empty_cache(name, no_network, empty_hf_cache):
    model = timm.create_model(name, pretrained=True).eval()
    reference = timm.create_model(f"local-dir:{REPO / 'hub' / 'models' / name}", pretrained=True).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert not no_network and not empty_hf_cache.exists()
    # the untagged name defaults to the tag that has weights
    assert timm.create_model(name.split(".")[0], pretrained=True).pretrained_cfg["tag"] == "digits_lt"


@pytest.mark.parametrize("name", sorted(set(kcl_models.list_kcl_models(include_tags=True)) - set(BUNDLED)))
def test_planned_tag_says_how_to_make_its_weights(name, no_network, empty_hf_cache):
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        timm.create_model(name, pretrained=True)
    msg = str(info.value)
    assert "planned" in msg and "\n" not in msg
    recipe = zoo_entry(name).recipe
    if recipe.kind == "train":
        assert f"python train.py --config {recipe.config}" in msg
    else:
        assert f"python hub/convert.py {recipe.layout} --arch {name}" in msg
    assert not no_network, "a planned tag must not touch the network"


def test_missing_hub_repo_fails_before_any_download(no_network, empty_hf_cache, monkeypatch):
    """A tag whose weights are on the Hub: without HF_HUB_OFFLINE and without network, one probe
    fails and no download (with its ~25 s of retries) is attempted."""
    import huggingface_hub
    from timm.models import _hub

    downloads = []
    monkeypatch.setattr(_hub, "hf_hub_download", lambda *a, **k: downloads.append(a) or 1 / 0)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: downloads.append(a) or 1 / 0)
    overlay = dict(file=None, hf_hub_id="kcl-models/not-a-repo")
    with pytest.raises(PretrainedWeightsUnavailable, match="kcl-models/not-a-repo.*unreachable.*not in the HF cache"):
        timm.create_model("resnet32_kcl.digits_lt", pretrained=True, pretrained_cfg_overlay=overlay)
    assert downloads == []


def _place_in_cache(folder: Path, cache: Path, repo: str) -> None:
    commit = "0" * 40
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (snap / f).write_bytes((folder / f).read_bytes())


def test_cached_hub_repo_loads_when_the_hub_is_unreachable(no_network, empty_hf_cache):
    folder = REPO / "hub" / "models" / "resnet32_kcl.digits_lt"
    _place_in_cache(folder, empty_hf_cache, "kcl-models/cached-repo")
    overlay = dict(file=None, hf_hub_id="kcl-models/cached-repo")
    model = timm.create_model("resnet32_kcl.digits_lt", pretrained=True, pretrained_cfg_overlay=overlay).eval()
    reference = timm.create_model("resnet32_kcl.digits_lt", pretrained=True).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    from huggingface_hub import constants
    assert constants.HF_HUB_OFFLINE is False  # switched on for that load only


def test_package_data_ships_every_bundled_file():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["kcl_models"]
    files = sorted(p.relative_to(REPO / "kcl_models").as_posix() for p in WEIGHTS_DIR.rglob("*") if p.is_file())
    assert files == [f"weights/{n}/{f}" for n in BUNDLED for f in ("config.json", "model.safetensors")]
    for f in files:
        assert any(fnmatch(f, p) for p in patterns), f"{f} is not package data: a wheel would lack it"


@pytest.mark.heavy
def test_wheel_holds_the_weights(tmp_path):
    """Build the wheel from a copy of the tree (no isolation: this environment's setuptools) and list it."""
    import shutil
    import zipfile
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "outputs", "runs", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".ruff_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for n in BUNDLED:
        assert f"kcl_models/weights/{n}/model.safetensors" in names and f"kcl_models/weights/{n}/config.json" in names


@pytest.mark.parametrize("name", BUNDLED)
def test_timm_transform_of_the_cfg_reproduces_the_recorded_accuracy(name):
    """A plain timm pipeline, create_transform(**resolve_model_data_config(model)), gives exactly the
    recorded top-1 and per-class accuracy, whether digits-LT is made at the model's 16 px or at
    DigitsLT's default 32 px ('nearest' in the cfg: 32 -> 16 is the same image as 8 -> 16)."""
    from timm.data import create_transform, resolve_model_data_config

    from kcl_models.data import DigitsLT
    recorded = json.loads((REPO / "hub" / "results" / f"{name}.json").read_text())
    model = timm.create_model(name, pretrained=True).eval()
    transform = create_transform(**resolve_model_data_config(model))
    for img_size in (16, 32):
        ds = DigitsLT("test", img_size=img_size, transform=transform)  # seed 0, IF 100: the recorded run
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.tensor(ds.targets)
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        per_class = [100.0 * int(correct[y == c].sum()) / int((y == c).sum()) for c in range(10)]
        assert 100.0 * int(correct.sum()) / len(ds) == pytest.approx(recorded["metrics"]["top1"], abs=1e-9), img_size
        assert per_class == pytest.approx(recorded["per_class"]["accuracy"], abs=1e-9), img_size
