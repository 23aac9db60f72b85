"""``hub/manifest.yaml`` (every registered variant and where its weights come from), the README's
zoo table generated from it, and the sha256 of the authors' releases it records."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..eval.report import load_results
from ._meta import METHODS, PAPERS, fmt, registered_cfg

__all__ = ["MANIFEST_SCHEMA", "MANIFEST_STATUSES", "default_manifest_path", "load_manifest", "zoo_table_markdown",
           "authors_release_for"]

MANIFEST_SCHEMA = "kcl-models/manifest/v1"
MANIFEST_STATUSES = ("planned", "ready", "published")
_REQUIRED = ("name", "repo", "method", "dataset", "num_classes", "source", "metrics", "status", "license")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def default_manifest_path() -> Path:
    """``hub/manifest.yaml`` of a source checkout (not shipped in the wheel)."""
    return Path(__file__).resolve().parents[2] / "hub" / "manifest.yaml"


def _check_release(release: object, where: str) -> None:
    """``authors_release``: ``{file, url, sha256}``; ``sha256`` null while the real one is unknown."""
    if not isinstance(release, Mapping) or not {"file", "url", "sha256"} <= set(release):
        raise ValueError(f"{where}: 'authors_release' needs file, url and sha256 (null when unknown)")
    sha = release["sha256"]
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise ValueError(f"{where}: authors_release.sha256 {sha!r} is not 64 lower-case hex digits (or null)")


def load_manifest(path: str | Path | None = None) -> dict:
    """Read and check ``hub/manifest.yaml``. Each variant: name, repo, method, dataset, num_classes,
    source, metrics (path relative to the repository root, or null), status (planned/ready/
    published), license, and optionally ``authors_release`` for weights converted from the papers'
    own release."""
    path = Path(path) if path is not None else default_manifest_path()
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (it lives in hub/ of a source checkout)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
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
        for key in _REQUIRED:
            if key not in entry:
                raise ValueError(f"{where} ({entry.get('name', '?')}) lacks '{key}'")
        if entry["status"] not in MANIFEST_STATUSES:
            raise ValueError(f"{where} ({entry['name']}): status {entry['status']!r} not in {MANIFEST_STATUSES}")
        if entry["status"] != "planned" and not entry["metrics"]:
            raise ValueError(f"{where} ({entry['name']}): status {entry['status']} needs a metrics file")
        if entry.get("authors_release") is not None:
            _check_release(entry["authors_release"], f"{where} ({entry['name']})")
        if entry["name"] in seen:
            raise ValueError(f"{where}: duplicate variant {entry['name']!r}")
        seen.add(entry["name"])
    data = dict(data)
    data["_root"] = str(path.resolve().parents[1])
    return data


def authors_release_for(sha256: str, manifest: str | Path | Mapping | None = None) -> dict | None:
    """``{"variant", "file", "url", "sha256"}`` of the authors' release whose recorded sha256 equals
    ``sha256``; ``None`` when none does or no manifest is at hand (an installed package)."""
    if isinstance(manifest, Mapping):
        data = manifest
    else:
        path = Path(manifest) if manifest is not None else default_manifest_path()
        if manifest is None and not path.is_file():
            return None
        data = load_manifest(path)
    for entry in data["variants"]:
        release = entry.get("authors_release") or {}
        if release.get("sha256") and release["sha256"] == sha256:
            return {"variant": entry["name"], "file": release["file"], "url": release["url"], "sha256": sha256}
    return None


def zoo_table_markdown(manifest: str | Path | Mapping | None = None) -> str:
    """README zoo table: one row per manifest variant, numbers from its metrics file (if present),
    paper links and input sizes from the registry's pretrained cfgs."""
    data = manifest if isinstance(manifest, Mapping) else load_manifest(manifest)
    root = Path(data.get("_root") or default_manifest_path().parents[1])
    rows = ["| Model | Method | Dataset | Input | Top-1 | Many / Medium / Few | Paper top-1 | Source | Weights |",
            "|---|---|---|---|---|---|---|---|---|"]
    for entry in data["variants"]:
        name = entry["name"]
        cfg = registered_cfg(name)
        if not cfg:
            raise ValueError(f"manifest variant {name!r} is not a registered timm arch.tag")
        paper = PAPERS.get(METHODS.get(str(entry["method"]).lower(), ("",))[0])
        method = f"[{entry['method']}]({paper['url']})" if paper else str(entry["method"])
        size = cfg.get("input_size") or (3, 0, 0)
        top1 = groups = "–"
        metrics_path = root / entry["metrics"] if entry.get("metrics") else None
        if metrics_path is not None and metrics_path.is_file():
            m = load_results(metrics_path)["metrics"]
            top1 = fmt(m["top1"], 1)
            groups = " / ".join(fmt(m[k], 1) for k in ("many", "medium", "few"))
        ref = entry.get("paper_top1")
        if entry["status"] == "published":
            weights = f"[{entry['repo']}](https://huggingface.co/{entry['repo']})"
        elif entry["status"] == "ready":
            weights = "ready, not uploaded yet"
        else:
            weights = "not yet available"
        rows.append(f"| `{name}` | {method} | {entry['dataset']} | {size[1]} | {top1} | {groups} | "
                    f"{fmt(ref, 1) if ref is not None else '–'} | {entry['source']} | {weights} |")
    return "\n".join(rows) + "\n"
