"""MoCo machinery shared by the methods with a labelled queue (KCL, FCL, PaCo; GPaCo uses the queue).

:class:`MomentumQueue` is a mixin: it owns the queue of past keys with their labels and,
optionally, the momentum key encoder (a frozen deep copy of the training module). Keys enter the
queue after the loss, gathered from every process, and only in full global batches, so the
slots stay aligned with the global batch. After each optimizer step the key encoder follows the
query encoder and its BN statistics are averaged across processes.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from kcl_models.losses import LabelQueue, momentum_update

__all__ = ["MomentumQueue", "QueueFilled", "average_buffers", "checksum"]


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


def checksum(*tensors: torch.Tensor) -> torch.Tensor:
    """A float64 fingerprint of tensors (cross-rank debug checks)."""
    return torch.stack([t.detach().double().sum() + t.detach().double().abs().sum() for t in tensors]).sum()


class QueueFilled:
    """Whether the queue was pre-filled (saved with checkpoints, so a resume does not refill it)."""

    def __init__(self) -> None:
        self.filled = False

    def state_dict(self) -> dict[str, bool]:
        return {"queue_filled": self.filled}

    def load_state_dict(self, state: dict[str, bool]) -> None:
        self.filled = bool(state["queue_filled"])


class MomentumQueue:
    """Mixin of a :class:`~kcl_models.methods.Method`: labelled queue (+ momentum key encoder).

    The method calls :meth:`check_queue` from ``check_data``, :meth:`make_queue` from ``build``,
    :meth:`enqueue` (or :meth:`enqueue_global`) after its loss and :meth:`momentum_step` from
    ``after_step``.
    """

    ctx: Any
    global_batch: int
    queue: LabelQueue
    key_encoder: nn.Module

    def check_queue(self, queue_size: int, global_batch: int) -> None:
        self.global_batch = global_batch
        if queue_size % global_batch:
            raise ValueError(f"queue_size={queue_size} must be divisible by the global batch {global_batch} "
                             f"(batch_size x {self.ctx.num_processes} processes)")

    def make_queue(self, model: nn.Module | None, feat_dim: int, queue_size: int) -> None:
        """The key encoder (a frozen copy of ``model``; None: no key encoder), then the queue."""
        if model is not None:
            self.key_encoder = copy.deepcopy(model).requires_grad_(False).to(self.ctx.device)
        self.queue = LabelQueue(feat_dim, queue_size).to(self.ctx.device)

    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Gather this process's keys and labels from every process, then :meth:`enqueue_global`."""
        self.enqueue_global(self.ctx.gather_nograd(keys), self.ctx.gather_nograd(labels))

    def enqueue_global(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Enqueue the keys of the global batch (already gathered, identical on every process)."""
        if keys.shape[0] != self.global_batch:
            # a batch shortened by unreadable images (skip_corrupt, one process): it still trains,
            # but only full batches enter the queue, so its slots stay aligned with the global batch
            if not getattr(self, "_warned_short", False):
                self.ctx.log(f"note: batches shortened by skipped images ({keys.shape[0]} of {self.global_batch}) "
                             f"are not enqueued")
                self._warned_short = True
            return
        self.queue.enqueue(keys, labels)

    def momentum_step(self, model: nn.Module, momentum: float) -> None:
        """Key encoder <- momentum EMA of the (prepared) training module; BN buffers averaged."""
        acc = self.ctx.accelerator
        momentum_update(acc.unwrap_model(model), self.key_encoder, momentum)
        average_buffers(self.key_encoder, acc.num_processes)
        if self.ctx.checks is not None:
            sums = acc.gather(torch.stack([checksum(*self.key_encoder.state_dict().values()),
                                           checksum(self.queue.features, self.queue.labels.double())]).reshape(1, 2))
            checks = self.ctx.checks
            checks["key_encoder_in_sync"] = checks.get("key_encoder_in_sync", True) and \
                bool(torch.allclose(sums[:, 0], sums[0, 0]))
            checks["queue_in_sync"] = checks.get("queue_in_sync", True) and bool(torch.allclose(sums[:, 1], sums[0, 1]))
