"""Publish kcl-models weights on the Hugging Face Hub, and convert the authors' checkpoints.

- :func:`save_for_hub` writes a Hub-ready folder: ``model.safetensors`` (backbone + classifier
  only), timm's ``config.json`` (with a ``kcl_models`` provenance block that timm ignores), a
  ``README.md`` model card built from the evaluation results JSON, ``results.json`` and
  ``per_class.png``.
- :func:`publish` creates the repo and uploads the folder (``dry_run`` lists what it would send).
- :func:`convert_checkpoint` turns the authors' KCL stage-1/stage-2 and BCL checkpoints into such a
  folder, strictly (see :mod:`kcl_models.models.convert`).
- :func:`zoo_table_markdown` renders README's zoo table from ``hub/manifest.yaml`` + the registry.
- :func:`main` is the ``kcl-hub`` console script (``save``, ``publish``, ``convert``, ``zoo-table``);
  ``hub/convert.py`` and ``hub/publish.py`` are thin wrappers around it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from torch import nn

from .models import STANDARD_ARCHITECTURES, CosineClassifier, hub_id
from .models.convert import (
    LAYOUTS,
    CheckpointLoadError,
    CheckpointMismatchError,
    ConvertedCheckpoint,
    build_converted_model,
    check_state_dict,
    convert_state_dict,
    load_checkpoint_file,
)

__all__ = [
    "RESULTS_SCHEMA", "WEIGHTS_FILE", "CONFIG_FILE", "CARD_FILE", "RESULTS_FILE", "PLOT_FILE",
    "load_results", "sha256_file", "save_for_hub", "write_model_card", "publish", "files_to_upload",
    "convert_checkpoint", "load_manifest", "zoo_table_markdown", "default_manifest_path", "main",
    "CheckpointLoadError", "CheckpointMismatchError",
]

RESULTS_SCHEMA = "kcl-models/results/v1"
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
RESULTS_FILE, PLOT_FILE = "results.json", "per_class.png"
_OWN_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, RESULTS_FILE, PLOT_FILE)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".tar")
MANIFEST_SCHEMA = "kcl-models/manifest/v1"
MANIFEST_STATUSES = ("planned", "ready", "published")

# Card metrics: results key -> (model-index metric type, display name). Values are copied verbatim.
_CARD_METRICS = (
    ("top1", "accuracy", "Top-1 accuracy"),
    ("top5", "accuracy", "Top-5 accuracy"),
    ("many", "accuracy", "Top-1 accuracy (many-shot)"),
    ("medium", "accuracy", "Top-1 accuracy (medium-shot)"),
    ("few", "accuracy", "Top-1 accuracy (few-shot)"),
    ("balancedness", "balancedness", "Balancedness (KCL Eq. 3)"),
)
_REQUIRED_METRICS = ("top1", "many", "medium", "few", "balancedness")

_PAPERS: dict[str, dict[str, Any]] = {
    "kcl": dict(
        short="KCL", title="Exploring Balanced Feature Spaces for Representation Learning",
        venue="ICLR 2021", url="https://openreview.net/forum?id=OqtLIabPTit", arxiv=None,
        code="https://github.com/bingykang/BalFeat", code_license="cc-by-nc-4.0",
        bibtex="""@inproceedings{kang2021exploring,
  title={Exploring Balanced Feature Spaces for Representation Learning},
  author={Bingyi Kang and Yu Li and Sa Xie and Zehuan Yuan and Jiashi Feng},
  booktitle={International Conference on Learning Representations},
  year={2021},
  url={https://openreview.net/forum?id=OqtLIabPTit}
}"""),
    "bcl": dict(
        short="BCL", title="Balanced Contrastive Learning for Long-Tailed Visual Recognition",
        venue="CVPR 2022", url="https://arxiv.org/abs/2207.09052", arxiv="2207.09052",
        code="https://github.com/FlamieZhu/Balanced-Contrastive-Learning", code_license="mit",
        bibtex="""@inproceedings{zhu2022balanced,
  title={Balanced Contrastive Learning for Long-Tailed Visual Recognition},
  author={Zhu, Jianggang and Wang, Zheng and Chen, Jingjing and Chen, Yi-Ping Phoebe and Jiang, Yu-Gang},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition},
  pages={6908--6917},
  year={2022}
}"""),
}

_METHODS: dict[str, tuple[str, str]] = {
    # method -> (paper key, description)
    "kcl": ("kcl", "**k-positive contrastive learning (KCL)**, Kang et al., ICLR 2021. Stage 1 learns the "
                   "representation MoCo-style: each query's positives are its own key (another augmentation) plus "
                   "k = 6 same-class keys drawn from a label-aware queue, which keeps the feature space balanced "
                   "across head and tail classes while making it discriminative. Stage 2 (cRT) trains a linear "
                   "classifier on the frozen backbone."),
    "fcl": ("kcl", "**Full-positive contrastive learning (FCL)**, the KCL paper's baseline: like KCL but every "
                   "same-class queue entry is a positive; stage 2 trains a linear classifier on the frozen backbone."),
    "bcl": ("bcl", "**Balanced contrastive learning (BCL)**, Zhu et al., CVPR 2022. A two-branch model: a cosine "
                   "classifier (logits = 30 * cos) trained with logit-adjusted cross-entropy, and a supervised "
                   "contrastive branch whose loss averages each negative class (class-averaging) and always "
                   "includes one prototype per class computed from the classifier weights (class-complement). "
                   "Only the backbone and the cosine classifier are published; the contrastive head and the "
                   "prototype MLP are training-time only."),
    "supcon": ("bcl", "**Supervised contrastive learning (SupCon)** baseline followed by a linear classifier."),
    "ce": ("kcl", "**Cross-entropy (CE)** baseline trained end to end."),
    "la": ("bcl", "**Logit-adjusted cross-entropy (LA)** baseline (Menon et al.), raw logits at test time."),
}

_METHOD_NAMES = {"kcl": "KCL", "fcl": "FCL", "bcl": "BCL", "supcon": "SupCon", "ce": "CE", "la": "LA"}

_DATASETS: dict[str, dict[str, Any]] = {
    "imagenet_lt": dict(name="ImageNet-LT", id="imagenet-lt", hf=["ILSVRC/imagenet-1k"]),
    "inat2018": dict(name="iNaturalist 2018", id="inaturalist-2018", hf=[]),
    "cifar100_lt_if100": dict(name="CIFAR-100-LT (IF 100)", id="cifar100-lt", hf=["uoft-cs/cifar100"]),
    "cifar10_lt_if100": dict(name="CIFAR-10-LT (IF 100)", id="cifar10-lt", hf=["uoft-cs/cifar10"]),
    "digits_lt": dict(name="digits-LT (IF 100, scikit-learn digits)", id="digits-lt", hf=[]),
}


# ----------------------------------------------------------------------------------------------
# results JSON


def _validate_results(results: Mapping, where: str) -> dict:
    """Schema check of a results dict: the eval helper's ``validate_results`` when available, then
    the keys the model card relies on."""
    try:
        from .eval.report import validate_results
    except ImportError:
        validate_results = None
    if validate_results is not None:
        validate_results(results, where=where)
    if not isinstance(results, Mapping):
        raise ValueError(f"{where}: results must be a JSON object, got {type(results).__name__}")
    if results.get("schema") != RESULTS_SCHEMA:
        raise ValueError(f"{where}: 'schema' is {results.get('schema')!r}, expected {RESULTS_SCHEMA!r}")
    required = {
        "model": ("name", "architecture", "num_classes"),
        "data": ("name", "split", "num_samples", "num_classes", "class_names", "train_class_counts"),
        "metrics": _REQUIRED_METRICS,
        "per_class": ("accuracy", "train_count", "group"),
    }
    for section, keys in required.items():
        if not isinstance(results.get(section), Mapping):
            raise ValueError(f"{where}: missing section '{section}'")
        for key in keys:
            if key not in results[section]:
                raise ValueError(f"{where}: missing key '{section}.{key}'")
    if results.get("protocol") not in ("classifier", "linear_probe", "knn"):
        raise ValueError(f"{where}: 'protocol' is {results.get('protocol')!r}, expected classifier, "
                         f"linear_probe or knn")
    for key in _REQUIRED_METRICS:
        value = results["metrics"][key]
        if value is None and key in ("many", "medium", "few"):
            continue  # a shot group without classes
        if not _is_number(value):
            raise ValueError(f"{where}: 'metrics.{key}' must be a finite number, got {value!r}")
    n = results["data"]["num_classes"]
    for key in ("accuracy", "train_count", "group"):
        if len(results["per_class"][key]) != n:
            raise ValueError(f"{where}: 'per_class.{key}' has {len(results['per_class'][key])} entries, "
                             f"data.num_classes is {n}")
    return dict(results)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_results(results: str | Path | Mapping) -> dict:
    """Load and check a results JSON (path or already-parsed dict).

    Uses ``kcl_models.eval.report.load_results`` when available, then checks the keys the model
    card needs.
    """
    if isinstance(results, Mapping):
        return _validate_results(results, "results")
    path = Path(results)
    if not path.is_file():
        raise FileNotFoundError(f"results JSON not found: {path}")
    try:
        from .eval.report import load_results as _eval_load_results
    except ImportError:
        _eval_load_results = None
    if _eval_load_results is not None:
        data = _eval_load_results(path)
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    return _validate_results(data, str(path))


# ----------------------------------------------------------------------------------------------
# small helpers


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _software() -> dict[str, str]:
    import huggingface_hub
    import safetensors

    from . import __version__
    return {"kcl_models": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "huggingface_hub": huggingface_hub.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


def _registered_cfg(variant: str) -> dict[str, Any]:
    try:
        cfg = timm.models.get_pretrained_cfg(variant)
    except Exception:  # noqa: BLE001 - timm raises different errors for unknown names
        cfg = None
    return cfg.to_dict() if cfg is not None else {}


def _reverse_standard(arch: str) -> str:
    """``resnet50`` -> ``resnet50_kcl`` when exactly one registered name maps to it."""
    names = [k for k, v in STANDARD_ARCHITECTURES.items() if v == arch]
    return names[0] if len(names) == 1 else arch


def _method_of(arch: str, train_config: Mapping | None, layout: str | None = None) -> str:
    for cfg in (train_config or {}, *(v for v in (train_config or {}).values() if isinstance(v, Mapping))):
        value = cfg.get("method") if isinstance(cfg, Mapping) else None
        if isinstance(value, str) and value.lower() in _METHODS:
            return value.lower()
    if layout in ("kcl-stage1", "kcl-stage2"):
        return "kcl"
    if layout == "bcl" or arch.endswith("_bcl"):
        return "bcl"
    return "kcl"


def _load_train_config(train_config: str | Path | Mapping | None) -> dict:
    if train_config is None:
        return {}
    if isinstance(train_config, Mapping):
        return dict(train_config)
    path = Path(train_config)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot parse the training config ({err})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: training config must be a mapping, got {type(data).__name__}")
    return dict(data)


def _jsonable(obj: Any) -> Any:
    """Training configs may hold tuples, Paths, tensors: make them JSON/YAML friendly."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


_LOCAL_PATH_KEYS = ("output_dir", "data_root", "resume", "logging_dir", "project_dir", "cache_dir")


def _public_config(cfg: Any) -> Any:
    """Training config for a public card: machine-local paths are replaced by a placeholder."""
    if isinstance(cfg, Mapping):
        return {k: ("<local path>" if k in _LOCAL_PATH_KEYS and isinstance(v, str) and v else _public_config(v))
                for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_public_config(v) for v in cfg]
    return cfg


def _summarize_keys(keys: Sequence[str]) -> str:
    """``['module.head.0.weight', ...]`` -> ``'module.head.* (8), module.head_fc.* (8)'``."""
    groups: Counter[str] = Counter()
    for key in keys:
        parts = key.split(".")
        head = parts[:2] if parts[0] == "module" and len(parts) > 2 else parts[:1]
        groups[".".join(head) + (".*" if len(parts) > len(head) else "")] += 1
    return ", ".join(f"{g} ({n})" for g, n in groups.items())


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


def _variant_of(model: nn.Module, variant: str | None) -> tuple[str, str]:
    """(registered architecture, arch.tag) of ``model``."""
    if variant:
        arch = variant.split(".")[0]
    else:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        arch = _reverse_standard(cfg.get("architecture") or "")
        if not arch:
            raise ValueError("model has no pretrained_cfg['architecture']; create it with timm.create_model "
                             "or pass variant='<arch>.<tag>'")
        variant = f"{arch}.{cfg['tag']}" if cfg.get("tag") else arch
    if not timm.is_model(arch):
        raise ValueError(f"architecture {arch!r} is not registered with timm; kcl-models registers "
                         f"{', '.join(sorted(timm.list_models('*_kcl') + timm.list_models('*_bcl')))}")
    return arch, variant


def _check_results_fit(results: Mapping, num_classes: int, where: str) -> None:
    n = results["data"]["num_classes"]
    if results["protocol"] == "classifier":
        if num_classes == 0:
            raise ValueError(f"{where}: classifier results, but the model has no classifier (num_classes=0); "
                             f"publish linear_probe or knn results for a backbone")
        if n != num_classes:
            raise ValueError(f"{where}: results are for {n} classes, the model has num_classes={num_classes}")


# ----------------------------------------------------------------------------------------------
# save_for_hub and the model card


def save_for_hub(model: nn.Module, results_json: str | Path | Mapping | None, out_dir: str | Path,
                 train_config: str | Path | Mapping | None = None,
                 source_checkpoint: str | Path | Mapping | None = None, *, variant: str | None = None,
                 repo_id: str | None = None, license: str | None = None,
                 class_names: Sequence[str] | None = None, overwrite: bool = False) -> Path:
    """Write a Hub-ready folder for ``model``.

    Args:
        model: a timm model of a registered architecture (backbone + classifier; a training wrapper
            is refused because its keys would not load).
        results_json: results JSON path or dict (schema ``kcl-models/results/v1``), or ``None`` for a
            card that says the weights are not evaluated yet (e.g. right after conversion).
        out_dir: folder to write; must be empty or hold only files this function writes.
        train_config: training config (dict, YAML or JSON path); defaults to ``results['config']``.
        source_checkpoint: path of the checkpoint the weights came from (its sha256 is recorded) or
            a provenance dict (as :func:`convert_checkpoint` passes).
        variant: ``arch.tag`` name; default from ``model.pretrained_cfg``.
        repo_id: Hub repo the card's usage snippet names; default ``kcl-models/<variant>``.
        license: weights license; default the registry cfg's.
        class_names: label names for ``config.json`` when ``results_json`` has none.
        overwrite: replace an earlier export in ``out_dir``.

    Returns:
        ``out_dir`` as a Path. Files: ``model.safetensors``, ``config.json``, ``README.md`` and, with
        results, ``results.json`` and ``per_class.png``.
    """
    from timm.models import save_for_hf

    out = Path(out_dir)
    results = load_results(results_json) if results_json is not None else None
    arch, variant = _variant_of(model, variant)
    num_classes = int(getattr(model, "num_classes", 0))
    if results is not None:
        _check_results_fit(results, num_classes, "results")
    _check_exportable(model, arch)
    cfg_train = _load_train_config(train_config) or dict((results or {}).get("config") or {})

    if isinstance(source_checkpoint, Mapping):
        source = dict(source_checkpoint)
    elif source_checkpoint is not None:
        src = Path(source_checkpoint)
        if not src.is_file():
            raise FileNotFoundError(f"source checkpoint not found: {src}")
        source = {"kind": "checkpoint", "file": src.name, "sha256": sha256_file(src)}
    else:
        source = {"kind": "trained" if cfg_train else "unknown"}

    if out.exists():
        if not out.is_dir():
            raise ValueError(f"output path exists and is not a folder: {out}")
        present = sorted(p.name for p in out.iterdir())
        foreign = [p for p in present if p not in _OWN_FILES]
        if foreign:
            raise ValueError(f"output folder {out} holds files save_for_hub does not write ({', '.join(foreign)}); "
                             f"they would be uploaded too: use an empty folder")
        if present and not overwrite:
            raise FileExistsError(f"output folder {out} already holds an export ({', '.join(present)}); "
                                  f"pass overwrite=True (--overwrite) to replace it")
        for name in present:
            (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)

    labels = None
    if results is not None and len(results["data"]["class_names"]) == num_classes and num_classes:
        labels = [str(c) for c in results["data"]["class_names"]]
    elif class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for num_classes={num_classes}")
        labels = [str(c) for c in class_names]

    reg = _registered_cfg(variant)
    method = _method_of(arch, cfg_train, source.get("layout"))
    license = license or source.get("license") or reg.get("license") or "apache-2.0"
    tag = variant.split(".", 1)[1] if "." in variant else None
    pretrained_overrides: dict[str, Any] = {
        "architecture": STANDARD_ARCHITECTURES.get(arch, arch), "license": license,
        "notes": f"{variant}: {_METHOD_NAMES[method]} weights published by kcl-models; see README.md for "
                 f"results and provenance.",
    }
    if tag:
        pretrained_overrides["tag"] = tag
    provenance = {
        "variant": variant, "architecture": arch, "method": method, "license": license,
        "repo_id": repo_id or hub_id(variant), "source": _jsonable(source),
        "train_config": _public_config(_jsonable(cfg_train)), "software": _software(),
    }
    model_config: dict[str, Any] = {"pretrained_cfg": pretrained_overrides, "kcl_models": provenance}
    if labels:
        model_config["label_names"] = labels
    model_args = None
    fc = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(fc, CosineClassifier) and arch not in STANDARD_ARCHITECTURES:
        model_args = {"cls_scale": float(fc.scale)}
    was_training = model.training
    model.eval()
    try:
        save_for_hf(model, out, model_config=model_config, model_args=model_args, safe_serialization=True)
    finally:
        model.train(was_training)
    write_model_card(out, results, repo_id=repo_id or hub_id(variant))
    return out


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a folder written by save_for_hub / timm.save_for_hf")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if "architecture" not in config:
        raise ValueError(f"{path}: no 'architecture' key; not a timm config.json")
    return config


def _plot_per_class(results: Mapping, path: Path) -> None:
    try:
        from .eval.report import plot_per_class
    except ImportError:
        plot_per_class = None
    if plot_per_class is not None:
        plot_per_class(results, path)
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = list(results["per_class"]["accuracy"])
    counts = list(results["per_class"]["train_count"])
    groups = list(results["per_class"]["group"])
    order = sorted(range(len(acc)), key=lambda i: (-counts[i], i))  # head classes first
    colors = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, 0.12 * len(acc) + 4)), 3.6), dpi=100)
    ax.bar(range(len(order)), [acc[i] or 0.0 for i in order], width=1.0,
           color=[colors.get(groups[i], "tab:gray") for i in order])
    ax.set_xlabel("classes, sorted by training images")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax2 = ax.twinx()
    ax2.plot(range(len(order)), [max(counts[i], 1) for i in order], color="black", lw=1)
    ax2.set_yscale("log")
    ax2.set_ylabel("training images")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), loc="upper right", fontsize=8)
    ax.set_title(f"{results['model']['name']}: per-class accuracy on {results['data']['name']} "
                 f"({results['data']['split']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(value: Any, digits: int = 2) -> str:
    if _is_number(value):
        return f"{value:.{digits}f}"
    return "–"


def _eval_results(results: Mapping, dataset: dict[str, Any]) -> list:
    from huggingface_hub import EvalResult

    protocol = results["protocol"]
    suffix = "" if protocol == "classifier" else f" [{protocol}]"
    common = dict(task_type="image-classification", task_name="Long-tailed image classification",
                  dataset_type=dataset["id"], dataset_name=dataset["name"],
                  dataset_split=str(results["data"]["split"]))
    out = []
    for key, mtype, name in _CARD_METRICS:
        value = results["metrics"].get(key)
        if _is_number(value):
            out.append(EvalResult(metric_type=mtype, metric_name=name + suffix, metric_value=value, **common))
    for probe, metrics in (results.get("probes") or {}).items():
        value = (metrics or {}).get("top1") if isinstance(metrics, Mapping) else None
        if _is_number(value):
            out.append(EvalResult(metric_type="accuracy", metric_name=f"Top-1 accuracy [{probe}]",
                                  metric_value=value, **common))
    return out


def card_metric_name(key: str, protocol: str = "classifier") -> str:
    """Display name under which metric ``key`` of the results JSON appears in the card's model-index."""
    names = {k: n for k, _, n in _CARD_METRICS}
    return names[key] + ("" if protocol == "classifier" else f" [{protocol}]")


def write_model_card(folder: str | Path, results: str | Path | Mapping | None = None,
                     repo_id: str | None = None) -> Path:
    """(Re)write ``README.md`` of a folder written by :func:`save_for_hub`.

    With ``results`` it also writes ``results.json`` and ``per_class.png``; without, an existing
    ``results.json`` in the folder is used. ``repo_id`` names the repo in the usage snippet.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    config = _read_config(folder)
    prov = config.get("kcl_models") or {}
    pcfg = config.get("pretrained_cfg") or {}
    arch = prov.get("architecture") or _reverse_standard(config["architecture"])
    variant = prov.get("variant") or (f"{arch}.{pcfg['tag']}" if pcfg.get("tag") else arch)
    repo_id = repo_id or prov.get("repo_id") or hub_id(variant)
    num_classes = int(config.get("num_classes", 0))

    if results is not None:
        results = load_results(results)
        _check_results_fit(results, num_classes, "results")
        (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        _plot_per_class(results, folder / PLOT_FILE)
    elif (folder / RESULTS_FILE).is_file():
        results = load_results(folder / RESULTS_FILE)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found")
    weights_sha = sha256_file(weights)

    method = prov.get("method") or _method_of(arch, prov.get("train_config"))
    paper_key, method_text = _METHODS[method]
    paper = _PAPERS[paper_key]
    tag = variant.split(".", 1)[1] if "." in variant else ""
    reg_classes = _registered_cfg(variant).get("num_classes")
    # the tag names the dataset only when the classifier fits it (a 8142-class head is no ImageNet-LT model)
    dataset = dict(_DATASETS.get(tag) or {}) if num_classes in (0, reg_classes) else {}
    if not dataset:
        name = str(results["data"]["name"]) if results else (tag or "unknown")
        dataset = dict(name=name, id=name.lower().replace(" ", "-"), hf=[])
    license = prov.get("license") or pcfg.get("license") or "apache-2.0"
    tags = ["image-classification", "timm", "long-tailed-recognition", "contrastive-learning", "kcl-models",
            method, dataset["id"]]
    if paper["arxiv"]:
        tags.append(f"arxiv:{paper['arxiv']}")
    card_data = ModelCardData(
        model_name=variant, library_name="timm", pipeline_tag="image-classification", license=license,
        tags=list(dict.fromkeys(tags)), datasets=dataset["hf"] or None,
        metrics=["accuracy"] if results else None,
        eval_results=_eval_results(results, dataset) if results else None,
    )
    body = _card_body(variant=variant, arch=arch, repo_id=repo_id, config=config, prov=prov, method=method,
                      method_text=method_text, paper=paper, dataset=dataset, results=results,
                      weights_sha=weights_sha, license=license)
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
    card.save(folder / CARD_FILE)
    return folder / CARD_FILE


def _card_body(*, variant: str, arch: str, repo_id: str, config: Mapping, prov: Mapping, method: str,
               method_text: str, paper: Mapping, dataset: Mapping, results: Mapping | None,
               weights_sha: str, license: str) -> str:
    pcfg = config.get("pretrained_cfg") or {}
    num_classes = int(config.get("num_classes", 0))
    standard = STANDARD_ARCHITECTURES.get(arch)
    source = prov.get("source") or {}
    cls_scale = (config.get("model_args") or {}).get("cls_scale")
    head = ("BCL's cosine classifier (no bias, logits = "
            f"{cls_scale if cls_scale is not None else 30} * cos)" if arch.endswith("_bcl")
            else "linear classifier") if num_classes else "none (backbone only, `num_classes=0`: pooled features)"
    lines = [f"# {variant}", ""]
    what = "backbone" if num_classes == 0 else "image classifier"
    lines += [f"A long-tailed recognition {what} for [timm](https://github.com/huggingface/pytorch-image-models): "
              f"`{arch}` trained with {_METHOD_NAMES[method]} on "
              f"{dataset['name']}. Part of the [kcl-models](https://huggingface.co/kcl-models) zoo.", ""]

    lines += ["## Model details", "",
              f"- **Architecture:** `{arch}`" + (f" (same modules and keys as timm's `{standard}`; this repo's "
                                                   f"`config.json` names `{standard}`, so plain timm loads it)"
                                                   if standard else " (registered by `import kcl_models`)"),
              f"- **Classifier:** {head}; {num_classes} classes",
              f"- **Features:** {config.get('num_features')}-d, global {config.get('global_pool', 'avg')} pooling",
              f"- **Input:** {'x'.join(str(s) for s in pcfg.get('input_size', [])[1:])} px, mean "
              f"{list(pcfg.get('mean', []))}, std {list(pcfg.get('std', []))}, "
              f"crop_pct {pcfg.get('crop_pct')}, {pcfg.get('interpolation')} interpolation",
              f"- **Paper:** [{paper['title']}]({paper['url']}) ({paper['venue']}); authors' code: {paper['code']}",
              f"- **License:** {license}",
              f"- **Files:** `{WEIGHTS_FILE}` holds the backbone and classifier only (safetensors); projection "
              "heads, prototype MLPs, momentum encoders and queues stay in training checkpoints.", "",
              "### Method", "", method_text, ""]

    import_line = "" if standard else "import kcl_models  # registers the kcl-models architectures with timm\n"
    registry_hint = ""
    if repo_id == hub_id(variant) and _registered_cfg(variant).get("num_classes") == num_classes:
        registry_hint = (f"\n# after `import kcl_models`, the registered name loads the same weights:\n"
                         f"# model = timm.create_model(\"{variant}\", pretrained=True)")
    lines += ["## Usage", "", "```python",
              f"import timm\nimport torch\n{import_line}from PIL import Image\n",
              f"model = timm.create_model(\"hf-hub:{repo_id}\", pretrained=True).eval(){registry_hint}",
              "data_config = timm.data.resolve_model_data_config(model)",
              "transform = timm.data.create_transform(**data_config, is_training=False)",
              "x = transform(Image.open(\"image.jpg\").convert(\"RGB\")).unsqueeze(0)",
              "with torch.no_grad():",
              "    features = model.forward_head(model.forward_features(x), pre_logits=True)  "
              f"# [1, {config.get('num_features')}]"]
    if num_classes:
        lines += [f"    probs = model(x).softmax(dim=-1)  # [1, {num_classes}]"]
    lines += ["```", ""]

    lines += ["## Results", ""]
    if results:
        data = results["data"]
        thr = results.get("shot_thresholds") or {}
        m = results["metrics"]
        split_rule = ("relative log-count bands" if thr.get("relative")
                      else f"many > {thr.get('many', 100)}, few < {thr.get('few', 20)} training images")
        lines += [f"Measured by `eval.py` on **{data['name']}** split `{data['split']}` ({data['num_samples']} "
                  f"images, {data['num_classes']} classes), protocol `{results['protocol']}`; shot groups: "
                  f"{split_rule}. Accuracies in %; balancedness β (KCL Eq. 3) in [0, 1].", "",
                  "| Top-1 | Top-5 | Many | Medium | Few | Balancedness β | ECE |",
                  "|---|---|---|---|---|---|---|",
                  "| " + " | ".join([_fmt(m.get("top1")), _fmt(m.get("top5")), _fmt(m.get("many")),
                                    _fmt(m.get("medium")), _fmt(m.get("few")), _fmt(m.get("balancedness"), 4),
                                    _fmt(m.get("ece"), 4)]) + " |", ""]
        groups = results["per_class"]["group"]
        counts = results["per_class"]["train_count"]
        lines += ["| Shot group | Classes | Training images | Top-1 |", "|---|---|---|---|"]
        for g in ("many", "medium", "few"):
            idx = [i for i, x in enumerate(groups) if x == g]
            lines.append(f"| {g} | {len(idx)} | {sum(counts[i] for i in idx)} | {_fmt(m.get(g))} |")
        lines.append("")
        probes = {k: v for k, v in (results.get("probes") or {}).items()
                  if isinstance(v, Mapping) and _is_number(v.get("top1"))}  # open_set has sub-blocks
        if probes:
            lines += ["| Probe | Top-1 | Many | Medium | Few |", "|---|---|---|---|---|"]
            for name, pm in probes.items():
                lines.append(f"| {name} | " + " | ".join(_fmt((pm or {}).get(k)) for k in
                                                         ("top1", "many", "medium", "few")) + " |")
            lines.append("")
        lines += [f"![Per-class accuracy, classes sorted by training images]({PLOT_FILE})", "",
                  f"Every figure comes from [`{RESULTS_FILE}`]({RESULTS_FILE}) (schema `{RESULTS_SCHEMA}`).", ""]
    else:
        lines += ["Not evaluated yet: run `eval.py` on these weights and publish with "
                  "`python hub/publish.py --folder <this folder> --results <results.json> --repo <repo>`, which "
                  "rewrites this card with the measured numbers.", ""]

    lines += ["## Training recipe", ""]
    train_config = prov.get("train_config") or {}
    if source.get("kind") == "authors-checkpoint":
        lines += [f"Trained by the paper's authors with their code ({paper['code']}); converted, not retrained, "
                  f"by kcl-models. See the paper for the recipe.", ""]
    if train_config:
        lines += ["The training configuration, as saved by the trainer:", "", "```yaml",
                  yaml.safe_dump(train_config, sort_keys=False, default_flow_style=False).rstrip(), "```", ""]
    elif source.get("kind") != "authors-checkpoint":
        lines += ["No training configuration was recorded with these weights.", ""]

    lines += ["## Provenance", "", f"- `{WEIGHTS_FILE}` sha256: `{weights_sha}`"]
    if source.get("kind") == "authors-checkpoint":
        lines += [f"- Converted from the authors' checkpoint `{source.get('file')}` (sha256 "
                  f"`{source.get('sha256')}`)" + (f", downloaded from {source['url']}" if source.get("url") else ""),
                  f"- Layout `{source.get('layout')}`; kept {source.get('kept_keys')} tensors; dropped "
                  f"{source.get('dropped_keys', 0)} training-only tensors ({source.get('dropped_summary') or 'none'})"
                  + ("; transposed `fc.weight` from the authors' `[D, C]` NormedLinear to `[C, D]`"
                     if source.get("transposed") else ""),
                  f"- Checkpoint metadata: arch `{source.get('authors_arch')}`, epoch {source.get('epoch')}, "
                  f"best_acc1 {source.get('best_acc1')}"]
    elif source.get("kind") == "trained":
        lines += ["- Trained by kcl-models" + (" with the configuration above" if train_config else "")
                  + (f"; trainer export `{source['file']}` (sha256 `{source.get('sha256')}`)"
                     if source.get("file") else "")]
    elif source.get("file"):
        lines += [f"- Source checkpoint `{source['file']}` (sha256 `{source.get('sha256')}`)"]
    else:
        lines += ["- Source: not recorded"]
    sw = prov.get("software") or {}
    if sw:
        lines += ["- Exported with " + ", ".join(f"{k} {v}" for k, v in sw.items())]
    if results:
        ev_sha = (results.get("model") or {}).get("weights_sha256")
        if ev_sha:
            state = "matches" if ev_sha == weights_sha else "**differs from**"
            lines += [f"- Evaluated weights sha256 `{ev_sha}` ({state} `{WEIGHTS_FILE}`)"]
        esw = results.get("software") or {}
        if esw:
            lines += ["- Evaluated with " + ", ".join(f"{k} {v}" for k, v in esw.items())
                      + (f" on {results['created']}" if results.get("created") else "")]
    lines += [""]
    if source.get("kind") == "authors-checkpoint":
        lines += [f"The weights are the authors' work, released alongside their code ({paper['code']}, license "
                  f"{license}); this card's license follows it. The training data's terms of use (e.g. ImageNet's) "
                  "apply as well.", ""]

    lines += ["## Citation", "", "```bibtex", paper["bibtex"], "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# publish


def files_to_upload(folder: str | Path) -> list[str]:
    """Relative paths ``HfApi.upload_folder`` would send (its default ignore patterns applied)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    folder = Path(folder)
    rel = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
    return sorted(filter_repo_objects(rel, ignore_patterns=list(DEFAULT_IGNORE_PATTERNS)))


def _check_folder(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    files = files_to_upload(folder)
    missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE) if f not in files]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: write it with `kcl-hub save` or "
                                f"`hub/convert.py` first")
    pickles = [f for f in files if f.endswith(_PICKLE_SUFFIXES)]
    if pickles:
        raise ValueError(f"{folder} holds pickled files ({', '.join(pickles)}); kcl-models publishes "
                         f"safetensors only: remove them")
    return files


def _check_registry_repo(repo_id: str, config: Mapping) -> None:
    """A repo that a registered ``arch.tag`` points at must hold weights that variant can load."""
    for variant in timm.list_models(["*_kcl", "*_bcl"], pretrained=True):
        cfg = _registered_cfg(variant)
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
            commit_message: str | None = None) -> list[str]:
    """Create ``repo_id`` (if needed) and upload ``folder``.

    Args:
        folder: written by :func:`save_for_hub` / :func:`convert_checkpoint`.
        repo_id: ``org/name`` on the Hub, e.g. ``kcl-models/resnext50_32x4d_bcl.imagenet_lt``.
        private: create the repo private.
        dry_run: print the files and the card metadata that would be sent; contact nobody.
        token: Hub token; ``None`` uses ``HF_TOKEN`` or the cached ``hf auth login`` token. Never printed.
        results: evaluation results JSON; rewrites the card, ``results.json`` and ``per_class.png``
            in the folder before uploading (also with ``dry_run``, so the card can be reviewed).
        commit_message: defaults to ``"Upload <variant> (kcl-models)"``.

    Returns:
        The relative paths uploaded (or that would be).
    """
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.utils import validate_repo_id

    folder = Path(folder)
    try:
        validate_repo_id(repo_id)
    except Exception as err:  # noqa: BLE001 - HFValidationError and friends
        raise ValueError(f"invalid repo id {repo_id!r}: {err}") from None
    if "/" not in repo_id:
        raise ValueError(f"repo id {repo_id!r} needs an organisation or user: '<org>/<name>'")
    _check_folder(folder)
    config = _read_config(folder)
    _check_registry_repo(repo_id, config)  # before touching the folder
    prov = config.get("kcl_models") or {}
    if results is not None or (prov and prov.get("repo_id") != repo_id):
        if not prov:
            raise ValueError(f"{folder / CONFIG_FILE} has no kcl_models block: the card can only be "
                             f"regenerated for folders written by save_for_hub")
        if results is not None:
            res = load_results(results)
            ev_sha = (res.get("model") or {}).get("weights_sha256")
            if ev_sha and ev_sha != sha256_file(folder / WEIGHTS_FILE):
                print(f"warning: results {results} were measured on weights with sha256 {ev_sha}, which differ "
                      f"from {folder / WEIGHTS_FILE}; the card says so", file=sys.stderr)
            results = res
        prov["repo_id"] = repo_id
        config["kcl_models"] = prov
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        write_model_card(folder, results, repo_id=repo_id)
    files = _check_folder(folder)
    card = ModelCard.load(folder / CARD_FILE)  # fails early on broken metadata
    variant = prov.get("variant") or config["architecture"]

    if dry_run:
        sizes = {f: (folder / f).stat().st_size for f in files}
        print(f"[dry run] would create {'private' if private else 'public'} model repo '{repo_id}' "
              f"and upload {len(files)} files from {folder}:")
        for f in files:
            print(f"  {f}  ({sizes[f]:,} bytes)")
        meta = card.data.to_dict()
        print("[dry run] model card metadata:")
        print("  " + yaml.safe_dump(meta, sort_keys=False).rstrip().replace("\n", "\n  "))
        return files

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                      commit_message=commit_message or f"Upload {variant} (kcl-models)")
    print(f"uploaded {len(files)} files to https://huggingface.co/{repo_id}")
    return files


# ----------------------------------------------------------------------------------------------
# convert


def convert_checkpoint(checkpoint: str | Path, arch: str, out_dir: str | Path, layout: str = "auto",
                       num_classes: int | None = None, class_names: Sequence[str] | None = None,
                       source_url: str | None = None, results_json: str | Path | Mapping | None = None,
                       repo_id: str | None = None, overwrite: bool = False) -> tuple[Path, ConvertedCheckpoint]:
    """Convert one of the authors' checkpoints into a Hub-ready timm folder.

    Args:
        checkpoint: ``.pth``/``.pth.tar`` (read with ``weights_only=True``) or ``.safetensors``.
        arch: registered architecture, optionally with a tag (``resnext50_32x4d_bcl.imagenet_lt``).
        out_dir: output folder (see :func:`save_for_hub`).
        layout: ``'auto'``, ``'kcl-stage1'``, ``'kcl-stage2'`` or ``'bcl'``.
        num_classes: expected classifier size; default what the checkpoint holds (0 for KCL stage 1).
        class_names: label names for ``config.json``.
        source_url: where the checkpoint was downloaded from (recorded in the card).
        results_json: evaluation results, if already measured.
        repo_id: Hub repo for the card's snippet.
        overwrite: replace an earlier export.

    Returns:
        ``(out_dir, ConvertedCheckpoint)``.

    Raises:
        CheckpointLoadError: unreadable file or one that needs full unpickling.
        CheckpointMismatchError: missing/unexpected keys or shape mismatches (all listed).
    """
    path = Path(checkpoint)
    raw = load_checkpoint_file(path)
    converted = convert_state_dict(raw, layout)
    model = build_converted_model(converted, arch, num_classes, what=f"checkpoint '{path.name}'")
    best = raw.get("best_acc1")
    if isinstance(best, torch.Tensor) and best.numel() == 1:
        best = float(best)
    elif best is not None and not isinstance(best, (int, float)):
        try:
            best = float(best)
        except (TypeError, ValueError):
            best = str(best)
    paper = _PAPERS["bcl" if converted.layout == "bcl" else "kcl"]
    source = {
        "kind": "authors-checkpoint", "file": path.name, "sha256": sha256_file(path), "url": source_url,
        "layout": converted.layout, "kept_keys": len(converted.state_dict), "dropped_keys": len(converted.dropped),
        "dropped_summary": _summarize_keys(converted.dropped), "transposed": converted.transposed,
        "authors_arch": raw.get("arch") if isinstance(raw.get("arch"), str) else None,
        "epoch": raw.get("epoch") if isinstance(raw.get("epoch"), int) else None, "best_acc1": best,
        "license": paper["code_license"],
    }
    variant = arch if "." in arch else None
    out = save_for_hub(model, results_json, out_dir, source_checkpoint=source, variant=variant, repo_id=repo_id,
                       class_names=class_names, overwrite=overwrite)
    return out, converted


# ----------------------------------------------------------------------------------------------
# manifest and README zoo table


def default_manifest_path() -> Path:
    """``hub/manifest.yaml`` of a source checkout (not shipped in the wheel)."""
    return Path(__file__).resolve().parents[1] / "hub" / "manifest.yaml"


def load_manifest(path: str | Path | None = None) -> dict:
    """Read and check ``hub/manifest.yaml``. Each variant: name, repo, method, dataset, source,
    metrics (path relative to the repository root, or null), status (planned/ready/published)."""
    path = Path(path) if path is not None else default_manifest_path()
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (it lives in hub/ of a source checkout)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML ({err})") from None
    if not isinstance(data, Mapping) or data.get("schema") != MANIFEST_SCHEMA:
        raise ValueError(f"{path}: expected a mapping with schema: {MANIFEST_SCHEMA}")
    variants = data.get("variants")
    if not isinstance(variants, list) or not variants:
        raise ValueError(f"{path}: 'variants' must be a non-empty list")
    seen = set()
    for i, entry in enumerate(variants):
        where = f"{path}: variants[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping")
        for key in ("name", "repo", "method", "dataset", "num_classes", "source", "metrics", "status", "license"):
            if key not in entry:
                raise ValueError(f"{where} ({entry.get('name', '?')}) lacks '{key}'")
        if entry["status"] not in MANIFEST_STATUSES:
            raise ValueError(f"{where} ({entry['name']}): status {entry['status']!r} not in {MANIFEST_STATUSES}")
        if entry["status"] != "planned" and not entry["metrics"]:
            raise ValueError(f"{where} ({entry['name']}): status {entry['status']} needs a metrics file")
        if entry["name"] in seen:
            raise ValueError(f"{where}: duplicate variant {entry['name']!r}")
        seen.add(entry["name"])
    data["_root"] = str(path.resolve().parents[1])
    return dict(data)


def zoo_table_markdown(manifest: str | Path | Mapping | None = None) -> str:
    """README zoo table: one row per manifest variant, numbers from its metrics file (if present),
    paper links and input sizes from the registry's pretrained cfgs."""
    data = manifest if isinstance(manifest, Mapping) else load_manifest(manifest)
    root = Path(data.get("_root") or default_manifest_path().parents[1])
    rows = ["| Model | Method | Dataset | Input | Top-1 | Many / Medium / Few | Paper top-1 | Source | Weights |",
            "|---|---|---|---|---|---|---|---|---|"]
    for entry in data["variants"]:
        name = entry["name"]
        cfg = _registered_cfg(name)
        if not cfg:
            raise ValueError(f"manifest variant {name!r} is not a registered timm arch.tag")
        paper = _PAPERS.get(_METHODS.get(str(entry["method"]).lower(), ("", ""))[0] or "")
        method = f"[{entry['method']}]({paper['url']})" if paper else str(entry["method"])
        size = cfg.get("input_size") or (3, 0, 0)
        top1 = groups = "–"
        metrics_path = root / entry["metrics"] if entry.get("metrics") else None
        if metrics_path is not None and metrics_path.is_file():
            m = load_results(metrics_path)["metrics"]
            top1 = _fmt(m["top1"], 1)
            groups = " / ".join(_fmt(m[k], 1) for k in ("many", "medium", "few"))
        ref = entry.get("paper_top1")
        if entry["status"] == "published":
            weights = f"[{entry['repo']}](https://huggingface.co/{entry['repo']})"
        elif entry["status"] == "ready":
            weights = "ready, not uploaded yet"
        else:
            weights = "not yet available"
        rows.append(f"| `{name}` | {method} | {entry['dataset']} | {size[1]} | {top1} | {groups} | "
                    f"{_fmt(ref, 1) if ref is not None else '–'} | {entry['source']} | {weights} |")
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------------------------
# command line


def _read_class_names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"class-names file not found: {p}")
    names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{p}: no class names (one per line)")
    return names


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kcl-hub", description="Hub folders, uploads and checkpoint conversion "
                                     "for kcl-models.")
    sub = parser.add_subparsers(dest="command", required=True)

    conv = sub.add_parser("convert", help="convert the authors' checkpoint into a Hub-ready timm folder",
                          description="Convert the authors' KCL/BCL checkpoint (strict: every missing, unexpected "
                                      "or mis-shaped key is reported and nothing is written).")
    conv.add_argument("layout", choices=("auto",) + LAYOUTS,
                      help="checkpoint layout: kcl-stage1 (MoCo encoder_q, gives a backbone with num_classes=0), "
                           "kcl-stage2 (linear classifier), bcl (encoder + cosine fc), or auto-detect")
    conv.add_argument("--arch", required=True, help="registered architecture, optionally arch.tag, e.g. "
                      "resnext50_32x4d_bcl or resnet50_kcl.inat2018")
    conv.add_argument("--checkpoint", required=True, help="the authors' .pth/.pth.tar (or .safetensors)")
    conv.add_argument("--out", required=True, help="output folder")
    conv.add_argument("--num-classes", type=int, default=None, help="expected classes (checked)")
    conv.add_argument("--class-names", default=None, help="text file, one class name per line")
    conv.add_argument("--source-url", default=None, help="where the checkpoint came from (for the card)")
    conv.add_argument("--results", default=None, help="results JSON, if already evaluated")
    conv.add_argument("--repo", default=None, help="Hub repo named in the card (default kcl-models/<arch.tag>)")
    conv.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")

    save = sub.add_parser("save", help="write a Hub-ready folder for trained weights",
                          description="Write model.safetensors, config.json and the model card for trained weights.")
    save.add_argument("--model", required=True, help="timm model name (arch.tag) or local-dir:/hf-hub: spec")
    save.add_argument("--weights", default=None, help="timm-format weights (.safetensors, or a .pth read with "
                      "weights_only=True); omit when --model is local-dir:/hf-hub:")
    save.add_argument("--results", required=True, help="results JSON written by eval.py")
    save.add_argument("--out", required=True, help="output folder")
    save.add_argument("--config", default=None, help="training config (YAML/JSON); default results['config']")
    save.add_argument("--variant", default=None, help="arch.tag name (default from the model's pretrained cfg)")
    save.add_argument("--repo", default=None, help="Hub repo named in the card (default kcl-models/<variant>)")
    save.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")

    pub = sub.add_parser("publish", help="create the Hub repo and upload a folder",
                         description="Upload a folder written by `save`/`convert`. The token comes from HF_TOKEN or "
                                     "`hf auth login` and is never printed.")
    pub.add_argument("--folder", required=True)
    pub.add_argument("--repo", required=True, help="org/name, e.g. kcl-models/resnext50_32x4d_bcl.imagenet_lt")
    pub.add_argument("--results", default=None, help="results JSON: rewrite the card with these numbers first")
    pub.add_argument("--private", action="store_true")
    pub.add_argument("--dry-run", action="store_true", help="print the files and card metadata; upload nothing")
    pub.add_argument("--commit-message", default=None)

    zoo = sub.add_parser("zoo-table", help="print README's zoo table from hub/manifest.yaml")
    zoo.add_argument("--manifest", default=None)
    return parser


def _model_for_save(spec: str, weights: str | None, results: Mapping) -> nn.Module:
    num_classes = int(results["model"]["num_classes"])
    if spec.startswith(("local-dir:", "hf-hub:")):
        if weights:
            raise ValueError("--weights is not used with a local-dir:/hf-hub: model (the folder holds the weights)")
        return timm.create_model(spec, pretrained=True).eval()
    if not weights:
        raise ValueError(f"--weights is required with --model {spec} (or pass --model local-dir:<folder>)")
    model = timm.create_model(spec, pretrained=False, num_classes=num_classes)
    converted = convert_state_dict(load_checkpoint_file(weights), layout="kcl-stage2")
    model.load_state_dict(check_state_dict(converted, model, what=f"weights '{weights}'"), strict=True)
    return model.eval()


def main(argv: Sequence[str] | None = None) -> int:
    """``kcl-hub`` console script. Returns the exit status (0 ok, 2 a reported error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            out, conv = convert_checkpoint(
                args.checkpoint, args.arch, args.out, layout=args.layout, num_classes=args.num_classes,
                class_names=_read_class_names(args.class_names), source_url=args.source_url,
                results_json=args.results, repo_id=args.repo, overwrite=args.overwrite)
            print(f"converted {args.checkpoint} ({conv.layout} layout): kept {len(conv.state_dict)} tensors, "
                  f"num_classes={conv.num_classes}" + (f", transposed {', '.join(conv.transposed)}"
                                                       if conv.transposed else ""))
            if conv.dropped:
                print(f"dropped {len(conv.dropped)} training-only tensors: {_summarize_keys(conv.dropped)}")
            print(f"wrote {out}: {', '.join(files_to_upload(out))}")
            if conv.num_classes == 0:
                print("note: a backbone without classifier (num_classes=0); publish it under a repo of its own "
                      "(e.g. <arch>.<tag>_stage1), not the registry's classifier repo")
            print(f"check it: timm.create_model('local-dir:{out}', pretrained=True) after `import kcl_models`")
        elif args.command == "save":
            results = load_results(args.results)
            model = _model_for_save(args.model, args.weights, results)
            source: Any = args.weights
            train_config = args.config
            if args.model.startswith("local-dir:"):
                local = Path(args.model[len("local-dir:"):])
                weights = local / WEIGHTS_FILE  # hash what is exported (the trainer's model/ folder)
                if weights.is_file():
                    source = {"kind": "trained", "file": weights.name, "sha256": sha256_file(weights)}
                if train_config is None and not results.get("config") and (local.parent / "config.yaml").is_file():
                    train_config = local.parent / "config.yaml"  # the trainer saves it next to model/
                    print(f"training config: {train_config}")
            out = save_for_hub(model, results, args.out, train_config=train_config, variant=args.variant,
                               repo_id=args.repo, source_checkpoint=source, overwrite=args.overwrite)
            print(f"wrote {out}: {', '.join(files_to_upload(out))}")
        elif args.command == "publish":
            publish(args.folder, args.repo, private=args.private, dry_run=args.dry_run, results=args.results,
                    commit_message=args.commit_message)
        elif args.command == "zoo-table":
            print(zoo_table_markdown(args.manifest), end="")
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointLoadError) as err:
        print(f"kcl-hub {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - Hub/network errors: one readable line, not a traceback
        mod = type(err).__module__
        if not mod.startswith(("huggingface_hub", "requests", "httpx", "urllib3")):
            raise
        print(f"kcl-hub {args.command}: Hub error: {type(err).__name__}: "
              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
