"""Registered timm architectures (importing this module registers them)."""
from . import cifar_resnet, resnet  # noqa: F401  (registration side effect)
from ._builder import HUB_ORG, STANDARD_ARCHITECTURES, PretrainedWeightsUnavailable, hub_id
from .cifar_resnet import CifarResNet
from .heads import CosineClassifier, ProjectionMLP, create_classifier_layer
from .resnet import CosineResNet

__all__ = [
    "HUB_ORG", "STANDARD_ARCHITECTURES", "PretrainedWeightsUnavailable", "hub_id", "CifarResNet",
    "CosineResNet", "CosineClassifier", "ProjectionMLP", "create_classifier_layer", "list_kcl_models",
]


def list_kcl_models(pretrained: bool = False) -> list[str]:
    """Every architecture (or ``arch.tag`` with ``pretrained=True``) this package registers."""
    import timm
    return sorted(set(timm.list_models("*_kcl", pretrained=pretrained))
                  | set(timm.list_models("*_bcl", pretrained=pretrained)))
