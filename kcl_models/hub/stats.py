"""Model statistics for the card, as timm's cards give them: parameters, GMACs and activations
at the cfg's input size, and the shapes the usage snippets print.

Everything runs on the ``meta`` device (shapes only: no memory, no arithmetic), so a ResNet-50
costs a fraction of a second. MACs are half the FLOPs that ``torch.utils.flop_counter`` counts
for convolutions and matrix products; activations are the output elements of those operations,
the convention of the fvcore counts behind timm's own cards (resnet50 at 224: 25.6 M params,
4.1 GMACs, 11.1 M activations; timm's resnext50_32x4d figure of 4.3 GMACs also counts BatchNorm,
which we do not: 4.2).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["model_stats", "feature_shapes", "format_count"]

_aten = torch.ops.aten
_ACTIVATION_OPS = {_aten.convolution.default, _aten.addmm.default, _aten.mm.default, _aten.bmm.default}
_BUILD_ONLY = ("num_classes", "global_pool", "features_only", "pretrained")


class _ActivationCounter(TorchDispatchMode):
    """Counts output elements of convolutions and matrix products."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        out = func(*args, **(kwargs or {}))
        if func in _ACTIVATION_OPS:
            self.count += out.numel()
        return out


def _build(arch: str, model_args: Mapping | None, **kwargs: Any) -> torch.nn.Module:
    args = {k: v for k, v in (model_args or {}).items() if k not in _BUILD_ONLY}
    with torch.device("meta"):
        return timm.create_model(arch, pretrained=False, **args, **kwargs).eval()


def model_stats(arch: str, num_classes: int, input_size: tuple | list, model_args: Mapping | None = None) -> dict:
    """``{"params", "macs", "activations", "image_size"}`` of ``arch`` for one image of
    ``input_size`` (C, H, W); counts are plain integers."""
    model = _build(arch, model_args, num_classes=num_classes)
    c, h, w = (int(v) for v in input_size)
    x = torch.zeros(1, c, h, w, device="meta")
    flops, acts = FlopCounterMode(display=False), _ActivationCounter()
    with torch.no_grad(), flops, acts:
        model(x)
    return {"params": int(sum(p.numel() for p in model.parameters())), "macs": int(flops.get_total_flops() // 2),
            "activations": int(acts.count), "image_size": [h, w]}


def feature_shapes(arch: str, input_size: tuple | list, model_args: Mapping | None = None) -> dict[str, Any]:
    """Shapes for one image: ``feature_maps`` (``features_only=True``), ``unpooled``
    (``forward_features``) and ``pooled`` (``forward_head(..., pre_logits=True)``)."""
    c, h, w = (int(v) for v in input_size)
    x = torch.zeros(1, c, h, w, device="meta")
    with torch.no_grad():
        backbone = _build(arch, model_args, num_classes=0)
        unpooled = backbone.forward_features(x)
        pooled = backbone.forward_head(unpooled, pre_logits=True)
        maps = _build(arch, model_args, features_only=True)(x)
    return {"feature_maps": [list(m.shape) for m in maps], "unpooled": list(unpooled.shape),
            "pooled": list(pooled.shape)}


def format_count(value: float) -> str:
    """timm cards' style: one decimal from 10 up, two from 1, three significant digits below."""
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
