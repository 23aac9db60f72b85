"""Model loading for evaluation: a timm name, ``hf-hub:``, ``local-dir:`` or a checkpoint file,
with the training config that came with the weights and their checks (see ``kcl_models.eval.cli``)."""
from __future__ import annotations

import contextlib
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["CHECKPOINT_SUFFIXES", "EvalError", "UnknownModelError", "ClassMismatchError", "EmptySplitError",
           "LoadedModel", "load_model"]

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar", ".ckpt")


class EvalError(ValueError):
    """Bad input the CLI reports as one line (exit code 2)."""


class UnknownModelError(EvalError):
    """The model name is neither registered with timm nor a Hub repo, folder or checkpoint."""


class ClassMismatchError(EvalError):
    """The model's classifier and the data disagree on the number of classes."""


class EmptySplitError(EvalError):
    """A data split has no sample."""


@dataclass
class LoadedModel:
    model: nn.Module
    name: str                       # the --model spec as given
    architecture: str               # timm architecture (registry name)
    source: str                     # 'timm', 'timm-pretrained', 'hf-hub:..', 'local-dir:..', 'checkpoint:..'
    weights_path: Path | None = None
    has_classifier: bool = True
    config: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

def _suggest(name: str) -> str:
    import timm
    base = name.split(".", 1)[0]
    pool = sorted(set(timm.list_models()) | set(timm.list_models(pretrained=True)))
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    close += [m for m in difflib.get_close_matches(base, pool, n=5, cutoff=0.6) if m not in close]
    return f"; did you mean {', '.join(close[:5])}?" if close else "; see timm.list_models()"


def _is_fetch_error(err: BaseException) -> bool:
    mod = type(err).__module__
    return mod.startswith(("huggingface_hub", "httpx", "requests", "urllib3")) or isinstance(err, OSError)


def _read_yaml_or_json(path: Path) -> dict:
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise EvalError(f"{path}: expected a mapping at the top level")
    return data


def _config_json_train_config(path: Path) -> dict:
    """``kcl_models.train_config`` of a Hub folder's ``config.json`` (written by kcl_models.hub)."""
    try:
        cfg = json.loads(path.read_text()).get("kcl_models") or {}
        return dict(cfg.get("train_config") or {})
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _training_config(folder: Path) -> dict:
    """The training config that came with an exported model, first found of:
    ``config.json``'s ``kcl_models.train_config`` (a ``kcl_models.hub`` folder),
    ``<dir>/train_config.yaml|json``, or the trainer's layout (``<out>/model`` next to
    ``<out>/config.yaml`` or ``<out>/train_metrics.json``). ``{}`` if none."""
    found = _config_json_train_config(folder / "config.json")
    if found:
        return found
    for cand in (folder / "train_config.yaml", folder / "train_config.json", folder.parent / "config.yaml"):
        if cand.is_file():
            try:
                data = _read_yaml_or_json(cand)
            except Exception:  # noqa: BLE001 - provenance is optional; a bad file must not stop eval
                continue
            # a stray config.yaml one level up is only taken if it looks like a TrainConfig
            if cand.parent == folder or {"data", "model", "method"} <= set(data):
                return data
    metrics = folder.parent / "train_metrics.json"
    if metrics.is_file():
        try:
            return dict(json.loads(metrics.read_text()).get("config") or {})
        except (ValueError, AttributeError, TypeError):
            return {}
    return {}


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    from ..models.convert import unwrap_checkpoint
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - pickle errors come in many types
            raise EvalError(f"cannot read checkpoint {path} with torch.load(weights_only=True): "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}. "
                            f"Re-save its state_dict (tensors only) or as .safetensors") from None
    if not isinstance(state, dict):
        raise EvalError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    state = unwrap_checkpoint(state)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()
            if isinstance(v, torch.Tensor)}


def _classifier_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("classifier", "fc")
    return name[0] if isinstance(name, (list, tuple)) else name


def _load_checkpoint_model(path: Path, arch: str) -> LoadedModel:
    import timm

    from ..models import check_finite
    from ..models.convert import checkpoint_filter_fn
    state = _read_checkpoint(path)
    probe = timm.create_model(arch)
    clf = _classifier_name(probe)
    w = state.get(f"{clf}.weight")
    n_feat = probe.num_features
    if w is None or w.dim() != 2:
        n_cls = 0  # backbone-only checkpoint: features and probes only
    elif w.shape[1] == n_feat:
        n_cls = int(w.shape[0])
    elif w.shape[0] == n_feat:
        n_cls = int(w.shape[1])  # the authors' [D, C] cosine weight; the filter transposes it
    else:
        raise EvalError(f"checkpoint {path}: classifier '{clf}.weight' has shape {tuple(w.shape)}, which does "
                        f"not fit {arch} ({n_feat} features)")
    model = timm.create_model(arch, num_classes=n_cls)
    state = checkpoint_filter_fn(state, model)
    if n_cls == 0:
        state = {k: v for k, v in state.items() if not k.startswith(f"{clf}.")}
    check_finite(state, f"checkpoint {path}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EvalError(
            f"checkpoint {path} does not match {arch}: {len(missing)} missing key(s) {missing[:6]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:6]}. The authors' KCL/BCL checkpoints need "
            f"conversion first (hub/convert.py)")
    return LoadedModel(model, str(path), arch.split(".", 1)[0], f"checkpoint:{path}", path, n_cls > 0)


def load_model(spec: str, *, arch: str | None = None, pretrained: bool = False,
               num_classes: int | None = None) -> LoadedModel:
    """Create the model named by ``spec`` (see the module doc for the accepted forms).

    ``num_classes`` sizes a fresh head for a timm name without ``pretrained``; weights from a Hub
    repo, a folder or a checkpoint keep their own head (checked against the data by the caller).
    Every route refuses weights that are not what they claim (:mod:`kcl_models.models._validate`):
    a model folder whose ``config.json`` is malformed or whose ``num_classes`` disagrees with the
    classifier in the weights, a truncated weights file, and non-finite tensors.
    """
    import timm

    import kcl_models  # noqa: F401  (registers our architectures before timm resolves names)

    from ..models import check_finite, check_model_folder, ensure_hub_weights

    if spec.startswith(("hf-hub:", "local-dir:")):
        weights_path = None
        config: dict = {}
        guard: Any = contextlib.nullcontext()
        repo = spec[len("hf-hub:"):]
        if spec.startswith("local-dir:"):
            folder = Path(spec[len("local-dir:"):]).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"model folder not found: {folder}")
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"{folder} has no config.json (write it with timm.models.save_for_hf)")
            check_model_folder(folder)  # before timm, which would drop a head that does not fit
            weights_path = next((folder / f for f in ("model.safetensors", "pytorch_model.bin")
                                 if (folder / f).is_file()), None)
            config = _training_config(folder)
        else:
            snapshot = _cached_hub_file(repo, ("config.json",))
            if snapshot is not None and _cached_hub_file(repo, ("model.safetensors", "pytorch_model.bin")):
                check_model_folder(snapshot.parent)
            guard = ensure_hub_weights(repo, ("config.json",))  # fail fast, not after ~25 s of retries
        try:
            with guard:
                model = timm.create_model(spec, pretrained=True)
        except RuntimeError as err:
            if not str(err).startswith("Unknown model"):
                raise
            raise UnknownModelError(f"'{spec}' names an architecture timm does not know ({err}); "
                                    f"is the package that registers it imported?") from None
        except Exception as err:  # noqa: BLE001 - narrowed just below
            if not _is_fetch_error(err):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EvalError(f"cannot load '{spec}': {type(err).__name__}: {first}") from None
        if spec.startswith("hf-hub:"):
            weights_path = _cached_hub_file(repo, ("model.safetensors", "pytorch_model.bin"))
            cfg_json = _cached_hub_file(repo, ("config.json",))
            if cfg_json is not None and weights_path is not None:
                check_model_folder(cfg_json.parent)
            config = _config_json_train_config(cfg_json) if cfg_json else {}
        check_finite(model.state_dict(), f"weights of '{spec}'")  # also for plain timm architectures
        arch_name = model.pretrained_cfg.get("architecture") or type(model).__name__
        return LoadedModel(model, spec, arch_name, spec, weights_path, model.num_classes > 0, config)

    path = Path(spec).expanduser()
    if path.suffix in CHECKPOINT_SUFFIXES or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        if not arch:
            raise EvalError(f"checkpoint {path} needs --arch (the timm architecture, e.g. resnet32_kcl)")
        if not timm.is_model(arch.split(".", 1)[0]):
            raise UnknownModelError(f"unknown --arch '{arch}'{_suggest(arch)}")
        return _load_checkpoint_model(path, arch)

    base = spec.split(".", 1)[0]
    if "/" in spec or not timm.is_model(base):
        hint = " (a Hub repo needs the hf-hub: prefix, a folder local-dir:)" if "/" in spec else ""
        raise UnknownModelError(f"unknown model '{spec}'{hint}{_suggest(spec)}")
    kwargs = {} if pretrained or num_classes is None else {"num_classes": num_classes}
    model = timm.create_model(spec, pretrained=pretrained, **kwargs)
    weights_path, config = None, {}
    if pretrained:
        check_finite(model.state_dict(), f"weights of '{spec}'")
        file = model.pretrained_cfg.get("file")
        if file and Path(file).is_file():
            # bundled (or pretrained_cfg file=) weights: the folder's config.json holds the training
            # config, so the data are built as in training (digits-LT's size and seed)
            weights_path = Path(file)
            config = _training_config(weights_path.parent)
        elif model.pretrained_cfg.get("hf_hub_id"):
            hub = model.pretrained_cfg["hf_hub_id"]
            weights_path = _cached_hub_file(hub, ("model.safetensors", "pytorch_model.bin"))
            cfg_json = _cached_hub_file(hub, ("config.json",))
            config = _config_json_train_config(cfg_json) if cfg_json else {}
    return LoadedModel(model, spec, base, "timm-pretrained" if pretrained else "timm", weights_path,
                       model.num_classes > 0, config)


def _cached_hub_file(repo: str, names: tuple[str, ...]) -> Path | None:
    """Local path of the first of ``names`` in the HF cache (timm downloaded it just before)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    repo_id, _, revision = repo.partition("@")
    for fname in names:
        hit = try_to_load_from_cache(repo_id, fname, revision=revision or None)
        if isinstance(hit, str):
            return Path(hit)
    return None
