"""KCL, k-positive contrastive learning (Kang et al., ICLR 2021), and FCL; then a cRT classifier.

MoCo-style: the query encoder (backbone + linear projection) sees view 0; a momentum copy of it,
the key encoder, sees view 1 without gradient. Each anchor's positives are its own key plus ``k``
same-class keys drawn from a queue of past keys with their labels (FCL: all same-class keys).
The queue is pre-filled before epoch 0 (as the authors do), and after each loss it receives the
keys and labels of every process. After each optimizer step the key encoder follows the query
encoder (momentum ``key_momentum``) and its BN statistics are averaged across processes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from kcl_models.losses import KCLLoss, LabelQueue, momentum_update

from .base import LossOutput, Method, check_range, option
from .modules import ProjectedEncoder
from .registry import register_method


def average_buffers(module: nn.Module, world_size: int) -> None:
    """Average floating-point buffers (BN running statistics) across processes in one collective.

    The key encoder sits outside DDP, so its BN statistics would drift apart rank by rank; the
    average is what SyncBN's running statistics would hold, and keeps every rank's copy identical.
    """
    if world_size < 2:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = _flatten_dense_tensors(buffers)
    dist.all_reduce(flat)
    for buf, avg in zip(buffers, _unflatten_dense_tensors(flat.div_(world_size), buffers)):
        buf.copy_(avg)


def _checksum(*tensors: torch.Tensor) -> torch.Tensor:
    return torch.stack([t.detach().double().sum() + t.detach().double().abs().sum() for t in tensors]).sum()


class _Filled:
    """Whether the queue was pre-filled (saved with checkpoints, so a resume does not refill it)."""

    def __init__(self) -> None:
        self.filled = False

    def state_dict(self) -> dict[str, bool]:
        return {"queue_filled": self.filled}

    def load_state_dict(self, state: dict[str, bool]) -> None:
        self.filled = bool(state["queue_filled"])


@register_method
class KCL(Method):
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
        self.global_batch = global_batch
        if o.queue_size % global_batch:
            raise ValueError(f"queue_size={o.queue_size} must be divisible by the global batch {global_batch} "
                             f"(batch_size x {self.ctx.num_processes} processes)")
        few = [c for c, n in enumerate(counts) if o.k is not None and n < o.k]
        if few:
            self.ctx.log(f"note: {len(few)} classes have fewer than k={o.k} training images "
                         f"(e.g. class {few[0]}: {counts[few[0]]}); their anchors use the positives available")

    def build(self, backbone: nn.Module) -> nn.Module:
        o = self.opts
        self.criterion = self.ctx.compile(KCLLoss(o.k, o.temperature, validate_labels=False))
        self.filled = _Filled()
        model = ProjectedEncoder(backbone, o.feat_dim, "linear")
        self.key_encoder = copy.deepcopy(model).requires_grad_(False).to(self.ctx.device)
        self.queue = LabelQueue(o.feat_dim, o.queue_size).to(self.ctx.device)
        return model

    def checkpoint_state(self) -> list[Any]:
        return [self.key_encoder, self.queue, self.filled]

    def _enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        keys, labels = self.ctx.gather_nograd(keys), self.ctx.gather_nograd(labels)
        if keys.shape[0] != self.global_batch:
            # a batch shortened by unreadable images (skip_corrupt, one process): it still trains,
            # but only full batches enter the queue, so its slots stay aligned with the global batch
            if not getattr(self, "_warned_short", False):
                self.ctx.log(f"note: batches shortened by skipped images ({keys.shape[0]} of {self.global_batch}) "
                             f"are not enqueued")
                self._warned_short = True
            return
        self.queue.enqueue(keys, labels)

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
                self._enqueue(self.key_encoder(images[1]).float(), labels)
        self.filled.filled = True

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        q = model(images[0])                                               # [B, F]
        with torch.no_grad(), self.ctx.accelerator.autocast():
            k = self.key_encoder(images[1]).float()                        # [B, F]
        loss = self.criterion(q.float(), k, labels, self.queue.features.clone(), self.queue.labels.clone(),
                              generator=generator)
        self._enqueue(k, labels)                                           # after the loss
        return LossOutput(loss, {"kcl" if self.opts.k is not None else "fcl": loss}, labels.shape[0] * 2)

    def after_step(self, model: nn.Module) -> None:
        acc = self.ctx.accelerator
        momentum_update(acc.unwrap_model(model), self.key_encoder, self.opts.key_momentum)
        average_buffers(self.key_encoder, acc.num_processes)
        if self.ctx.checks is not None:
            sums = acc.gather(torch.stack([_checksum(*self.key_encoder.state_dict().values()),
                                           _checksum(self.queue.features, self.queue.labels.double())]).reshape(1, 2))
            checks = self.ctx.checks
            checks["key_encoder_in_sync"] = checks.get("key_encoder_in_sync", True) and \
                bool(torch.allclose(sums[:, 0], sums[0, 0]))
            checks["queue_in_sync"] = checks.get("queue_in_sync", True) and bool(torch.allclose(sums[:, 1], sums[0, 1]))


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
