"""Facts the hub modules share: file names, the papers and methods, the registry's cfgs, timm's own
architecture for a registered one, training-config handling and the folder's ``config.json``."""
from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from torch import nn

from ..models import METHOD_SUFFIXES, STANDARD_ARCHITECTURES, CosineClassifier, list_kcl_models

WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
RESULTS_FILE, PLOT_FILE = "results.json", "per_class.png"
# The plain-timm export of an architecture timm has under another name (resnet50_bcl -> resnet50):
# a sub-folder locally, the branch of the same name on the Hub (`hf-hub:<repo>@timm`).
TIMM_EXPORT = "timm"
OWN_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, RESULTS_FILE, PLOT_FILE, TIMM_EXPORT)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".tar")

# Bibliographic facts as printed on the papers (ICLR 2021 poster / OpenReview page; the arXiv
# listings of BCL, PaCo, GPaCo and ProCo): authors, title, venue, year, identifiers.
PAPERS: dict[str, dict[str, Any]] = {
    "kcl": dict(
        short="KCL", title="Exploring Balanced Feature Spaces for Representation Learning",
        venue="ICLR 2021", url="https://openreview.net/forum?id=OqtLIabPTit", arxiv=None,
        code="https://github.com/bingykang/BalFeat", code_license="cc-by-nc-4.0",
        bibtex="""@inproceedings{kang2021exploring,
  title     = {Exploring Balanced Feature Spaces for Representation Learning},
  author    = {Kang, Bingyi and Li, Yu and Yuan, Zehuan and Feng, Jiashi},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021},
  url       = {https://openreview.net/forum?id=OqtLIabPTit}
}"""),
    "bcl": dict(
        short="BCL", title="Balanced Contrastive Learning for Long-Tailed Visual Recognition",
        venue="CVPR 2022", url="https://arxiv.org/abs/2207.09052", arxiv="2207.09052",
        code="https://github.com/FlamieZhu/Balanced-Contrastive-Learning", code_license="mit",
        bibtex="""@inproceedings{zhu2022balanced,
  title         = {Balanced Contrastive Learning for Long-Tailed Visual Recognition},
  author        = {Zhu, Jianggang and Wang, Zheng and Chen, Jingjing and Chen, Yi-Ping Phoebe and Jiang, Yu-Gang},
  booktitle     = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year          = {2022},
  eprint        = {2207.09052},
  archivePrefix = {arXiv}
}"""),
    "paco": dict(
        short="PaCo", title="Parametric Contrastive Learning", venue="ICCV 2021",
        url="https://arxiv.org/abs/2107.12028", arxiv="2107.12028",
        code="https://github.com/dvlab-research/Parametric-Contrastive-Learning", code_license="mit",
        bibtex="""@inproceedings{cui2021parametric,
  title         = {Parametric Contrastive Learning},
  author        = {Cui, Jiequan and Zhong, Zhisheng and Liu, Shu and Yu, Bei and Jia, Jiaya},
  booktitle     = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year          = {2021},
  eprint        = {2107.12028},
  archivePrefix = {arXiv}
}"""),
    "gpaco": dict(
        short="GPaCo", title="Generalized Parametric Contrastive Learning", venue="TPAMI 2023",
        url="https://arxiv.org/abs/2209.12400", arxiv="2209.12400",
        code="https://github.com/dvlab-research/Parametric-Contrastive-Learning", code_license="mit",
        bibtex="""@article{cui2023generalized,
  title         = {Generalized Parametric Contrastive Learning},
  author        = {Cui, Jiequan and Zhong, Zhisheng and Tian, Zhuotao and Liu, Shu and Yu, Bei and Jia, Jiaya},
  journal       = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year          = {2023},
  eprint        = {2209.12400},
  archivePrefix = {arXiv}
}"""),
    "proco": dict(
        short="ProCo", title="Probabilistic Contrastive Learning for Long-Tailed Visual Recognition",
        venue="TPAMI 2024", url="https://arxiv.org/abs/2403.06726", arxiv="2403.06726",
        code="https://github.com/LeapLabTHU/ProCo", code_license="apache-2.0",
        bibtex="""@article{du2024probabilistic,
  title         = {Probabilistic Contrastive Learning for Long-Tailed Visual Recognition},
  author        = {Du, Chaoqun and Wang, Yulin and Song, Shiji and Huang, Gao},
  journal       = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year          = {2024},
  eprint        = {2403.06726},
  archivePrefix = {arXiv}
}"""),
}

# method -> (paper key, display name, description)
METHODS: dict[str, tuple[str, str, str]] = {
    "kcl": ("kcl", "KCL", "**k-positive contrastive learning (KCL)**, Kang et al., ICLR 2021. Stage 1 learns the "
            "representation MoCo-style: each query's positives are its own key (another augmentation) plus "
            "k = 6 same-class keys drawn from a label-aware queue, which keeps the feature space balanced "
            "across head and tail classes while making it discriminative. Stage 2 (cRT) trains a linear "
            "classifier on the frozen backbone."),
    "fcl": ("kcl", "FCL", "**Full-positive contrastive learning (FCL)**, the KCL paper's baseline: like KCL but "
            "every same-class queue entry is a positive; stage 2 trains a linear classifier on the frozen "
            "backbone."),
    "bcl": ("bcl", "BCL", "**Balanced contrastive learning (BCL)**, Zhu et al., CVPR 2022. A two-branch model: a "
            "cosine classifier (logits = 30 * cos) trained with logit-adjusted cross-entropy, and a supervised "
            "contrastive branch whose loss averages each negative class (class-averaging) and always includes "
            "one prototype per class computed from the classifier weights (class-complement). Only the backbone "
            "and the cosine classifier are published; the contrastive head and the prototype MLP are "
            "training-time only."),
    "supcon": ("bcl", "SupCon", "**Supervised contrastive learning (SupCon)** baseline followed by a linear "
               "classifier."),
    "ce": ("kcl", "CE", "**Cross-entropy (CE)** baseline trained end to end."),
    "paco": ("paco", "PaCo", "**Parametric contrastive learning (PaCo)**, Cui et al., ICCV 2021. The linear "
             "classifier's rows are learnable class centres that sit in the same softmax as MoCo-style "
             "supervised contrast (queries against momentum keys and a queue): one balanced-softmax loss over "
             "centres and samples rebalances how strongly head and tail classes pull. Only the backbone and the "
             "linear classifier are published; the projection MLP, momentum encoder and queue are training-time "
             "only."),
    "gpaco": ("gpaco", "GPaCo", "**Generalized parametric contrastive learning (GPaCo)**, Cui et al., TPAMI 2023. "
              "PaCo without the momentum encoder: both augmented views are anchors, keys come from the same "
              "encoder, and the class centres are the linear classifier's rows. Only the backbone and the linear "
              "classifier are published."),
    "proco": ("proco", "ProCo", "**Probabilistic contrastive learning (ProCo)**, Du et al., TPAMI 2024. Each "
              "class's features are modelled by a von Mises-Fisher distribution estimated online, and the "
              "contrastive loss is taken in closed form over infinitely many samples drawn from it, so tail "
              "classes get a contrast term even when the batch holds none of them; it trains beside a "
              "logit-adjusted classifier, which alone is used at test time and published with the backbone."),
    "la": ("bcl", "LA", "**Logit-adjusted cross-entropy (LA)** baseline (Menon et al.), raw logits at test time."),
    "unknown": ("", "an unrecorded method", "Converted from a checkpoint whose origin kcl-models cannot confirm: "
                "how and by whom these weights were trained is not known (see Provenance)."),
}

# tag -> dataset facts; `datasets` is the card metadata list (Hub dataset ids where one exists)
DATASETS: dict[str, dict[str, Any]] = {
    "imagenet_lt": dict(name="ImageNet-LT", id="imagenet-lt", datasets=["ILSVRC/imagenet-1k"]),
    "inat2018": dict(name="iNaturalist 2018", id="inaturalist-2018", datasets=["inaturalist-2018"]),
    "cifar100_lt_if100": dict(name="CIFAR-100-LT (IF 100)", id="cifar100-lt", datasets=["uoft-cs/cifar100"]),
    "cifar10_lt_if100": dict(name="CIFAR-10-LT (IF 100)", id="cifar10-lt", datasets=["uoft-cs/cifar10"]),
    "digits_lt": dict(name="digits-LT (IF 100, scikit-learn digits)", id="digits-lt", datasets=["digits-lt"]),
}

_LOCAL_PATH_KEYS = ("output_dir", "data_root", "resume", "logging_dir", "project_dir", "cache_dir")


def registered_cfg(variant: str) -> dict[str, Any]:
    """The registry's pretrained cfg of ``arch.tag`` (or ``arch``) as a dict; ``{}`` if unknown."""
    try:
        cfg = timm.models.get_pretrained_cfg(variant)
    except Exception:  # noqa: BLE001 - timm raises different errors for unknown names
        cfg = None
    return cfg.to_dict() if cfg is not None else {}


def method_suffix(arch: str) -> str | None:
    """``resnet50_proco`` -> ``'proco'``: the method a kcl-models architecture is named after."""
    suffix = arch.split(".")[0].rsplit("_", 1)[-1]
    return suffix if suffix in METHOD_SUFFIXES else None


@functools.cache
def has_cosine_head(arch: str) -> bool:
    """The architecture's classifier is a cosine classifier (BCL's, ProCo's on ImageNet/iNat)."""
    try:
        with torch.device("meta"):
            model = timm.create_model(arch.split(".")[0], num_classes=2)
    except Exception:  # noqa: BLE001 - an unregistered name has no cosine head
        return False
    return isinstance(model.get_classifier(), CosineClassifier)


def reverse_standard(arch: str) -> str:
    """``resnet50`` -> ``resnet50_kcl`` when exactly one registered name maps to it."""
    names = [k for k, v in STANDARD_ARCHITECTURES.items() if v == arch]
    return names[0] if len(names) == 1 else arch


@functools.cache
def timm_backbone(arch: str) -> str | None:
    """timm's own architecture whose backbone has exactly the modules and keys of ``arch``
    (``resnet50_bcl`` -> ``resnet50``, ``resnext50_32x4d_bcl`` -> ``resnext50_32x4d``), else None."""
    if arch in STANDARD_ARCHITECTURES:
        return STANDARD_ARCHITECTURES[arch]
    base = arch.rsplit("_", 1)[0]
    if base == arch or not timm.is_model(base):
        return None  # e.g. the CIFAR ResNet-32: timm has no such architecture
    with torch.device("meta"):  # shapes only
        ours = timm.create_model(arch, num_classes=0).state_dict()
        theirs = timm.create_model(base, num_classes=0).state_dict()
    same = {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    return base if same else None


def needs_timm_export(arch: str) -> bool:
    """The main folder names a kcl-models architecture, but timm has the same backbone."""
    return arch not in STANDARD_ARCHITECTURES and timm_backbone(arch) is not None


def variant_of(model: nn.Module, variant: str | None) -> tuple[str, str]:
    """(registered architecture, arch.tag) of ``model``."""
    if variant:
        arch = variant.split(".")[0]
    else:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        arch = reverse_standard(cfg.get("architecture") or "")
        if not arch:
            raise ValueError("model has no pretrained_cfg['architecture']; create it with timm.create_model "
                             "or pass variant='<arch>.<tag>'")
        variant = f"{arch}.{cfg['tag']}" if cfg.get("tag") else arch
    if not timm.is_model(arch):
        raise ValueError(f"architecture {arch!r} is not registered with timm; kcl-models registers "
                         f"{', '.join(list_kcl_models())}")
    return arch, variant


def method_of(arch: str, train_config: Mapping | None, source: Mapping | None = None) -> str:
    """Training method: the training config's ``method``, else what the source says."""
    for cfg in (train_config or {}, *(v for v in (train_config or {}).values() if isinstance(v, Mapping))):
        value = cfg.get("method") if isinstance(cfg, Mapping) else None
        if isinstance(value, str) and value.lower() in METHODS:
            return value.lower()
    source = source or {}
    if source.get("kind") == "converted":
        if not source.get("authors_release"):
            return "unknown"  # a checkpoint of unconfirmed origin: claim nothing
        layout = str(source.get("layout") or "")
        return layout if layout in METHODS else "kcl"  # kcl-stage1 / kcl-stage2
    return method_suffix(arch) or "kcl"


def load_train_config(train_config: str | Path | Mapping | None) -> dict:
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
        raise ValueError(f"{path}: cannot parse the training config ({str(err).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: training config must be a mapping, got {type(data).__name__}")
    return dict(data)


def jsonable(obj: Any) -> Any:
    """Training configs may hold tuples, Paths, tensors: make them JSON/YAML friendly."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def public_config(cfg: Any) -> Any:
    """Training config for a public card: machine-local paths are replaced by a placeholder."""
    if isinstance(cfg, Mapping):
        return {k: ("<local path>" if k in _LOCAL_PATH_KEYS and isinstance(v, str) and v else public_config(v))
                for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [public_config(v) for v in cfg]
    return cfg


def summarize_keys(keys: Sequence[str]) -> str:
    """``['module.head.0.weight', ...]`` -> ``'module.head.* (8), module.head_fc.* (8)'``."""
    groups: Counter[str] = Counter()
    for key in keys:
        parts = key.split(".")
        head = parts[:2] if parts[0] == "module" and len(parts) > 2 else parts[:1]
        groups[".".join(head) + (".*" if len(parts) > len(head) else "")] += 1
    return ", ".join(f"{g} ({n})" for g, n in groups.items())


def read_config(folder: Path) -> dict:
    """The folder's timm ``config.json``; errors name the file."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a folder written by `kcl-hub save` / timm.save_for_hf")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise ValueError(f"{path}: no 'architecture' key; not a timm config.json")
    return config


def is_number(value: Any) -> bool:
    import math
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if is_number(value) else "–"
