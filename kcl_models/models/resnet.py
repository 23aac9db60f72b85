"""ImageNet-scale backbones of the two papers, registered with timm.

- ``resnet50_kcl``: timm's ResNet-50 with a linear classifier (KCL stage 2 / cRT). Same modules and
  keys as timm ``resnet50``, so its Hub folders also load with plain timm.
- ``resnet50_bcl``, ``resnext50_32x4d_bcl``: ResNet-50 / ResNeXt-50 32x4d with BCL's cosine
  classifier (``logits = 30 * cos(h, w_c)``).
"""
from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from ._builder import (
    BCL_PAPER,
    BCL_PAPER_NAME,
    KCL_PAPER,
    KCL_PAPER_NAME,
    build_with_clear_errors,
    pretrained_filter_fn,
)
from ._zoo import Recipe, weights_fields
from .heads import create_classifier_layer

__all__ = ["CosineResNet"]


class CosineResNet(ResNet):
    """timm ``ResNet`` whose ``fc`` is BCL's cosine classifier (no bias)."""

    def __init__(self, *args: Any, cls_scale: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cls_scale = cls_scale
        self.fc = self._cosine_fc(self.num_classes)

    def _cosine_fc(self, num_classes: int) -> nn.Module:
        # the head's input is timm's head_hidden_size: num_features times the pool's multiplier
        ref = self.conv1.weight if isinstance(self.conv1, nn.Conv2d) else next(self.parameters())
        fc = create_classifier_layer(self.head_hidden_size, num_classes, "cosine", self.cls_scale)
        return fc.to(device=ref.device, dtype=ref.dtype)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """timm's reset (pool type, ``head_hidden_size``; ``(0, '')`` gives the unpooled map), then
        a cosine classifier in place of timm's linear one."""
        super().reset_classifier(num_classes, global_pool)
        self.fc = self._cosine_fc(num_classes)
        self.fc.train(self.training)


def _cfg(variant: str, num_classes: int, paper: str, paper_name: str, notes: str, recipe: Recipe,
         bundled: bool = False, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("license", "apache-2.0")
    return dict(
        **weights_fields(variant, recipe, bundled=bundled), num_classes=num_classes, input_size=(3, 224, 224),
        pool_size=(7, 7), crop_pct=0.875, interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD, first_conv="conv1", classifier="fc",
        paper_ids=paper, paper_name=paper_name, notes=notes, **kwargs,
    )


_NO_KCL_WEIGHTS = ("planned: the authors released no KCL weights; train with {cfg} or convert your own "
                   "stage-2 checkpoint with hub/convert.py kcl-stage2")

default_cfgs = generate_default_cfgs({
    "resnet50_kcl.imagenet_lt": _cfg(
        "resnet50_kcl.imagenet_lt", 1000, KCL_PAPER, KCL_PAPER_NAME,
        "ImageNet-LT, paper top-1 many/medium/few/all 61.8/49.4/30.9/51.5 (KCL + cRT); "
        + _NO_KCL_WEIGHTS.format(cfg="configs/imagenet_lt_r50_kcl.yaml"),
        Recipe("train", "configs/imagenet_lt_r50_kcl.yaml")),
    "resnet50_kcl.inat2018": _cfg(
        "resnet50_kcl.inat2018", 8142, KCL_PAPER, KCL_PAPER_NAME,
        "iNaturalist 2018, paper top-1 68.6 (KCL + cRT); "
        + _NO_KCL_WEIGHTS.format(cfg="configs/inat2018_r50_kcl.yaml"),
        Recipe("train", "configs/inat2018_r50_kcl.yaml")),
    "resnet50_bcl.imagenet_lt": _cfg(
        "resnet50_bcl.imagenet_lt", 1000, BCL_PAPER, BCL_PAPER_NAME,
        "ImageNet-LT, paper top-1 56.0; planned (no released weights): train with "
        "configs/imagenet_lt_r50_bcl.yaml.", Recipe("train", "configs/imagenet_lt_r50_bcl.yaml")),
    "resnet50_bcl.inat2018": _cfg(
        "resnet50_bcl.inat2018", 8142, BCL_PAPER, BCL_PAPER_NAME,
        "iNaturalist 2018, paper top-1 71.8; planned (no released weights): train with "
        "configs/inat2018_r50_bcl.yaml.", Recipe("train", "configs/inat2018_r50_bcl.yaml")),
    "resnext50_32x4d_bcl.imagenet_lt": _cfg(
        "resnext50_32x4d_bcl.imagenet_lt", 1000, BCL_PAPER, BCL_PAPER_NAME,
        "ImageNet-LT, paper top-1 57.1 (released checkpoint 57.2-57.8); planned: convert the authors' "
        "checkpoint with hub/convert.py bcl.", Recipe("convert", layout="bcl"),
        license="mit"),  # the authors' release is MIT
})


def _create(cls: type, variant: str, pretrained: bool, **kwargs: Any) -> ResNet:
    return build_with_clear_errors(cls, variant, pretrained, pretrained_filter_fn=pretrained_filter_fn,
                                   **kwargs)


@register_model
def resnet50_kcl(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with a linear classifier, trained by KCL (stage 1) + cRT (stage 2)."""
    model_args = dict(block=Bottleneck, layers=[3, 4, 6, 3])
    return _create(ResNet, "resnet50_kcl", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet50_bcl(pretrained: bool = False, **kwargs: Any) -> CosineResNet:
    """ResNet-50 with BCL's cosine classifier."""
    model_args = dict(block=Bottleneck, layers=[3, 4, 6, 3])
    return _create(CosineResNet, "resnet50_bcl", pretrained, **dict(model_args, **kwargs))


@register_model
def resnext50_32x4d_bcl(pretrained: bool = False, **kwargs: Any) -> CosineResNet:
    """ResNeXt-50 32x4d with BCL's cosine classifier."""
    model_args = dict(block=Bottleneck, layers=[3, 4, 6, 3], cardinality=32, base_width=4)
    return _create(CosineResNet, "resnext50_32x4d_bcl", pretrained, **dict(model_args, **kwargs))
