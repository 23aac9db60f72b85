"""SupCon (Khosla et al., NeurIPS 2020) on two contrastive views, then a cRT classifier.

The encoder is the backbone without classifier plus an MLP projection; features of every
process are gathered (with gradients) so each anchor contrasts with the global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kcl_models.losses import SupConLoss

from .base import LossOutput, Method, check_range, option
from .modules import ProjectedEncoder
from .registry import register_method


@register_method
class SupCon(Method):
    """Supervised contrastive representation learning + class-balanced linear classifier (cRT)."""

    name = "supcon"
    views = ("contrastive", "contrastive")
    crt = True
    equal_batches = True

    @dataclass
    class Options:
        temperature: float = option(0.07, "softmax temperature of the contrastive loss")
        feat_dim: int = option(128, "projection output size")
        proj_hidden: int | None = option(None, "projection hidden size (null: backbone width)")

        def __post_init__(self) -> None:
            check_range("temperature", self.temperature, 0.0, low_open=True)
            check_range("feat_dim", self.feat_dim, 1)

    def build(self, backbone: nn.Module) -> nn.Module:
        self.criterion = self.ctx.compile(SupConLoss(self.opts.temperature))
        return ProjectedEncoder(backbone, self.opts.feat_dim, "mlp", self.opts.proj_hidden)

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        b = labels.shape[0]
        z = model(torch.cat(images))                                       # [VB, F]
        feats = z.view(len(images), b, -1).transpose(0, 1)                 # [B, V, F]
        feats, all_labels = self.ctx.gather(feats), self.ctx.gather_nograd(labels)
        self.ctx.record("gathered_batch", feats.shape[0])
        loss = self.criterion(feats.float(), all_labels)
        return LossOutput(loss, {"supcon": loss}, b * len(images))
