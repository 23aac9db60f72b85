"""k-positive contrastive loss, KCL (Kang et al., "Exploring Balanced Feature Spaces for
Representation Learning", ICLR 2021, Eq. 4), and its full-positive variant FCL."""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_labels, check_temperature, check_tensor, compute_dtype

__all__ = ["KCLLoss", "draw_queue_positives"]


def draw_queue_positives(labels: torch.Tensor, queue_labels: torch.Tensor, k: int | None,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick, for every anchor, up to ``k`` queue entries of its class, uniformly without replacement.

    The queue is sorted by label once, so each class is a contiguous segment of length ``n_c``;
    a random score per segment slot (masked beyond ``n_c``) followed by ``topk`` picks a uniform
    random subset of size ``min(k, n_c)``. The work is ``O(B * max_c n_c)`` rather than
    ``O(B * K)``, with no Python loop over anchors or classes. ``k=None`` takes every slot (FCL).
    Empty slots (label -1) never match an anchor label (anchors are >= 0).

    Args:
        labels: anchor labels ``[B]`` (>= 0).
        queue_labels: ``[K]`` queue labels, -1 marks an empty slot.
        k: positives per anchor, or None for all same-class entries.
        generator: torch.Generator on the labels' device for a reproducible draw.

    Returns:
        ``(index, valid)``, both ``[B, k']``: queue indices, and which of them are real positives
        (``valid`` is False for padding when a class has fewer than ``k'`` entries; its index is
        a harmless in-range placeholder).
    """
    b, qk = labels.shape[0], queue_labels.shape[0]
    device = queue_labels.device
    if qk == 0:
        empty = torch.zeros(b, 0, dtype=torch.long, device=device)
        return empty, empty.bool()
    sorted_labels, order = torch.sort(queue_labels, stable=True)  # [K]
    labels = labels.to(device=device, dtype=sorted_labels.dtype)
    start = torch.searchsorted(sorted_labels, labels)  # [B] first slot of the anchor's class
    count = torch.searchsorted(sorted_labels, labels, right=True) - start  # [B] n_c
    width = int(count.max())  # one sync: the widest class segment sizes the draw
    if width == 0:
        empty = torch.zeros(b, 0, dtype=torch.long, device=device)
        return empty, empty.bool()
    slots = torch.arange(width, device=device)  # [W]
    in_class = slots[None, :] < count[:, None]  # [B, W]
    if k is None or k >= width:
        offset, valid = slots.expand(b, width), in_class
    else:
        # iid uniform scores; the top-k of those inside the segment is a uniform k-subset.
        scores = torch.rand(b, width, generator=generator, device=device)  # [B, W]
        scores.masked_fill_(~in_class, -1.0)
        top, offset = scores.topk(k, dim=1)  # [B, k]
        valid = top >= 0
    index = order[(start[:, None] + offset).clamp_(max=qk - 1)]  # [B, k']
    return index, valid


class _KCLFunction(torch.autograd.Function):
    """Loss and hand-written gradient: avoids autograd's zero-filled scatter and the extra
    ``[B, K]`` passes of a composed implementation (the ``[B, K]`` logits dominate memory)."""

    @staticmethod
    def forward(ctx, query, key, queue, index, valid, temperature):  # noqa: D401
        b = query.shape[0]
        qt = query / temperature  # [B, D]
        l_pos = (qt * key).sum(dim=1)  # [B]
        l_neg = qt @ queue.T  # [B, D] @ [D, K] -> [B, K]
        # log(exp(l_pos) + sum_j exp(l_neg_j)): own key + whole queue; logsumexp is max-shifted.
        log_denom = torch.logaddexp(l_pos, l_neg.logsumexp(dim=1)) if l_neg.shape[1] else l_pos
        # Positive weights: own key and each drawn entry get 1 / (1 + |P_i|).
        w_own = 1.0 / (1.0 + valid.sum(dim=1, dtype=query.dtype))  # [B]
        w_pos = valid.to(query.dtype) * w_own[:, None]  # [B, k']
        pos_mean = w_own * l_pos + (l_neg.gather(1, index) * w_pos).sum(dim=1)  # [B]
        ctx.save_for_backward(qt, key, queue, l_neg, log_denom, l_pos, index, w_pos, w_own)
        ctx.temperature = temperature
        ctx.batch = b
        return (log_denom - pos_mean).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qt, key, queue, l_neg, log_denom, l_pos, index, w_pos, w_own = ctx.saved_tensors
        scale = grad_out / ctx.batch
        # dL_i/dlogit = softmax over {own key, queue} - positive weight.
        g_neg = (l_neg - log_denom[:, None]).exp_()  # [B, K]
        g_neg.scatter_add_(1, index, -w_pos)
        g_neg.mul_(scale)
        g_pos = ((l_pos - log_denom).exp() - w_own) * scale  # [B]
        grad_q = grad_k = grad_queue = None
        if ctx.needs_input_grad[0]:
            # [B, K] @ [K, D] -> [B, D], plus the own-key column
            grad_q = torch.addmm(g_pos[:, None] * key, g_neg, queue).div_(ctx.temperature)
        if ctx.needs_input_grad[1]:
            grad_k = g_pos[:, None] * qt  # [B, D]
        if ctx.needs_input_grad[2]:
            grad_queue = g_neg.T @ qt  # [K, B] @ [B, D] -> [K, D]
        return grad_q, grad_k, grad_queue, None, None, None


class KCLLoss(nn.Module):
    """k-positive contrastive loss, Kang et al. (ICLR 2021), Eq. 4; ``k=None`` gives FCL.

    MoCo-style: query ``q_i`` (online encoder), its key ``k_i`` (momentum encoder, other view) and a
    queue of ``K`` past keys with labels. For anchor ``i`` the positives are its own key plus
    ``P_i``, up to ``k`` queue entries of the same class drawn uniformly at random without
    replacement (all of them if the class has fewer than ``k``; every one with ``k=None``); the
    denominator is the own key plus the whole queue:

        ``L_i = -1/(1+|P_i|) * sum_{p in {k_i} U P_i} log( exp(q_i.p/tau) /
        (exp(q_i.k_i/tau) + sum_{j=1..K} exp(q_i.z_j/tau)) )``

    and the loss is the mean over the ``B`` anchors. Eq. 4 writes the normaliser as
    ``1/(N(k+1))``; the per-anchor ``1/(1+|P_i|)`` equals it when every class has ``k`` entries in
    the queue and averages over the positives available otherwise. Every anchor has its own key,
    so no anchor is without positives. Queue slots with label -1 (empty) are never positives but,
    as in MoCo, stay in the denominator; pre-fill the queue to avoid them.

    The draw uses ``generator`` (on the inputs' device) when given, so the same seed reproduces
    the same positives; the authors' code instead takes a fixed subset (top-k over the label mask).
    Inputs are assumed L2-normalised (not normalised here). The loss is computed in float32 at
    least (half-precision inputs are upcast, autocast is off inside). The queue and keys normally carry no
    gradient; if they require grad they get the exact gradient too.

    Args:
        k: positives drawn from the queue per anchor (6 in the paper), >= 1, or None for FCL.
        temperature: ``tau`` > 0 (0.07 in the paper).

    Shape:
        - query: ``[B, D]``
        - key: ``[B, D]``
        - labels: ``[B]`` integers >= 0
        - queue: ``[K, D]``
        - queue_labels: ``[K]`` integers >= -1 (-1 = empty slot)
        - output: scalar
    """

    def __init__(self, k: int | None = 6, temperature: float = 0.07) -> None:
        super().__init__()
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int):
                raise TypeError(f"KCLLoss: k must be an int or None (FCL), got {k!r}")
            if k < 1:
                raise ValueError(f"KCLLoss: k must be >= 1 (or None for FCL), got {k}")
        self.k = k
        self.temperature = check_temperature(temperature, "KCLLoss")

    def forward(self, query: torch.Tensor, key: torch.Tensor, labels: torch.Tensor, queue: torch.Tensor,
                queue_labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        owner = "KCLLoss"
        check_tensor(query, "query", 2, owner, "[B, D]")
        check_tensor(key, "key", 2, owner, "[B, D]")
        check_tensor(queue, "queue", 2, owner, "[K, D]")
        if key.shape != query.shape:
            raise ValueError(f"{owner}: key shape {tuple(key.shape)} must equal query shape "
                             f"{tuple(query.shape)}")
        if queue.shape[1] != query.shape[1]:
            raise ValueError(f"{owner}: queue feature dim {queue.shape[1]} does not match query dim "
                             f"{query.shape[1]}")
        check_labels(labels, query.shape[0], owner)
        check_labels(queue_labels, queue.shape[0], owner, name="queue_labels", min_value=-1)
        if generator is not None and generator.device.type != query.device.type:
            raise ValueError(f"{owner}: generator is on {generator.device} but the inputs are on "
                             f"{query.device}; create it with torch.Generator(device=...)")
        index, valid = draw_queue_positives(labels.to(query.device), queue_labels.to(query.device),
                                            self.k, generator)
        dtype = compute_dtype(query, key, queue)
        with torch.autocast(query.device.type, enabled=False):
            return _KCLFunction.apply(query.to(dtype), key.to(dtype), queue.to(dtype), index, valid,
                                      self.temperature)

    def extra_repr(self) -> str:
        return f"k={self.k}, temperature={self.temperature}"
