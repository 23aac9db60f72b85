"""k-positive contrastive loss, KCL (Kang et al., "Exploring Balanced Feature Spaces for
Representation Learning", ICLR 2021, Eq. 4), and its full-positive variant FCL."""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_label_range, check_labels, check_temperature, check_tensor, compute_dtype

__all__ = ["KCLLoss", "draw_queue_positives"]


def _class_segments(labels: torch.Tensor, queue_labels: torch.Tensor):
    """Sort the queue by label so each class is one contiguous segment (no device sync).

    Returns ``order [K]`` (queue index of each sorted slot), ``start [B]`` (first sorted slot of
    each anchor's class) and ``count [B]`` (``n_c``, the queue entries of the anchor's class).
    """
    sorted_labels, order = torch.sort(queue_labels, stable=True)  # [K]
    labels = labels.to(dtype=sorted_labels.dtype)
    start = torch.searchsorted(sorted_labels, labels)  # [B]
    count = torch.searchsorted(sorted_labels, labels, right=True) - start  # [B]
    return order, start, count


@torch.compiler.disable  # a Generator object cannot be traced: torch.compile runs this eagerly
def _seeded_uniforms(k: int, b: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(k, b, generator=generator, device=generator.device, dtype=torch.float64)
    return u.to(device, non_blocking=True)  # the driver stages the [k, B] block; CUDA's sync debug mode sees no sync


def _uniforms(k: int, b: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``[k, B]`` float64 uniforms in ``[0, 1)``, drawn on the generator's device when one is given
    (a CPU generator gives the same numbers for any target device)."""
    if generator is None:
        return torch.rand(k, b, device=device, dtype=torch.float64)
    return _seeded_uniforms(k, b, generator, device)


def _uniform_offsets(count: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` slots per anchor, a uniform random subset of ``range(count_i)`` (all of it if ``count_i <= k``).

    Floyd's algorithm (Bentley & Floyd, CACM 1987), vectorised over anchors: for
    ``j = n-k .. n-1`` draw ``t`` uniform in ``[0, j]`` and take ``t``, or ``j`` if ``t`` was
    already taken. Every k-subset comes out with probability ``1 / C(n, k)``. The work is
    ``O(B * k^2)`` with static shapes: no device sync (the class sizes stay on the device), nothing
    of size ``[B, n_c]``, and nothing that stops ``torch.compile`` from fusing it. ``u`` holds
    ``[k, B]`` uniforms, one row per step (float64, so ``t`` is exact for any queue size).

    Returns ``(offset [B, k], valid [B, k])``; ``valid`` is False past ``count_i``.
    """
    k = u.shape[0]
    steps = torch.arange(k, device=count.device)[:, None]  # [k, 1]
    top = count - k + steps  # [k, B]: Floyd's j for each step
    t = torch.minimum((u * (top + 1)).long(), top)  # [k, B], t uniform in [0, j]
    # Steps still to come hold -1, which no t matches, so each step compares with all k rows and
    # writes its own (contiguous) row in place: three launches a step when run eagerly, where
    # small sizes are bound by launches.
    drawn = t.masked_fill(steps > 0, -1)  # [k, B]
    for step in range(1, k):  # t loses to j if an earlier step already took it
        torch.where((drawn == t[step]).any(dim=0), top[step], t[step], out=drawn[step])
    slots = steps.T  # [1, k]
    offset = torch.where(count[:, None] <= k, slots, drawn.T)  # [B, k]: a class of <= k entries gives them all
    return offset, slots < count[:, None]


# Queue sizes ``K`` up to which the draw ranks each anchor's class entries with a running count
# over ``[B, K]`` instead of sorting the queue, per device type. CUDA sorts a dimension of at
# most 4096 keys in place with one thread block per row, and the queue is a single row: at
# K = 4096 that one block took 33 us on an H200, more than the loss's two matmuls (21 us), while
# the count spreads over the whole GPU. Longer queues take CUB's multi-block radix sort. On CPU
# the sort is always cheaper (10x at K = 4096).
RANK_DRAW_MAX_QUEUE: dict[str, int] = {"cpu": 0, "cuda": 4096}


def _draw(labels: torch.Tensor, queue_labels: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Queue indices ``[B, k]`` of up to ``k`` uniformly drawn same-class entries, and their validity.

    Offset ``r`` of an anchor names the ``r``-th entry of its class in queue order, found either in
    the label-sorted queue (a stable sort keeps queue order within a class) or as the first slot
    where the running count of same-class entries reaches ``r + 1``: both give the same indices.
    """
    n = queue_labels.shape[0]
    if n <= RANK_DRAW_MAX_QUEUE.get(labels.device.type, 0):
        rank = (labels[:, None] == queue_labels[None, :]).cumsum(dim=1, dtype=torch.int32)  # [B, K]
        offset, valid = _uniform_offsets(rank[:, -1].long(), u)  # rank[:, -1] = n_c
        target = (offset + 1).to(torch.int32, memory_format=torch.contiguous_format)  # [B, k], as the search wants
        return torch.searchsorted(rank, target).clamp_(max=n - 1), valid  # [B, k]
    order, start, count = _class_segments(labels, queue_labels)
    offset, valid = _uniform_offsets(count, u)
    return order[(start[:, None] + offset).clamp_(max=n - 1)], valid  # [B, k]


def draw_queue_positives(labels: torch.Tensor, queue_labels: torch.Tensor, k: int | None,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick, for every anchor, up to ``k`` queue entries of its class, uniformly without replacement.

    The queue is sorted by label once, so each class is a contiguous segment of length ``n_c``;
    Floyd's algorithm then picks a uniform random subset of ``min(k, n_c)`` slots of each
    anchor's segment (see ``_uniform_offsets``). For queues within ``RANK_DRAW_MAX_QUEUE`` a
    running count over ``[B, K]`` replaces the sort, with the same result. No Python loop over
    anchors or classes and no device sync. ``k=None`` takes every slot (FCL; the width
    ``max_c n_c`` costs one sync here, while ``KCLLoss`` itself uses a label mask for FCL). Empty
    slots (label -1) never match an anchor label (anchors are >= 0).

    Args:
        labels: anchor labels ``[B]`` (>= 0).
        queue_labels: ``[K]`` queue labels, -1 marks an empty slot.
        k: positives per anchor, or None for all same-class entries.
        generator: torch.Generator for a reproducible draw, on any device (a CPU generator gives
            the same draw on CPU and GPU).

    Returns:
        ``(index, valid)``, both ``[B, k']`` (``k' = k``, or ``max_c n_c`` for ``k=None``): queue
        indices, and which of them are real positives (``valid`` is False for padding when a
        class has fewer than ``k'`` entries; its index is a harmless in-range placeholder).
    """
    labels = labels.to(queue_labels.device)
    if queue_labels.shape[0] == 0:
        empty = torch.zeros(labels.shape[0], 0, dtype=torch.long, device=queue_labels.device)
        return empty, empty.bool()
    if k is None:
        order, start, count = _class_segments(labels, queue_labels)
        width = int(count.max())  # device sync: the output shape depends on the data
        slots = torch.arange(width, device=count.device)
        index = order[(start[:, None] + slots).clamp_(max=order.shape[0] - 1)]
        return index, slots < count[:, None]
    return _draw(labels, queue_labels, _uniforms(k, labels.shape[0], generator, labels.device))


class _KCLFunction(torch.autograd.Function):
    """Loss and hand-written gradient.

    Positives come either sparse, ``index``/``valid`` ``[B, k]`` (KCL's drawn entries), or as a
    dense ``[B, K]`` boolean mask ``same`` (FCL: every same-class entry; the mask needs no device
    sync, unlike a width-``max n_c`` index). The ``[B, K]`` logits dominate time and memory, so they
    live in a single buffer: the forward exponentiates them in place (after reading the positives)
    and keeps them for the backward. There, ``softmax @ queue = diag(1/denom) (exp_logits @ queue)``,
    and the few drawn positives are gathered rows, so the query gradient needs no ``[B, K]`` pass
    besides the matmul itself. A dense ``[B, K]`` gradient is built only for FCL, when the queue
    needs a gradient, or when gathering ``k * D`` values per anchor would cost more than a
    ``[B, K]`` pass.
    """

    @staticmethod
    def forward(ctx, query, key, queue, index, valid, same, temperature):
        b = query.shape[0]
        qt = query / temperature  # [B, D]
        l_pos = (qt * key).sum(dim=1)  # [B]
        l_neg = qt @ queue.T  # [B, D] @ [D, K] -> [B, K]
        # Positive weights: own key and each positive entry get w_own = 1 / (1 + |P_i|).
        if same is None:
            w_own = valid.sum(dim=1, dtype=query.dtype).add_(1.0).reciprocal_()  # [B]
            w_pos = w_own[:, None] * valid  # [B, k]
            pos_mean = (l_neg.gather(1, index) * w_pos).sum(dim=1).addcmul_(w_own, l_pos)  # [B]
        else:
            w_own = same.sum(dim=1, dtype=query.dtype).add_(1.0).reciprocal_()  # [B]
            w_pos = None
            pos_mean = w_own * (l_pos + (l_neg * same).sum(dim=1))  # [B]
        # Denominator: own key + whole queue, shifted by the row max for stability.
        row_max = torch.maximum(l_neg.amax(dim=1), l_pos) if l_neg.shape[1] else l_pos.detach().clone()
        e_neg = l_neg.sub_(row_max[:, None]).exp_()  # [B, K], in place: the logits are not needed again
        e_pos = (l_pos - row_max).exp()  # [B]
        denom = e_neg.sum(dim=1) + e_pos  # [B]
        loss = (denom.log() + row_max - pos_mean).mean()
        ctx.save_for_backward(qt, key, queue, e_neg, e_pos, denom, index, w_pos, w_own, same)
        ctx.temperature = temperature
        ctx.batch = b
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qt, key, queue, e_neg, e_pos, denom, index, w_pos, w_own, same = ctx.saved_tensors
        scale = grad_out / ctx.batch
        inv_denom = denom.reciprocal()  # [B]
        # dL_i/dlogit = softmax over {own key, queue} - positive weight (scale applied on [., D]).
        g_pos = e_pos * inv_denom - w_own  # [B], own-key column
        g_neg = None
        if same is not None:
            g_neg = e_neg * inv_denom[:, None] - same * w_own[:, None]  # [B, K]
        elif ctx.needs_input_grad[2] or index.shape[1] * queue.shape[1] > queue.shape[0]:
            g_neg = e_neg * inv_denom[:, None]  # [B, K]
            g_neg.scatter_add_(1, index, -w_pos)
        grad_q = grad_k = grad_queue = None
        if ctx.needs_input_grad[0]:
            if g_neg is not None:
                grad_q = torch.addmm(g_pos[:, None] * key, g_neg, queue)  # [B, K] @ [K, D] -> [B, D]
            else:
                grad_q = torch.mm(e_neg, queue).mul_(inv_denom[:, None])  # [B, K] @ [K, D] -> [B, D]
                grad_q.addcmul_(g_pos[:, None], key)
                # - sum_k w_ik z_{index_ik}: [B, 1, k] @ [B, k, D] -> [B, 1, D]
                grad_q.sub_(torch.bmm(w_pos[:, None, :], queue[index]).squeeze(1))
            grad_q.mul_(scale / ctx.temperature)
        if ctx.needs_input_grad[1]:
            grad_k = (g_pos[:, None] * qt).mul_(scale)  # [B, D]
        if ctx.needs_input_grad[2]:
            grad_queue = (g_neg.T @ qt).mul_(scale)  # [K, B] @ [B, D] -> [K, D]
        return grad_q, grad_k, grad_queue, None, None, None, None


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

    The draw uses ``generator`` when given (any device; a CPU generator gives the same draw on
    CPU and GPU), so the same seed reproduces the same positives; the authors' code instead takes
    a fixed subset (top-k over the label mask). Inputs are assumed L2-normalised (not normalised
    here). The loss is computed in float32 at least (half-precision inputs are upcast, autocast is
    off inside). The queue and keys normally carry no gradient; if they require grad they get the
    exact gradient too.

    Args:
        k: positives drawn from the queue per anchor (6 in the paper), >= 1, or None for FCL.
        temperature: ``tau`` > 0 (0.07 in the paper).
        validate_labels: check that labels are >= 0 and queue labels >= -1 (one device sync per
            call, so a bad label is named in the error). Without it the loss runs without any
            host-device sync; pass False where the data pipeline guarantees the range (the
            trainer's datasets check labels when they load).

    Shape:
        - query: ``[B, D]``
        - key: ``[B, D]``
        - labels: ``[B]`` integers >= 0
        - queue: ``[K, D]``
        - queue_labels: ``[K]`` integers >= -1 (-1 = empty slot)
        - output: scalar
    """

    def __init__(self, k: int | None = 6, temperature: float = 0.07, validate_labels: bool = True) -> None:
        super().__init__()
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int):
                raise TypeError(f"KCLLoss: k must be an int or None (FCL), got {k!r}")
            if k < 1:
                raise ValueError(f"KCLLoss: k must be >= 1 (or None for FCL), got {k}")
        self.k = k
        self.temperature = check_temperature(temperature, "KCLLoss")
        self.validate_labels = bool(validate_labels)

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
        check_labels(labels, query.shape[0], owner, check_range=False)
        check_labels(queue_labels, queue.shape[0], owner, name="queue_labels", check_range=False)
        labels, queue_labels = labels.to(query.device), queue_labels.to(query.device)
        if query.shape[0] == 0:
            raise ValueError(f"{owner}: empty batch (query has 0 rows)")
        if self.validate_labels:
            # One device sync for both ranges: a bad label is named here rather than silently
            # matching empty slots (-1) or nothing.
            stats = [*torch.aminmax(labels)] + ([*torch.aminmax(queue_labels)] if queue_labels.numel() else [])
            lo, hi, *queue_range = torch.stack([t.long() for t in stats]).tolist()
            check_label_range(lo, hi, owner, "labels")
            if queue_range:
                check_label_range(*queue_range, owner, "queue_labels", min_value=-1)
        index = valid = same = None
        if self.k is None and (query.device.type != "cpu" or torch.compiler.is_compiling()):
            same = labels[:, None] == queue_labels[None, :]  # [B, K] FCL positives; -1 never matches
        elif self.k is None:  # eager CPU: a sync is free and gathering [B, max n_c] beats [B, K] passes
            index, valid = draw_queue_positives(labels, queue_labels, None)
        elif queue.shape[0] == 0:
            index = torch.zeros(query.shape[0], 0, dtype=torch.long, device=query.device)
            valid = index.bool()
        else:
            index, valid = _draw(labels, queue_labels, _uniforms(self.k, query.shape[0], generator, query.device))
        dtype = compute_dtype(query, key, queue)
        with torch.autocast(query.device.type, enabled=False):
            return _KCLFunction.apply(query.to(dtype), key.to(dtype), queue.to(dtype), index, valid, same,
                                      self.temperature)

    def extra_repr(self) -> str:
        return f"k={self.k}, temperature={self.temperature}, validate_labels={self.validate_labels}"
