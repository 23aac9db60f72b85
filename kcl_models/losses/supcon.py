"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), and SimCLR's loss without labels."""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_labels, check_temperature, check_tensor

__all__ = ["SupConLoss"]


class SupConLoss(nn.Module):
    """SupCon, Khosla et al. (NeurIPS 2020), Eq. 2 (``L^sup_out``); SimCLR / CL when ``labels`` is None.

    The ``B * V`` views are both anchors and contrast columns. For anchor ``i``, ``A(i)`` is every
    other view and ``P(i)`` every other view with the same label (with ``labels=None`` each image is
    its own class, so ``P(i)`` is the other views of the same image):

        ``L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) )``

    and the loss is the mean of ``L_i`` over anchors. An anchor without positives (a single view
    of a class that appears once in the batch) contributes 0 and is left out of the mean; if no
    anchor has a positive the loss is an exact 0 that still carries a graph (never NaN).

    Features are assumed L2-normalised (they are not normalised here). For a batch spread over
    processes, pass the gathered features (``kcl_models.train.distributed.all_gather_with_grad``).

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
        z = features.reshape(n, -1)  # [N, D], row b*V + v: image b, view v
        y = labels.repeat_interleave(v)  # [N]

        logits = (z / self.temperature) @ z.T  # [N, D] @ [D, N] -> [N, N]
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        # Denominator over A(i) = all but i; logsumexp subtracts the row max (stable).
        log_denom = logits.masked_fill(self_mask, float("-inf")).logsumexp(dim=1)  # [N]

        pos = (y[:, None] == y[None, :]) & ~self_mask  # [N, N]
        num_pos = pos.sum(dim=1)  # [N]
        pos_logit_sum = (logits * pos).sum(dim=1)  # [N]
        valid = num_pos > 0
        # -1/|P| sum_p (s_ip - log_denom_i); anchors with no positive get weight 0, not 0/0.
        per_anchor = log_denom - pos_logit_sum / num_pos.clamp(min=1)
        return torch.where(valid, per_anchor, 0.0).sum() / valid.sum().clamp(min=1)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
