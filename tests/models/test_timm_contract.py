"""timm's own model tests (pytorch-image-models tests/test_models.py) over every registered name.

Each test mirrors one of timm's: default cfgs (feature map at the cfg's pool size, ``head_hidden_size``,
``reset_classifier(0)`` / ``(0, '')``, ``num_classes=0, global_pool=''``, classifier and first-conv
names), forward with gradient checkpointing, backward, TorchScript, features_only (hooks and
``feature_cls='getter'``), ``forward_intermediates``, FX forward/backward, FX then TorchScript, and
pretrained loading with another ``in_chans``/``num_classes``. The TorchScript/FX runs of
resnet50_kcl and resnext50_32x4d_bcl are marked ``heavy`` (KCL_HEAVY_TESTS=1 runs them). Where timm runs at the default
resolution, the 224-px models run at 64 px here (same code paths, ~12x fewer FLOPs): the pool size
is checked as ``input / reduction`` of the last feature tap, which is what the cfg's ``pool_size``
records at 224.
"""
from __future__ import annotations

import math

import pytest
import timm
import torch
from timm import set_scriptable
from timm.layers import get_channel_dim, get_spatial_dim
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import kcl_models

ARCHS = kcl_models.list_kcl_models()
VARIANTS = kcl_models.list_kcl_models(include_tags=True)
WITH_WEIGHTS = kcl_models.list_kcl_models(pretrained=True)
SMALL = 64  # test resolution of the 224-px models
# One architecture per model class runs TorchScript/FX in CI: timm's ResNet (resnet50_kcl, and the
# PaCo/GPaCo ones), CosineResNet (resnet50_bcl; the ProCo ones and resnext50_32x4d_bcl add grouped
# convs only) and CifarResNet (resnet32_*). The others repeat covered code paths, so they are heavy.
LIGHT = ("resnet50_bcl", "resnet32_bcl", "resnet32_kcl")
COMPILED = [a if a in LIGHT else pytest.param(a, marks=pytest.mark.heavy) for a in ARCHS]


def _size(model_or_name) -> tuple[int, int, int]:
    cfg = model_or_name.pretrained_cfg if isinstance(model_or_name, torch.nn.Module) else \
        timm.models.get_pretrained_cfg(model_or_name).to_dict()
    c, h, w = cfg["input_size"]
    return (c, min(h, SMALL), min(w, SMALL)) if max(h, w) > SMALL else (c, h, w)


def _fx(model: torch.nn.Module, train: bool = False) -> torch.nn.Module:
    """timm's _create_fx_model for single-output models: a feature extractor returning the last node."""
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                         param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=tracer_kwargs)


def test_every_name_is_covered():
    assert set(ARCHS) == {"resnet32_bcl", "resnet32_kcl", "resnet32_paco", "resnet32_proco", "resnet50_bcl",
                          "resnet50_gpaco", "resnet50_kcl", "resnet50_paco", "resnet50_proco", "resnext50_32x4d_bcl",
                          "resnext50_32x4d_gpaco", "resnext50_32x4d_paco", "resnext50_32x4d_proco"}
    assert len(VARIANTS) == 20 and all(v.split(".")[0] in ARCHS for v in VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_model_default_cfgs(name):
    model = timm.create_model(name, pretrained=False).eval()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    cfg = model.pretrained_cfg
    state_dict = model.state_dict()
    spatial, feat_axis = get_spatial_dim("NCHW"), get_channel_dim("NCHW")
    reduction = model.feature_info[-1]["reduction"]
    full = cfg["input_size"]
    assert tuple(cfg["pool_size"]) == (full[1] // reduction, full[2] // reduction), "pool_size != input / reduction"
    size = _size(model)
    pool = (size[1] // reduction, size[2] // reduction)
    x = torch.randn(1, *size)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert (feats.shape[spatial[0]], feats.shape[spatial[1]]) == pool
        assert feats.shape[feat_axis] == model.num_features
        assert pre.shape[1] == model.head_hidden_size

        model.reset_classifier(0)
        assert model.num_classes == 0
        out = model(x)
        assert out.ndim == 2 and out.shape[1] == model.head_hidden_size and out.shape == pre.shape

        model.reset_classifier(0, "")
        out = model(x)
        assert out.ndim == 4 and (out.shape[2], out.shape[3]) == pool and out.shape[1] == model.num_features

        bare = timm.create_model(name, pretrained=False, num_classes=0, global_pool="").eval()
        out = bare(x)
        assert out.ndim == 4 and (out.shape[2], out.shape[3]) == pool
    if cfg.get("num_classes"):
        classifiers = cfg["classifier"] if isinstance(cfg["classifier"], (list, tuple)) else (cfg["classifier"],)
        for c in classifiers:
            assert f"{c}.weight" in state_dict, f"{c} not in model params"
    first = cfg["first_conv"] if isinstance(cfg["first_conv"], (list, tuple)) else (cfg["first_conv"],)
    for c in first:
        assert f"{c}.weight" in state_dict, f"{c} not in model params"


@pytest.mark.parametrize("name", ARCHS)
def test_reset_classifier_follows_the_pool_type(name):
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *_size(model))
    model.reset_classifier(5, "catavgmax")
    assert model.head_hidden_size == 2 * model.num_features
    with torch.no_grad():
        assert model(x).shape == (1, 5)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (1, 2 * model.num_features)
    cosine = name.endswith("_bcl") or (name.endswith("_proco") and not name.startswith("resnet32"))
    assert type(model.get_classifier()).__name__ == ("CosineClassifier" if cosine else "Linear")
    model.reset_classifier(3)  # keeps catavgmax
    assert model.head_hidden_size == 2 * model.num_features and model(x).shape == (1, 3)


@pytest.mark.parametrize("name", ARCHS)
def test_model_forward_with_grad_checkpointing(name):
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *_size(model))
    with torch.no_grad():
        out = model(x)
        assert out.shape[0] == 1 and not torch.isnan(out).any()
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ARCHS)
def test_model_backward_encoder_only(name):
    model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="").train()
    x = torch.randn(2, *_size(model))
    out = model(x)
    out.mean().backward()
    assert out.shape[get_channel_dim("NCHW")] == model.num_features
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", COMPILED)
def test_model_forward_torchscript(name):
    with set_scriptable(True):
        model = timm.create_model(name, pretrained=False).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, *_size(model))
    with torch.no_grad():
        out = scripted(x)
        assert out.shape == (1, model.num_classes) and not torch.isnan(out).any()
        torch.testing.assert_close(out, model(x))


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("feature_cls", [None, "getter"])
def test_model_forward_features(name, feature_cls):
    kwargs = {"feature_cls": feature_cls} if feature_cls else {}
    model = timm.create_model(name, pretrained=False, features_only=True, **kwargs).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) >= 3
    size = _size(name)
    with torch.no_grad():
        outputs = model(torch.randn(1, *size))
    assert len(outputs) == len(channels)
    for c, r, o in zip(channels, reductions, outputs):
        assert o.shape[1] == c and o.shape[0] == 1 and not torch.isnan(o).any()
        assert o.shape[2] <= math.ceil(size[1] / r) + 1 and o.shape[3] <= math.ceil(size[2] / r) + 1


@pytest.mark.parametrize("name", COMPILED)
def test_model_forward_intermediates(name):
    model = timm.create_model(name, pretrained=False).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    channels, reductions = info.channels(), info.reduction()
    assert len(channels) >= 3
    size = _size(model)
    x = torch.randn(1, *size)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x, output_fmt="NCHW")
        assert len(intermediates) == len(channels)
        for c, r, o in zip(channels, reductions, intermediates):
            assert o.shape[1] == c and o.shape[0] == 1 and not torch.isnan(o).any()
            assert o.shape[2] <= math.ceil(size[1] / r) + 1 and o.shape[3] <= math.ceil(size[2] / r) + 1
        torch.testing.assert_close(final, model.forward_features(x))
        only = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert len(only) == 2 and all(torch.equal(a, b) for a, b in zip(only, intermediates[-2:]))
        model.set_grad_checkpointing()
        again, _ = model.forward_intermediates(x, output_fmt="NCHW")
        torch.testing.assert_close(again, final, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet32_bcl", "resnet32_kcl"])
def test_prune_intermediate_layers_keeps_the_taps(name):
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(2, *_size(model))
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
        kept = model.prune_intermediate_layers([1, 2])
        assert kept == [1, 2]
        pruned = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(pruned, taps[1:3]))
        assert model.num_features == model.head_hidden_size == model.feature_info[2]["num_chs"]
        out = model(x)  # the head went with the pruned stage: the tap-2 map
        assert torch.equal(out, taps[2])


@pytest.mark.parametrize("name", COMPILED)
def test_model_forward_fx(name):
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *_size(model))
    with torch.inference_mode():
        out = model(x)
        fx_out = torch.cat(tuple(_fx(model)(x).values()))
    assert torch.all(fx_out == out) and out.shape[0] == 1 and not torch.isnan(out).any()


@pytest.mark.parametrize("name", COMPILED)
def test_model_backward_fx(name):
    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    n_params = sum(p.numel() for p in model.parameters())
    fx_model = _fx(model, train=True)
    out = torch.cat(tuple(fx_model(torch.randn(2, *_size(model))).values()))
    out.mean().backward()
    assert out.shape[-1] == 42
    assert sum(p.grad.numel() for p in fx_model.parameters() if p.grad is not None) == n_params


@pytest.mark.parametrize("name", COMPILED)
def test_model_forward_fx_torchscript(name):
    with set_scriptable(True):
        model = timm.create_model(name, pretrained=False).eval()
    scripted = torch.jit.script(_fx(model))
    x = torch.randn(1, *_size(model))
    with torch.inference_mode():
        out = torch.cat(tuple(scripted(x).values()))
        ref = model(x)
    assert out.shape == (1, model.num_classes) and not torch.isnan(out).any()
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_model_load_pretrained(name):
    """timm's test_model_load_pretrained / test_model_features_pretrained, on the weights that exist."""
    x = torch.randn(2, 1, *_size(name)[1:])
    new_head = timm.create_model(name, pretrained=True, in_chans=1, num_classes=5).eval()
    backbone = timm.create_model(name, pretrained=True, in_chans=1, num_classes=0).eval()
    with torch.no_grad():
        assert new_head(x).shape == (2, 5)
        torch.testing.assert_close(new_head.forward_features(x), backbone.forward_features(x))
    feats = timm.create_model(name, pretrained=True, features_only=True).eval()
    with torch.no_grad():
        assert len(feats(torch.randn(1, *_size(name)))) == len(feats.feature_info.channels())
