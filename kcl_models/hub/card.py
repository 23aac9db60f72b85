"""Model cards like timm's: model stats, usage (classification, feature maps, embeddings,
fine-tuning, with what loads where), our measured results, provenance and the papers' bibtex.

Every figure comes from the results JSON (``kcl_models.eval.report`` owns its schema); the card's
``model-index`` rounds accuracies to 2 decimals and the balancedness fraction to 4.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..eval.report import SCHEMA, file_sha256, load_results, plot_per_class, results_mismatch
from ..models import hub_id
from ..utils.io import atomic_write_text
from ._meta import (
    CARD_FILE,
    CONFIG_FILE,
    DATASETS,
    METHODS,
    PAPERS,
    PLOT_FILE,
    RESULTS_FILE,
    TIMM_EXPORT,
    WEIGHTS_FILE,
    fmt,
    has_cosine_head,
    is_number,
    method_suffix,
    read_config,
    registered_cfg,
    reverse_standard,
    timm_backbone,
)
from .stats import feature_shapes, format_count, model_stats

__all__ = ["card_metric_name", "write_model_card", "ResultsMismatchError"]

# results key -> (model-index metric type, display name, decimals)
_CARD_METRICS = (
    ("top1", "accuracy", "Top-1 accuracy", 2),
    ("top5", "accuracy", "Top-5 accuracy", 2),
    ("many", "accuracy", "Top-1 accuracy (many-shot)", 2),
    ("medium", "accuracy", "Top-1 accuracy (medium-shot)", 2),
    ("few", "accuracy", "Top-1 accuracy (few-shot)", 2),
    ("balancedness", "balancedness", "Balancedness (KCL Eq. 3)", 4),  # a fraction: 4 decimals = 0.01 %
)


class ResultsMismatchError(ValueError):
    """A results JSON that may describe other weights (architecture or sha256 differ)."""


def card_metric_name(key: str, protocol: str = "classifier") -> str:
    """Display name under which metric ``key`` of the results JSON appears in the card's model-index."""
    names = {k: n for k, _, n, _ in _CARD_METRICS}
    return names[key] + ("" if protocol == "classifier" else f" [{protocol}]")


def check_results_fit(results: Mapping, num_classes: int, where: str) -> None:
    n = results["data"]["num_classes"]
    if results["protocol"] == "classifier":
        if num_classes == 0:
            raise ValueError(f"{where}: classifier results, but the model has no classifier (num_classes=0); "
                             f"publish linear_probe or knn results for a backbone")
        if n != num_classes:
            raise ValueError(f"{where}: results are for {n} classes, the model has num_classes={num_classes}")


def _eval_results(results: Mapping, dataset: Mapping) -> list:
    from huggingface_hub import EvalResult

    protocol = results["protocol"]
    suffix = "" if protocol == "classifier" else f" [{protocol}]"
    common = dict(task_type="image-classification", task_name="Long-tailed image classification",
                  dataset_type=dataset["id"], dataset_name=dataset["name"],
                  dataset_split=str(results["data"]["split"]))
    out = []
    for key, mtype, name, digits in _CARD_METRICS:
        value = results["metrics"].get(key)
        if is_number(value):
            out.append(EvalResult(metric_type=mtype, metric_name=name + suffix, metric_value=round(value, digits),
                                  **common))
    for probe, metrics in (results.get("probes") or {}).items():
        value = metrics.get("top1") if isinstance(metrics, Mapping) else None
        if is_number(value):
            out.append(EvalResult(metric_type="accuracy", metric_name=f"Top-1 accuracy [{probe}]",
                                  metric_value=round(value, 2), **common))
    return out


def _weights_shas(folder: Path, prov: Mapping) -> list[str]:
    """The folder's weights, and the file they were exported or converted from (same tensors)."""
    shas = [file_sha256(folder / WEIGHTS_FILE)]
    src = (prov.get("source") or {}).get("sha256")
    return shas + ([src] if src and src not in shas else [])


def write_model_card(folder: str | Path, results: str | Path | Mapping | None = None,
                     repo_id: str | None = None, force: bool = False) -> Path:
    """(Re)write ``README.md`` of a folder written by ``save_for_hub`` (and of its ``timm/`` export).

    With ``results`` it also writes ``results.json`` and ``per_class.png``; without, an existing
    ``results.json`` in the folder is used. Results measured on another architecture or on other
    weights (``model.weights_sha256`` differs from the folder's and its source's) raise
    :class:`ResultsMismatchError` unless ``force``, which the card then states.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    config = read_config(folder)
    prov = dict(config.get("kcl_models") or {})
    pcfg = config.get("pretrained_cfg") or {}
    arch = prov.get("architecture") or reverse_standard(config["architecture"])
    variant = prov.get("variant") or (f"{arch}.{pcfg['tag']}" if pcfg.get("tag") else arch)
    if repo_id and prov:
        prov["repo_id"] = repo_id  # the repo this card (and publish) names
    repo_id = repo_id or prov.get("repo_id") or hub_id(variant)
    num_classes = int(config.get("num_classes", 0))
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder / WEIGHTS_FILE} not found")

    new_results = results is not None
    if new_results:
        where = str(results) if isinstance(results, (str, Path)) else "results"
        results = load_results(results, where=where)
        check_results_fit(results, num_classes, where)
        problems = results_mismatch(results, [arch, config["architecture"]], _weights_shas(folder, prov))
        if problems and not force:
            raise ResultsMismatchError(f"{where}: these results may not describe {folder / WEIGHTS_FILE}: "
                                       f"{'; '.join(problems)}. Evaluate these weights (eval.py), or pass "
                                       f"--force to publish them anyway (the card will say so)")
        if problems:
            prov["forced_results"] = problems
        else:
            prov.pop("forced_results", None)
    elif (folder / RESULTS_FILE).is_file():
        results = load_results(folder / RESULTS_FILE)
    if prov != (config.get("kcl_models") or {}):
        config["kcl_models"] = prov
        atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    if new_results:
        atomic_write_text(folder / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
        plot_per_class(results, folder / PLOT_FILE)

    source = prov.get("source") or {}
    method = prov.get("method") or "unknown"
    paper_key, method_name, method_text = METHODS.get(method, METHODS["unknown"])
    arch_paper = method_suffix(arch) or "kcl"
    papers = list(dict.fromkeys([paper_key or arch_paper, "kcl"]))  # KCL defines the balancedness metric
    tag = variant.split(".", 1)[1] if "." in variant else ""
    # the tag names the dataset only when the classifier fits it (an 8142-class head is no ImageNet-LT model)
    dataset = dict(DATASETS.get(tag) or {}) if num_classes in (0, registered_cfg(variant).get("num_classes")) else {}
    if not dataset:
        name = str(results["data"]["name"]) if results else (tag or "unknown")
        dataset = dict(name=name, id=name.lower().replace(" ", "-"), datasets=[name.lower().replace(" ", "-")])
    license = prov.get("license") or pcfg.get("license") or "apache-2.0"
    tags = ["image-classification", "timm", "long-tailed-recognition", "contrastive-learning", "kcl-models",
            *([method] if method != "unknown" else []), dataset["id"]]
    tags += [f"arxiv:{PAPERS[p]['arxiv']}" for p in papers if PAPERS[p]["arxiv"]]
    card_data = ModelCardData(
        model_name=variant, library_name="timm", pipeline_tag="image-classification", license=license,
        tags=list(dict.fromkeys(tags)), datasets=dataset["datasets"],
        metrics=["accuracy"] if results else None,
        eval_results=_eval_results(results, dataset) if results else None,
    )
    input_size = list(pcfg.get("input_size") or [3, 224, 224])
    model_args = config.get("model_args") or {}
    ctx = dict(variant=variant, arch=arch, repo_id=repo_id, config=config, prov=prov, source=source,
               method_name=method_name, method_text=method_text, papers=papers, dataset=dataset,
               results=results, weights_sha=file_sha256(folder / WEIGHTS_FILE), license=license,
               stats=model_stats(arch, num_classes, input_size, model_args),
               shapes=feature_shapes(arch, input_size, model_args), timm_arch=timm_backbone(arch),
               export=(folder / TIMM_EXPORT / WEIGHTS_FILE).is_file())
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n{_card_body(**ctx)}")
    atomic_write_text(folder / CARD_FILE, card.content)
    if ctx["export"]:
        _write_export_card(folder / TIMM_EXPORT, **ctx)
    return folder / CARD_FILE


def _python(lines: list[str]) -> list[str]:
    return ["```python", *lines, "```", ""]


def _prelude(import_kcl: bool) -> list[str]:
    return (["import kcl_models  # registers the kcl-models architectures with timm"] if import_kcl else []) + [
        "import timm", "import torch", "from PIL import Image", ""]


def _transform_lines(model_var: str = "model") -> list[str]:
    return [f"config = timm.data.resolve_model_data_config({model_var})",
            "transform = timm.data.create_transform(**config, is_training=False)",
            "x = transform(Image.open(\"image.png\").convert(\"RGB\")).unsqueeze(0)"]


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _usage(*, variant: str, arch: str, repo_id: str, config: Mapping, timm_arch: str | None, export: bool,
           shapes: Mapping, **_: Any) -> list[str]:
    num_classes = int(config.get("num_classes", 0))
    standard = timm_arch is not None and config["architecture"] == timm_arch  # the main folder is plain timm
    plain_repo = repo_id if standard else (f"{repo_id}@{TIMM_EXPORT}" if export else None)
    main_kcl = not standard
    lines = ["## Usage", ""]
    if timm_arch is None:
        lines += ["```bash", "pip install kcl-models", "```", "",
                  f"timm has no `{arch}`: `import kcl_models` registers it, then every timm call below works.", ""]
    lines += ["### What loads where", "", "| To get | Call | Needs |", "|---|---|---|"]
    if standard:
        lines += [f"| everything below | `timm.create_model(\"hf-hub:{repo_id}\", pretrained=True)` | timm only: "
                  f"`config.json` names timm's `{timm_arch}` |"]
    else:
        exact = "the cosine classifier, the logits evaluated below" if has_cosine_head(arch) else "the classifier"
        lines += [f"| {exact} | `timm.create_model(\"hf-hub:{repo_id}\", pretrained=True)` | `pip install "
                  f"kcl-models`, `import kcl_models` first |"]
        if plain_repo:
            lines += [f"| a backbone to fine-tune, features | `timm.create_model(\"hf-hub:{plain_repo}\", "
                      f"pretrained=True, num_classes=N)` | timm only: branch `{TIMM_EXPORT}` holds a `{timm_arch}` |"]
            if num_classes:
                lines += [f"| a classifier in plain timm | `timm.create_model(\"hf-hub:{plain_repo}\", "
                          f"pretrained=True)` | timm only; linear `fc` = w / ‖w‖, bias 0: the same ranking as "
                          f"the cosine classifier (identical top-1/top-5 predictions), logits = these logits x "
                          f"‖h‖ / {config.get('model_args', {}).get('cls_scale', 30)} |"]
    if repo_id == hub_id(variant) and registered_cfg(variant).get("num_classes") == num_classes:
        lines += [f"| the same weights by registered name | `timm.create_model(\"{variant}\", pretrained=True)` | "
                  f"`import kcl_models` first |"]
    lines += [""]

    top = min(5, num_classes)
    if num_classes:
        lines += ["### Image classification", ""]
        lines += _python(_prelude(main_kcl) + [
            f"model = timm.create_model(\"hf-hub:{repo_id}\", pretrained=True).eval()", *_transform_lines(),
            "with torch.no_grad():", f"    probs = model(x).softmax(dim=-1)  # {_shape([1, num_classes])}",
            f"top_probs, top_classes = probs.topk({top})  # the {top} most likely classes"])
    feat_repo = plain_repo or repo_id
    feat_kcl = plain_repo is None
    lines += ["### Feature maps", ""]
    lines += _python(_prelude(feat_kcl) + [
        f"model = timm.create_model(\"hf-hub:{feat_repo}\", pretrained=True, features_only=True).eval()",
        *_transform_lines(), "with torch.no_grad():", "    maps = model(x)",
        "for fmap in maps:",
        "    print(fmap.shape)  # " + ", ".join(_shape(s) for s in shapes["feature_maps"])])
    lines += ["### Image embeddings", ""]
    lines += _python(_prelude(feat_kcl) + [
        f"model = timm.create_model(\"hf-hub:{feat_repo}\", pretrained=True, num_classes=0).eval()  # no classifier",
        *_transform_lines(), "with torch.no_grad():",
        f"    embedding = model(x)  # {_shape(shapes['pooled'])}, pooled features",
        f"    unpooled = model.forward_features(x)  # {_shape(shapes['unpooled'])}",
        f"    embedding = model.forward_head(unpooled, pre_logits=True)  # {_shape(shapes['pooled'])}"])
    lines += ["### Fine-tuning", ""]
    lines += _python((["import kcl_models  # registers the kcl-models architectures with timm"] if feat_kcl else [])
                     + ["import timm", "",
                        f"model = timm.create_model(\"hf-hub:{feat_repo}\", pretrained=True, num_classes=5)  "
                        "# backbone weights, a new 5-class head"])
    return lines


def _details(*, arch: str, config: Mapping, prov: Mapping, papers: list[str], dataset: Mapping, license: str,
             stats: Mapping, timm_arch: str | None, **_: Any) -> list[str]:
    pcfg = config.get("pretrained_cfg") or {}
    num_classes = int(config.get("num_classes", 0))
    cls_scale = (config.get("model_args") or {}).get("cls_scale")
    head = ((f"cosine classifier (no bias, logits = {cls_scale if cls_scale is not None else 30} * cos)"
             if has_cosine_head(arch) else "linear classifier") if num_classes
            else "none (backbone only, `num_classes=0`: pooled features)")
    if timm_arch and config["architecture"] == timm_arch:
        where = f"same modules and keys as timm's `{timm_arch}`; `config.json` names `{timm_arch}`"
    elif timm_arch:
        where = f"registered by `import kcl_models`; its backbone is timm's `{timm_arch}`"
    else:
        where = "registered by `import kcl_models`; timm has no such architecture"
    h, w = stats["image_size"]
    lines = ["## Model details", "",
             "- **Model type:** image classification / feature backbone for long-tailed recognition",
             "- **Model stats:**",
             f"  - Params (M): {format_count(stats['params'] / 1e6)}",
             f"  - GMACs: {format_count(stats['macs'] / 1e9)}",
             f"  - Activations (M): {format_count(stats['activations'] / 1e6)}",
             f"  - Image size: {h} x {w}",
             f"- **Architecture:** `{arch}` ({where})",
             f"- **Classifier:** {head}; {num_classes} classes",
             f"- **Features:** {config.get('num_features')}-d, global {config.get('global_pool', 'avg')} pooling",
             f"- **Preprocessing:** mean {list(pcfg.get('mean', []))}, std {list(pcfg.get('std', []))}, crop_pct "
             f"{pcfg.get('crop_pct')}, {pcfg.get('interpolation')} interpolation",
             f"- **Dataset:** {dataset['name']}",
             "- **Papers:**"]
    lines += [f"  - [{PAPERS[p]['title']}]({PAPERS[p]['url']}) ({PAPERS[p]['venue']}); code: {PAPERS[p]['code']}"
              for p in papers]
    if pcfg.get("notes"):
        lines += [f"- **Registry notes:** {pcfg['notes']}"]
    lines += [f"- **License:** {license}",
              f"- **Files:** `{WEIGHTS_FILE}` holds the backbone and classifier only (safetensors); projection "
              "heads, prototype MLPs, momentum encoders and queues stay in training checkpoints.", ""]
    return lines


def _results_section(*, results: Mapping | None, prov: Mapping, **_: Any) -> list[str]:
    lines = ["## Results", ""]
    if prov.get("forced_results"):
        lines += [f"> **Published with `--force`:** these results may not describe these weights: "
                  f"{'; '.join(prov['forced_results'])}.", ""]
    if not results:
        return lines + ["Not evaluated yet: run `eval.py` on these weights and publish with "
                        "`python hub/publish.py --folder <this folder> --results <results.json> --repo <repo>`, "
                        "which rewrites this card with the measured numbers.", ""]
    data, thr, m = results["data"], results.get("shot_thresholds") or {}, results["metrics"]
    split_rule = ("relative log-count bands" if thr.get("relative")
                  else f"many > {thr.get('many', 100)}, few < {thr.get('few', 20)} training images")
    lines += [f"Measured by `eval.py` on **{data['name']}** split `{data['split']}` ({data['num_samples']} "
              f"images, {data['num_classes']} classes), protocol `{results['protocol']}`; shot groups: "
              f"{split_rule}. Accuracies in %; balancedness β (KCL Eq. 3) in [0, 1].", "",
              "| Top-1 | Top-5 | Many | Medium | Few | Balancedness β | ECE |", "|---|---|---|---|---|---|---|",
              "| " + " | ".join([fmt(m.get("top1")), fmt(m.get("top5")), fmt(m.get("many")), fmt(m.get("medium")),
                                fmt(m.get("few")), fmt(m.get("balancedness"), 4), fmt(m.get("ece"), 4)]) + " |", ""]
    groups, counts = results["per_class"]["group"], results["per_class"]["train_count"]
    lines += ["| Shot group | Classes | Training images | Top-1 |", "|---|---|---|---|"]
    for g in ("many", "medium", "few"):
        idx = [i for i, x in enumerate(groups) if x == g]
        lines.append(f"| {g} | {len(idx)} | {sum(counts[i] for i in idx)} | {fmt(m.get(g))} |")
    lines.append("")
    probes = {k: v for k, v in (results.get("probes") or {}).items()
              if isinstance(v, Mapping) and is_number(v.get("top1"))}  # open_set has sub-blocks
    if probes:
        lines += ["| Probe | Top-1 | Many | Medium | Few |", "|---|---|---|---|---|"]
        lines += [f"| {name} | " + " | ".join(fmt(pm.get(k)) for k in ("top1", "many", "medium", "few")) + " |"
                  for name, pm in probes.items()]
        lines.append("")
    return lines + [f"![Per-class accuracy, classes sorted by training images]({PLOT_FILE})", "",
                    f"Every figure comes from [`{RESULTS_FILE}`]({RESULTS_FILE}) (schema `{SCHEMA}`).", ""]


def _recipe(*, prov: Mapping, source: Mapping, papers: list[str], **_: Any) -> list[str]:
    lines = ["## Training recipe", ""]
    train_config = prov.get("train_config") or {}
    if source.get("authors_release"):
        lines += [f"Trained by the paper's authors with their code ({PAPERS[papers[0]]['code']}); converted, not "
                  f"retrained, by kcl-models. See the paper for the recipe.", ""]
    if train_config:
        lines += ["The training configuration, as saved by the trainer:", "", "```yaml",
                  yaml.safe_dump(train_config, sort_keys=False, default_flow_style=False).rstrip(), "```", ""]
    elif not source.get("authors_release"):
        lines += ["No training configuration was recorded with these weights.", ""]
    return lines


def _provenance(*, prov: Mapping, source: Mapping, results: Mapping | None, weights_sha: str, license: str,
                papers: list[str], export: bool, timm_arch: str | None, **_: Any) -> list[str]:
    lines = ["## Provenance", "", f"- `{WEIGHTS_FILE}` sha256: `{weights_sha}`"]
    kind = source.get("kind")
    if kind == "converted":
        release = source.get("authors_release")
        lines += [f"- Converted from `{source.get('file')}`, sha256 `{source.get('sha256')}`"
                  + (f", downloaded from {source['url']}" if source.get("url") else "")]
        if release:
            lines += [f"- That sha256 is the authors' release recorded in kcl-models' `hub/manifest.yaml` for "
                      f"`{release['variant']}` (`{release['file']}`, {release['url']})"]
        else:
            lines += ["- That sha256 is not an authors' release recorded in kcl-models' `hub/manifest.yaml`: "
                      "this card makes no claim about who trained these weights, or how"]
        lines += [f"- Layout `{source.get('layout')}`; kept {source.get('kept_keys')} tensors; dropped "
                  f"{source.get('dropped_keys', 0)} training-only tensors ({source.get('dropped_summary') or 'none'})"
                  + ("; transposed `fc.weight` from the authors' `[D, C]` NormedLinear to `[C, D]`"
                     if source.get("transposed") else "")]
        meta = {k: source.get(k) for k in ("authors_arch", "epoch", "best_acc1") if source.get(k) is not None}
        if meta:
            lines += ["- Checkpoint metadata: " + ", ".join(f"{k.replace('authors_', '')} {v}"
                                                            for k, v in meta.items())]
    elif kind == "trained":
        lines += ["- Trained by kcl-models" + (" with the configuration above" if prov.get("train_config") else "")
                  + (f"; trainer export `{source['file']}` (sha256 `{source.get('sha256')}`)"
                     if source.get("file") else "")]
    elif source.get("file"):
        lines += [f"- Exported from `{source['file']}` (sha256 `{source.get('sha256')}`)"]
    else:
        lines += ["- Source: not recorded"]
    if export:
        lines += [f"- Branch `{TIMM_EXPORT}` (folder `{TIMM_EXPORT}/`): the same backbone tensors as timm's "
                  f"`{timm_arch}`; `fc.weight` = these classifier rows divided by their norm, `fc.bias` = 0"]
    sw = prov.get("software") or {}
    if sw:
        lines += ["- Exported with " + ", ".join(f"{k} {v}" for k, v in sw.items())]
    if results:
        ev_sha = results["model"].get("weights_sha256")
        if ev_sha:
            state = "matches" if ev_sha == weights_sha else "**differs from**"
            lines += [f"- Evaluated weights sha256 `{ev_sha}` ({state} `{WEIGHTS_FILE}`)"]
        esw = results.get("software") or {}
        lines += ["- Evaluated with " + ", ".join(f"{k} {v}" for k, v in esw.items())
                  + (f" on {results['created']}" if results.get("created") else "")]
    lines += [""]
    if source.get("authors_release"):
        lines += [f"The weights are the authors' work, released alongside their code ({PAPERS[papers[0]]['code']}, "
                  f"license {license}); this card's license follows it. The training data's terms of use (e.g. "
                  "ImageNet's) apply as well.", ""]
    return lines


def _citation(papers: list[str]) -> list[str]:
    return ["## Citation", "", "```bibtex", "\n\n".join(PAPERS[p]["bibtex"] for p in papers), "```", ""]


def _card_body(**ctx: Any) -> str:
    num_classes = int(ctx["config"].get("num_classes", 0))
    what = "backbone" if num_classes == 0 else "image classifier"
    if ctx["prov"].get("method", "unknown") == "unknown":
        origin = (f"`{ctx['arch']}` weights converted from `{ctx['source'].get('file')}`, a checkpoint whose origin is "
                  f"not confirmed (see Provenance), under the variant name of {ctx['dataset']['name']}")
    else:
        origin = f"`{ctx['arch']}` trained with {ctx['method_name']} on {ctx['dataset']['name']}"
    lines = [f"# {ctx['variant']}", "",
             f"A long-tailed recognition {what} for [timm](https://github.com/huggingface/pytorch-image-models): "
             f"{origin}. Part of the [kcl-models](https://huggingface.co/kcl-models) zoo.", ""]
    lines += _details(**ctx) + ["### Method", "", ctx["method_text"], ""]
    lines += _usage(**ctx) + _results_section(**ctx) + _recipe(**ctx) + _provenance(**ctx)
    return "\n".join(lines + _citation(ctx["papers"]))


def _write_export_card(folder: Path, *, variant: str, repo_id: str, timm_arch: str, config: Mapping,
                       papers: list[str], license: str, shapes: Mapping, **_: Any) -> None:
    """Card of the ``timm`` branch: what it is, how it relates to the main branch, plain-timm usage."""
    from huggingface_hub import ModelCard, ModelCardData

    export_cfg = read_config(folder)
    num_classes = int(export_cfg.get("num_classes", 0))
    plain = f"{repo_id}@{TIMM_EXPORT}"
    card_data = ModelCardData(model_name=f"{variant} ({timm_arch} export)", library_name="timm",
                              pipeline_tag="image-classification", license=license,
                              tags=["image-classification", "timm", "kcl-models", "long-tailed-recognition"])
    scale = (config.get("model_args") or {}).get("cls_scale", 30)
    lines = [f"# {variant}: plain-timm `{timm_arch}` export", "",
             f"The branch `{TIMM_EXPORT}` of [{repo_id}](https://huggingface.co/{repo_id}) holds the same backbone "
             f"as timm's own `{timm_arch}`, so it loads without kcl-models, e.g. for fine-tuning. Results, "
             f"provenance and the full card are on the main branch.", "",
             f"- Backbone: the main branch's tensors, unchanged ({WEIGHTS_FILE} sha256 "
             f"`{file_sha256(folder / WEIGHTS_FILE)}`)",
             f"- Classifier: {num_classes} classes; linear `fc` whose weight rows are the cosine classifier's rows "
             f"divided by their norm and whose bias is 0: logits = main-branch logits x ‖h‖ / {scale}, so the "
             f"ranking (top-1, top-5 predictions) is the same and the probabilities are not", "", "## Usage", ""]
    lines += _python(["import timm", "import torch", "",
                      f"model = timm.create_model(\"hf-hub:{plain}\", pretrained=True, num_classes=5)  "
                      "# fine-tuning: a new 5-class head",
                      f"backbone = timm.create_model(\"hf-hub:{plain}\", pretrained=True, num_classes=0)  "
                      f"# {_shape(shapes['pooled'])} embeddings",
                      f"maps = timm.create_model(\"hf-hub:{plain}\", pretrained=True, features_only=True)"])
    lines += [f"For the cosine classifier itself use the main branch with `import kcl_models`: "
              f"`timm.create_model(\"hf-hub:{repo_id}\", pretrained=True)`.", ""]
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n" + "\n".join(lines + _citation(papers)))
    atomic_write_text(folder / CARD_FILE, card.content)
