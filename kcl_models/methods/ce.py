"""CE and logit-adjusted CE (LA; Menon et al., ICLR 2021): one classifier view, no second stage.

``la``: ``CE(logits + tau * log(pi), y)`` at train time, raw logits at test time; ``ce`` is the
same with ``tau = 0``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kcl_models.losses import LogitAdjustedLoss

from .base import LossOutput, Method, check_range, option
from .registry import register_method


@register_method
class CE(Method):
    """Plain softmax cross-entropy on the timm model's logits."""

    name = "ce"
    views = ("classifier",)
    part = "ce"

    def tau(self) -> float:
        return 0.0

    def build(self, backbone: nn.Module) -> nn.Module:
        # labels were range-checked on the host (class counts), so the loss skips its per-call sync
        self.criterion = self.ctx.compile(LogitAdjustedLoss(self.ctx.class_counts, tau=self.tau(),
                                                            validate_labels=False).to(self.ctx.device))
        return backbone

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        images, labels = batch
        loss = self.criterion(model(images).float(), labels)
        return LossOutput(loss, {self.part: loss}, labels.shape[0])


@register_method
class LA(CE):
    """Logit-adjusted cross-entropy: the class prior is added to the logits while training."""

    name = "la"
    part = "la_ce"

    @dataclass
    class Options:
        la_tau: float = option(1.0, "logit adjustment strength tau (0 is plain CE)")

        def __post_init__(self) -> None:
            check_range("la_tau", self.la_tau, 0.0)

    def tau(self) -> float:
        return self.opts.la_tau
