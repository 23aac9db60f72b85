"""``publish``: create the Hub repo and upload a folder written by ``kcl-hub save`` / ``convert``.

The main folder goes to the repo's ``main`` branch; its ``timm/`` export (plain-timm backbone) to
the ``timm`` branch. Before anything is sent the folder is checked: the files timm needs, no
pickles, finite weights, a registry repo only for weights its variant loads, and results that
describe these weights (``--force`` overrides the last, and the card says so).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..models import STANDARD_ARCHITECTURES, list_kcl_models
from ..utils.tensors import check_finite
from ._meta import CARD_FILE, CONFIG_FILE, PICKLE_SUFFIXES, TIMM_EXPORT, WEIGHTS_FILE, read_config, registered_cfg
from .card import write_model_card

__all__ = ["files_to_upload", "publish"]


def files_to_upload(folder: str | Path) -> list[str]:
    """Relative paths ``HfApi.upload_folder`` sends to the main branch (its default ignore patterns
    applied; the ``timm/`` export goes to its own branch)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    folder = Path(folder)
    rel = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
    rel = [r for r in rel if not r.startswith(f"{TIMM_EXPORT}/")]
    return sorted(filter_repo_objects(rel, ignore_patterns=list(DEFAULT_IGNORE_PATTERNS)))


def _check_weights_finite(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            check_finite(((k, fh.get_tensor(k)) for k in fh.keys()), str(path))
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err}); is it truncated?") from None


def _check_folder(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    files = files_to_upload(folder)
    missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE) if f not in files]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: write it with `kcl-hub save` or "
                                f"`hub/convert.py` first")
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ValueError(f"{folder} holds pickled files ({', '.join(pickles)}); kcl-models publishes "
                         f"safetensors only: remove them")
    return files


def _check_registry_repo(repo_id: str, config: Mapping) -> None:
    """A repo that a registered ``arch.tag`` points at must hold weights that variant can load."""
    for variant in list_kcl_models(pretrained=True):
        cfg = registered_cfg(variant)
        if cfg.get("hf_hub_id") != repo_id:
            continue
        arch = variant.split(".")[0]
        names = {arch, STANDARD_ARCHITECTURES.get(arch, arch)}
        problems = []
        if config.get("architecture") not in names:
            problems.append(f"architecture {config.get('architecture')!r} (expected {' or '.join(sorted(names))})")
        if config.get("num_classes") != cfg.get("num_classes"):
            problems.append(f"num_classes {config.get('num_classes')} (registry: {cfg.get('num_classes')})")
        if problems:
            raise ValueError(f"'{repo_id}' is the registry's repo for {variant}, but the folder has "
                             f"{' and '.join(problems)}: timm.create_model('{variant}', pretrained=True) would "
                             f"fail or drop the classifier. Publish it under another repo name.")


def publish(folder: str | Path, repo_id: str, private: bool = False, dry_run: bool = False,
            token: str | None = None, results: str | Path | Mapping | None = None,
            commit_message: str | None = None, force: bool = False) -> list[str]:
    """Create ``repo_id`` (if needed) and upload ``folder`` (and its ``timm/`` export to branch ``timm``).

    Args:
        folder: written by ``save_for_hub`` / ``convert_checkpoint``.
        repo_id: ``org/name`` on the Hub, e.g. ``kcl-models/resnext50_32x4d_bcl.imagenet_lt``.
        private: create the repo private.
        dry_run: print the files and the card metadata that would be sent; contact nobody.
        token: Hub token; ``None`` uses ``HF_TOKEN`` or the cached ``hf auth login`` token. Never printed.
        results: evaluation results JSON; rewrites the card, ``results.json`` and ``per_class.png``
            in the folder before uploading (also with ``dry_run``, so the card can be reviewed).
            Refused when measured on another architecture or other weights, unless ``force``.
        commit_message: defaults to ``"Upload <variant> (kcl-models)"``.
        force: publish such results anyway; the card states it.

    Returns:
        The relative paths uploaded to the main branch (or that would be); ``timm/...`` entries
        for the export branch.
    """
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.utils import validate_repo_id

    folder = Path(folder)
    try:
        validate_repo_id(repo_id)
    except Exception as err:  # noqa: BLE001 - HFValidationError and friends
        raise ValueError(f"invalid repo id {repo_id!r}: {str(err).splitlines()[0]}") from None
    if "/" not in repo_id:
        raise ValueError(f"repo id {repo_id!r} needs an organisation or user: '<org>/<name>'")
    _check_folder(folder)
    config = read_config(folder)
    _check_registry_repo(repo_id, config)  # before touching the folder
    export = folder / TIMM_EXPORT
    has_export = (export / WEIGHTS_FILE).is_file()
    for weights in [folder / WEIGHTS_FILE] + ([export / WEIGHTS_FILE] if has_export else []):
        _check_weights_finite(weights)
    prov = config.get("kcl_models") or {}
    if results is not None or (prov and prov.get("repo_id") != repo_id):
        if not prov:
            raise ValueError(f"{folder / CONFIG_FILE} has no kcl_models block: the card can only be "
                             f"regenerated for folders written by `kcl-hub save`")
        write_model_card(folder, results, repo_id=repo_id, force=force)  # also records repo_id in config.json
    files = _check_folder(folder)
    card = ModelCard.load(folder / CARD_FILE)  # fails early on broken metadata
    variant = prov.get("variant") or config["architecture"]
    export_files = [f"{TIMM_EXPORT}/{f}" for f in files_to_upload(export)] if has_export else []

    if dry_run:
        print(f"[dry run] would create {'private' if private else 'public'} model repo '{repo_id}' "
              f"and upload {len(files)} files from {folder}:")
        for f in files:
            print(f"  {f}  ({(folder / f).stat().st_size:,} bytes)")
        if export_files:
            print(f"[dry run] and {len(export_files)} files from {export} to branch '{TIMM_EXPORT}' "
                  f"(plain timm: hf-hub:{repo_id}@{TIMM_EXPORT}):")
            for f in export_files:
                print(f"  {f}  ({(folder / f).stat().st_size:,} bytes)")
        print("[dry run] model card metadata:")
        print("  " + yaml.safe_dump(card.data.to_dict(), sort_keys=False).rstrip().replace("\n", "\n  "))
        return files + export_files

    api = HfApi(token=token)
    message = commit_message or f"Upload {variant} (kcl-models)"
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=message,
                      ignore_patterns=[f"{TIMM_EXPORT}/*"])
    if export_files:
        api.create_branch(repo_id, branch=TIMM_EXPORT, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(export), repo_type="model", revision=TIMM_EXPORT,
                          commit_message=f"{message}: plain-timm export")
    print(f"uploaded {len(files)} files to https://huggingface.co/{repo_id}"
          + (f" and {len(export_files)} to its branch '{TIMM_EXPORT}'" if export_files else ""), file=sys.stdout)
    return files + export_files
