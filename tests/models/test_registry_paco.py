"""The PaCo, GPaCo and ProCo variants: paper numbers in their cfgs, plain-timm equivalence of the linear-head
ones, planned (no weights) status. The shared contract tests (forward, features_only, reset_classifier,
safetensors round trip) run on them through tests/models/test_registry.py."""
from __future__ import annotations

import pytest
import timm
import torch

import kcl_models
from kcl_models.models import STANDARD_ARCHITECTURES, CosineClassifier

PAPER_TOP1 = {
    "resnet50_paco.imagenet_lt": "57.0", "resnext50_32x4d_paco.imagenet_lt": "58.2",
    "resnet50_gpaco.imagenet_lt": "58.5", "resnext50_32x4d_gpaco.imagenet_lt": "58.9",
    "resnet50_gpaco.inat2018": "75.4", "resnet50_proco.imagenet_lt": "57.3",
    "resnext50_32x4d_proco.imagenet_lt": "58.0", "resnet50_proco.inat2018": "73.5",
    "resnet32_proco.cifar100_lt_if100": "52.8", "resnet32_paco.cifar100_lt_if100": "52.0",
}


def test_every_variant_is_registered_with_its_paper_number():
    tagged = set(kcl_models.list_kcl_models(include_tags=True))
    assert set(PAPER_TOP1) <= tagged
    assert not set(PAPER_TOP1) & set(kcl_models.list_kcl_models(pretrained=True))  # planned: no weights yet
    for name, top1 in PAPER_TOP1.items():
        cfg = timm.models.get_pretrained_cfg(name)
        assert f"paper top-1 {top1}" in cfg.notes, name
        assert kcl_models.models.zoo_entry(name).status == "planned"
        assert kcl_models.models.zoo_entry(name).repo == f"kcl-models/{name}"
        method = name.split(".")[0].rsplit("_", 1)[1]
        assert cfg.paper_ids == {"paco": "arxiv:2107.12028", "gpaco": "arxiv:2209.12400",
                                 "proco": "arxiv:2403.06726"}[method], name
        assert cfg.license == ("mit" if method in ("paco", "gpaco") and "resnet32" not in name else "apache-2.0")


@pytest.mark.parametrize("arch", ["resnet50_paco", "resnext50_32x4d_paco", "resnet50_gpaco", "resnext50_32x4d_gpaco"])
def test_linear_head_variants_are_timm_architectures(arch):
    ours = timm.create_model(arch, num_classes=7).eval()
    plain = timm.create_model(STANDARD_ARCHITECTURES[arch], num_classes=7).eval()
    assert type(ours) is type(plain) and type(ours.fc) is torch.nn.Linear
    state = ours.state_dict()
    assert state.keys() == plain.state_dict().keys()
    plain.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), plain(x))


@pytest.mark.parametrize("arch, cosine", [("resnet50_proco", True), ("resnext50_32x4d_proco", True),
                                          ("resnet32_proco", False), ("resnet32_paco", False)])
def test_proco_classifiers(arch, cosine):
    model = timm.create_model(arch, num_classes=5)
    assert isinstance(model.get_classifier(), CosineClassifier) == cosine
    if cosine:
        assert model.get_classifier().scale == 30.0
    assert arch not in STANDARD_ARCHITECTURES


def test_no_weights_are_published_yet():
    from kcl_models.hub import load_manifest
    entries = {v["name"]: v for v in load_manifest()["variants"]}
    assert all(entries[name]["status"] == "planned" for name in PAPER_TOP1)
