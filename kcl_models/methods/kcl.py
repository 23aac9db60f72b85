"""KCL, k-positive contrastive learning (Kang et al., ICLR 2021), and FCL; then a cRT classifier.

MoCo-style: the query encoder (backbone + linear projection) sees view 0; a momentum copy of it,
the key encoder, sees view 1 without gradient. Each anchor's positives are its own key plus ``k``
same-class keys drawn from a queue of past keys with their labels (FCL: all same-class keys).
The queue is pre-filled before epoch 0 (as the authors do), and after each loss it receives the
keys and labels of every process. After each optimizer step the key encoder follows the query
encoder (momentum ``key_momentum``) and its BN statistics are averaged across processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kcl_models.losses import KCLLoss

from .base import LossOutput, Method, check_range, option
from .modules import ProjectedEncoder
from .momentum import MomentumQueue, QueueFilled
from .registry import register_method


@register_method
class KCL(MomentumQueue, Method):
    """k positives per anchor from a labelled MoCo queue (``k: null`` gives FCL)."""

    name = "kcl"
    views = ("contrastive", "contrastive")
    crt = True
    equal_batches = True

    @dataclass
    class Options:
        k: int | None = option(6, "positives per anchor drawn from the queue (null: all of the class, FCL)")
        queue_size: int = option(4096, "keys (and labels) in the queue; a multiple of the global batch")
        key_momentum: float = option(0.999, "momentum of the key encoder (MoCo m)")
        temperature: float = option(0.07, "softmax temperature of the contrastive loss")
        feat_dim: int = option(128, "projection output size")

        def __post_init__(self) -> None:
            check_range("k", self.k, 1)
            check_range("queue_size", self.queue_size, 1)
            check_range("key_momentum", self.key_momentum, 0.0, 1.0, high_open=True)
            check_range("temperature", self.temperature, 0.0, low_open=True)
            check_range("feat_dim", self.feat_dim, 1)

    def check_data(self, global_batch: int) -> None:
        o, counts = self.opts, self.ctx.class_counts
        self.check_queue(o.queue_size, global_batch)
        few = [c for c, n in enumerate(counts) if o.k is not None and n < o.k]
        if few:
            self.ctx.log(f"note: {len(few)} classes have fewer than k={o.k} training images "
                         f"(e.g. class {few[0]}: {counts[few[0]]}); their anchors use the positives available")

    def build(self, backbone: nn.Module) -> nn.Module:
        o = self.opts
        self.criterion = self.ctx.compile(KCLLoss(o.k, o.temperature, validate_labels=False))
        self.filled = QueueFilled()
        model = ProjectedEncoder(backbone, o.feat_dim, "linear")
        self.make_queue(model, o.feat_dim, o.queue_size)
        return model

    def checkpoint_state(self) -> list[Any]:
        return [self.key_encoder, self.queue, self.filled]

    @torch.no_grad()
    def before_training(self, model: nn.Module, loader: Any) -> None:
        """Pre-fill the queue before epoch 0, as the authors do, so no slot starts empty."""
        if self.filled.filled:
            return
        it = iter(loader)
        for _ in range(self.opts.queue_size // self.global_batch):
            try:
                images, labels = next(it)
            except StopIteration:
                it = iter(loader)
                images, labels = next(it)
            with self.ctx.accelerator.autocast():
                self.enqueue(self.key_encoder(images[1]).float(), labels)
        self.filled.filled = True

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        q = model(images[0])                                               # [B, F]
        with torch.no_grad(), self.ctx.accelerator.autocast():
            k = self.key_encoder(images[1]).float()                        # [B, F]
        loss = self.criterion(q.float(), k, labels, self.queue.features.clone(), self.queue.labels.clone(),
                              generator=generator)
        self.enqueue(k, labels)                                           # after the loss
        return LossOutput(loss, {"kcl" if self.opts.k is not None else "fcl": loss}, labels.shape[0] * 2)

    def after_step(self, model: nn.Module) -> None:
        self.momentum_step(model, self.opts.key_momentum)


@register_method
class FCL(KCL):
    """Full-positive contrastive learning: KCL with every same-class queue entry a positive."""

    name = "fcl"

    @dataclass
    class Options(KCL.Options):
        k: int | None = option(None, "null: every same-class queue entry is a positive (method kcl takes k)")

        def __post_init__(self) -> None:
            if self.k is not None:
                raise ValueError(f"option 'k' of method fcl must be null (FCL uses every positive), got {self.k}; "
                                 f"use method kcl for k positives")
            super().__post_init__()
