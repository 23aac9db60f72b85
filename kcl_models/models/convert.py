"""State-dict conversion for the registered models: one implementation of the key mapping used by
timm's ``pretrained_filter_fn`` (``checkpoint_filter_fn``) and by ``kcl_models.hub.convert_checkpoint``.

Layouts of the authors' checkpoints (all saved under DDP, so every key starts with ``module.``,
inside ``{'epoch', 'arch', 'state_dict', 'best_acc1', 'optimizer', ...}``):

- ``kcl-stage1`` (BalFeat ``main_kcl.py``, a MoCo wrapper): ``encoder_q.*`` is the backbone whose
  ``fc`` (``fc.*``, or ``fc.0/fc.2`` with the MLP option) is the 128-d projection; ``encoder_k.*``,
  ``queue``, ``queue_ptr`` and ``label_queue`` are training state. Result: the backbone only
  (``num_classes=0``). We deliberately do not attach a fresh classifier: random logits would look
  like a working model; train one with stage 2 (cRT) or convert a stage-2 checkpoint instead.
- ``kcl-stage2`` (BalFeat ``main_lincls.py``): a plain torchvision ResNet, ``fc`` = ``[C, 2048]``
  linear classifier (+ bias). Keys are identical to timm's ResNet, so this is also the layout of
  any plain timm-format state dict.
- ``bcl`` (``BCLModel``): ``encoder.*`` backbone (no ``fc``), ``fc.weight`` = ``NormedLinear``
  cosine classifier stored ``[2048, C]`` (transposed into ``CosineClassifier``'s ``[C, 2048]``;
  a linear ``fc`` with bias, ``use_norm=False``, is kept as it is), ``head.*`` (contrastive MLP) and
  ``head_fc.*`` (prototype MLP) are training-time heads and dropped.
- ``paco`` (PaCo's MoCo wrapper, ``{epoch, arch, acc, state_dict, optimizer}``): ``encoder_q.*`` is a
  torchvision ResNet whose ``fc`` is the projection MLP (``fc.0/fc.1/fc.3``: Linear, BN, ReLU,
  Linear), ``linear.{weight [C, 2048], bias}`` the classifier (-> ``fc``); ``encoder_k.*``,
  ``linear_k.*``, ``queue``, ``queue_l`` and ``queue_ptr`` are training state and dropped.
- ``gpaco``: the same without a momentum encoder (projection ``fc.0/fc.2/fc.4``); an
  ``encoder_k``/``linear_k`` key is foreign to it.
- ``proco`` (ProCo's ``Model``, BCL's layout without ``head_fc``): ``encoder.*``, ``head.{0,1,3}.*``
  (dropped), ``fc.weight [2048, C]`` (``NormedLinear``, transposed) or, in the CIFAR code,
  ``fc.{weight [C, 64], bias}``. The file also pickles the authors' loss object
  (``criterion_scl``); :func:`load_checkpoint_file` reads it into inert placeholders (see there).

Conversion is strict: :func:`check_state_dict` names every missing key, every unexpected key (by
its original name in the checkpoint) and every shape mismatch, and nothing is loaded partially.
"""
from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "LAYOUTS", "CheckpointLoadError", "CheckpointMismatchError", "ConvertedCheckpoint", "unwrap_checkpoint",
    "strip_module_prefix", "detect_layout", "convert_state_dict", "check_state_dict",
    "load_checkpoint_file", "build_converted_model", "checkpoint_filter_fn", "convert_paco", "convert_gpaco",
    "convert_proco", "AUTHORS_PICKLED_CLASSES", "AuthorsPickledObject",
]

LAYOUTS = ("kcl-stage1", "kcl-stage2", "bcl", "paco", "gpaco", "proco")
_KCL_STAGE1_TRAINING_STATE = ("queue", "queue_ptr", "label_queue")
_PACO_TRAINING_STATE = ("queue", "queue_l", "queue_ptr")
_MAX_LISTED = 60  # keys listed per category in an error message; the full lists are on the error


class CheckpointLoadError(ValueError):
    """A checkpoint file could not be read safely (missing, not a checkpoint, or needs full unpickling)."""


class CheckpointMismatchError(ValueError):
    """Converted weights do not fit the target model exactly.

    Attributes ``missing`` (model keys the checkpoint lacks), ``unexpected`` (checkpoint keys, by
    their original names, the model lacks) and ``shape_mismatches`` (``(key, checkpoint shape,
    model shape)``) hold the complete lists.
    """

    def __init__(self, message: str, missing: list[str], unexpected: list[str],
                 shape_mismatches: list[tuple[str, tuple, tuple]]) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.shape_mismatches = shape_mismatches


@dataclass
class ConvertedCheckpoint:
    """Result of :func:`convert_state_dict`.

    Attributes:
        layout: one of :data:`LAYOUTS`.
        state_dict: tensors under timm key names (foreign keys keep their original names, so the
            strict check reports them).
        source_keys: timm key -> key in the original checkpoint.
        dropped: original keys deliberately left out (projection heads, key encoder, queues).
        transposed: timm keys whose tensor was transposed (the ``[D, C]`` cosine classifier).
        num_classes: classifier outputs found in the checkpoint (0: backbone only).
        classifier: ``'cosine'``, ``'linear'`` or ``None`` (no classifier, or its kind is unknown:
            timm-format weights without ``fc.bias``).
        detected: the layout the key names suggest (differs from ``layout`` when forced).
        prefixed: whether the checkpoint's keys carried the DDP ``module.`` prefix.
    """

    layout: str
    state_dict: dict[str, torch.Tensor]
    source_keys: dict[str, str]
    dropped: list[str] = field(default_factory=list)
    transposed: list[str] = field(default_factory=list)
    num_classes: int = 0
    classifier: str | None = None
    detected: str | None = None
    prefixed: bool = False

    def expected_source_key(self, key: str) -> str:
        """Name a timm key ``key`` would have in a checkpoint of this layout (for error messages)."""
        if self.layout == "kcl-stage1":
            name = f"encoder_q.{key}"
        elif self.layout in ("paco", "gpaco"):
            name = f"linear.{key[3:]}" if key.startswith("fc.") else f"encoder_q.{key}"
        elif self.layout in ("bcl", "proco"):
            name = key if key.startswith("fc.") else f"encoder.{key}"
        else:
            name = key
        return f"module.{name}" if self.prefixed else name


def unwrap_checkpoint(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """Return the state dict inside a training checkpoint (``state_dict``/``model`` entries)."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointLoadError(f"expected a checkpoint dict or a state dict, got {type(checkpoint).__name__}")
    for key in ("state_dict", "model", "model_state_dict"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    return dict(checkpoint)


def strip_module_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> tuple[dict, dict[str, str]]:
    """Strip a DDP/DataParallel ``module.`` prefix. Returns ``(state_dict, new key -> original key)``."""
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        new = key[len(prefix):] if key.startswith(prefix) else key
        if new in out:
            raise CheckpointLoadError(
                f"checkpoint holds both '{origin[new]}' and '{key}', which name the same tensor once the "
                f"'{prefix}' prefix is removed; it is not a single model's state dict")
        out[new] = value
        origin[new] = key
    return out, origin


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    """Guess the authors' layout from the key names (``module.`` prefix optional).

    ``encoder_q.*`` with a ``linear.*`` classifier -> ``'paco'`` (``encoder_k.*`` present) or
    ``'gpaco'``, without one -> ``'kcl-stage1'``; ``encoder.*`` -> ``'proco'`` when it has a
    ``head.*`` but no ``head_fc.*``, else ``'bcl'``; anything else is a plain ResNet state dict ->
    ``'kcl-stage2'`` (also the layout of timm-format weights). A whole ProCo checkpoint is also
    recognised by its ``criterion_scl`` entry (:func:`convert_state_dict`).
    """
    keys = [k[len("module."):] if k.startswith("module.") else k for k in state_dict]
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if has("encoder_q."):
        if has("linear."):
            return "paco" if has("encoder_k.") else "gpaco"
        return "kcl-stage1"
    if has("encoder."):
        return "proco" if has("head.") and not has("head_fc.") else "bcl"
    return "kcl-stage2"


def convert_state_dict(state_dict: Mapping[str, Any], layout: str = "auto") -> ConvertedCheckpoint:
    """Map a state dict of the authors' layout (or timm's) to timm key names.

    Args:
        state_dict: raw state dict, with or without the ``module.`` prefix (a whole training
            checkpoint is unwrapped first).
        layout: ``'auto'`` or one of :data:`LAYOUTS`.

    Returns:
        :class:`ConvertedCheckpoint`. Keys that belong to no known part of the layout are kept
        under their original names so that :func:`check_state_dict` reports them as unexpected.
    """
    proco_file = isinstance(state_dict, Mapping) and "criterion_scl" in state_dict  # ProCo's pickled loss
    state_dict = unwrap_checkpoint(state_dict)
    detected = "proco" if proco_file else detect_layout(state_dict)
    if layout == "auto":
        layout = detected
    if layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; expected 'auto' or one of {', '.join(LAYOUTS)}")
    tensors, origin = strip_module_prefix(state_dict)
    non_tensors = [origin[k] for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise CheckpointLoadError(f"state dict entries that are not tensors: {', '.join(non_tensors[:10])}")

    out: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    dropped: list[str] = []

    def keep(new_key: str, old_key: str) -> None:
        if new_key in out:  # e.g. 'encoder.fc.weight' and 'fc.weight' both in a BCL checkpoint
            new_key = origin[old_key]
        out[new_key] = tensors[old_key]
        source[new_key] = origin[old_key]

    for key in tensors:
        if layout == "kcl-stage1":
            if key.startswith("encoder_q.fc.") or key.startswith("encoder_k.") \
                    or key in _KCL_STAGE1_TRAINING_STATE:
                dropped.append(origin[key])  # projection, momentum encoder, queues: training state
            elif key.startswith("encoder_q."):
                keep(key[len("encoder_q."):], key)
            else:
                keep(origin[key], key)  # foreign: reported by the strict check
        elif layout in ("paco", "gpaco"):
            momentum = key.startswith(("encoder_k.", "linear_k."))  # PaCo's key encoder and its classifier
            if key.startswith("encoder_q.fc.") or key in _PACO_TRAINING_STATE or (momentum and layout == "paco"):
                dropped.append(origin[key])  # projection MLP, momentum encoder, queue: training state
            elif key.startswith("encoder_q."):
                keep(key[len("encoder_q."):], key)
            elif key.startswith("linear."):
                keep(f"fc.{key[len('linear.'):]}", key)  # the class centres are the classifier
            else:
                keep(origin[key], key)  # foreign (for gpaco also encoder_k/linear_k): reported
        elif layout in ("bcl", "proco"):
            if key.startswith("head.") or (key.startswith("head_fc.") and layout == "bcl"):
                dropped.append(origin[key])  # contrastive head and prototype MLP: training-time only
            elif key.startswith("encoder.fc."):
                keep(origin[key], key)  # BCL's encoder has no fc: foreign, never mix it with fc.*
            elif key.startswith("encoder."):
                keep(key[len("encoder."):], key)
            elif key.startswith("fc."):
                keep(key, key)
            else:
                keep(origin[key], key)
        else:  # kcl-stage2 / timm: same keys as timm's ResNet
            keep(key, key)

    transposed: list[str] = []
    num_classes, classifier = 0, None
    fc_w = out.get("fc.weight")
    if fc_w is not None and fc_w.ndim == 2:
        if layout in ("bcl", "proco") and "fc.bias" not in out:
            # NormedLinear stores [in_features, num_classes]; CosineClassifier stores [C, D]
            out["fc.weight"] = fc_w.t().contiguous()
            transposed.append("fc.weight")
            classifier = "cosine"
        else:
            classifier = "linear" if "fc.bias" in out else None
        num_classes = int(out["fc.weight"].shape[0])
    prefixed = any(k.startswith("module.") for k in origin.values())
    return ConvertedCheckpoint(layout=layout, state_dict=out, source_keys=source, dropped=dropped,
                               transposed=transposed, num_classes=num_classes, classifier=classifier,
                               detected=detected, prefixed=prefixed)


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def check_state_dict(converted: ConvertedCheckpoint | Mapping[str, torch.Tensor], model: nn.Module,
                     what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Check that converted weights fit ``model`` exactly; return the state dict to load strictly.

    BatchNorm ``num_batches_tracked`` counters absent from very old checkpoints are filled with 0
    (they do not affect inference); every other difference raises :class:`CheckpointMismatchError`
    naming all missing keys, unexpected keys (original names) and shape mismatches.
    """
    if not isinstance(converted, ConvertedCheckpoint):
        sd = dict(converted)
        converted = ConvertedCheckpoint("", sd, {k: k for k in sd})  # already timm-format: no layout
    target = model.state_dict()
    sd = dict(converted.state_dict)
    missing = [k for k in target if k not in sd]
    for key in [k for k in missing if k.endswith("num_batches_tracked")]:
        sd[key] = torch.zeros_like(target[key])
        missing.remove(key)
    unexpected = [converted.source_keys.get(k, k) for k in sd if k not in target]
    mismatched = [(k, tuple(sd[k].shape), tuple(target[k].shape)) for k in sd
                  if k in target and sd[k].shape != target[k].shape]
    if missing or unexpected or mismatched:
        layout = f" ({converted.layout} layout)" if converted.layout else ""
        parts = [f"{what}{layout} does not fit {type(model).__name__} "
                 f"'{getattr(model, 'pretrained_cfg', {}).get('architecture', '?')}' "
                 f"(num_classes={getattr(model, 'num_classes', '?')}); nothing was loaded."]
        if missing:
            parts.append(_listing("missing keys (model key <- name expected in the checkpoint)",
                                  [f"{k} <- {converted.expected_source_key(k)}" for k in missing]))
        if unexpected:
            parts.append(_listing("unexpected keys (in the checkpoint, not in the model)", unexpected))
        if mismatched:
            parts.append(_listing("shape mismatches (key: checkpoint vs model)", [
                f"{converted.source_keys.get(k, k)} -> {k}: {list(a)} vs {list(b)}" for k, a, b in mismatched]))
        if converted.dropped:
            parts.append(f"  ({len(converted.dropped)} training-only keys were dropped on purpose, e.g. "
                         f"{', '.join(converted.dropped[:3])})")
        if converted.detected and converted.detected != converted.layout:
            parts.append(f"  hint: the key names look like the '{converted.detected}' layout, not "
                         f"'{converted.layout}'; try layout 'auto' or '{converted.detected}'")
        elif len(mismatched) + len(missing) > len(target) // 2:
            parts.append("  hint: most tensors do not fit: is the architecture right (e.g. ResNeXt-50 "
                         "'resnext50_32x4d_bcl' vs ResNet-50 'resnet50_bcl', ResNet-32 vs ResNet-50)?")
        raise CheckpointMismatchError("\n".join(parts), missing, unexpected, mismatched)
    return sd


def _numpy_scalar_globals() -> list:
    """numpy scalar/dtype reconstructors: harmless, and common in ``best_acc1`` entries."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
        return []
    scalar = None
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            scalar = __import__(mod, fromlist=["scalar"]).scalar
            break
        except (ImportError, AttributeError):
            continue
    dtypes = [getattr(np.dtypes, n) for n in getattr(np.dtypes, "__all__", [])
              if isinstance(getattr(np.dtypes, n), type)] if hasattr(np, "dtypes") else []
    return ([scalar] if scalar is not None else []) + [np.dtype] + dtypes


def _pickle_globals(path: Path, limit: int = 5) -> list[str]:
    """Names a raw (non-zip) pickle would import, read with ``pickletools`` (nothing is executed)."""
    import pickletools

    found: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as fh:
            for op, arg, _ in pickletools.genops(fh):
                if isinstance(arg, str) and "UNICODE" in op.name:
                    strings = (strings + [arg])[-2:]
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                    found.append(".".join(strings))
                if op.name == "STOP" or len(found) >= limit:
                    break
    except Exception:  # noqa: BLE001 - not a pickle at all: nothing to report
        return []
    return [g for g in dict.fromkeys(found) if not g.startswith(("torch.", "collections.OrderedDict"))]


def _refused(path: Path, name: str) -> CheckpointLoadError:
    return CheckpointLoadError(
        f"{path}: refused for safety: torch.load(weights_only=True) will not unpickle '{name}' (unpickling "
        f"arbitrary objects can run code); if you trust the file, extract its tensors yourself and convert "
        f"those (--debug shows how)\n"
        f"  The authors' checkpoints hold only tensors and plain Python values, which load safely; this "
        f"file also pickles other objects, so kcl-models will not unpickle it. If you trust it, allow that "
        f"one class and keep weights_only=True while you extract the weights, then convert the result:\n"
        f"    torch.serialization.add_safe_globals([<the class named above>])\n"
        f"    ckpt = torch.load('{path}', map_location='cpu', weights_only=True)\n"
        f"    torch.save({{'state_dict': ckpt['state_dict']}}, 'weights_only.pth')")


class AuthorsPickledObject:
    """Inert stand-in for an object of the authors' code found in their pickle.

    ``torch.load(weights_only=True)`` creates it with ``object.__new__`` and fills its ``__dict__``
    with the pickled attributes (tensors, numbers, dicts: all checked by the weights-only
    unpickler); no method of the authors' class exists here, so none can run. ``qualname`` names
    the class it replaces.
    """

    qualname = "?"

    def __repr__(self) -> str:
        return f"<placeholder for {self.qualname}: {', '.join(sorted(vars(self)))}>"


# Classes the authors pickle into their checkpoints next to the weights: ProCo saves its loss
# (`criterion_scl`, loss/proco.py's ProCoLoss, an nn.Module holding two EstimatorCV objects).
AUTHORS_PICKLED_CLASSES = ("loss.proco.ProCoLoss", "loss.proco.EstimatorCV")
_PLACEHOLDERS = [(type(name.rsplit(".", 1)[1], (AuthorsPickledObject,), {"qualname": name}), name)
                 for name in AUTHORS_PICKLED_CLASSES]


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely: ``.safetensors`` directly, pickles only with ``weights_only=True``.

    numpy scalars/dtypes (often in ``best_acc1``) are allowed, and the authors' classes listed in
    :data:`AUTHORS_PICKLED_CLASSES` become :class:`AuthorsPickledObject` placeholders that only
    hold their state (ProCo's pickled loss object); a pickle of any other object is refused for
    safety (the message names the object) instead of being unpickled; bytes that are no
    checkpoint at all are reported as not readable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError) as err:
            raise CheckpointLoadError(f"{path}: not a readable safetensors file ({err}); is it truncated?") from None
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals() + _PLACEHOLDERS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # our own error follows
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        import re
        named = re.search(r"GLOBAL ([\w.]+)", str(err))  # zip checkpoints: torch names the refused global
        if named:
            raise _refused(path, named.group(1)) from None
        imports = _pickle_globals(path)  # raw pickles: the safe unpickler stops at an opcode it does not run
        if imports:
            raise _refused(path, imports[0]) from None
        lines = [line.strip() for line in str(err).splitlines()]
        why = next((line for line in lines if "Unsupported" in line), "the file could not be unpickled")
        raise CheckpointLoadError(f"{path}: not a readable PyTorch checkpoint ({why})") from None
    except Exception as err:  # noqa: BLE001 - truncated zips, text files, empty files: all "not readable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointLoadError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}"
                                  f"{': ' + first if first else ''})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointLoadError(f"{path}: expected a dict (checkpoint or state dict), got {type(obj).__name__}")
    return dict(obj)


def build_converted_model(converted: ConvertedCheckpoint, arch: str, num_classes: int | None = None,
                          what: str = "checkpoint") -> nn.Module:
    """Create the registered ``arch`` (``name`` or ``name.tag``) and load ``converted`` strictly.

    ``num_classes`` defaults to the classifier found in the checkpoint (0 for a backbone).
    """
    import timm

    from .heads import CosineClassifier

    if num_classes is None:
        num_classes = converted.num_classes
    elif num_classes != converted.num_classes:
        raise CheckpointMismatchError(
            f"{what} has a classifier with {converted.num_classes} outputs (0 = none), but num_classes="
            f"{num_classes} was asked for", [], [], [])
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    except RuntimeError as err:
        from . import list_kcl_models
        raise ValueError(f"unknown architecture {arch!r} ({err}); registered: "
                         f"{', '.join(list_kcl_models())}") from None
    fc = model.get_classifier() if hasattr(model, "get_classifier") else None
    is_cosine = isinstance(fc, CosineClassifier)
    if converted.classifier == "cosine" and not is_cosine:
        raise CheckpointMismatchError(
            f"{what} has a cosine classifier (NormedLinear, BCL/ProCo) but '{arch}' has a linear one; use a "
            f"*_bcl or *_proco architecture (resnet50_bcl, resnext50_32x4d_bcl, resnet32_bcl, resnet50_proco, "
            f"resnext50_32x4d_proco)", [], [], [])
    if converted.classifier == "linear" and is_cosine:
        raise CheckpointMismatchError(
            f"{what} has a linear classifier (with bias) but '{arch}' has a cosine classifier; use a "
            f"linear-head architecture (resnet50_kcl, resnet32_kcl, *_paco, *_gpaco, resnet32_proco)", [], [], [])
    state_dict = check_state_dict(converted, model, what=what)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module) -> dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: accept timm-format weights as they are and the authors' layouts
    (via :func:`convert_state_dict`); a cosine weight still stored ``[D, C]`` is transposed to the
    model's ``[C, D]``."""
    converted = convert_state_dict(state_dict, layout="auto")
    out = dict(converted.state_dict)
    fc_weight = out.get("fc.weight")
    fc = getattr(model, "fc", None)
    if fc_weight is not None and isinstance(getattr(fc, "weight", None), torch.Tensor):
        target = fc.weight.shape
        if fc_weight.shape != target and fc_weight.t().shape == target:
            out["fc.weight"] = fc_weight.t().contiguous()
    return out


def _convert_layout(checkpoint: Mapping | str | Path, layout: str) -> ConvertedCheckpoint:
    raw = load_checkpoint_file(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    return convert_state_dict(raw, layout=layout)


def convert_paco(checkpoint: Mapping | str | Path) -> ConvertedCheckpoint:
    """The authors' PaCo checkpoint (file or loaded dict) in timm key names; build the model with
    ``build_converted_model(converted, 'resnet50_paco.imagenet_lt')`` (or ``resnext50_32x4d_paco``)."""
    return _convert_layout(checkpoint, "paco")


def convert_gpaco(checkpoint: Mapping | str | Path) -> ConvertedCheckpoint:
    """The authors' GPaCo checkpoint in timm key names (``resnet50_gpaco``, ``resnext50_32x4d_gpaco``)."""
    return _convert_layout(checkpoint, "gpaco")


def convert_proco(checkpoint: Mapping | str | Path) -> ConvertedCheckpoint:
    """The authors' ProCo checkpoint in timm key names (``resnet50_proco``, ``resnext50_32x4d_proco``,
    ``resnet32_proco``); its pickled loss object is read into placeholders and ignored."""
    return _convert_layout(checkpoint, "proco")
