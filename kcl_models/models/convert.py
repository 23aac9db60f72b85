"""State-dict filters for loading weights into the registered models (timm's
``pretrained_filter_fn``). The full conversion of the authors' checkpoints lives in
``kcl_models.hub`` and builds on these."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def unwrap_checkpoint(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """Return the state dict inside a training checkpoint (``state_dict``/``model`` entries)."""
    for key in ("state_dict", "model", "model_state_dict"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    return dict(checkpoint)


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module) -> dict[str, torch.Tensor]:
    """Accept timm-format weights as they are; strip a DDP ``module.`` prefix; store a cosine
    classifier weight saved as ``[D, C]`` (the authors' ``NormedLinear``) as ``[C, D]``."""
    state_dict = unwrap_checkpoint(state_dict)
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    fc_weight = out.get("fc.weight")
    fc = getattr(model, "fc", None)
    if fc_weight is not None and isinstance(getattr(fc, "weight", None), torch.Tensor):
        target = fc.weight.shape
        if fc_weight.shape != target and fc_weight.t().shape == target:
            out["fc.weight"] = fc_weight.t().contiguous()
    return out
