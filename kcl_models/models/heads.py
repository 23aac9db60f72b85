"""Heads shared by the published models and the training-time wrappers.

- ``CosineClassifier``: BCL's classifier, ``logits = s * cos(h, w_c)`` (no bias). The weight is
  stored ``[num_classes, in_features]`` like ``nn.Linear`` so timm's ``num_classes`` filter and
  ``reset_classifier`` treat it as a normal classifier.
- ``ProjectionMLP``: ``Linear(d, h) -> BN -> ReLU -> Linear(h, out)``, BCL's contrastive head and
  prototype head (both L2-normalised by the caller), also PaCo's and ProCo's projection.
- ``PlainProjectionMLP``: ``Linear(d, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, out)``
  without BN, GPaCo's projection.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """Cosine-similarity classifier (BCL's ``NormedLinear``): ``logits = scale * cos(x, w_c)``.

    Shape:
        - input: ``[B, in_features]``
        - output: ``[B, num_classes]``
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0) -> None:
        super().__init__()
        if in_features <= 0 or num_classes <= 0:
            raise ValueError(f"CosineClassifier needs in_features > 0 and num_classes > 0, "
                             f"got {in_features}, {num_classes}")
        if scale <= 0:
            raise ValueError(f"CosineClassifier scale must be > 0, got {scale}")
        self.in_features = in_features
        self.out_features = num_classes
        self.scale = float(scale)
        # unit-norm rows, as the authors' NormedLinear: the gradient of a normalised weight scales
        # with 1/||w||, so a small init would act as a huge learning rate on the classifier
        self.weight = nn.Parameter(F.normalize(torch.empty(num_classes, in_features).uniform_(-1, 1), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, D] @ [D, C] -> [B, C]
        return self.scale * F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}"


def create_classifier_layer(in_features: int, num_classes: int, head: str = "linear",
                            scale: float = 30.0) -> nn.Module:
    """``nn.Linear`` or ``CosineClassifier``; ``nn.Identity`` when ``num_classes == 0``."""
    if num_classes <= 0:
        return nn.Identity()
    if head == "linear":
        return nn.Linear(in_features, num_classes)
    if head == "cosine":
        return CosineClassifier(in_features, num_classes, scale=scale)
    raise ValueError(f"unknown classifier head {head!r}; expected 'linear' or 'cosine'")


class ProjectionMLP(nn.Module):
    """``Linear(in, hidden) -> BN -> ReLU -> Linear(hidden, out)``.

    The same layout serves BCL's contrastive head (on features) and its prototype head (on
    classifier weights, one row per class). Output is not normalised; callers normalise.

    Shape:
        - input: ``[N, in_features]``
        - output: ``[N, out_features]``
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden_features),
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PlainProjectionMLP(nn.Module):
    """``Linear(in, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU -> Linear(hidden, out)``, no BN.

    GPaCo's projection (Cui et al., TPAMI 2023; 2048-2048-2048-128 on ResNet-50). Output is not
    normalised; callers normalise.

    Shape:
        - input: ``[N, in_features]``
        - output: ``[N, out_features]``
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
