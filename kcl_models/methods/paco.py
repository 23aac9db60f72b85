"""PaCo, parametric contrastive learning (Cui et al., ICCV 2021), one stage.

MoCo-style, with the classifier inside the contrastive softmax: the query encoder (timm backbone
with its linear classifier + projection MLP Linear-BN-ReLU-Linear) sees the query view
(classifier-style, RandAugment); a momentum copy of it sees the key view (SimCLR-style) without
gradient. The rows of the linear classifier are the parametric class centres: the loss
(:class:`~kcl_models.losses.PaCoLoss`) puts the query's centre logits (plus the log prior) and its
similarities to every other query, every key and the queue in one softmax. The queue of keys with
labels starts as random unit vectors (labels -1: never positives), as in MoCo, and receives every
process's keys after each loss. The exported model is the backbone with its linear classifier
(plain timm).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kcl_models.losses import PaCoLoss
from kcl_models.models.heads import ProjectionMLP

from .base import LossOutput, Method, check_range, option
from .modules import ProjectedClassifier
from .momentum import MomentumQueue
from .registry import register_method


def without_rank(gathered: torch.Tensor, rank: int, rows: int) -> torch.Tensor:
    """The other processes' rows of a gathered ``[W * rows, ...]`` tensor (this rank's slice dropped)."""
    return torch.cat([gathered[:rank * rows], gathered[(rank + 1) * rows:]])


@dataclass
class PaCoOptions:
    """The options PaCo and GPaCo share (one loss serves both)."""

    alpha: float = option(0.05, "weight of the sample positives (PaCo 0.05 ImageNet-LT/iNat, 0.01 CIFAR; "
                                "GPaCo 0.045 ImageNet-LT R-50, 0.05 X-50/iNat)")
    beta: float = option(1.0, "weight of the class-centre target")
    gamma: float = option(1.0, "weight of the samples in the softmax denominator")
    temperature: float = option(0.2, "temperature of the sample logits (0.2 R-50, 0.07 PaCo X-50, 0.05 CIFAR)")
    queue_size: int = option(8192, "keys (and labels) in the queue; a multiple of the global batch")
    feat_dim: int = option(128, "projection output size")
    proj_hidden: int | None = option(None, "projection hidden size (null: backbone width)")

    def __post_init__(self) -> None:
        check_range("alpha", self.alpha, 0.0)
        check_range("beta", self.beta, 0.0, low_open=True)
        check_range("gamma", self.gamma, 0.0)
        check_range("temperature", self.temperature, 0.0, low_open=True)
        check_range("queue_size", self.queue_size, 1)
        check_range("feat_dim", self.feat_dim, 1)
        check_range("proj_hidden", self.proj_hidden, 1)


@register_method
class PaCo(MomentumQueue, Method):
    """Parametric contrastive learning: class centres + momentum keys + labelled queue in one softmax."""

    name = "paco"
    views = ("classifier", "contrastive")
    equal_batches = True

    @dataclass
    class Options(PaCoOptions):
        key_momentum: float = option(0.999, "momentum of the key encoder (MoCo m)")

        def __post_init__(self) -> None:
            super().__post_init__()
            check_range("key_momentum", self.key_momentum, 0.0, 1.0, high_open=True)

    def check_data(self, global_batch: int) -> None:
        self.check_queue(self.opts.queue_size, global_batch)

    def build(self, backbone: nn.Module) -> nn.Module:
        o, ctx = self.opts, self.ctx
        self.criterion = ctx.compile(PaCoLoss(ctx.class_counts, o.alpha, o.beta, o.gamma, o.temperature,
                                              validate_labels=False).to(ctx.device))
        dim = backbone.num_features
        model = ProjectedClassifier(backbone, ProjectionMLP(dim, o.proj_hidden or dim, o.feat_dim))
        self.make_queue(model, o.feat_dim, o.queue_size)
        return model

    def checkpoint_state(self) -> list[Any]:
        return [self.key_encoder, self.queue]

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        b, rank = labels.shape[0], self.ctx.accelerator.process_index
        logits, q = model(images[0])                                       # [B, C], [B, F]
        q = q.float()
        with torch.no_grad(), self.ctx.accelerator.autocast():
            k = self.key_encoder(images[1])[1].float()                     # [B, F]
        # anchors first, then the other processes' queries (with gradient), every key, the queue
        all_k, all_y = self.ctx.gather_nograd(k), self.ctx.gather_nograd(labels)   # [WB, F], [WB]
        other_q = without_rank(self.ctx.gather(q), rank, b)                # [(W-1)B, F]
        feats = torch.cat([q, other_q, all_k, self.queue.features.clone()])
        labs = torch.cat([labels, without_rank(all_y, rank, b), all_y, self.queue.labels.clone()])
        self.ctx.record("gathered_batch", all_k.shape[0])
        loss = self.criterion(logits.float(), feats, labs)
        self.enqueue_global(all_k, all_y)                                  # after the loss
        return LossOutput(loss, {"paco": loss}, b * 2)

    def after_step(self, model: nn.Module) -> None:
        self.momentum_step(model, self.opts.key_momentum)
