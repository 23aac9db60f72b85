"""kcl-models: timm- and Hugging Face-compatible models for long-tailed representation learning.

Importing the package registers ``resnet50_kcl``, ``resnet50_bcl``, ``resnext50_32x4d_bcl``,
``resnet32_kcl`` and ``resnet32_bcl`` (with their ``arch.tag`` variants) with timm.
"""
from . import models  # noqa: F401  (registers the architectures with timm)
from .models import InvalidWeightsError, PretrainedWeightsUnavailable, list_kcl_models

__version__ = "0.1.0"
__all__ = ["InvalidWeightsError", "PretrainedWeightsUnavailable", "list_kcl_models", "__version__"]
