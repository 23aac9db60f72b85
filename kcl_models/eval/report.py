"""Results JSON (schema ``kcl-models/results/v1``), markdown tables and plots.

The results JSON written by ``eval.py`` is the single source of every figure in model cards,
README tables and plots. Layout::

    {
      "schema": "kcl-models/results/v1",
      "model": {"name", "architecture", "source", "num_classes", "weights_sha256" (str | null)},
      "data": {"name", "split", "num_samples", "num_classes", "class_names", "train_class_counts"},
      "protocol": "classifier" | "linear_probe" | "knn",
      "shot_thresholds": {"many": int, "few": int, "relative": bool},
      "metrics": {"top1", "top5", "many", "medium", "few", "balancedness", "ece"},
      "per_class": {"accuracy": [float | null], "train_count": [int], "group": [str]},
      "probes": {"linear_probe": {...}, "knn": {...}, "open_set": {...}}   (optional),
      "config": {...},
      "software": {"kcl_models", "torch", "timm", "python", "huggingface_hub", "safetensors"},
      "created": ISO-8601 UTC time,
      "eval_settings": {"sigma": float, "ece_bins": int}   (optional; how beta/ECE were computed)
    }

Accuracies are percentages; ``balancedness`` (KCL Eq. 3, of the protocol's per-class accuracies)
and ``ece`` are fractions. ``null`` marks a shot group without classes (``many``/``medium``/
``few``) or a class without test samples (``per_class.accuracy``). A probe entry holds the seven
metric keys, ``per_class`` (same layout) and ``params``. ``probes.open_set`` holds
``target_classes`` and one probe entry per subset (``target``, optionally ``source``, ``all``),
each with ``classes`` (original class ids of its per-class lists).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA", "PROTOCOLS", "METRIC_KEYS", "ResultsSchemaError", "file_sha256", "software_versions",
    "probe_entry", "build_results", "validate_results", "save_results", "load_results",
    "results_mismatch", "markdown_table", "plot_per_class", "plot_compare",
]

SCHEMA = "kcl-models/results/v1"
PROTOCOLS = ("classifier", "linear_probe", "knn")
METRIC_KEYS = ("top1", "top5", "many", "medium", "few", "balancedness", "ece")
GROUP_COLORS = {"many": "#4C72B0", "medium": "#DD8452", "few": "#C44E52"}


class ResultsSchemaError(ValueError):
    """A results JSON does not follow ``kcl-models/results/v1`` (the message names the key)."""


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file (weights provenance in the results JSON and model cards)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def software_versions() -> dict[str, str]:
    """Versions recorded with results and exports (the one helper for this fact)."""
    import huggingface_hub
    import safetensors
    import timm
    import torch

    from .. import __version__
    return {"kcl_models": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "huggingface_hub": huggingface_hub.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tensors/numpy -> Python numbers, tuples -> lists."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _clean(x.tolist())
    if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def probe_entry(metrics: Mapping) -> dict:
    """The stored form of a ``compute_metrics``/probe result: the seven metric keys, ``per_class``
    (``accuracy``, ``train_count``, ``group``), and ``params``/``classes`` when present."""
    missing = [k for k in (*METRIC_KEYS, "per_class", "groups", "train_count") if k not in metrics]
    if missing:
        raise ResultsSchemaError(f"metrics dict lacks key(s) {missing}; pass a compute_metrics() result")
    out = {k: metrics[k] for k in METRIC_KEYS}
    out["per_class"] = {"accuracy": list(metrics["per_class"]), "train_count": list(metrics["train_count"]),
                        "group": list(metrics["groups"])}
    for extra in ("params", "classes"):
        if extra in metrics:
            out[extra] = metrics[extra]
    return _clean(out)


def build_results(metrics: Mapping, *, model_name: str, data_name: str, split: str, num_samples: int,
                  num_skipped: int = 0,
                  train_class_counts: Sequence[int], architecture: str | None = None,
                  source: str | None = None, num_classes: int | None = None,
                  class_names: Sequence[str] | None = None, protocol: str = "classifier",
                  many: int = 100, few: int = 20, relative: bool = False,
                  probes: Mapping[str, Mapping] | None = None, config: Mapping | None = None,
                  weights_path: str | Path | None = None, weights_sha256: str | None = None,
                  sigma: float | None = None, ece_bins: int | None = None) -> dict:
    """Assemble a ``kcl-models/results/v1`` dict (validated) from a ``compute_metrics`` result.

    Args:
        metrics: ``compute_metrics(...)`` (or ``linear_probe``/``knn_classify``) output of the main
            ``protocol``.
        model_name: what was evaluated (the ``--model`` spec, a timm name, a Hub id).
        data_name, split, num_samples: the evaluation data (``num_samples`` = test samples scored;
            ``num_skipped`` = unreadable test images left out under the skip policy).
        train_class_counts: training images per class (the shot groups' source).
        architecture: timm architecture (default ``model_name``); ``source``: where the weights
            came from (default ``model_name``); ``num_classes``: model classes (default: data's).
        class_names: default ``["0", "1", ...]``.
        protocol: ``'classifier'`` (the model's own head), ``'linear_probe'`` or ``'knn'``.
        many, few, relative: shot-group thresholds used.
        probes: extra results keyed ``linear_probe``/``knn`` (``compute_metrics``-style dicts) and
            ``open_set`` (an ``open_set_probe`` result).
        config: the training config when known.
        weights_path: file to hash (``weights_sha256`` wins when both are given).
        sigma, ece_bins: balancedness kernel width and ECE bins used (stored in ``eval_settings``;
            defaults ``DEFAULT_SIGMA`` and 15, those of ``compute_metrics``).
    """
    from .metrics import DEFAULT_SIGMA
    if protocol not in PROTOCOLS:
        raise ResultsSchemaError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    counts = [int(c) for c in train_class_counts]
    n_cls = len(counts)
    if class_names is None:
        class_names = [str(i) for i in range(n_cls)]
    if weights_sha256 is None and weights_path is not None:
        weights_sha256 = file_sha256(weights_path)
    main = probe_entry(metrics)
    stored_probes: dict[str, Any] = {}
    for name, res in (probes or {}).items():
        if name == "open_set":
            stored_probes[name] = {"target_classes": list(res["target_classes"]),
                                   **{k: probe_entry(v) for k, v in res.items() if k != "target_classes"}}
        else:
            stored_probes[name] = probe_entry(res)
    results = {
        "schema": SCHEMA,
        "model": {"name": str(model_name), "architecture": str(architecture or model_name),
                  "source": str(source or model_name),
                  "num_classes": int(num_classes if num_classes is not None else n_cls),
                  "weights_sha256": weights_sha256},
        "data": {"name": str(data_name), "split": str(split), "num_samples": int(num_samples),
                 "num_skipped": int(num_skipped), "num_classes": n_cls, "class_names": [str(c) for c in class_names],
                 "train_class_counts": counts},
        "protocol": protocol,
        "shot_thresholds": {"many": int(many), "few": int(few), "relative": bool(relative)},
        "metrics": {k: main[k] for k in METRIC_KEYS},
        "per_class": main["per_class"],
        "config": _clean(dict(config or {})),
        "software": software_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "eval_settings": {"sigma": float(DEFAULT_SIGMA if sigma is None else sigma),
                          "ece_bins": int(15 if ece_bins is None else ece_bins)},
    }
    if stored_probes:
        results["probes"] = stored_probes
    validate_results(results)
    return results


def _require(d: Any, key: str, types: type | tuple, where: str, path: str, nullable: bool = False) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise ResultsSchemaError(f"{where}: missing key '{path}{key}'")
    v = d[key]
    if v is None and nullable:
        return v
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(v, types)
    if not ok:
        want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ResultsSchemaError(f"{where}: key '{path}{key}' must be {want}"
                                 f"{' or null' if nullable else ''}, got {type(v).__name__} ({v!r:.60})")
    return v


_NUM = (int, float)


def _check_metric_block(block: Any, where: str, path: str) -> None:
    if not isinstance(block, Mapping):
        raise ResultsSchemaError(f"{where}: '{path.rstrip('.')}' must be an object")
    for k in METRIC_KEYS:
        v = _require(block, k, _NUM, where, path, nullable=k not in ("top1", "top5", "balancedness"))
        if v is not None and not math.isfinite(v):  # NaN/inf would reach cards and tables as numbers
            raise ResultsSchemaError(f"{where}: key '{path}{k}' must be a finite number, got {v!r}")


def _check_per_class(pc: Any, n: int | None, where: str, path: str) -> None:
    acc = _require(pc, "accuracy", list, where, path)
    cnt = _require(pc, "train_count", list, where, path)
    grp = _require(pc, "group", list, where, path)
    lengths = {len(acc), len(cnt), len(grp)}
    if len(lengths) != 1 or (n is not None and lengths != {n}):
        raise ResultsSchemaError(f"{where}: '{path}accuracy/train_count/group' lengths "
                                 f"{len(acc)}/{len(cnt)}/{len(grp)} differ"
                                 + (f" from data.num_classes = {n}" if n is not None else ""))
    bad = sorted({g for g in grp if g not in ("many", "medium", "few")})
    if bad:
        raise ResultsSchemaError(f"{where}: '{path}group' has unknown group(s) {bad}")


def validate_results(results: Any, where: str = "results") -> None:
    """Raise ``ResultsSchemaError`` naming the first missing/ill-typed key (``where`` names the
    file in the message)."""
    if not isinstance(results, Mapping):
        raise ResultsSchemaError(f"{where}: top level must be a JSON object, got {type(results).__name__}")
    schema = _require(results, "schema", str, where, "")
    if schema != SCHEMA:
        raise ResultsSchemaError(f"{where}: schema is {schema!r}, expected {SCHEMA!r}")
    model = _require(results, "model", Mapping, where, "")
    for k in ("name", "architecture", "source"):
        _require(model, k, str, where, "model.")
    _require(model, "num_classes", int, where, "model.")
    _require(model, "weights_sha256", str, where, "model.", nullable=True)
    data = _require(results, "data", Mapping, where, "")
    for k in ("name", "split"):
        _require(data, k, str, where, "data.")
    _require(data, "num_samples", int, where, "data.")
    n = _require(data, "num_classes", int, where, "data.")
    for k in ("class_names", "train_class_counts"):
        if len(_require(data, k, list, where, "data.")) != n:
            raise ResultsSchemaError(f"{where}: 'data.{k}' has {len(data[k])} entries, "
                                     f"data.num_classes is {n}")
    protocol = _require(results, "protocol", str, where, "")
    if protocol not in PROTOCOLS:
        raise ResultsSchemaError(f"{where}: protocol {protocol!r} is not one of {PROTOCOLS}")
    st = _require(results, "shot_thresholds", Mapping, where, "")
    _require(st, "many", int, where, "shot_thresholds.")
    _require(st, "few", int, where, "shot_thresholds.")
    _require(st, "relative", bool, where, "shot_thresholds.")
    _check_metric_block(_require(results, "metrics", Mapping, where, ""), where, "metrics.")
    _check_per_class(_require(results, "per_class", Mapping, where, ""), n, where, "per_class.")
    if "probes" in results:
        probes = _require(results, "probes", Mapping, where, "")
        for name, block in probes.items():
            if name == "open_set":
                _require(block, "target_classes", list, where, "probes.open_set.")
                subsets = [k for k in block if k != "target_classes"]
                if "target" not in subsets:
                    raise ResultsSchemaError(f"{where}: missing key 'probes.open_set.target'")
                for sub in subsets:
                    p = f"probes.open_set.{sub}."
                    _check_metric_block(block[sub], where, p)
                    _check_per_class(_require(block[sub], "per_class", Mapping, where, p), None, where,
                                     p + "per_class.")
            else:
                _check_metric_block(block, where, f"probes.{name}.")
                _check_per_class(_require(block, "per_class", Mapping, where, f"probes.{name}."), n, where,
                                 f"probes.{name}.per_class.")
    _require(results, "config", Mapping, where, "")
    sw = _require(results, "software", Mapping, where, "")
    for k in ("kcl_models", "torch", "timm", "python"):
        _require(sw, k, str, where, "software.")
    _require(results, "created", str, where, "")


def save_results(results: Mapping, path: str | Path) -> Path:
    """Validate and write ``results`` as indented JSON (NaN written as ``null``), atomically."""
    from ..utils.io import atomic_write_text

    path = Path(path)
    clean = _clean(results)
    validate_results(clean, where=str(path))
    return atomic_write_text(path, json.dumps(clean, indent=2, allow_nan=False) + "\n")


def load_results(path: str | Path | Mapping, where: str = "results") -> dict:
    """Read and validate a results JSON; errors name the file (and line, or the missing key).

    An already parsed dict is validated (``where`` names it in errors) and returned as a copy.
    """
    if isinstance(path, Mapping):
        validate_results(path, where=where)
        return json.loads(json.dumps(path))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsSchemaError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    validate_results(results, where=str(path))
    return results


def results_mismatch(results: Mapping, architectures: Sequence[str], weights_sha256: Sequence[str]) -> list[str]:
    """Why ``results`` may not describe given weights: ``[]`` when ``model.architecture`` is one of
    ``architectures`` (the tag is ignored) and ``model.weights_sha256`` one of ``weights_sha256``."""
    problems = []
    arch = str(results["model"]["architecture"]).split(".", 1)[0]
    names = sorted({a.split(".", 1)[0] for a in architectures if a})
    if arch not in names:
        problems.append(f"they were measured on architecture '{arch}', these weights are {' / '.join(names)}")
    sha = results["model"].get("weights_sha256")
    if sha is None:
        problems.append("they record no weights sha256, so nothing shows they were measured on these weights")
    elif sha not in set(weights_sha256):
        problems.append(f"they were measured on weights with sha256 {sha}, these weights have "
                        f"{' / '.join(dict.fromkeys(weights_sha256))}")
    return problems


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _rows(results: Mapping) -> list[tuple[str, Mapping]]:
    rows = [(results["protocol"], results["metrics"])]
    for name, block in results.get("probes", {}).items():
        if name == results["protocol"]:
            continue
        if name == "open_set":
            rows += [(f"open_set:{sub}", blk) for sub, blk in block.items() if sub != "target_classes"]
        else:
            rows.append((name, block))
    return rows


def markdown_table(results_list: Sequence[Mapping] | Mapping) -> str:
    """One row per (results file, protocol): model, data/split, protocol, top-1, top-5,
    many/medium/few, balancedness beta, ECE (accuracies in %)."""
    if isinstance(results_list, Mapping):
        results_list = [results_list]
    lines = ["| model | data (split) | protocol | top-1 | top-5 | many | medium | few | beta | ECE |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for res in results_list:
        data = f"{res['data']['name']} ({res['data']['split']})"
        for proto, m in _rows(res):
            lines.append(f"| {res['model']['name']} | {data} | {proto} | {_fmt(m['top1'])} | "
                         f"{_fmt(m['top5'])} | {_fmt(m['many'])} | {_fmt(m['medium'])} | {_fmt(m['few'])} | "
                         f"{_fmt(m['balancedness'], 3)} | {_fmt(m['ece'], 3)} |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)  # files only, never a display
    import matplotlib.pyplot as plt
    return plt


def _save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, write atomically (creating the folder) and close a matplotlib figure."""
    import io

    import matplotlib.pyplot as plt

    from ..utils.io import atomic_write_bytes
    fig.tight_layout()
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_per_class(results: Mapping, path: str | Path, protocol: str | None = None) -> Path:
    """Per-class accuracy (bars, coloured by shot group) against training frequency (line, log
    scale), classes sorted by training count, with a shaded band per shot group labelled with its
    accuracy. ``protocol``: ``None`` for the main one, or a probe name (``linear_probe``, ``knn``)."""
    plt = _pyplot()
    if protocol is None or protocol == results["protocol"]:
        per_class, metrics, label = results["per_class"], results["metrics"], results["protocol"]
    else:
        if protocol not in results.get("probes", {}):
            raise ValueError(f"results have no probe {protocol!r}; available: {list(results.get('probes', {}))}")
        metrics = results["probes"][protocol]
        per_class, label = metrics["per_class"], protocol
    acc = per_class["accuracy"]
    counts = per_class["train_count"]
    groups = per_class["group"]
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    x = list(range(len(order)))
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, 0.12 * len(order) + 4)), 4.2), dpi=110)
    for g in ("many", "medium", "few"):
        idx = [k for k, i in enumerate(order) if groups[i] == g]
        if not idx:
            continue
        ax.axvspan(min(idx) - 0.5, max(idx) + 0.5, color=GROUP_COLORS[g], alpha=0.08, lw=0)
        val = metrics[g]
        ax.text((min(idx) + max(idx)) / 2, 103, f"{g}\n{_fmt(val, 1)}%", ha="center", va="bottom",
                fontsize=8, color=GROUP_COLORS[g])
    heights = [acc[i] if acc[i] is not None else 0.0 for i in order]
    colors = [GROUP_COLORS[groups[i]] for i in order]
    ax.bar(x, heights, color=colors, width=0.85)
    ax.set_ylim(0, 115)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("classes, sorted by training images")
    if len(order) <= 30:
        names = results["data"]["class_names"]
        ax.set_xticks(x)
        ax.set_xticklabels([str(names[i]) if len(names) == len(counts) else str(i) for i in order],
                           fontsize=7, rotation=90 if len(order) > 12 else 0)
    ax2 = ax.twinx()
    ax2.plot(x, [max(counts[i], 0.5) for i in order], color="black", lw=1.2, marker=".", ms=3)
    ax2.set_yscale("log")
    ax2.set_ylabel("training images (log)")
    ax.set_title(f"{results['model']['name']} on {results['data']['name']} ({results['data']['split']}), "
                 f"{label}: top-1 {_fmt(metrics['top1'], 1)}%, beta {_fmt(metrics['balancedness'], 3)}",
                 fontsize=9)
    return _save_figure(fig, path)


def plot_compare(results_list: Sequence[Mapping], path: str | Path,
                 keys: Sequence[str] = ("top1", "many", "medium", "few")) -> Path:
    """Grouped bar chart: one group per metric in ``keys``, one bar per results file (its main
    protocol), labelled with model name and protocol; balancedness in the legend."""
    if not results_list:
        raise ValueError("plot_compare needs at least one results dict")
    plt = _pyplot()
    n = len(results_list)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(keys) + 0.4 * n), 4.2), dpi=110)
    cmap = plt.get_cmap("tab10")
    for j, res in enumerate(results_list):
        m = res["metrics"]
        vals = [m[k] if m.get(k) is not None else 0.0 for k in keys]
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(keys))]
        label = f"{res['model']['name']} [{res['protocol']}] beta={_fmt(m['balancedness'], 3)}"
        bars = ax.bar(xs, vals, width=width * 0.95, color=cmap(j % 10), label=label)
        for b, v in zip(bars, (m.get(k) for k in keys)):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, _fmt(v, 1), ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(n, 2), frameon=False)
    datas = sorted({f"{r['data']['name']} ({r['data']['split']})" for r in results_list})
    ax.set_title("; ".join(datas), fontsize=9)
    return _save_figure(fig, path)
