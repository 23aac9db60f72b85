"""Losses for long-tailed representation learning (torch only).

- ``LogitAdjustedLoss``: logit-adjusted cross-entropy (Menon et al., ICLR 2021); ``tau=0`` is CE.
- ``SupConLoss``: supervised contrastive loss (Khosla et al., 2020); SimCLR without labels.
- ``KCLLoss``: k-positive contrastive loss with a MoCo queue (Kang et al., ICLR 2021); FCL with
  ``k=None``.
- ``BCLLoss``: balanced contrastive loss with class prototypes (Zhu et al., CVPR 2022).
- ``LabelQueue``, ``momentum_update``: MoCo queue with labels and key-encoder EMA (``moco``).
"""
from .bcl import BCLLoss
from .kcl import KCLLoss
from .logit_adjust import LogitAdjustedLoss
from .moco import LabelQueue, momentum_update
from .supcon import SupConLoss

__all__ = ["BCLLoss", "KCLLoss", "LabelQueue", "LogitAdjustedLoss", "SupConLoss", "momentum_update"]
