"""MoCo helpers for KCL (He et al., CVPR 2020; Kang et al., ICLR 2021): a feature + label queue
and the momentum (EMA) update of the key encoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LabelQueue", "momentum_update"]


class LabelQueue(nn.Module):
    """FIFO queue of ``size`` past keys and their labels (MoCo's dictionary plus KCL's label queue).

    Buffers (saved in the state dict, moved by ``.to()``):
        - ``features`` ``[K, D]``: initialised to random unit vectors, as in MoCo, so that an
          unfilled queue still gives random negatives;
        - ``labels`` ``[K]``: -1 for an empty slot (never a KCL positive);
        - ``ptr``: next slot to overwrite.

    ``enqueue`` takes the keys of the **global** batch: under data parallelism gather them from
    every process first (``kcl_models.train.distributed.concat_all_gather``), and call it on every
    rank after the loss, so all ranks hold the same queue. ``size`` must be a multiple of that
    global batch, so the queue always turns over whole batches (as in MoCo).

    Shape:
        - enqueue keys: ``[N, D]``
        - enqueue labels: ``[N]`` integers
    """

    features: torch.Tensor
    labels: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LabelQueue: {name} must be a positive int, got {value!r}")
        self.dim, self.size = dim, size
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Overwrite the oldest ``N`` slots with ``keys`` (detached) and ``labels``."""
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"LabelQueue.enqueue: keys must be [N, {self.dim}], got {tuple(keys.shape)}")
        n = keys.shape[0]
        if labels.shape != (n,):
            raise ValueError(f"LabelQueue.enqueue: labels must be [{n}] to match the keys, "
                             f"got {tuple(labels.shape)}")
        if n == 0 or self.size % n != 0:
            raise ValueError(f"LabelQueue.enqueue: queue size {self.size} is not divisible by the enqueued "
                             f"batch size {n} (the global batch over all processes); choose a queue "
                             f"size that is a multiple of it and use drop_last=True")
        slots = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.size  # [N]
        self.features[slots] = keys.detach().to(self.features.dtype)
        self.labels[slots] = labels.to(self.labels.dtype)
        self.ptr.copy_((self.ptr + n) % self.size)

    @property
    def num_filled(self) -> int:
        """Number of slots holding a real key (label >= 0)."""
        return int((self.labels >= 0).sum())

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}"


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float) -> None:
    """MoCo's key-encoder update: ``target = m * target + (1 - m) * online`` for every parameter.

    Buffers (BatchNorm statistics) are not copied: the key encoder keeps its own, as in MoCo.
    Call it on the unwrapped modules (no DDP wrapper) after the optimiser step.

    Args:
        online: the query encoder (trained by gradient).
        target: the key encoder, same architecture.
        m: momentum in [0, 1] (0.999 in MoCo and KCL); 1 keeps ``target`` unchanged.
    """
    m = float(m)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum_update: m must be in [0, 1], got {m}")
    src = list(online.parameters())
    dst = list(target.parameters())
    if len(src) != len(dst):
        raise ValueError(f"momentum_update: online has {len(src)} parameters but target has {len(dst)}")
    for i, (s, d) in enumerate(zip(src, dst)):
        if s.shape != d.shape:
            raise ValueError(f"momentum_update: parameter {i} has shape {tuple(s.shape)} in online but "
                             f"{tuple(d.shape)} in target")
    if dst:
        # lerp: d + (1 - m) * (s - d) = m * d + (1 - m) * s, one fused multi-tensor kernel.
        torch._foreach_lerp_(dst, [s.to(d.dtype) for s in src], 1.0 - m)
