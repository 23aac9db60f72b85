"""Registry-driven contract tests: every registered architecture honours timm's model contract."""
from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

import kcl_models
from kcl_models.models import CosineClassifier

ARCHS = kcl_models.list_kcl_models()
TAGGED = kcl_models.list_kcl_models(include_tags=True)


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = 32 if name.startswith("resnet32") else 64
    return torch.randn(batch, 3, size, size)


def test_registry_lists_every_family():
    assert set(timm.list_models("*_kcl")) >= {"resnet50_kcl", "resnet32_kcl"}
    assert set(timm.list_models("*_bcl")) >= {"resnet50_bcl", "resnext50_32x4d_bcl", "resnet32_bcl"}
    for arch in ARCHS:
        assert any(t.startswith(arch + ".") for t in TAGGED), f"{arch} has no arch.tag config"


@pytest.mark.parametrize("name", TAGGED)
def test_pretrained_cfg_is_complete(name):
    cfg = timm.models.get_pretrained_cfg(name)
    arch, tag = name.split(".")
    # weights are either bundled (file + the repo it will be published under) or absent (planned)
    assert (cfg.hf_hub_id, bool(cfg.file)) in {(f"kcl-models/{name}", True), (None, False)}
    assert cfg.num_classes in {10, 100, 1000, 8142}
    assert cfg.classifier == "fc" and cfg.license and cfg.paper_ids and cfg.notes
    assert len(cfg.mean) == len(cfg.std) == 3 and cfg.crop_pct > 0
    expected = {"imagenet_lt": 1000, "inat2018": 8142, "cifar100_lt_if100": 100,
                "cifar10_lt_if100": 10, "digits_lt": 10}[tag]
    assert cfg.num_classes == expected


@pytest.mark.parametrize("name", ARCHS)
def test_forward_backward(name):
    model = timm.create_model(name, num_classes=5)
    x = _input(name)
    out = model(x)
    assert out.shape == (2, 5)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", ARCHS)
def test_forward_features_and_head(name):
    model = timm.create_model(name, num_classes=4).eval()
    x = _input(name)
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(model.forward_head(feats), model(x))


@pytest.mark.parametrize("name", ARCHS)
def test_features_only_matches_feature_info(name):
    model = timm.create_model(name, features_only=True).eval()
    x = _input(name)
    outs = model(x)
    assert len(outs) == len(model.feature_info.channels())
    for out, chs, red in zip(outs, model.feature_info.channels(), model.feature_info.reduction()):
        assert out.shape[1] == chs
        assert out.shape[-1] == x.shape[-1] // red


@pytest.mark.parametrize("name", ARCHS)
def test_reset_classifier_gives_pooled_features(name):
    model = timm.create_model(name, num_classes=3).eval()
    model.reset_classifier(0)
    out = model(_input(name))
    assert out.shape == (2, model.num_features)
    model.reset_classifier(7)
    assert model(_input(name)).shape == (2, 7)
    # BCL's cosine classifier, and ProCo's on ImageNet-scale backbones (its CIFAR code uses a linear one)
    is_cosine = name.endswith("_bcl") or (name.endswith("_proco") and not name.startswith("resnet32"))
    assert isinstance(model.get_classifier(), CosineClassifier) == is_cosine


@pytest.mark.parametrize("name", ARCHS)
def test_safetensors_round_trip_is_exact(name, tmp_path):
    model = timm.create_model(name, num_classes=6).eval()
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    clone = timm.create_model(name, num_classes=6).eval()
    clone.load_state_dict(load_file(str(path)), strict=True)
    x = _input(name)
    assert torch.equal(model(x), clone(x))
    for key, value in model.state_dict().items():
        assert torch.equal(value, clone.state_dict()[key]), key


def test_cosine_classifier_is_scaled_cosine():
    head = CosineClassifier(8, 3, scale=30.0)
    x = torch.randn(5, 8)
    expected = torch.stack([torch.stack([30.0 * torch.nn.functional.cosine_similarity(xi, w, dim=0)
                                         for w in head.weight]) for xi in x])
    torch.testing.assert_close(head(x), expected)
    # invariant to the scale of the input
    torch.testing.assert_close(head(3.0 * x), head(x))
    with pytest.raises(ValueError, match="scale"):
        CosineClassifier(8, 3, scale=0.0)


def test_resnet32_has_expected_size():
    model = timm.create_model("resnet32_kcl", num_classes=10)
    n_params = sum(p.numel() for p in model.parameters())
    # He et al. report 0.46M parameters for ResNet-32 on CIFAR-10
    assert 0.45e6 < n_params < 0.48e6
    assert model.feature_info[-1]["num_chs"] == 64


def test_pretrained_fetch_failure_names_repo(monkeypatch):
    from timm.models import _builder

    def offline(*args, **kwargs):
        from huggingface_hub.errors import LocalEntryNotFoundError
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr(_builder, "load_pretrained", offline)
    with pytest.raises(kcl_models.PretrainedWeightsUnavailable, match="kcl-models/resnet32_bcl.digits_lt"):
        timm.create_model("resnet32_bcl.digits_lt", pretrained=True)


def test_pretrained_loads_from_given_file_and_resets_head(tmp_path):
    src = timm.create_model("resnet32_bcl", num_classes=10).eval()
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    overlay = dict(file=str(path))
    loaded = timm.create_model("resnet32_bcl.digits_lt", pretrained=True, pretrained_cfg_overlay=overlay).eval()
    x = _input("resnet32_bcl")
    assert torch.equal(loaded(x), src(x))
    # a new num_classes keeps the backbone and drops the trained head
    fresh = timm.create_model("resnet32_bcl.digits_lt", pretrained=True, num_classes=4,
                              pretrained_cfg_overlay=overlay).eval()
    assert fresh.get_classifier().weight.shape == (4, 64)
    torch.testing.assert_close(fresh.forward_features(x), src.forward_features(x))
