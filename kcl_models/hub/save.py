"""``save_for_hub``: a Hub-ready folder for a trained or converted model, written atomically.

The folder holds ``model.safetensors`` (backbone + classifier only), timm's ``config.json`` (with
a ``kcl_models`` provenance block that timm ignores), the model card, ``results.json`` and
``per_class.png``. For an architecture whose backbone timm has under its own name (the BCL
ResNet-50 / ResNeXt-50), ``timm/`` holds a plain-timm export of the same weights, published as
the repo's ``timm`` branch, so ``timm.create_model('hf-hub:<repo>@timm', pretrained=True,
num_classes=N)`` works without kcl-models.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..eval.report import file_sha256, load_results, software_versions
from ..models import STANDARD_ARCHITECTURES, CosineClassifier, hub_id
from ..models.convert import check_state_dict
from ..utils.io import atomic_folder
from ..utils.tensors import check_finite
from ._meta import (
    OWN_FILES,
    TIMM_EXPORT,
    jsonable,
    load_train_config,
    method_of,
    needs_timm_export,
    public_config,
    registered_cfg,
    timm_backbone,
    variant_of,
)
from .card import check_results_fit, write_model_card

__all__ = ["save_for_hub", "timm_export_model"]


def _check_exportable(model: nn.Module, arch: str) -> None:
    """The folder must load into the registered architecture (and the plain timm one, if any)."""
    names = [arch] + ([STANDARD_ARCHITECTURES[arch]] if arch in STANDARD_ARCHITECTURES else [])
    for name in names:
        with torch.device("meta"):  # shapes only: no memory, no init cost
            ref = timm.create_model(name, pretrained=False, num_classes=model.num_classes)
        check_state_dict(dict(model.state_dict()), ref, what=f"model to export as '{name}'")
        fc, ref_fc = model.get_classifier(), ref.get_classifier()
        if isinstance(fc, CosineClassifier) and isinstance(ref_fc, CosineClassifier) and fc.scale != ref_fc.scale:
            raise ValueError(f"cosine classifier scale {fc.scale} differs from '{name}''s {ref_fc.scale}; "
                             f"timm.create_model('{name}', pretrained=True) would compute different logits")


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"output path exists and is not a folder: {out}")
    present = sorted(p.name for p in out.iterdir())
    foreign = [p for p in present if p not in OWN_FILES]
    if foreign:
        raise ValueError(f"output folder {out} holds files `kcl-hub save` does not write ({', '.join(foreign)}); "
                         f"they would be uploaded too: use an empty folder")
    if present and not overwrite:
        raise FileExistsError(f"output folder {out} already holds an export ({', '.join(present)}); "
                              f"pass --overwrite (overwrite=True) to replace it")


def timm_export_model(model: nn.Module, arch: str) -> nn.Module:
    """``model`` as timm's own architecture (``resnet50_bcl`` -> ``resnet50``): the backbone tensors
    unchanged; a cosine classifier becomes a linear ``fc`` with unit-norm rows and zero bias, whose
    logits are the cosine logits times ``||h|| / scale`` (the same ranking for every image)."""
    base = timm_backbone(arch)
    if base is None:
        raise ValueError(f"timm has no architecture with the backbone of '{arch}'")
    plain = timm.create_model(base, pretrained=False, num_classes=model.num_classes)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fc = model.get_classifier()
    if isinstance(fc, CosineClassifier):
        w = state.pop("fc.weight")
        state["fc.weight"] = F.normalize(w.float(), dim=1).to(w.dtype)  # cos(h, w) = <h/|h|, w/|w|>
        state["fc.bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
    plain.load_state_dict(check_state_dict(state, plain, what=f"plain-timm export of '{arch}'"), strict=True)
    plain.pretrained_cfg = {**copy.deepcopy(dict(model.pretrained_cfg)), "architecture": base}
    return plain.eval()


def save_for_hub(model: nn.Module, results_json: str | Path | Mapping | None, out_dir: str | Path,
                 train_config: str | Path | Mapping | None = None,
                 source_checkpoint: str | Path | Mapping | None = None, *, variant: str | None = None,
                 repo_id: str | None = None, license: str | None = None,
                 class_names: Sequence[str] | None = None, overwrite: bool = False, force: bool = False) -> Path:
    """Write a Hub-ready folder for ``model`` (complete or not at all).

    Args:
        model: a timm model of a registered architecture (backbone + classifier; a training wrapper
            is refused because its keys would not load). Non-finite parameters or buffers are refused.
        results_json: results JSON path or dict (schema ``kcl-models/results/v1``), or ``None`` for a
            card that says the weights are not evaluated yet (e.g. right after conversion).
        out_dir: folder to write; must be absent, empty or hold only files this function writes.
        train_config: training config (dict, YAML or JSON path); defaults to ``results['config']``.
        source_checkpoint: path of the file the weights came from (its sha256 is recorded) or a
            provenance dict (as ``convert_checkpoint`` passes).
        variant: ``arch.tag`` name; default from ``model.pretrained_cfg``.
        repo_id: Hub repo the card names; default ``kcl-models/<variant>``.
        license: weights license; default the source's, then the registry cfg's.
        class_names: label names for ``config.json`` when ``results_json`` has none.
        overwrite: replace an earlier export in ``out_dir``.
        force: accept results whose architecture or weights sha256 differ (the card says so).

    Returns:
        ``out_dir`` as a Path.
    """
    from timm.models import save_for_hf

    out = Path(out_dir)
    results = load_results(results_json, where="results") if results_json is not None else None
    arch, variant = variant_of(model, variant)
    num_classes = int(getattr(model, "num_classes", 0))
    check_finite(model, f"model to export as '{variant}'")
    if results is not None:
        check_results_fit(results, num_classes, "results")
    _check_exportable(model, arch)
    cfg_train = load_train_config(train_config) or dict((results or {}).get("config") or {})

    if isinstance(source_checkpoint, Mapping):
        source = dict(source_checkpoint)
    elif source_checkpoint is not None:
        src = Path(source_checkpoint)
        if not src.is_file():
            raise FileNotFoundError(f"source checkpoint not found: {src}")
        source = {"kind": "checkpoint", "file": src.name, "sha256": file_sha256(src)}
    else:
        source = {"kind": "trained" if cfg_train else "unknown"}
    _check_out_dir(out, overwrite)

    labels = None
    if results is not None and len(results["data"]["class_names"]) == num_classes and num_classes:
        labels = [str(c) for c in results["data"]["class_names"]]
    elif class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for num_classes={num_classes}")
        labels = [str(c) for c in class_names]

    reg = registered_cfg(variant)
    license = license or source.get("license") or reg.get("license") or "apache-2.0"
    tag = variant.split(".", 1)[1] if "." in variant else None
    # the registry's notes describe the variant; keep them as written there
    notes = reg.get("notes") if tag else None
    pretrained_overrides: dict[str, Any] = {"architecture": STANDARD_ARCHITECTURES.get(arch, arch), "license": license}
    if notes or (getattr(model, "pretrained_cfg", None) or {}).get("notes"):
        pretrained_overrides["notes"] = notes or model.pretrained_cfg["notes"]
    if tag:
        pretrained_overrides["tag"] = tag
    provenance = {
        "variant": variant, "architecture": arch, "method": method_of(arch, cfg_train, source), "license": license,
        "repo_id": repo_id or hub_id(variant), "source": jsonable(source),
        "train_config": public_config(jsonable(cfg_train)), "software": software_versions(),
    }
    model_config: dict[str, Any] = {"pretrained_cfg": pretrained_overrides, "kcl_models": provenance}
    if labels:
        model_config["label_names"] = labels
    fc = model.get_classifier() if hasattr(model, "get_classifier") else None
    model_args = {"cls_scale": float(fc.scale)} if isinstance(fc, CosineClassifier) else None

    was_training = model.training
    model.eval()
    try:
        with atomic_folder(out, overwrite=True) as staging:  # _check_out_dir guarded the old export
            save_for_hf(model, staging, model_config=model_config, model_args=model_args, safe_serialization=True)
            if needs_timm_export(arch):
                plain = timm_export_model(model, arch)
                export_config = {"pretrained_cfg": {**pretrained_overrides, "architecture": timm_backbone(arch)},
                                 "kcl_models": {"variant": variant, "export_of": provenance["repo_id"],
                                                "architecture": arch, "license": license}}
                if labels:
                    export_config["label_names"] = labels
                save_for_hf(plain, staging / TIMM_EXPORT, model_config=export_config, safe_serialization=True)
            write_model_card(staging, results, repo_id=provenance["repo_id"], force=force)
    finally:
        model.train(was_training)
    return out
