"""ProCo, probabilistic contrastive learning (Du et al., TPAMI 2024), one stage, built like BCL.

Views: ``[classifier view, contrastive view, contrastive view]`` in one forward. The classifier
view trains the backbone's own classifier (the cosine head of the ``*_proco`` ResNet-50 /
ResNeXt-50, a linear one on the CIFAR ResNet-32) with logit-adjusted CE; the two contrastive
views' unit-norm projections (ProjectionMLP, Linear-BN-ReLU-Linear) enter
:class:`~kcl_models.losses.ProCoLoss`, which keeps per-class von Mises-Fisher estimates of the
features of every process and swaps its estimators at each epoch start:
``loss = LA-CE + alpha * ProCo``. The estimator state is checkpointed. The exported model is the
backbone with its classifier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kcl_models.losses import LogitAdjustedLoss, ProCoLoss
from kcl_models.losses.proco import KAPPA_ESTIMATES
from kcl_models.models.heads import ProjectionMLP

from .base import LossOutput, Method, check_range, option
from .modules import ProjectedClassifier
from .registry import register_method


@register_method
class ProCo(Method):
    """LA-CE on the classifier + vMF-based contrastive logits with per-class running estimates."""

    name = "proco"
    views = ("classifier", "contrastive", "contrastive")
    equal_batches = True

    @dataclass
    class Options:
        alpha: float = option(1.0, "weight of the ProCo term")
        temperature: float = option(0.07, "temperature tau of the ProCo logits (0.07 ImageNet-LT/iNat, 0.1 CIFAR)")
        la_tau: float = option(1.0, "logit adjustment strength of both cross-entropies")
        feat_dim: int = option(1024, "projection output size p (1024 ImageNet-LT/iNat, 128 CIFAR)")
        proj_hidden: int | None = option(None, "projection hidden size (null: backbone width)")
        kappa_estimate: str = option("authors", "vMF concentration estimate: authors (p R/(1-R^2)) | banerjee")
        kappa_max: float = option(1e5, "upper clamp of the concentration kappa")
        proco_seed: int = option(0, "seed of the estimators' random initial means (with the epoch)")

        def __post_init__(self) -> None:
            check_range("alpha", self.alpha, 0.0)
            check_range("temperature", self.temperature, 0.0, low_open=True)
            check_range("la_tau", self.la_tau, 0.0)
            check_range("feat_dim", self.feat_dim, 2)
            check_range("proj_hidden", self.proj_hidden, 1)
            check_range("kappa_max", self.kappa_max, 0.0, low_open=True)
            check_range("proco_seed", self.proco_seed, 0, 2**40, high_open=True)
            if self.kappa_estimate not in KAPPA_ESTIMATES:
                raise ValueError(f"option 'kappa_estimate' must be one of {', '.join(KAPPA_ESTIMATES)}, "
                                 f"got {self.kappa_estimate!r}")

    def build(self, backbone: nn.Module) -> nn.Module:
        o, ctx = self.opts, self.ctx
        self.la_ce = ctx.compile(LogitAdjustedLoss(ctx.class_counts, tau=o.la_tau,
                                                   validate_labels=False).to(ctx.device))
        # the module itself is checkpointed (its buffers are the estimators); the compiled wrapper runs it
        self.proco = ProCoLoss(ctx.class_counts, o.feat_dim, o.temperature, o.la_tau, o.kappa_estimate, o.kappa_max,
                               seed=o.proco_seed, gather=True, validate_labels=False).to(ctx.device)
        self.proco_fn = ctx.compile(self.proco)
        dim = backbone.num_features
        return ProjectedClassifier(backbone, ProjectionMLP(dim, o.proj_hidden or dim, o.feat_dim))

    def start_epoch(self, epoch: int) -> None:
        self.proco.start_epoch(epoch)      # a no-op when resuming inside an epoch already started

    def checkpoint_state(self) -> list[Any]:
        return [self.proco]

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        b = labels.shape[0]
        logits, z = model(torch.cat(images))                               # [3B, C], [3B, p]
        feats = z[b:].float().view(len(images) - 1, b, -1).transpose(0, 1)   # [B, 2, p]
        self.ctx.record("gathered_batch", b * self.ctx.num_processes)
        la_ce = self.la_ce(logits[:b].float(), labels)
        contrastive = self.proco_fn(feats, labels)                         # gathers the features itself
        loss = la_ce + self.opts.alpha * contrastive
        return LossOutput(loss, {"la_ce": la_ce, "proco": contrastive}, b * len(images))
