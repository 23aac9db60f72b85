"""Shared pieces of the registry: Hub organisation, cfg helper, and a builder wrapper that turns
unreachable weights into one clear error instead of a stack of Hub/HTTP exceptions."""
from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg

HUB_ORG = "kcl-models"

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


class PretrainedWeightsUnavailable(RuntimeError):
    """Raised when ``pretrained=True`` cannot find the variant's weights (cache or Hub)."""


def hub_id(variant: str) -> str:
    """Hub repo of a registered ``arch.tag`` variant: ``kcl-models/<arch>.<tag>``."""
    return f"{HUB_ORG}/{variant}"


def _is_fetch_error(err: BaseException) -> bool:
    """True for errors that mean 'the weights could not be fetched', not a bug in our code."""
    mod = type(err).__module__
    if mod.startswith(("huggingface_hub", "httpx", "requests", "urllib3")):
        return True
    return isinstance(err, (OSError, ConnectionError, TimeoutError))


def build_with_clear_errors(model_cls: type, variant: str, pretrained: bool, **kwargs: Any):
    """``timm.models.build_model_with_cfg`` with a readable error when weights are unreachable."""
    try:
        return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    except Exception as err:  # noqa: BLE001 - narrowed by _is_fetch_error below
        if not (pretrained and _is_fetch_error(err)):
            raise
        from timm.models._builder import resolve_pretrained_cfg
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"))
        name = f"{variant}.{cfg.tag}" if cfg.tag else variant
        repo = cfg.hf_hub_id or hub_id(name)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PretrainedWeightsUnavailable(
            f"pretrained weights for '{name}' are not available: Hub repo '{repo}' could not be "
            f"read ({type(err).__name__}: {reason}).\n"
            f"  - online: `hf download {repo}` fills the cache, then retry;\n"
            f"  - offline (HF_HUB_OFFLINE=1): the repo must already be in the HF cache;\n"
            f"  - from the authors' checkpoint: `python hub/convert.py --help` writes a folder that "
            f"loads with timm.create_model('local-dir:<folder>');\n"
            f"  - or pass pretrained=False to start from random weights."
        ) from None
