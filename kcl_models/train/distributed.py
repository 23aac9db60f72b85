"""Process-group helpers for contrastive losses (torch only; safe to import anywhere).

Contrastive losses need negatives from every process. ``accelerator.gather`` is not
differentiable, so a loss computed on its output gives gradient to the local slice only through
the local anchors' rows. ``all_gather_with_grad`` returns the concatenated batch with a backward
that sums, for each process's slice, the gradients that every process computed for it.

Gradient convention: if every process computes the same loss ``L`` on the gathered batch, each
local slice receives ``world_size * dL/dx_local``; DDP then averages parameter gradients over the
processes, so the encoder gradient equals the single-process gradient of ``L`` on the whole
batch. All processes must contribute the same batch size (``drop_last=True``).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["get_world_size", "get_rank", "all_gather_with_grad", "concat_all_gather"]


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group; 1 without an initialised process group."""
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group; 0 without an initialised process group."""
    return dist.get_rank() if _initialized() else 0


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all processes along dim 0, differentiably.

    Identity in a single process. Backward: each process's slice receives the sum over processes
    of the gradient with respect to that slice (see the module docstring for the scaling).

    Shape:
        - x: ``[B, ...]`` (same shape on every process)
        - output: ``[world_size * B, ...]``, process ``r``'s rows at ``r*B:(r+1)*B``
    """
    if get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather  # lazy: pulls in RPC-free autograd ops

    return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all processes along dim 0, without gradient (labels, MoCo keys).

    Shape:
        - x: ``[B, ...]`` (same shape on every process)
        - output: ``[world_size * B, ...]`` (``x.detach()`` in a single process)
    """
    world = get_world_size()
    if world == 1:
        return x.detach()
    x = x.contiguous()
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x)
    return torch.cat(out, dim=0)
