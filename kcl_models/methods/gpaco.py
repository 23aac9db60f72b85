"""GPaCo, generalized parametric contrastive learning (Cui et al., TPAMI 2023), one stage.

PaCo without a momentum encoder: both views go through the same encoder (timm backbone with its
linear classifier + a projection MLP without BN, Linear-ReLU-Linear-ReLU-Linear), with gradient.
Every sample view is an anchor (``2B`` rows, the centre logits of both views); the contrast set is
both views of every process plus a queue of past second-view features (gathered, detached) with
their labels. Same loss as PaCo (:class:`~kcl_models.losses.PaCoLoss`), with GPaCo's optional
centre label smoothing. The exported model is the backbone with its linear classifier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kcl_models.losses import PaCoLoss
from kcl_models.models.heads import PlainProjectionMLP

from .base import LossOutput, Method, check_range, option
from .modules import ProjectedClassifier
from .momentum import MomentumQueue
from .paco import PaCoOptions, without_rank
from .registry import register_method


@register_method
class GPaCo(MomentumQueue, Method):
    """Generalized PaCo: both views are anchors through one encoder; class centres + queue in one softmax."""

    name = "gpaco"
    views = ("classifier", "contrastive")
    equal_batches = True

    @dataclass
    class Options(PaCoOptions):
        smoothing: float = option(0.0, "label smoothing of the centre targets (0 in the long-tailed scripts)")

        def __post_init__(self) -> None:
            super().__post_init__()
            check_range("smoothing", self.smoothing, 0.0, 1.0)

    def check_data(self, global_batch: int) -> None:
        self.check_queue(self.opts.queue_size, global_batch)

    def build(self, backbone: nn.Module) -> nn.Module:
        o, ctx = self.opts, self.ctx
        self.criterion = ctx.compile(PaCoLoss(ctx.class_counts, o.alpha, o.beta, o.gamma, o.temperature,
                                              o.smoothing, validate_labels=False).to(ctx.device))
        dim = backbone.num_features
        model = ProjectedClassifier(backbone, PlainProjectionMLP(dim, o.proj_hidden or dim, o.feat_dim))
        self.make_queue(None, o.feat_dim, o.queue_size)
        return model

    def checkpoint_state(self) -> list[Any]:
        return [self.queue]

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        b, rank = labels.shape[0], self.ctx.accelerator.process_index
        logits, z = model(torch.cat(images))                               # [2B, C], [2B, F]
        z, y = z.float(), torch.cat([labels, labels])                      # anchors: both views
        all_z, all_y = self.ctx.gather(z), self.ctx.gather_nograd(y)       # [W2B, F], [W2B]
        feats = torch.cat([z, without_rank(all_z, rank, 2 * b), self.queue.features.clone()])
        labs = torch.cat([y, without_rank(all_y, rank, 2 * b), self.queue.labels.clone()])
        self.ctx.record("gathered_batch", all_y.shape[0] // 2)
        loss = self.criterion(logits.float(), feats, labs)
        # the queue gets every process's second-view features, detached, after the loss
        keys = all_z.detach().view(-1, 2, b, z.shape[1])[:, 1].reshape(-1, z.shape[1])   # [WB, F]
        self.enqueue_global(keys, all_y.view(-1, 2, b)[:, 1].reshape(-1))
        return LossOutput(loss, {"gpaco": loss}, b * 2)
