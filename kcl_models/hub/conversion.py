"""``convert_checkpoint``: the authors' KCL / BCL checkpoint (or any state dict of their layouts)
into a Hub-ready folder. The key mapping and the strict checks are
:mod:`kcl_models.models.convert`'s; this module adds provenance: the file name and sha256, and
the claim "the authors' release" only when that sha256 is recorded in ``hub/manifest.yaml``."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..eval.report import file_sha256
from ..models.convert import ConvertedCheckpoint, build_converted_model, convert_state_dict, load_checkpoint_file
from ..utils.tensors import check_finite
from ._meta import PAPERS, summarize_keys
from .manifest import authors_release_for
from .save import save_for_hub

__all__ = ["convert_checkpoint"]


def _best_acc(raw: Mapping) -> float | str | None:
    best = raw.get("best_acc1")
    if isinstance(best, torch.Tensor) and best.numel() == 1:
        return float(best)
    if best is None or isinstance(best, (int, float)):
        return best
    try:
        return float(best)
    except (TypeError, ValueError):
        return str(best)


def convert_checkpoint(checkpoint: str | Path, arch: str, out_dir: str | Path, layout: str = "auto",
                       num_classes: int | None = None, class_names: Sequence[str] | None = None,
                       source_url: str | None = None, results_json: str | Path | Mapping | None = None,
                       repo_id: str | None = None, overwrite: bool = False, license: str | None = None,
                       manifest: str | Path | Mapping | None = None,
                       force: bool = False) -> tuple[Path, ConvertedCheckpoint]:
    """Convert a checkpoint of the authors' layouts into a Hub-ready timm folder.

    Args:
        checkpoint: ``.pth``/``.pth.tar`` (read with ``weights_only=True``) or ``.safetensors``.
        arch: registered architecture, optionally with a tag (``resnext50_32x4d_bcl.imagenet_lt``).
        out_dir: output folder (see ``save_for_hub``).
        layout: ``'auto'`` or one of ``kcl_models.models.convert.LAYOUTS`` (``'kcl-stage1'``,
            ``'kcl-stage2'``, ``'bcl'``, ``'paco'``, ``'gpaco'``, ``'proco'``).
        num_classes: expected classifier size; default what the checkpoint holds (0 for KCL stage 1).
        class_names: label names for ``config.json``.
        source_url: where the checkpoint was downloaded from (recorded in the card).
        results_json: evaluation results, if already measured.
        repo_id: Hub repo for the card.
        overwrite: replace an earlier export.
        license: weights license; default the paper code's license for a recorded authors' release,
            ``other`` (unknown) for any other file.
        manifest: ``hub/manifest.yaml`` whose ``authors_release.sha256`` entries identify the
            authors' files (default: the checkout's, if present).
        force: accept results measured on other weights (see ``save_for_hub``).

    Returns:
        ``(out_dir, ConvertedCheckpoint)``.

    Raises:
        CheckpointLoadError: unreadable file, or one refused for safety (needs full unpickling).
        CheckpointMismatchError: missing/unexpected keys or shape mismatches (all listed).
        NonFiniteWeightsError: a tensor holds NaN/inf (named).
    """
    path = Path(checkpoint)
    raw = load_checkpoint_file(path)
    converted = convert_state_dict(raw, layout)
    check_finite(((converted.source_keys.get(k, k), v) for k, v in converted.state_dict.items()),
                 f"checkpoint '{path}'")
    model = build_converted_model(converted, arch, num_classes, what=f"checkpoint '{path.name}'")
    sha = file_sha256(path)
    release = authors_release_for(sha, manifest)
    paper = PAPERS[converted.layout if converted.layout in PAPERS else "kcl"]
    source = {
        "kind": "converted", "file": path.name, "sha256": sha, "url": source_url, "authors_release": release,
        "layout": converted.layout, "kept_keys": len(converted.state_dict), "dropped_keys": len(converted.dropped),
        "dropped_summary": summarize_keys(converted.dropped), "transposed": converted.transposed,
        "authors_arch": raw.get("arch") if isinstance(raw.get("arch"), str) else None,
        "epoch": raw.get("epoch") if isinstance(raw.get("epoch"), int) else None, "best_acc1": _best_acc(raw),
    }
    license = license or (paper["code_license"] if release else "other")
    variant = arch if "." in arch else None
    out = save_for_hub(model, results_json, out_dir, source_checkpoint=source, variant=variant, repo_id=repo_id,
                       class_names=class_names, overwrite=overwrite, license=license, force=force)
    return out, converted
