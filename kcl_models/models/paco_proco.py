"""PaCo, GPaCo and ProCo variants, registered with timm.

- ``resnet50_paco``, ``resnext50_32x4d_paco``, ``resnet50_gpaco``, ``resnext50_32x4d_gpaco``: timm's own
  ResNet-50 / ResNeXt-50 32x4d with a linear classifier (its rows are PaCo's class centres). Same
  modules and keys as timm ``resnet50`` / ``resnext50_32x4d``, so their Hub folders load in plain
  timm.
- ``resnet50_proco``, ``resnext50_32x4d_proco``: ResNet-50 / ResNeXt-50 with the cosine classifier
  the ProCo authors use on ImageNet-LT and iNaturalist (``30 * cos(h, w_c)``, as BCL's).
- ``resnet32_proco``, ``resnet32_paco``: CIFAR ResNet-32 with a linear classifier (ProCo's CIFAR
  code has ``use_norm=False``).

No weights are published yet: every tag is planned. The authors released checkpoints for most of
them; ``hub/convert.py paco|gpaco|proco`` converts those (see ``kcl_models.models.convert``).
"""
from __future__ import annotations

from typing import Any

from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import Bottleneck, ResNet

from ._builder import (
    GPACO_PAPER,
    GPACO_PAPER_NAME,
    PACO_PAPER,
    PACO_PAPER_NAME,
    PROCO_PAPER,
    PROCO_PAPER_NAME,
)
from ._zoo import Recipe
from .cifar_resnet import CIFAR100_MEAN, CIFAR100_STD, CifarResNet, _create_cifar_resnet
from .cifar_resnet import _cfg as _cifar_cfg
from .resnet import CosineResNet, _cfg, _create

__all__: list[str] = []

_R50 = dict(block=Bottleneck, layers=[3, 4, 6, 3])
_X50 = dict(block=Bottleneck, layers=[3, 4, 6, 3], cardinality=32, base_width=4)


def _converted(method: str, layout: str) -> str:
    return f"no weights published yet; the {method} authors released this checkpoint: convert it with " \
           f"hub/convert.py {layout}."


# The PaCo/GPaCo code is MIT-licensed, ProCo's Apache-2.0: converted weights keep the authors' license.
default_cfgs = generate_default_cfgs({
    "resnet50_paco.imagenet_lt": _cfg(
        "resnet50_paco.imagenet_lt", 1000, PACO_PAPER, PACO_PAPER_NAME,
        "ImageNet-LT, paper top-1 57.0 (PaCo, ResNet-50, 400 epochs); " + _converted("PaCo", "paco"),
        Recipe("convert", layout="paco"), license="mit"),
    "resnext50_32x4d_paco.imagenet_lt": _cfg(
        "resnext50_32x4d_paco.imagenet_lt", 1000, PACO_PAPER, PACO_PAPER_NAME,
        "ImageNet-LT, paper top-1 58.2 (PaCo, ResNeXt-50, 400 epochs); " + _converted("PaCo", "paco"),
        Recipe("convert", layout="paco"), license="mit"),
    "resnet50_gpaco.imagenet_lt": _cfg(
        "resnet50_gpaco.imagenet_lt", 1000, GPACO_PAPER, GPACO_PAPER_NAME,
        "ImageNet-LT, paper top-1 58.5 (GPaCo, ResNet-50, 400 epochs); " + _converted("GPaCo", "gpaco"),
        Recipe("convert", layout="gpaco"), license="mit"),
    "resnet50_gpaco.inat2018": _cfg(
        "resnet50_gpaco.inat2018", 8142, GPACO_PAPER, GPACO_PAPER_NAME,
        "iNaturalist 2018, paper top-1 75.4 (GPaCo, ResNet-50, 400 epochs); " + _converted("GPaCo", "gpaco"),
        Recipe("convert", layout="gpaco"), license="mit"),
    "resnext50_32x4d_gpaco.imagenet_lt": _cfg(
        "resnext50_32x4d_gpaco.imagenet_lt", 1000, GPACO_PAPER, GPACO_PAPER_NAME,
        "ImageNet-LT, paper top-1 58.9 (GPaCo, ResNeXt-50, 400 epochs); " + _converted("GPaCo", "gpaco"),
        Recipe("convert", layout="gpaco"), license="mit"),
    "resnet50_proco.imagenet_lt": _cfg(
        "resnet50_proco.imagenet_lt", 1000, PROCO_PAPER, PROCO_PAPER_NAME,
        "ImageNet-LT, paper top-1 57.3 (ProCo, ResNet-50, 90 epochs; 57.8 at 180); " + _converted("ProCo", "proco"),
        Recipe("convert", layout="proco")),
    "resnet50_proco.inat2018": _cfg(
        "resnet50_proco.inat2018", 8142, PROCO_PAPER, PROCO_PAPER_NAME,
        "iNaturalist 2018, paper top-1 73.5 (ProCo, ResNet-50, 90 epochs); " + _converted("ProCo", "proco"),
        Recipe("convert", layout="proco")),
    "resnext50_32x4d_proco.imagenet_lt": _cfg(
        "resnext50_32x4d_proco.imagenet_lt", 1000, PROCO_PAPER, PROCO_PAPER_NAME,
        "ImageNet-LT, paper top-1 58.0 (ProCo, ResNeXt-50, 90 epochs); " + _converted("ProCo", "proco"),
        Recipe("convert", layout="proco")),
    "resnet32_proco.cifar100_lt_if100": _cifar_cfg(
        "resnet32_proco.cifar100_lt_if100", 100, CIFAR100_MEAN, CIFAR100_STD, PROCO_PAPER, PROCO_PAPER_NAME,
        "CIFAR-100-LT IF100, paper top-1 52.8 (ProCo, ResNet-32, 200 epochs; 54.2 at 400; best epoch on the "
        "test set); " + _converted("ProCo", "proco"),
        Recipe("convert", layout="proco")),
    "resnet32_paco.cifar100_lt_if100": _cifar_cfg(
        "resnet32_paco.cifar100_lt_if100", 100, CIFAR100_MEAN, CIFAR100_STD, PACO_PAPER, PACO_PAPER_NAME,
        "CIFAR-100-LT IF100, paper top-1 52.0 [unverified] (PaCo, ResNet-32, 400 epochs); no released "
        "weights: train with configs/cifar100_lt_paco.yaml.", Recipe("train", "configs/cifar100_lt_paco.yaml")),
})


@register_model
def resnet50_paco(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with a linear classifier (PaCo's class centres), trained by PaCo."""
    return _create(ResNet, "resnet50_paco", pretrained, **dict(_R50, **kwargs))


@register_model
def resnext50_32x4d_paco(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d with a linear classifier, trained by PaCo."""
    return _create(ResNet, "resnext50_32x4d_paco", pretrained, **dict(_X50, **kwargs))


@register_model
def resnet50_gpaco(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 with a linear classifier, trained by GPaCo."""
    return _create(ResNet, "resnet50_gpaco", pretrained, **dict(_R50, **kwargs))


@register_model
def resnext50_32x4d_gpaco(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d with a linear classifier, trained by GPaCo."""
    return _create(ResNet, "resnext50_32x4d_gpaco", pretrained, **dict(_X50, **kwargs))


@register_model
def resnet50_proco(pretrained: bool = False, **kwargs: Any) -> CosineResNet:
    """ResNet-50 with ProCo's cosine classifier (scale 30)."""
    return _create(CosineResNet, "resnet50_proco", pretrained, **dict(_R50, **kwargs))


@register_model
def resnext50_32x4d_proco(pretrained: bool = False, **kwargs: Any) -> CosineResNet:
    """ResNeXt-50 32x4d with ProCo's cosine classifier (scale 30)."""
    return _create(CosineResNet, "resnext50_32x4d_proco", pretrained, **dict(_X50, **kwargs))


@register_model
def resnet32_proco(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 with a linear classifier, trained by ProCo (its CIFAR code uses a linear head)."""
    return _create_cifar_resnet("resnet32_proco", pretrained, **dict(dict(depth=32, head="linear"), **kwargs))


@register_model
def resnet32_paco(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 with a linear classifier, trained by PaCo."""
    return _create_cifar_resnet("resnet32_paco", pretrained, **dict(dict(depth=32, head="linear"), **kwargs))
