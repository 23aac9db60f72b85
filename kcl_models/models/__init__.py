"""Registered timm architectures (importing this module registers them)."""
from . import cifar_resnet, paco_proco, resnet  # noqa: F401  (registration side effect)
from ._builder import HUB_ORG, STANDARD_ARCHITECTURES, PretrainedWeightsUnavailable, hub_id
from .cifar_resnet import CifarResNet
from .heads import CosineClassifier, PlainProjectionMLP, ProjectionMLP, create_classifier_layer
from .resnet import CosineResNet

__all__ = [
    "HUB_ORG", "STANDARD_ARCHITECTURES", "PretrainedWeightsUnavailable", "hub_id", "CifarResNet",
    "CosineResNet", "CosineClassifier", "PlainProjectionMLP", "ProjectionMLP", "create_classifier_layer",
    "list_kcl_models",
]


METHOD_SUFFIXES = ("kcl", "bcl", "paco", "gpaco", "proco")


def list_kcl_models(pretrained: bool = False) -> list[str]:
    """Every architecture (or ``arch.tag`` with ``pretrained=True``) this package registers."""
    import timm
    return sorted(set(timm.list_models([f"*_{m}" for m in METHOD_SUFFIXES], pretrained=pretrained)))
