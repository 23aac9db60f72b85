"""Conversion of the authors' checkpoints (KCL stage 1/2, BCL) into the registered timm models.

The authors' modules are rebuilt here with their exact attribute names (torchvision ResNets as
encoders, MoCo wrapper with encoder_q/encoder_k/queue/queue_ptr/label_queue, BCLModel with
encoder/head/head_fc/NormedLinear fc [D, C]), given random weights, saved the way their scripts
save them (DDP ``module.`` prefix inside {'epoch', 'arch', 'state_dict', 'best_acc1', 'optimizer'})
and converted.
"""
from __future__ import annotations

import argparse
import copy

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import kcl_models  # noqa: F401  (registers the architectures)
from kcl_models.hub import convert_checkpoint
from kcl_models.models.convert import (
    CheckpointLoadError,
    CheckpointMismatchError,
    build_converted_model,
    checkpoint_filter_fn,
    convert_state_dict,
    detect_layout,
    load_checkpoint_file,
)

NUM_CLASSES = 7


class NormedLinear(nn.Module):
    """The authors' cosine classifier: weight [in_features, out_features]."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-1, 1))
        self.s = 30

    def forward(self, x):
        return self.s * F.normalize(x, dim=1).mm(F.normalize(self.weight, dim=0))


def _mlp(d: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, out))


class AuthorsBCLModel(nn.Module):
    """BCLModel layout: encoder (ResNet without fc), head, fc (NormedLinear), head_fc."""

    def __init__(self, encoder: nn.Module, num_classes: int, dim: int = 2048, feat_dim: int = 16) -> None:
        super().__init__()
        encoder.fc = nn.Identity()  # the authors' ResNet has no fc at all: Identity has no keys
        self.encoder = encoder
        self.head = _mlp(dim, feat_dim)
        self.fc = NormedLinear(dim, num_classes)
        self.head_fc = _mlp(dim, feat_dim)


class AuthorsKCL(nn.Module):
    """BalFeat's MoCo wrapper: encoder_q/encoder_k with a (MLP) projection fc, queues as buffers."""

    def __init__(self, dim: int = 128, K: int = 64, mlp: bool = True) -> None:
        super().__init__()
        self.encoder_q = torchvision.models.resnet50(num_classes=dim)
        if mlp:
            d = self.encoder_q.fc.weight.shape[1]
            self.encoder_q.fc = nn.Sequential(nn.Linear(d, d), nn.ReLU(), self.encoder_q.fc)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("label_queue", torch.full((K,), -1, dtype=torch.long))


def _randomize_bn(module: nn.Module, seed: int) -> None:
    """Non-trivial running statistics, so that buffers are checked too."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.num_batches_tracked.fill_(1234)


def _save_like_authors(model: nn.Module, path, arch: str) -> None:
    """DDP prefix, the authors' checkpoint dict, plain-typed extras."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 90, "arch": arch, "state_dict": state, "best_acc1": torch.tensor(57.25),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}},
               path)


def _pooled(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision ResNet features before fc."""
    e = encoder
    x = e.maxpool(e.relu(e.bn1(e.conv1(x))))
    x = e.layer4(e.layer3(e.layer2(e.layer1(x))))
    return torch.flatten(e.avgpool(x), 1)


@pytest.fixture(scope="module")
def x():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def bcl_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = AuthorsBCLModel(torchvision.models.resnext50_32x4d(), NUM_CLASSES).eval()
    _randomize_bn(model, 1)
    path = tmp_path_factory.mktemp("authors") / "bcl_ckpt.best.pth.tar"
    _save_like_authors(model, path, "resnext50")
    return model, path


@pytest.fixture(scope="module")
def kcl1_checkpoint(tmp_path_factory):
    torch.manual_seed(2)
    model = AuthorsKCL().eval()
    _randomize_bn(model, 2)
    path = tmp_path_factory.mktemp("authors") / "lt_kcl6_e200-ckpt.pth.tar"
    _save_like_authors(model, path, "resnet50")
    return model, path


@pytest.fixture(scope="module")
def kcl2_checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    model = torchvision.models.resnet50(num_classes=NUM_CLASSES).eval()
    _randomize_bn(model, 3)
    path = tmp_path_factory.mktemp("authors") / "lt2lt_kcl6_e200.pth.tar"
    _save_like_authors(model, path, "resnet50")
    return model, path


def test_detect_layout_from_key_names():
    assert detect_layout({"module.encoder_q.conv1.weight": 0, "module.queue": 0}) == "kcl-stage1"
    assert detect_layout({"module.encoder.conv1.weight": 0, "module.fc.weight": 0}) == "bcl"
    assert detect_layout({"encoder.conv1.weight": 0}) == "bcl"
    assert detect_layout({"module.conv1.weight": 0, "module.fc.weight": 0}) == "kcl-stage2"
    assert detect_layout({"conv1.weight": 0}) == "kcl-stage2"
    with pytest.raises(ValueError, match="unknown checkpoint layout 'moco'"):
        convert_state_dict({"conv1.weight": torch.zeros(1)}, layout="moco")


def test_bcl_checkpoint_converts_to_identical_features_and_predictions(bcl_checkpoint, x, tmp_path):
    authors, path = bcl_checkpoint
    out, conv = convert_checkpoint(path, "resnext50_32x4d_bcl", tmp_path / "out")
    assert conv.layout == "bcl" and conv.classifier == "cosine" and conv.num_classes == NUM_CLASSES
    assert conv.transposed == ["fc.weight"]
    assert conv.dropped and all(k.startswith(("module.head.", "module.head_fc.")) for k in conv.dropped)
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md", "timm"}
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert model.num_classes == NUM_CLASSES
    with torch.no_grad():
        ref_feat = authors.encoder(x)
        ref_logits = authors.fc(ref_feat)
        feat = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    torch.testing.assert_close(feat, ref_feat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-3)
    assert torch.equal(logits.argmax(-1), ref_logits.argmax(-1))
    card = (out / "README.md").read_text()
    assert "bcl_ckpt.best.pth.tar" in card and "Not evaluated yet" in card
    import hashlib
    assert hashlib.sha256(path.read_bytes()).hexdigest() in card


def test_kcl_stage1_gives_backbone_with_identical_features(kcl1_checkpoint, x):
    authors, path = kcl1_checkpoint
    conv = convert_state_dict(load_checkpoint_file(path), layout="auto")
    assert conv.layout == "kcl-stage1" and conv.num_classes == 0 and conv.classifier is None
    dropped = set(conv.dropped)
    assert {"module.queue", "module.queue_ptr", "module.label_queue", "module.encoder_q.fc.0.weight",
            "module.encoder_q.fc.2.bias"} <= dropped
    assert any(k.startswith("module.encoder_k.") for k in dropped)
    model = build_converted_model(conv, "resnet50_kcl")
    assert model.num_classes == 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), _pooled(authors.encoder_q, x), rtol=1e-4, atol=1e-4)


def test_kcl_stage2_converts_to_identical_logits(kcl2_checkpoint, x):
    authors, path = kcl2_checkpoint
    conv = convert_state_dict(load_checkpoint_file(path), layout="kcl-stage2")
    assert conv.classifier == "linear" and conv.num_classes == NUM_CLASSES and not conv.dropped
    model = build_converted_model(conv, "resnet50_kcl")
    with torch.no_grad():
        torch.testing.assert_close(model(x), authors(x), rtol=1e-4, atol=1e-4)


def test_registry_filter_loads_authors_bcl_checkpoint(bcl_checkpoint, x):
    """checkpoint_filter_fn shares the mapping: timm's pretrained path reads the authors' file."""
    authors, path = bcl_checkpoint
    model = timm.create_model("resnext50_32x4d_bcl", pretrained=True, num_classes=NUM_CLASSES,
                              pretrained_cfg_overlay=dict(file=str(path), num_classes=NUM_CLASSES)).eval()
    with torch.no_grad():
        assert torch.equal(model(x).argmax(-1), authors.fc(authors.encoder(x)).argmax(-1))
    # timm-format weights pass through unchanged
    sd = model.state_dict()
    assert checkpoint_filter_fn(sd, model).keys() == sd.keys()


def test_foreign_and_missing_keys_are_listed_exactly(bcl_checkpoint, tmp_path):
    _, path = bcl_checkpoint
    ckpt = torch.load(path, weights_only=True)
    sd = ckpt["state_dict"]
    del sd["module.encoder.layer4.2.bn3.running_var"]
    sd["module.encoder.extra_block.weight"] = torch.zeros(3)
    sd["module.proj.weight"] = torch.zeros(2)
    bad = tmp_path / "bad.pth.tar"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointMismatchError) as info:
        convert_checkpoint(bad, "resnext50_32x4d_bcl", tmp_path / "out")
    err = info.value
    assert err.missing == ["layer4.2.bn3.running_var"]
    assert sorted(err.unexpected) == ["module.encoder.extra_block.weight", "module.proj.weight"]
    assert err.shape_mismatches == []
    msg = str(err)
    assert "layer4.2.bn3.running_var <- module.encoder.layer4.2.bn3.running_var" in msg
    assert "module.encoder.extra_block.weight" in msg and "module.proj.weight" in msg
    assert not (tmp_path / "out").exists(), "nothing may be written after a failed conversion"


def test_wrong_architecture_reports_shape_mismatches(bcl_checkpoint):
    _, path = bcl_checkpoint
    conv = convert_state_dict(load_checkpoint_file(path))
    with pytest.raises(CheckpointMismatchError, match=r"layer1\.0\.conv2\.weight: \[128, 4, 3, 3\] vs "
                                                      r"\[64, 64, 3, 3\]") as info:
        build_converted_model(conv, "resnet50_bcl")  # a ResNeXt checkpoint into a ResNet-50
    assert info.value.shape_mismatches and not info.value.missing and not info.value.unexpected
    with pytest.raises(CheckpointMismatchError, match="look like the 'bcl' layout"):
        build_converted_model(convert_state_dict(load_checkpoint_file(path), "kcl-stage2"), "resnext50_32x4d_bcl")
    with pytest.raises(CheckpointMismatchError, match="cosine classifier"):
        build_converted_model(conv, "resnet50_kcl")
    with pytest.raises(CheckpointMismatchError, match="num_classes=10"):
        build_converted_model(conv, "resnext50_32x4d_bcl", num_classes=10)


def test_pickles_are_read_with_weights_only(tmp_path):
    import numpy as np

    ok = tmp_path / "np_scalar.pth"
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}, "best_acc1": np.float64(57.2)}, ok)
    assert float(load_checkpoint_file(ok)["best_acc1"]) == pytest.approx(57.2)

    bad = tmp_path / "with_args.pth"  # e.g. an argparse.Namespace saved next to the weights
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, bad)
    with pytest.raises(CheckpointLoadError, match=r"weights_only=True.*Namespace") as info:
        load_checkpoint_file(bad)
    assert "add_safe_globals" in str(info.value)  # tells a trusting user how to extract the weights safely
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint_file(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointLoadError, match="junk.pth"):
        load_checkpoint_file(junk)
