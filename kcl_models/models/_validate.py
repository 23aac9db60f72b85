"""Checks that weights are what they claim before a model uses them.

A model folder (``config.json`` + ``model.safetensors``, timm's ``save_for_hf`` layout) is refused
when its ``config.json`` is not valid JSON, when the weights file is truncated or unreadable, when
``config.json``'s ``num_classes`` disagrees with the classifier in the weights (timm would drop the
trained head and put a random one in its place), and when a tensor holds NaN or inf. Every error
is one line naming the file, the values and the fix.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["InvalidWeightsError", "WEIGHT_FILES", "check_finite", "check_weights_file", "classifier_outputs",
           "read_folder_config", "check_model_folder", "check_classifier_matches"]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's order of preference


class InvalidWeightsError(ValueError):
    """Weights (or their config) that must not be loaded: unreadable, non-finite, or not the model's."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_finite(state_dict: Mapping[str, Any], source: str) -> None:
    """Raise :class:`InvalidWeightsError` naming the first floating tensor with a NaN or inf."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise InvalidWeightsError(
                f"{source}: tensor '{key}' holds {bad} non-finite value(s) (NaN/inf) of {value.numel()}; these "
                f"weights come from a diverged run: export them again from a good checkpoint")


def check_weights_file(path: str | Path) -> None:
    """Raise :class:`InvalidWeightsError` if a ``.safetensors`` file is truncated or not safetensors.

    Only the header is read (``safe_open`` checks that it covers the file exactly)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError and OSError
        raise InvalidWeightsError(
            f"{path}: not a readable safetensors file ({_first_line(err)}); it is truncated or damaged: "
            f"copy or download it again") from None


def read_folder_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a model folder, parsed; a malformed one is named with its line."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InvalidWeightsError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                                  f"fix the file or write it again with timm.models.save_for_hf") from None
    except UnicodeDecodeError as err:
        raise InvalidWeightsError(f"{path}: not UTF-8 text ({err.reason}); write it again with "
                                  f"timm.models.save_for_hf") from None
    if not isinstance(data, dict):
        raise InvalidWeightsError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    n = data.get("num_classes")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise InvalidWeightsError(f"{path}: 'num_classes' must be an integer >= 0, got {n!r}")
    return data


def _classifier_key(config: Mapping[str, Any]) -> str:
    name = (config.get("pretrained_cfg") or {}).get("classifier") or "fc"
    return name[0] if isinstance(name, (list, tuple)) else name


def classifier_outputs(shape: tuple[int, ...] | torch.Size, num_features: int | None = None) -> int:
    """Number of classes of a classifier weight ``[C, D]`` (or the authors' cosine ``[D, C]``)."""
    shape = tuple(shape)
    if len(shape) != 2:
        return int(shape[0]) if shape else 0
    if num_features is not None and shape[1] != num_features and shape[0] == num_features:
        return int(shape[1])
    return int(shape[0])


def _weights_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """Shape of tensor ``key`` in a weights file, or None if absent (safetensors: header only)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return tuple(f.get_slice(key).get_shape()) if key in f.keys() else None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle errors come in many types
        raise InvalidWeightsError(f"{path}: not readable with torch.load(weights_only=True) "
                                  f"({_first_line(err)}); re-save it as model.safetensors") from None
    value = state.get(key) if isinstance(state, Mapping) else None
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _mismatch_message(config_path: str, config_n: int, weights: str, key: str, weights_n: int | None) -> str:
    has = (f"'{key}' in {weights} has {weights_n} classes" if weights_n is not None
           else f"{weights} have no classifier ('{key}' absent)")
    fix = weights_n if weights_n is not None else 0
    return (f"{config_path}: num_classes is {config_n} but {has}; loading would replace the trained "
            f"head with a random one. Set \"num_classes\": {fix} in that config (or export the folder again); "
            f"for a new head on these weights pass num_classes=N to timm.create_model instead")


def check_model_folder(folder: str | Path) -> dict[str, Any]:
    """Validate a timm model folder before loading it; returns its parsed ``config.json``.

    Checks: ``config.json`` parses; the weights file (``model.safetensors`` or ``pytorch_model.bin``)
    is readable; the top-level ``num_classes`` (which timm gives the model) equals the classifier's
    outputs in the weights."""
    folder = Path(folder)
    config = read_folder_config(folder)
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise InvalidWeightsError(f"{folder} has no weights file ({' or '.join(WEIGHT_FILES)})")
    check_weights_file(weights)
    n = config.get("num_classes")
    if n is not None:
        key = f"{_classifier_key(config)}.weight"
        shape = _weights_shape(weights, key)
        found = classifier_outputs(shape, config.get("num_features")) if shape is not None else None
        if (found if found is not None else 0) != n:
            raise InvalidWeightsError(_mismatch_message(str(folder / "config.json"), n, str(weights), key, found))
    return config


def _source_of(model: nn.Module) -> tuple[str, str]:
    """(where the weights come from, where their num_classes is written) for error messages."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    src, file, hub = cfg.get("source"), cfg.get("file"), cfg.get("hf_hub_id")
    if src == "local-dir" and file:
        return f"the weights in {file}", str(Path(file) / "config.json")
    if src == "hf-hub" and hub:
        return f"the weights of hf-hub:{hub}", f"config.json of hf-hub:{hub}"
    if file:
        return f"weights file {file}", "pretrained_cfg (pass pretrained_cfg_overlay=dict(num_classes=...))"
    if hub:
        return f"the weights of {hub}", f"the registered pretrained_cfg of {cfg.get('architecture')}"
    return "the weights", "pretrained_cfg"


def check_classifier_matches(state_dict: Mapping[str, Any], model: nn.Module) -> None:
    """The classifier in ``state_dict`` must have the ``num_classes`` the model's pretrained_cfg
    declares: timm compares only the declared count with the requested one, and when those differ it
    silently drops the trained head."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    declared = cfg.get("num_classes")
    classifier = cfg.get("classifier")
    if declared is None or not classifier:
        return
    name = classifier[0] if isinstance(classifier, (list, tuple)) else classifier
    key = f"{name}.weight"
    weight = state_dict.get(key)
    found = classifier_outputs(weight.shape, getattr(model, "num_features", None)) \
        if isinstance(weight, torch.Tensor) else None
    if (found if found is not None else 0) != declared:
        weights, where = _source_of(model)
        raise InvalidWeightsError(_mismatch_message(where, declared, weights, key, found))
