"""Losses for long-tailed representation learning (torch only).

- ``LogitAdjustedLoss``: logit-adjusted cross-entropy (Menon et al., ICLR 2021); ``tau=0`` is CE.
- ``SupConLoss``: supervised contrastive loss (Khosla et al., 2020); SimCLR without labels.
- ``KCLLoss``: k-positive contrastive loss with a MoCo queue (Kang et al., ICLR 2021); FCL with
  ``k=None``.
- ``BCLLoss``: balanced contrastive loss with class prototypes (Zhu et al., CVPR 2022).
- ``PaCoLoss``: parametric contrastive loss (Cui et al., ICCV 2021), also GPaCo's (TPAMI 2023).
- ``ProCoLoss``: probabilistic contrastive loss with per-class vMF estimators (Du et al., TPAMI
  2024); its pieces ``proco_logits``, ``vmf_kappa`` and ``log_bessel_iv``.
- ``LabelQueue``, ``momentum_update``: MoCo queue with labels and key-encoder EMA (``moco``).
"""
from ._bessel import log_bessel_iv
from .bcl import BCLLoss
from .kcl import KCLLoss
from .logit_adjust import LogitAdjustedLoss
from .moco import LabelQueue, momentum_update
from .paco import PaCoLoss
from .proco import ProCoLoss, proco_logits, vmf_kappa
from .supcon import SupConLoss

__all__ = ["BCLLoss", "KCLLoss", "LabelQueue", "LogitAdjustedLoss", "PaCoLoss", "ProCoLoss", "SupConLoss",
           "log_bessel_iv", "momentum_update", "proco_logits", "vmf_kappa"]
