"""BCL, balanced contrastive learning (Zhu et al., CVPR 2022), one stage.

Views: ``[classifier view, contrastive view, contrastive view]`` (the authors' order). The
classifier view trains the cosine classifier with logit-adjusted CE; the two contrastive views
and the class prototypes (an MLP of the classifier weights) enter the balanced contrastive loss:
``loss = alpha * LA-CE + beta * BCL``. The exported model is the backbone with its classifier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kcl_models.losses import BCLLoss, LogitAdjustedLoss

from .base import LossOutput, Method, check_range, option
from .modules import BCLModel
from .registry import register_method


@register_method
class BCL(Method):
    """LA-CE branch + balanced contrastive branch with class-averaging and class-complement."""

    name = "bcl"
    views = ("classifier", "contrastive", "contrastive")
    equal_batches = True

    @dataclass
    class Options:
        alpha: float = option(1.0, "weight of the logit-adjusted CE branch")
        beta: float = option(0.35, "weight of the balanced contrastive branch")
        temperature: float = option(0.07, "softmax temperature of the contrastive loss")
        la_tau: float = option(1.0, "logit adjustment strength of the CE branch")
        feat_dim: int = option(128, "projection (and prototype) output size")
        proj_hidden: int | None = option(None, "projection hidden size (null: backbone width)")

        def __post_init__(self) -> None:
            check_range("temperature", self.temperature, 0.0, low_open=True)
            check_range("alpha", self.alpha, 0.0)
            check_range("beta", self.beta, 0.0)
            check_range("la_tau", self.la_tau, 0.0)
            check_range("feat_dim", self.feat_dim, 1)

    def build(self, backbone: nn.Module) -> nn.Module:
        ctx, o = self.ctx, self.opts
        self.la_ce = ctx.compile(LogitAdjustedLoss(ctx.class_counts, tau=o.la_tau,
                                                   validate_labels=False).to(ctx.device))
        self.bcl = ctx.compile(BCLLoss(ctx.num_classes, o.temperature, validate_labels=False))
        return BCLModel(backbone, o.feat_dim, o.proj_hidden)

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        b = labels.shape[0]
        logits, z, prototypes = model(torch.cat(images))                 # [3B, C], [3B, F], [C, F]
        logits, z, prototypes = logits.float(), z.float(), prototypes.float()
        feats = z[b:].view(len(images) - 1, b, -1).transpose(0, 1)        # [B, V, F]
        feats, all_labels = self.ctx.gather(feats), self.ctx.gather_nograd(labels)
        self.ctx.record("gathered_batch", feats.shape[0])
        la_ce = self.la_ce(logits[:b], labels)
        contrastive = self.bcl(feats, all_labels, prototypes)
        loss = self.opts.alpha * la_ce + self.opts.beta * contrastive
        return LossOutput(loss, {"la_ce": la_ce, "bcl": contrastive}, b * len(images))
