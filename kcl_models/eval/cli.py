"""``eval.py`` / ``kcl-eval``: evaluate a model on long-tailed data, or compare result files.

Evaluate (writes ``results.json``, ``results.md``, ``per_class.png`` and, per probe,
``per_class_<probe>.png`` into ``--output``/``--output-dir``; prints the markdown table)::

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

Preprocessing is the same by every route to the same weights: the model's own pretrained_cfg
(timm's ``resolve_model_data_config``), the training config's ``input_size`` if it set one, and
digits-LT made at the model's input size unless the training config fixed ``img_size``. A
registered name loaded with ``--pretrained`` from weights bundled in the package finds its
training config next to them.

Weights are checked before use: a folder whose ``config.json`` is malformed or whose
``num_classes`` disagrees with the classifier in the weights, a truncated weights file, and
non-finite tensors are refused naming the file (and tensor). A Hub repo that is missing or
unreachable (and not cached) fails at once.

Flags take dashes or underscores (``--output-dir``, ``--output_dir``, ``--data_root``); an unknown
flag gets "did you mean"; abbreviations are refused. Known bad input (unknown model, class-count
mismatch, empty split, missing file, bad weights) ends with one ``kcl-eval: error: ...`` line and
exit code 2 (``--traceback`` shows the stack instead).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .flags import FlagParser
from .loading import (
    CHECKPOINT_SUFFIXES,
    ClassMismatchError,
    EmptySplitError,
    EvalError,
    LoadedModel,
    UnknownModelError,
    _read_yaml_or_json,
    load_model,
)

__all__ = ["EvalError", "UnknownModelError", "ClassMismatchError", "EmptySplitError", "LoadedModel",
           "CHECKPOINT_SUFFIXES", "load_model", "eval_preprocessing", "build_parser", "main"]

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


def _is_digits(data: str) -> bool:
    return data.lower() in ("digits-lt", "digits_lt", "digitslt")


def eval_preprocessing(model: nn.Module, train_config: dict, data: str, extra: dict) -> dict:
    """The evaluation transform's timm data config, the same by every route to the same weights.

    It is the model's own pretrained_cfg (``timm.data.resolve_model_data_config``) with the
    training config's ``input_size`` when it set one (as the trainer does). digits-LT images are
    made at the model's input size unless the training config fixed ``data_kwargs.img_size``
    (``extra``, updated in place): evaluating them at DigitsLT's default 32 px and resizing would
    change the numbers."""
    import timm

    data_config = timm.data.resolve_model_data_config(model)
    size = (train_config or {}).get("input_size")
    if size:
        side = int(size[-1]) if isinstance(size, (list, tuple)) else int(size)
        data_config["input_size"] = (data_config["input_size"][0], side, side)
    if _is_digits(data) and "img_size" not in extra:
        extra["img_size"] = int(data_config["input_size"][-1])
    return data_config


def build_eval_data(args: argparse.Namespace, transform: Any,
                    extra: dict | None = None) -> tuple[Any, Any]:
    from ..data import build_dataset
    data = args.data
    low = data.lower()
    is_digits = _is_digits(data)
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
    p = FlagParser(
        prog="kcl-eval", description="Evaluate a model on long-tailed data (top-1/5, many/medium/few, "
        "balancedness, ECE, probes) or compare results files. Every flag may be written with dashes or "
        "underscores (--data-root, --data_root); abbreviations are not accepted.",
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
    p.add_argument("--output", "--output-dir", dest="output", help="output folder")
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
    data_config = eval_preprocessing(model, config, args.data, extra)
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
        split=split_name, num_samples=num_samples, num_skipped=int(getattr(test_ds, "num_skipped", 0)),
        train_class_counts=counts, class_names=test_ds.classes,
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
