"""Training-time models. Never published: the exported timm model is the backbone + classifier.

They live beside the methods (not in ``models``) because they are training-only and combine the
backbone with loss-side heads; this keeps ``kcl_models.models`` depending on timm alone.

- ``BCLModel``: BCL's two branches on one backbone (Zhu et al. 2022, Sec. 3): classifier logits
  (cosine head, trained with LA-CE), an L2-normalised contrastive projection, and class
  prototypes = an MLP of the classifier weights, so the contrastive loss also trains the classifier.
- ``ProjectedEncoder``: backbone (no classifier) + projection, L2-normalised output; SupCon's
  encoder and KCL's query / key encoders (MoCo).
- ``ProjectedClassifier``: backbone with its classifier + a projection head: ``(logits, z)``;
  PaCo's and GPaCo's encoders (the classifier rows are the class centres) and ProCo's model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kcl_models.models.heads import ProjectionMLP


def pooled_features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W] -> [B, num_features]`` through any timm model's pre-logits path."""
    return backbone.forward_head(backbone.forward_features(x), pre_logits=True)


class BCLModel(nn.Module):
    """Backbone with a classifier + contrastive head + prototype head.

    Shape:
        - input: ``[N, 3, H, W]`` (all views of a batch concatenated)
        - output: ``logits [N, C]``, ``z [N, feat_dim]`` (unit norm), ``prototypes [C, feat_dim]`` (unit norm)
    """

    def __init__(self, backbone: nn.Module, feat_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        classifier = backbone.get_classifier()
        if not isinstance(getattr(classifier, "weight", None), torch.Tensor):
            raise ValueError(f"BCL prototypes need a classifier with a weight matrix [C, D]; the backbone's "
                             f"classifier is {type(classifier).__name__} (build it with num_classes > 0 and a "
                             f"linear or cosine head)")
        dim = backbone.num_features
        self.backbone = backbone
        self.head = ProjectionMLP(dim, hidden or dim, feat_dim)
        self.proto_head = ProjectionMLP(dim, hidden or dim, feat_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = pooled_features(self.backbone, x)                        # [N, D]
        logits = self.backbone.get_classifier()(h)                   # [N, C]
        z = F.normalize(self.head(h), dim=1)                         # [N, F]
        weight = self.backbone.get_classifier().weight               # [C, D]
        prototypes = F.normalize(self.proto_head(weight), dim=1)     # [C, F]
        return logits, z, prototypes


class ProjectedEncoder(nn.Module):
    """Backbone without classifier + projection (``linear`` as in KCL/MoCo, or ``mlp``).

    Shape:
        - input: ``[N, 3, H, W]``
        - output: ``[N, feat_dim]`` (unit norm)
    """

    def __init__(self, backbone: nn.Module, feat_dim: int, projection: str = "mlp",
                 hidden: int | None = None) -> None:
        super().__init__()
        if backbone.num_classes != 0:
            backbone.reset_classifier(0)
        dim = backbone.num_features
        self.backbone = backbone
        if projection == "linear":
            self.head = nn.Linear(dim, feat_dim)
        elif projection == "mlp":
            self.head = ProjectionMLP(dim, hidden or dim, feat_dim)
        else:
            raise ValueError(f"unknown projection {projection!r}; expected 'linear' or 'mlp'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(pooled_features(self.backbone, x)), dim=1)


class ProjectedClassifier(nn.Module):
    """Backbone with its classifier + a projection head on the same pooled feature.

    Shape:
        - input: ``[N, 3, H, W]``
        - output: ``logits [N, C]`` (the backbone's classifier), ``z [N, feat_dim]`` (unit norm)
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        if not backbone.num_classes:
            raise ValueError("this method trains the backbone's classifier: build it with num_classes > 0")
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = pooled_features(self.backbone, x)                        # [N, D]
        return self.backbone.get_classifier()(h), F.normalize(self.head(h), dim=1)   # [N, C], [N, F]


class LinearOnFrozen(nn.Module):
    """Frozen backbone features -> classifier; evaluation view of a two-stage (cRT) model."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled_features(self.backbone, x))
