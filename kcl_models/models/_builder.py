"""Shared pieces of the registry: paper ids and a builder wrapper around timm's
``build_model_with_cfg`` that (1) refuses ``pretrained=True`` on a planned variant with its recipe,
(2) fails fast when Hub weights cannot be had, (3) checks weights before they are loaded (finite,
classifier size as declared) and (4) turns unreadable weights into one clear error."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from timm.models import build_model_with_cfg
from torch import nn

from ._validate import (
    WEIGHT_FILES,
    InvalidWeightsError,
    _source_of,
    check_classifier_matches,
    check_finite,
    check_weights_file,
)
from ._zoo import HUB_ORG, PretrainedWeightsUnavailable, ensure_hub_weights, hub_id, planned_message

__all__ = ["HUB_ORG", "STANDARD_ARCHITECTURES", "PretrainedWeightsUnavailable", "hub_id",
           "build_with_clear_errors", "pretrained_filter_fn"]

KCL_PAPER = "https://openreview.net/forum?id=OqtLIabPTit"  # Kang et al., ICLR 2021
BCL_PAPER = "arxiv:2207.09052"   # Zhu et al., Balanced Contrastive Learning (CVPR 2022)
KCL_PAPER_NAME = "Exploring Balanced Feature Spaces for Representation Learning"
BCL_PAPER_NAME = "Balanced Contrastive Learning for Long-Tailed Visual Recognition"
PACO_PAPER = "arxiv:2107.12028"  # Cui et al., Parametric Contrastive Learning (ICCV 2021)
GPACO_PAPER = "arxiv:2209.12400"  # Cui et al., Generalized Parametric Contrastive Learning (TPAMI 2023)
PROCO_PAPER = "arxiv:2403.06726"  # Du et al., Probabilistic Contrastive Learning (TPAMI 2024)
PACO_PAPER_NAME = "Parametric Contrastive Learning"
GPACO_PAPER_NAME = "Generalized Parametric Contrastive Learning"
PROCO_PAPER_NAME = "Probabilistic Contrastive Learning for Long-Tailed Visual Recognition"

# Registered names whose weights fit a plain timm architecture (same modules, same keys), so a
# Hub folder of them can name that architecture and load without importing kcl_models.
STANDARD_ARCHITECTURES = {
    "resnet50_kcl": "resnet50",
    "resnet50_paco": "resnet50", "resnext50_32x4d_paco": "resnext50_32x4d",
    "resnet50_gpaco": "resnet50", "resnext50_32x4d_gpaco": "resnext50_32x4d",
}


def _is_fetch_error(err: BaseException) -> bool:
    """True for errors that mean 'the weights could not be fetched', not a bug in our code."""
    mod = type(err).__module__
    if mod.startswith(("huggingface_hub", "httpx", "requests", "urllib3")):
        return True
    return isinstance(err, (OSError, ConnectionError, TimeoutError))


def pretrained_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """timm ``pretrained_filter_fn`` of every registered architecture: the key mapping of
    :func:`kcl_models.models.convert.checkpoint_filter_fn`, then refuse non-finite tensors and a
    classifier whose size is not the one the pretrained_cfg (a folder's config.json) declares."""
    from .convert import checkpoint_filter_fn
    state = checkpoint_filter_fn(state_dict, model)
    check_finite(state, _source_of(model)[0])
    check_classifier_matches(state, model)
    return state


def _weights_file(cfg: Any) -> Path | None:
    """The local weights file a pretrained_cfg points at (``file=`` or a local-dir folder)."""
    file = getattr(cfg, "file", None)
    if not file:
        return None
    path = Path(file)
    if path.is_dir():
        return next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    return path


def build_with_clear_errors(model_cls: type, variant: str, pretrained: bool, **kwargs: Any):
    """``timm.models.build_model_with_cfg`` with the checks above and readable errors."""
    import contextlib

    from timm.models._builder import resolve_pretrained_cfg
    cfg = None
    guard: Any = contextlib.nullcontext()
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                     pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"))
        name = f"{variant}.{cfg.tag}" if cfg.tag else variant
        if not (cfg.file or cfg.state_dict is not None or cfg.hf_hub_id or cfg.url):
            raise PretrainedWeightsUnavailable(planned_message(name))
        if cfg.hf_hub_id and (cfg.source == "hf-hub" or not (cfg.file or cfg.state_dict is not None)):
            filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
            guard = ensure_hub_weights(cfg.hf_hub_id, filenames)
    try:
        with guard:
            return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    except (InvalidWeightsError, PretrainedWeightsUnavailable):
        raise
    except Exception as err:  # noqa: BLE001 - narrowed below
        if not pretrained:
            raise
        local = _weights_file(cfg)
        if local is not None and local.is_file():
            check_weights_file(local)  # a truncated file is named instead of a bare SafetensorError
        if not _is_fetch_error(err):
            raise
        name = f"{variant}.{cfg.tag}" if cfg.tag else variant
        where = local or cfg.hf_hub_id or hub_id(name)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PretrainedWeightsUnavailable(
            f"pretrained weights for '{name}' could not be read from {where} ({type(err).__name__}: {reason}). "
            f"Online: `hf download {cfg.hf_hub_id or hub_id(name)}` fills the cache; offline "
            f"(HF_HUB_OFFLINE=1) the repo must already be in the HF cache; or pass pretrained=False"
        ) from None
