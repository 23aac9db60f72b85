"""Conversion of the PaCo, GPaCo and ProCo authors' checkpoints (METHODS.md formats, checked against
dvlab-research/Parametric-Contrastive-Learning and LeapLabTHU/ProCo).

Each test rebuilds the authors' training module with their attribute names (PaCo's MoCo wrapper
with encoder_q/encoder_k/linear/linear_k/queue/queue_l/queue_ptr, GPaCo's without a key encoder,
ProCo's Model with encoder/head/fc), saves it as their scripts do (DDP ``module.`` prefix inside
their top-level dict; ProCo also pickles its loss object, an instance of their ``loss.proco``
classes), converts it, and compares the timm model's logits with an independent forward:
torchvision's ResNet loaded with the file's backbone keys plus the classifier as METHODS.md
defines it (PaCo: ``linear(h)``; ProCo: ``30 * cos(h, w_c)`` with ``w`` stored ``[2048, C]``).
"""
from __future__ import annotations

import argparse
import copy
import sys
import textwrap

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn

import kcl_models  # noqa: F401  (registers the architectures)
from kcl_models.models.convert import (
    AuthorsPickledObject,
    CheckpointLoadError,
    CheckpointMismatchError,
    build_converted_model,
    convert_gpaco,
    convert_paco,
    convert_proco,
    convert_state_dict,
    detect_layout,
    load_checkpoint_file,
)

C = 7
ATOL = RTOL = 1e-5  # float32


def _randomize_bn(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _ddp_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v for k, v in model.state_dict().items()}


class AuthorsPaCo(nn.Module):
    """PaCo/LT/moco/builder.py's MoCo (mlp=True): projection fc = Linear, BN, ReLU, Linear."""

    def __init__(self, base, dim: int = 128, K: int = 64, num_classes: int = C) -> None:
        super().__init__()
        self.encoder_q, self.encoder_k = base(num_classes=dim), base(num_classes=dim)
        self.linear, self.linear_k = nn.Linear(2048, num_classes), nn.Linear(2048, num_classes)
        for enc in (self.encoder_q, self.encoder_k):
            enc.fc = nn.Sequential(nn.Linear(2048, 2048), nn.BatchNorm1d(2048), nn.ReLU(), enc.fc)
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=0))
        self.register_buffer("queue_l", torch.randint(0, num_classes, (K,)))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


class AuthorsGPaCo(nn.Module):
    """GPaCo/LT/moco/builder.py's MoCo: no key encoder; projection fc = Linear, ReLU, Linear, ReLU, Linear."""

    def __init__(self, base, dim: int = 128, K: int = 64, num_classes: int = C) -> None:
        super().__init__()
        self.encoder_q = base(num_classes=dim)
        self.linear = nn.Linear(2048, num_classes)
        self.encoder_q.fc = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(inplace=True), nn.Linear(2048, 2048),
                                          nn.ReLU(inplace=True), self.encoder_q.fc)
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=0))
        self.register_buffer("queue_l", torch.randint(0, num_classes, (K,)))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


class NormedLinear(nn.Module):
    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d, c).uniform_(-1, 1))  # stored [in_features, classes]


class AuthorsProCo(nn.Module):
    """ProCo/models/resnext.py's Model: encoder (ResNet without fc), head MLP, fc (NormedLinear or Linear)."""

    def __init__(self, encoder: nn.Module, dim: int, feat_dim: int, hidden: int, use_norm: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, feat_dim))
        self.fc = NormedLinear(dim, C) if use_norm else nn.Linear(dim, C)


def _torchvision_features(arch: str, state: dict[str, torch.Tensor], prefix: str) -> nn.Module:
    """torchvision ResNet with the file's backbone keys (under ``prefix``), fc removed: pooled features."""
    net = getattr(torchvision.models, arch)()
    net.fc = nn.Identity()
    backbone = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    backbone = {k: v for k, v in backbone.items() if not k.startswith("fc.")}  # PaCo's projection MLP
    net.load_state_dict(backbone, strict=True)
    return net.eval()


# ---- the authors' ProCo loss class, pickled into their checkpoints -------------------------------

AUTHORS_LOSS_MODULE = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn

    MARKER = None  # set by the test: a file this code writes if it ever runs during loading


    class EstimatorCV:
        def __init__(self, feature_num, class_num):
            self.class_num, self.feature_num = class_num, feature_num
            self.Ave = F.normalize(torch.randn(class_num, feature_num), dim=1) * 0.9
            self.Amount = torch.zeros(class_num)
            self.kappa = torch.ones(class_num) * feature_num * 90 / 19
            self.logc = torch.zeros(class_num, dtype=torch.float64)

        def __setstate__(self, state):
            open(MARKER, "w").write("EstimatorCV code ran")
            self.__dict__.update(state)


    class ProCoLoss(nn.Module):
        def __init__(self, contrast_dim, temperature=1.0, num_classes=1000):
            super().__init__()
            self.temperature, self.num_classes, self.feature_num = temperature, num_classes, contrast_dim
            self.estimator_old = EstimatorCV(contrast_dim, num_classes)
            self.estimator = EstimatorCV(contrast_dim, num_classes)

        def __setstate__(self, state):
            open(MARKER, "w").write("ProCoLoss code ran")
            super().__setstate__(state)
''')


@pytest.fixture(scope="module")
def authors_loss_module(tmp_path_factory):
    """Importable ``loss.proco`` with the authors' class names, as when their main.py saved the file."""
    root = tmp_path_factory.mktemp("authors_code")
    (root / "loss").mkdir()
    (root / "loss" / "__init__.py").write_text("")
    (root / "loss" / "proco.py").write_text(AUTHORS_LOSS_MODULE)
    sys.path.insert(0, str(root))
    try:
        import loss.proco as module
        module.MARKER = str(root / "marker")
        yield module, root / "marker"
    finally:
        sys.path.remove(str(root))
        for name in ("loss.proco", "loss"):
            sys.modules.pop(name, None)


def _save_proco(path, model, criterion, arch):
    torch.save({"epoch": 90, "arch": arch, "state_dict": _ddp_state(model), "best_acc1": 57.31,
                "best_many": 68.2, "best_med": 53.9, "best_few": 37.1,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "params": [0]}]},
                "criterion_scl": criterion}, path)


# ---- fixtures: one checkpoint per layout --------------------------------------------------------

@pytest.fixture(scope="module")
def x():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def paco_file(tmp_path_factory):
    torch.manual_seed(11)
    model = AuthorsPaCo(torchvision.models.resnet50).eval()
    _randomize_bn(model, 11)
    path = tmp_path_factory.mktemp("paco") / "paco_r50_imagenetlt.pth.tar"
    torch.save({"epoch": 400, "arch": "resnet50", "acc": torch.tensor(57.02), "state_dict": _ddp_state(model),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "params": [0, 1]}]}}, path)
    return path


@pytest.fixture(scope="module")
def gpaco_file(tmp_path_factory):
    torch.manual_seed(12)
    model = AuthorsGPaCo(torchvision.models.resnext50_32x4d).eval()
    _randomize_bn(model, 12)
    path = tmp_path_factory.mktemp("gpaco") / "gpaco_x50_imagenetlt.pth.tar"
    torch.save({"epoch": 400, "arch": "resnext50_32x4d", "acc": torch.tensor(58.9), "state_dict": _ddp_state(model),
                "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


@pytest.fixture(scope="module")
def proco_file(tmp_path_factory, authors_loss_module):
    module, _ = authors_loss_module
    torch.manual_seed(13)
    encoder = torchvision.models.resnet50()
    encoder.fc = nn.Identity()  # the authors' ResNet has no fc
    model = AuthorsProCo(encoder, 2048, 1024, 2048, use_norm=True).eval()
    _randomize_bn(model, 13)
    path = tmp_path_factory.mktemp("proco") / "proco_r50_imagenetlt.pth.tar"
    _save_proco(path, model, module.ProCoLoss(contrast_dim=1024, temperature=0.07, num_classes=C), "resnet50")
    return path


# ---- the conversions ------------------------------------------------------------------------------

def test_paco_logits_match_torchvision_forward(paco_file, x, tmp_path):
    conv = convert_paco(paco_file)
    assert conv.layout == conv.detected == "paco" and conv.classifier == "linear" and conv.num_classes == C
    dropped = set(conv.dropped)
    assert {"module.queue", "module.queue_l", "module.queue_ptr", "module.linear_k.weight",
            "module.encoder_q.fc.0.weight", "module.encoder_q.fc.1.running_mean",
            "module.encoder_q.fc.3.bias"} <= dropped
    assert any(k.startswith("module.encoder_k.") for k in dropped)
    model = build_converted_model(conv, "resnet50_paco.imagenet_lt")
    state = torch.load(paco_file, weights_only=True)["state_dict"]
    ref_net = _torchvision_features("resnet50", state, "module.encoder_q.")
    with torch.no_grad():
        ref = F.linear(ref_net(x), state["module.linear.weight"], state["module.linear.bias"])
        torch.testing.assert_close(model(x), ref, atol=ATOL, rtol=RTOL)
    # the weights are plain timm resnet50 weights: they load into timm's own architecture
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    plain = timm.create_model("resnet50", num_classes=C).eval()
    plain.load_state_dict(load_file(str(tmp_path / "w.safetensors")), strict=True)
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))


def test_gpaco_logits_match_torchvision_forward(gpaco_file, x):
    raw = load_checkpoint_file(gpaco_file)
    assert detect_layout(raw["state_dict"]) == "gpaco"
    conv = convert_gpaco(raw)
    assert conv.classifier == "linear" and conv.num_classes == C
    assert {"module.encoder_q.fc.0.weight", "module.encoder_q.fc.2.weight", "module.encoder_q.fc.4.bias",
            "module.queue_l"} <= set(conv.dropped)
    model = build_converted_model(conv, "resnext50_32x4d_gpaco.imagenet_lt")
    state = raw["state_dict"]
    ref_net = _torchvision_features("resnext50_32x4d", state, "module.encoder_q.")
    with torch.no_grad():
        ref = F.linear(ref_net(x), state["module.linear.weight"], state["module.linear.bias"])
        torch.testing.assert_close(model(x), ref, atol=ATOL, rtol=RTOL)


def test_proco_logits_match_torchvision_forward_without_running_authors_code(proco_file, authors_loss_module, x):
    _, marker = authors_loss_module
    raw = load_checkpoint_file(proco_file)  # their module is importable here, yet none of it runs
    assert not marker.exists()
    crit = raw["criterion_scl"]
    assert isinstance(crit, AuthorsPickledObject) and crit.qualname == "loss.proco.ProCoLoss"
    assert isinstance(crit.estimator_old, AuthorsPickledObject) and crit.estimator.Ave.shape == (C, 1024)
    conv = convert_proco(raw)
    assert conv.layout == conv.detected == "proco" and conv.classifier == "cosine"
    assert conv.transposed == ["fc.weight"] and all(k.startswith("module.head.") for k in conv.dropped)
    model = build_converted_model(conv, "resnet50_proco.imagenet_lt")
    state = raw["state_dict"]
    ref_net = _torchvision_features("resnet50", state, "module.encoder.")
    with torch.no_grad():
        w = state["module.fc.weight"]  # [2048, C]
        ref = 30 * F.normalize(ref_net(x), dim=1) @ F.normalize(w, dim=0)
        torch.testing.assert_close(model(x), ref, atol=ATOL, rtol=RTOL)
    # the same file through convert_state_dict's auto-detection (criterion_scl marks ProCo)
    assert convert_state_dict(raw).layout == "proco"


class _CifarBlock(nn.Module):
    """ProCo_cifar/models/resnet_cifar.py's BasicBlock, option A (zero-padded subsampling shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout // 4 if (stride != 1 or cin != cout) else None

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class _CifarResNet32(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        cin = 16
        for i, width in enumerate((16, 32, 64)):
            blocks = [_CifarBlock(cin if j == 0 else width, width, 2 if (i and j == 0) else 1) for j in range(5)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = width

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def test_proco_cifar_checkpoint_keeps_its_linear_classifier(tmp_path, authors_loss_module):
    module, _ = authors_loss_module
    torch.manual_seed(14)
    model = AuthorsProCo(_CifarResNet32(), 64, 128, 512, use_norm=False).eval()
    _randomize_bn(model, 14)
    path = tmp_path / "proco_cifar100_imb0.01_200.pth.tar"
    _save_proco(path, model, module.ProCoLoss(contrast_dim=128, temperature=0.1, num_classes=C), "resnet32")
    conv = convert_proco(path)
    assert conv.classifier == "linear" and not conv.transposed
    converted = build_converted_model(conv, "resnet32_proco.cifar100_lt_if100")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model.fc(model.encoder(x))
        torch.testing.assert_close(converted(x), ref, atol=ATOL, rtol=RTOL)


# ---- strictness and safety -----------------------------------------------------------------------

def test_layouts_are_detected_from_key_names():
    assert detect_layout({"module.encoder_q.conv1.weight": 0, "module.encoder_k.conv1.weight": 0,
                          "module.linear.weight": 0}) == "paco"
    assert detect_layout({"module.encoder_q.conv1.weight": 0, "module.linear.weight": 0}) == "gpaco"
    assert detect_layout({"module.encoder_q.conv1.weight": 0, "module.label_queue": 0}) == "kcl-stage1"
    assert detect_layout({"module.encoder.conv1.weight": 0, "module.head.0.weight": 0}) == "proco"
    assert detect_layout({"module.encoder.conv1.weight": 0, "module.head.0.weight": 0,
                          "module.head_fc.0.weight": 0}) == "bcl"


def test_paco_checkpoint_as_gpaco_lists_the_key_encoder(paco_file):
    conv = convert_gpaco(paco_file)
    with pytest.raises(CheckpointMismatchError, match="look like the 'paco' layout") as info:
        build_converted_model(conv, "resnet50_gpaco")
    err = info.value
    assert err.unexpected and all(k.startswith(("module.encoder_k.", "module.linear_k.")) for k in err.unexpected)
    assert "module.linear_k.bias" in err.unexpected and not err.missing and not err.shape_mismatches


def test_missing_foreign_and_misshaped_keys_are_all_listed(paco_file):
    raw = torch.load(paco_file, weights_only=True)
    sd = raw["state_dict"]
    del sd["module.encoder_q.layer3.1.bn2.running_var"]
    del sd["module.linear.bias"]
    sd["module.extra.weight"] = torch.zeros(2)
    sd["module.encoder_q.layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    with pytest.raises(CheckpointMismatchError) as info:
        build_converted_model(convert_paco(raw), "resnet50_paco")
    err = info.value
    assert sorted(err.missing) == ["fc.bias", "layer3.1.bn2.running_var"]
    assert err.unexpected == ["module.extra.weight"]
    assert err.shape_mismatches == [("layer1.0.conv1.weight", (64, 64, 3, 3), (64, 64, 1, 1))]
    msg = str(err)
    assert "fc.bias <- module.linear.bias" in msg
    assert "layer3.1.bn2.running_var <- module.encoder_q.layer3.1.bn2.running_var" in msg
    with pytest.raises(CheckpointMismatchError, match="linear classifier .* cosine classifier"):
        build_converted_model(convert_paco(paco_file), "resnet50_proco")


def test_resnext_checkpoint_into_resnet50_reports_shapes(gpaco_file):
    with pytest.raises(CheckpointMismatchError, match=r"layer1\.0\.conv2\.weight: \[128, 4, 3, 3\] vs "):
        build_converted_model(convert_gpaco(gpaco_file), "resnet50_gpaco")


def test_other_pickled_globals_are_still_refused(tmp_path, authors_loss_module):
    module, marker = authors_loss_module
    crit = module.ProCoLoss(contrast_dim=8, num_classes=3)
    bad = tmp_path / "with_args.pth.tar"  # the authors' loss object next to something else
    torch.save({"state_dict": {}, "criterion_scl": crit, "args": argparse.Namespace(lr=0.1)}, bad)
    with pytest.raises(CheckpointLoadError, match="Namespace"):
        load_checkpoint_file(bad)
    other = tmp_path / "other_class.pth.tar"  # another class of the same module is not on the list
    module.Other = type("Other", (), {"__module__": "loss.proco"})
    try:
        torch.save({"state_dict": {}, "thing": module.Other()}, other)
    finally:
        del module.Other
    with pytest.raises(CheckpointLoadError, match=r"loss\.proco\.Other"):
        load_checkpoint_file(other)
    assert not marker.exists()


def test_authors_pickle_is_read_without_their_module(proco_file, authors_loss_module, monkeypatch):
    # With their code gone from the path a full unpickle fails; the placeholders need none of it.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "authors_code" not in p])
    saved = {n: sys.modules.pop(n) for n in ("loss.proco", "loss") if n in sys.modules}
    try:
        with pytest.raises(ModuleNotFoundError):  # the test's own file: shows a full unpickle needs their code
            torch.load(proco_file, weights_only=False)
        raw = load_checkpoint_file(proco_file)
        assert copy.copy(raw["criterion_scl"]).estimator_old.Amount.shape == (C,)
    finally:
        sys.modules.update(saved)
