"""ImageNet-scale backbones of the two papers, registered with timm.

- ``resnet50_kcl``: timm's ResNet-50 with a linear classifier (KCL stage 2 / cRT). Same modules and
  keys as timm ``resnet50``, so its Hub folders also load with plain timm.
- ``resnet50_bcl``, ``resnext50_32x4d_bcl``: ResNet-50 / ResNeXt-50 32x4d with BCL's cosine
  classifier (``logits = 30 * cos(h, w_c)``).
"""
from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SelectAdaptivePool2d
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import Bottleneck, ResNet

from ._builder import (
    BCL_PAPER,
    BCL_PAPER_NAME,
    KCL_PAPER,
    KCL_PAPER_NAME,
    build_with_clear_errors,
    hub_id,
)
from .heads import create_classifier_layer

__all__ = ["CosineResNet"]


class CosineResNet(ResNet):
    """timm ``ResNet`` whose ``fc`` is BCL's cosine classifier (no bias)."""

    def __init__(self, *args: Any, cls_scale: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cls_scale = cls_scale
        self.fc = create_classifier_layer(self.num_features, self.num_classes, "cosine", cls_scale)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = create_classifier_layer(self.num_features, num_classes, "cosine", self.cls_scale)


def _cfg(variant: str, num_classes: int, paper: str, paper_name: str, notes: str,
         **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("license", "apache-2.0")
    return dict(
        hf_hub_id=hub_id(variant), num_classes=num_classes, input_size=(3, 224, 224),
        pool_size=(7, 7), crop_pct=0.875, interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD, first_conv="conv1", classifier="fc",
        paper_ids=paper, paper_name=paper_name, notes=notes, **kwargs,
    )


_NO_KCL_WEIGHTS = ("the authors released no KCL weights; train with {cfg} or convert your own "
                   "stage-2 checkpoint with hub/convert.py")

default_cfgs = generate_default_cfgs({
    "resnet50_kcl.imagenet_lt": _cfg(
        "resnet50_kcl.imagenet_lt", 1000, KCL_PAPER, KCL_PAPER_NAME,
        "ImageNet-LT, paper top-1 many/medium/few/all 61.8/49.4/30.9/51.5 (KCL + cRT); "
        + _NO_KCL_WEIGHTS.format(cfg="configs/imagenet_lt_r50_kcl.yaml")),
    "resnet50_kcl.inat2018": _cfg(
        "resnet50_kcl.inat2018", 8142, KCL_PAPER, KCL_PAPER_NAME,
        "iNaturalist 2018, paper top-1 68.6 (KCL + cRT); "
        + _NO_KCL_WEIGHTS.format(cfg="configs/inat2018_r50_kcl.yaml")),
    "resnet50_bcl.imagenet_lt": _cfg(
        "resnet50_bcl.imagenet_lt", 1000, BCL_PAPER, BCL_PAPER_NAME,
        "ImageNet-LT, paper top-1 56.0; no released weights: train with configs/imagenet_lt_r50_bcl.yaml."),
    "resnet50_bcl.inat2018": _cfg(
        "resnet50_bcl.inat2018", 8142, BCL_PAPER, BCL_PAPER_NAME,
        "iNaturalist 2018, paper top-1 71.8; no released weights: train with configs/inat2018_r50_bcl.yaml."),
    "resnext50_32x4d_bcl.imagenet_lt": _cfg(
        "resnext50_32x4d_bcl.imagenet_lt", 1000, BCL_PAPER, BCL_PAPER_NAME,
        "ImageNet-LT, paper top-1 57.1 (released checkpoint 57.2-57.8); convert the authors' "
        "checkpoint with hub/convert.py bcl.", license="mit"),  # the authors' release is MIT
})


def _create(cls: type, variant: str, pretrained: bool, **kwargs: Any) -> ResNet:
    from .convert import checkpoint_filter_fn
    return build_with_clear_errors(cls, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
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
