"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), and SimCLR's loss without labels."""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_labels, check_temperature, check_tensor, compute_dtype

__all__ = ["SupConLoss"]


class _SupConFunction(torch.autograd.Function):
    """Loss and hand-written gradient over the ``[N, N]`` logits: one buffer, exponentiated in
    place and kept for the backward (``dL_i/dx_ij = softmax_ij - [j in P(i)]/|P(i)|``)."""

    @staticmethod
    def forward(ctx, z, y, temperature):
        same = (y[:, None] == y[None, :]).to(z.dtype)  # [N, N]
        same.fill_diagonal_(0.0)  # P(i): same label, not i itself
        num_pos = same.sum(dim=1)  # [N]
        x = (z / temperature) @ z.T  # [N, D] @ [D, N] -> [N, N]
        pos_sum = (x * same).sum(dim=1)  # [N]
        x.fill_diagonal_(float("-inf"))  # A(i): all but i
        row_max = x.amax(dim=1)  # [N], finite: N >= 2
        e = x.sub_(row_max[:, None]).exp_()  # in place
        denom = e.sum(dim=1)
        # Anchors without positives get weight 0 (not 0/0); the rest share the mean.
        valid = (num_pos > 0).to(z.dtype)
        weight = valid / valid.sum().clamp(min=1.0)  # [N]
        per_anchor = denom.log() + row_max - pos_sum / num_pos.clamp(min=1.0)
        ctx.save_for_backward(z, e, denom, same, num_pos, weight)
        ctx.temperature = temperature
        return (per_anchor * weight).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        z, e, denom, same, num_pos, weight = ctx.saved_tensors
        g = e * (weight / denom)[:, None]  # [N, N]
        g.addcmul_(same, (weight / num_pos.clamp(min=1.0))[:, None], value=-1.0)
        # z is both anchor and column: (G + G^T) @ z
        grad_z = ((g + g.T) @ z).mul_(grad_out / ctx.temperature)  # [N, N] @ [N, D] -> [N, D]
        return grad_z, None, None


class SupConLoss(nn.Module):
    """SupCon, Khosla et al. (NeurIPS 2020), Eq. 2 (``L^sup_out``); SimCLR / CL when ``labels`` is None.

    The ``B * V`` views are both anchors and contrast columns. For anchor ``i``, ``A(i)`` is every
    other view and ``P(i)`` every other view with the same label (with ``labels=None`` each image is
    its own class, so ``P(i)`` is the other views of the same image):

        ``L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) )``

    and the loss is the mean of ``L_i`` over anchors. An anchor without positives (a single view
    of a class that appears once in the batch) contributes 0 and is left out of the mean; if no
    anchor has a positive the loss is an exact 0 that still carries a graph (never NaN).

    Features are assumed L2-normalised (they are not normalised here). The loss is computed in
    float32 at least (half-precision inputs are upcast, autocast is off inside). For a batch
    spread over processes, pass the gathered features
    (``kcl_models.train.distributed.all_gather_with_grad``).

    Args:
        temperature: ``tau`` > 0 (0.07 in SupCon and KCL, 0.1 in BCL's CIFAR recipe).

    Shape:
        - features: ``[B, V, D]`` (V >= 1 views per image)
        - labels: ``[B]`` integers, or None
        - output: scalar
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature, "SupConLoss")

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor(features, "features", 3, "SupConLoss", "[B, V, D]")
        b, v, _ = features.shape
        if labels is None:
            labels = torch.arange(b, device=features.device)  # every image its own class
        else:
            check_labels(labels, b, "SupConLoss", min_value=None)  # any integer ids
            labels = labels.to(features.device)
        n = b * v
        if n < 2:  # no other view at all: no positive, no denominator
            return features.sum() * 0.0
        dtype = compute_dtype(features)
        z = features.reshape(n, -1).to(dtype)  # [N, D], row b*V + v: image b, view v
        y = labels.repeat_interleave(v)  # [N]
        with torch.autocast(features.device.type, enabled=False):
            return _SupConFunction.apply(z, y, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
