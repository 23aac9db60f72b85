"""``eval.py`` / ``kcl-eval``: evaluate a model on long-tailed data, or compare result files.

Evaluate (writes ``results.json``, ``results.md``, ``per_class.png`` and, per probe,
``per_class_<probe>.png`` into ``--output``; prints the markdown table)::

    kcl-eval --model local-dir:outputs/demo_bcl/model --data digits-lt --output outputs/eval
    kcl-eval --model resnet50_kcl.imagenet_lt --pretrained --data split-file --data-root /data/imagenet \\
        --train-split ImageNet_LT_train.txt --test-split ImageNet_LT_test.txt --output out --probe linear knn
    kcl-eval --model ckpt.safetensors --arch resnet32_bcl.digits_lt --data digits-lt --output out
    accelerate launch -m kcl_models.eval.cli --model ... --data ... --output ...   # several processes

Compare::

    kcl-eval --compare a/results.json b/results.json --output cmp     # compare.md + compare.png

Models: a timm name (``--pretrained`` loads its weights; without it the head is sized to the data),
``hf-hub:org/repo``, ``local-dir:path`` (a ``timm.models.save_for_hf`` folder; weights always
loaded), or a checkpoint file (``.safetensors``, or ``.pth``/``.pt``/``.bin`` read with
``torch.load(weights_only=True)``) with ``--arch``. Data: ``digits-lt``, ``split-file`` (with
``--data-root`` and split files as ``--train-split``/``--test-split``), ``hf:NAME`` or
``imagefolder:PATH`` (split names, or split files). Training class counts, which define the shot
groups, come from the training split of the same data spec.

A model folder written by the trainer (``<out>/model`` next to ``<out>/config.yaml``) carries its
training config: it is stored in the results, and data options left unset (``--data``, split
names/files, ``--data-root``, ``--imbalance-factor``, ``--data-seed``, ``data_kwargs``) default to
the training run's, so the evaluation uses exactly the run's splits (digits-LT's held-out test set
depends on the seed). ``--train-config FILE`` supplies that config for other model sources.

Known bad input (unknown model, class-count mismatch, empty split, missing file) ends with one
``kcl-eval: error: ...`` line and exit code 2 (``--traceback`` shows the stack instead).
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["EvalError", "UnknownModelError", "ClassMismatchError", "EmptySplitError", "LoadedModel",
           "load_model", "build_parser", "main"]

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
    """
    import timm

    import kcl_models  # noqa: F401  (registers our architectures before timm resolves names)

    if spec.startswith(("hf-hub:", "local-dir:")):
        weights_path = None
        config: dict = {}
        if spec.startswith("local-dir:"):
            folder = Path(spec[len("local-dir:"):]).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"model folder not found: {folder}")
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"{folder} has no config.json (write it with timm.models.save_for_hf)")
            weights_path = next((folder / f for f in ("model.safetensors", "pytorch_model.bin")
                                 if (folder / f).is_file()), None)
            config = _training_config(folder)
        try:
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
            weights_path = _cached_hub_file(spec[len("hf-hub:"):], ("model.safetensors", "pytorch_model.bin"))
            cfg_json = _cached_hub_file(spec[len("hf-hub:"):], ("config.json",))
            config = _config_json_train_config(cfg_json) if cfg_json else {}
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
    return LoadedModel(model, spec, base, "timm-pretrained" if pretrained else "timm", None,
                       model.num_classes > 0)


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


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

def _split_spec(value: str, default_name: str, data: str, flag: str) -> tuple[str, str | None]:
    """A split is a name ('train', 'test', 'validation') or a split file."""
    p = Path(value).expanduser()
    if data == "split-file":
        if not p.is_file():
            raise FileNotFoundError(f"{flag} {value}: split file not found (data 'split-file' takes "
                                    f"files as --train-split/--test-split)")
        return default_name, str(p)
    if p.is_file():
        return default_name, str(p)
    if p.suffix == ".txt":
        raise FileNotFoundError(f"{flag} {value}: split file not found")
    return value, None


def resolve_data_args(args: argparse.Namespace, train_config: dict) -> dict:
    """Fill data options left unset from the training config (same data only), then defaults.

    The split itself must be the training run's: digits-LT's held-out test set and every generated
    long-tailed train split depend on the seed and imbalance factor, so evaluating with other values
    would score training images. Returns extra ``build_dataset`` keywords (``data_kwargs``).
    """
    tc = train_config or {}
    if args.data is None:
        if not tc.get("data"):
            raise EvalError("--data is required (no training config next to the model names its data)")
        args.data = str(tc["data"])
    extra: dict[str, Any] = {}
    if tc and tc.get("data") == args.data:
        for attr, key in (("data_root", "data_root"), ("train_split", "train_split"),
                          ("test_split", "test_split"), ("imbalance_factor", "imbalance_factor"),
                          ("data_seed", "seed")):
            if getattr(args, attr) is None and tc.get(key) is not None:
                setattr(args, attr, tc[key])
        extra = dict(tc.get("data_kwargs") or {})
    elif tc.get("data"):
        print(f"kcl-eval: note: the model was trained on '{tc['data']}', evaluating on '{args.data}' "
              f"(training counts and shot groups come from '{args.data}')", file=sys.stderr)
    for attr, default in (("train_split", "train"), ("test_split", "test"), ("imbalance_factor", 100.0),
                          ("data_seed", 0)):
        if getattr(args, attr) is None:
            setattr(args, attr, default)
    return extra


def build_eval_data(args: argparse.Namespace, transform: Any,
                    extra: dict | None = None) -> tuple[Any, Any]:
    from ..data import build_dataset
    data = args.data
    low = data.lower()
    is_digits = low in ("digits-lt", "digits_lt", "digitslt")
    out = []
    for flag, value, default in (("--train-split", args.train_split, "train"),
                                 ("--test-split", args.test_split, "test")):
        split, split_file = _split_spec(value, default, data, flag)
        # build_dataset forwards these to the dataset class, so pass each only where it is taken
        kw: dict[str, Any] = dict(extra or {})
        if not is_digits:
            kw["on_error"] = args.on_error
        reads_split_file = low == "split-file" or (low.startswith("imagefolder:") and split_file)
        if args.num_classes is not None and (reads_split_file or low.startswith("hf:")):
            kw["num_classes"] = args.num_classes
        if reads_split_file and default == "test":
            kw["require_all_classes"] = False  # a test split may lack some classes...
            kw.setdefault("num_classes", out[0].num_classes)  # ...so take the count from train
        ds = build_dataset(data, split, transform=transform, root=args.data_root, split_file=split_file,
                           imbalance_factor=args.imbalance_factor, seed=args.data_seed, **kw)
        if len(ds) == 0:
            raise EmptySplitError(f"{flag} '{value}' of data '{data}' is empty: nothing to evaluate")
        out.append(ds)
    train_ds, test_ds = out
    if train_ds.num_classes != test_ds.num_classes:
        raise ClassMismatchError(
            f"data '{data}': the train split has {train_ds.num_classes} classes but the test split "
            f"{test_ds.num_classes}; pass --num-classes")
    return train_ds, test_ds


def _loader(ds: Any, args: argparse.Namespace, device: torch.device) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
        collate_fn=getattr(ds, "collate_fn", None), pin_memory=device.type == "cuda", drop_last=False)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kcl-eval", description="Evaluate a model on long-tailed data (top-1/5, many/medium/few, "
        "balancedness, ECE, probes) or compare results files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", help="timm name | hf-hub:org/repo | local-dir:path | checkpoint file")
    p.add_argument("--arch", help="timm architecture of a checkpoint file (a tag selects its "
                   "preprocessing, e.g. resnet32_kcl.digits_lt)")
    p.add_argument("--pretrained", action="store_true", help="load the timm name's published weights")
    p.add_argument("--data", help="digits-lt | split-file | hf:NAME | imagefolder:PATH (default: the "
                   "training config's)")
    p.add_argument("--data-root", help="image root (split-file; imagefolder split files)")
    p.add_argument("--train-split", help="training split name or split file (its class counts define the "
                   "shot groups; the probes train on it); default: training config's, else 'train'")
    p.add_argument("--test-split", help="evaluation split name or split file; default: training "
                   "config's, else 'test'")
    p.add_argument("--imbalance-factor", type=float, help="imbalance of the generated long-tailed train "
                   "split (digits-lt, hf:, imagefolder:; 1 = use the train split as it is); default: "
                   "training config's, else 100")
    p.add_argument("--num-classes", type=int, help="number of classes (split-file/hf: when not inferable)")
    p.add_argument("--data-seed", type=int, help="seed of the generated splits (digits-LT's test hold-out "
                   "too); default: the training config's seed, else 0")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="unreadable images")
    p.add_argument("--output", help="output folder")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--probe", nargs="+", choices=("linear", "knn"), default=[],
                   help="representation probes on frozen pre-logit features")
    p.add_argument("--skip-classifier", action="store_true",
                   help="do not score the model's own head (backbones, heads for other classes)")
    shots = p.add_mutually_exclusive_group()
    shots.add_argument("--shot-thresholds", nargs=2, type=int, metavar=("MANY", "FEW"),
                       help="absolute thresholds: many > MANY, few < FEW (default 100 20; digits-lt "
                       "defaults to --relative-shots)")
    shots.add_argument("--relative-shots", action="store_true",
                       help="three equal bands of the log training-count range")
    p.add_argument("--sigma", type=float, default=None, help="balancedness kernel width (KCL Eq. 3); "
                   "default kcl_models.eval.metrics.DEFAULT_SIGMA = 0.01")
    p.add_argument("--ood-split", help="open-set protocol (KCL Table 4): file listing the target classes "
                   "(ids or names, one a line) unseen in pre-training")
    p.add_argument("--probe-epochs", type=int, default=30)
    p.add_argument("--probe-lr", type=float, default=1.0)
    p.add_argument("--probe-batch-size", type=int, default=256)
    p.add_argument("--knn-k", type=int, default=20)
    p.add_argument("--knn-temperature", type=float, default=0.07)
    p.add_argument("--seed", type=int, default=0, help="seed of the probes")
    p.add_argument("--train-config", help="training config (YAML/JSON) to store in the results")
    p.add_argument("--compare", nargs="+", metavar="RESULTS_JSON",
                   help="compare results files: writes compare.md and compare.png into --output")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--traceback", action="store_true", help="show the stack trace of errors")
    return p


def run_compare(paths: list[str], output: str | None) -> str:
    from .report import load_results, markdown_table, plot_compare
    results = [load_results(p) for p in paths]
    table = markdown_table(results)
    if output:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(table)
        plot_compare(results, out / "compare.png")
    return table


def run_eval(args: argparse.Namespace) -> str | None:
    """Evaluate per ``args``; returns the markdown table on the main process (``None`` elsewhere).

    Works in one process or under ``accelerate launch``/``torchrun``: inference is sharded and
    gathered exactly; probes, files and printing happen on the main process.
    """
    from accelerate import Accelerator

    accelerator = Accelerator()
    table = _evaluate(args, accelerator)
    # every rank meets here, then the process group is torn down (a live gloo/NCCL group at
    # interpreter exit can abort a rank)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return table


def _evaluate(args: argparse.Namespace, accelerator: Any) -> str | None:
    import timm

    from ..data import build_eval_transform, class_counts
    from .evaluate import extract_features, predict
    from .metrics import DEFAULT_SIGMA, compute_metrics
    from .probes import knn_classify, linear_probe, open_set_probe, read_class_split
    from .report import build_results, markdown_table, plot_per_class, save_results

    main_proc = accelerator.is_main_process
    progress = not args.no_progress
    sigma = DEFAULT_SIGMA if args.sigma is None else args.sigma

    if args.train_config and not Path(args.train_config).is_file():
        raise FileNotFoundError(f"--train-config file not found: {args.train_config}")
    loaded = load_model(args.model, arch=args.arch, pretrained=args.pretrained, num_classes=None)
    model = loaded.model
    config = _read_yaml_or_json(Path(args.train_config)) if args.train_config else dict(loaded.config)
    extra = resolve_data_args(args, config)
    data_config = timm.data.resolve_model_data_config(model)
    train_ds, test_ds = build_eval_data(args, build_eval_transform(data_config), extra)
    num_classes = test_ds.num_classes
    if loaded.source == "timm" and model.num_classes != num_classes:
        model.reset_classifier(num_classes)  # random head sized to the data (an untrained baseline)
    counts = class_counts(train_ds.targets, num_classes)
    if args.shot_thresholds:
        many, few, relative = args.shot_thresholds[0], args.shot_thresholds[1], False
    else:
        many, few = 100, 20
        relative = args.relative_shots or args.data.lower() in ("digits-lt", "digits_lt", "digitslt")
    shot_kw = dict(many=many, few=few, relative=relative, sigma=sigma)

    # read small inputs before the (long) inference so that a typo fails fast
    target_classes = (read_class_split(args.ood_split, class_names=test_ds.classes, num_classes=num_classes)
                      if args.ood_split else None)

    probes_wanted = list(dict.fromkeys(args.probe))
    if args.skip_classifier and not probes_wanted:
        probes_wanted = ["linear"]
    main_metrics = None
    protocol = "classifier"
    if not args.skip_classifier:
        if not loaded.has_classifier or model.num_classes != num_classes:
            raise ClassMismatchError(
                f"model '{args.model}' has a {model.num_classes}-class classifier but data '{args.data}' has "
                f"{num_classes} classes; pass --skip-classifier to evaluate only its features "
                f"(--probe linear knn, --ood-split)")
        test_loader = _loader(test_ds, args, accelerator.device)
        logits, targets = predict(model, test_loader, accelerator=accelerator, progress=progress)
        if main_proc:
            main_metrics = compute_metrics(logits, targets, counts, **shot_kw)
        num_samples = int(targets.numel())

    probes: dict[str, Any] = {}
    if probes_wanted or args.ood_split:
        tr_x, tr_y = extract_features(model, _loader(train_ds, args, accelerator.device), accelerator, progress)
        te_x, te_y = extract_features(model, _loader(test_ds, args, accelerator.device), accelerator, progress)
        num_samples = int(te_y.numel())
        if not main_proc:
            return None  # every collective is done; the probes run on the main process only
        probe_kw = dict(epochs=args.probe_epochs, lr=args.probe_lr, batch_size=args.probe_batch_size,
                        seed=args.seed, device=accelerator.device, **shot_kw)
        if "linear" in probes_wanted:
            probes["linear_probe"] = linear_probe(tr_x, tr_y, te_x, te_y, num_classes,
                                                  train_class_counts=counts, progress=progress, **probe_kw)
        if "knn" in probes_wanted:
            probes["knn"] = knn_classify(tr_x, tr_y, te_x, te_y, num_classes, k=args.knn_k,
                                         temperature=args.knn_temperature, train_class_counts=counts,
                                         device=accelerator.device, **shot_kw)
        if target_classes is not None:
            probes["open_set"] = open_set_probe(tr_x, tr_y, te_x, te_y, target_classes, num_classes,
                                                **probe_kw)
    if not main_proc:
        return None
    if main_metrics is None:
        protocol = "linear_probe" if "linear_probe" in probes else "knn"
        main_metrics = probes[protocol]

    split_name = args.test_split
    results = build_results(
        main_metrics, model_name=loaded.name, architecture=loaded.architecture, source=loaded.source,
        num_classes=model.num_classes if loaded.has_classifier else num_classes, data_name=args.data,
        split=split_name, num_samples=num_samples, train_class_counts=counts, class_names=test_ds.classes,
        protocol=protocol, many=many, few=few, relative=relative, probes=probes or None, config=config,
        weights_path=loaded.weights_path, sigma=sigma)
    out = Path(args.output)
    save_results(results, out / "results.json")
    table = markdown_table(results)
    (out / "results.md").write_text(table)
    plot_per_class(results, out / "per_class.png")
    for name in ("linear_probe", "knn"):
        if name in probes and name != protocol:
            plot_per_class(results, out / f"per_class_{name}.png", protocol=name)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.compare:
        missing = [f"--{k}" for k in ("model", "output") if not getattr(args, k)]
        if missing:
            parser.error(f"{', '.join(missing)} required (or --compare RESULTS_JSON ...)")
    from ..models import PretrainedWeightsUnavailable
    from .report import ResultsSchemaError
    known = (EvalError, ResultsSchemaError, FileNotFoundError, NotADirectoryError, ValueError,
             PretrainedWeightsUnavailable)
    try:
        table = run_compare(args.compare, args.output) if args.compare else run_eval(args)
    except known as err:
        if args.traceback:
            raise
        msg = str(err) if str(err) else type(err).__name__
        print(f"kcl-eval: error: {msg}", file=sys.stderr)
        return 2
    if table is not None:
        print(table, end="")
        if args.output:
            print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
