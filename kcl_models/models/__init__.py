"""Registered timm architectures (importing this module registers them)."""
from . import cifar_resnet, paco_proco, resnet  # noqa: F401  (registration side effect)
from ._builder import STANDARD_ARCHITECTURES, pretrained_filter_fn
from ._validate import (
    InvalidWeightsError,
    check_finite,
    check_model_folder,
    check_weights_file,
    read_folder_config,
)
from ._zoo import (
    HUB_ORG,
    WEIGHTS_DIR,
    PretrainedWeightsUnavailable,
    Recipe,
    ZooEntry,
    ensure_hub_weights,
    hub_id,
    zoo_entry,
)
from .cifar_resnet import CifarResNet
from .heads import CosineClassifier, PlainProjectionMLP, ProjectionMLP, create_classifier_layer
from .resnet import CosineResNet

__all__ = [
    "HUB_ORG", "STANDARD_ARCHITECTURES", "WEIGHTS_DIR", "PretrainedWeightsUnavailable", "InvalidWeightsError",
    "Recipe", "ZooEntry", "ensure_hub_weights", "hub_id", "zoo_entry", "check_finite", "check_model_folder",
    "check_weights_file",
    "read_folder_config", "pretrained_filter_fn", "CifarResNet", "CosineResNet", "CosineClassifier",
    "PlainProjectionMLP", "ProjectionMLP", "create_classifier_layer", "list_kcl_models",
]


METHOD_SUFFIXES = ("kcl", "bcl", "paco", "gpaco", "proco")


def list_kcl_models(pretrained: bool = False, include_tags: bool | None = None) -> list[str]:
    """The architectures this package registers, as ``timm.list_models`` lists them.

    ``pretrained=True``: only the ``arch.tag`` variants whose weights exist (bundled or published);
    ``include_tags=True``: every ``arch.tag`` variant, planned ones included."""
    import timm
    return sorted(set(timm.list_models([f"*_{m}" for m in METHOD_SUFFIXES], pretrained=pretrained,
                                       include_tags=include_tags)))
