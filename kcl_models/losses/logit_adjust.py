"""Logit-adjusted cross-entropy (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021).

BCL (Zhu et al., CVPR 2022) trains its cosine classifier with this loss, ``tau = 1``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_labels, check_tensor

__all__ = ["LogitAdjustedLoss"]


class LogitAdjustedLoss(nn.Module):
    """Logit-adjusted softmax cross-entropy, Menon et al. (ICLR 2021), Eq. 10 ("logit adjusted loss").

    ``loss = CE(logits + tau * log(pi), y)`` with the class prior ``pi_c = n_c / sum_c' n_c'``,
    averaged over the batch. Applied at train time only: predict with the raw logits.
    ``tau = 0`` is plain cross-entropy.

    Zero-count classes: ``log(0) = -inf`` would make a class unlearnable (and the loss infinite if
    it ever appears), which almost always means the counts and the label space disagree. With
    ``tau > 0`` the constructor therefore raises, naming the classes; clamp the counts yourself
    (``[max(n, 1) for n in counts]``) if a class is really absent from training. With ``tau = 0``
    the counts are unused and zeros are accepted.

    Args:
        class_counts: training images per class, length ``C``, all > 0.
        tau: adjustment strength, >= 0 (1.0 in BCL and in Menon et al.).
        validate_labels: check that labels lie in ``[0, C)`` (one device sync per call, so a bad
            label is named in the error); False leaves the check to ``cross_entropy`` (a
            device-side assert on GPU) and runs without a sync.

    Shape:
        - logits: ``[B, C]``
        - labels: ``[B]`` integers in ``[0, C)``
        - output: scalar
    """

    adjustment: torch.Tensor

    def __init__(self, class_counts: Sequence[int] | torch.Tensor, tau: float = 1.0,
                 validate_labels: bool = True) -> None:
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        if counts.dim() != 1 or counts.numel() == 0:
            raise ValueError(f"LogitAdjustedLoss: class_counts must be a non-empty 1-d sequence, "
                             f"got shape {tuple(counts.shape)}")
        if not torch.isfinite(counts).all() or (counts < 0).any():
            bad = torch.nonzero(~torch.isfinite(counts) | (counts < 0)).flatten().tolist()
            raise ValueError(f"LogitAdjustedLoss: class_counts must be finite and >= 0, "
                             f"bad classes {bad[:10]}")
        tau = float(tau)
        if not math.isfinite(tau) or tau < 0:
            raise ValueError(f"LogitAdjustedLoss: tau must be finite and >= 0, got {tau}")
        zero = torch.nonzero(counts == 0).flatten().tolist()
        if zero and tau > 0:
            raise ValueError(
                f"LogitAdjustedLoss: {len(zero)} class(es) have zero training count (log prior -inf), "
                f"e.g. classes {zero[:10]}; check num_classes, or clamp the counts to >= 1 on purpose")
        self.tau = tau
        self.validate_labels = bool(validate_labels)
        self.num_classes = int(counts.numel())
        # tau * log(pi), precomputed; exactly 0 for tau = 0 (plain CE, zero counts allowed).
        # Non-persistent: derived from the counts, so it never lands in a checkpoint.
        adjust = tau * (counts / counts.sum()).log() if tau > 0 else torch.zeros_like(counts)
        self.register_buffer("adjustment", adjust.float(), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_tensor(logits, "logits", 2, "LogitAdjustedLoss", "[B, C]")
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"LogitAdjustedLoss: logits have {logits.shape[1]} classes but "
                             f"class_counts has {self.num_classes}")
        check_labels(labels, logits.shape[0], "LogitAdjustedLoss", num_classes=self.num_classes,
                     check_range=self.validate_labels)
        adjust = self.adjustment.to(device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(logits + adjust, labels)  # [B, C] + [C]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}"
