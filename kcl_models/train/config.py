"""Training configuration: the trainer's keys plus the chosen method's own options.

A recipe is one flat YAML mapping. Keys of :class:`TrainConfig` belong to the trainer (data,
optimisation, checkpoints); every other key must be an option of the chosen method (its
``Options`` dataclass, e.g. BCL's ``alpha``). The resolved config (every trainer key and every
option, defaults filled in) is saved next to the outputs (``config.yaml``) and in every
checkpoint, so a run can always be traced back to the settings that produced it.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kcl_models.methods import available_methods, get_method
from kcl_models.methods.base import build_options, coerce_value, field_types, option_names, options_help
from kcl_models.methods.base import option as _opt

# keys that moved: old name -> new name (an option of the named method)
RENAMED = {"kcl_k": ("k", "kcl"), "moco_m": ("key_momentum", "kcl")}


@dataclass
class TrainConfig:
    # what to train
    method: str = _opt("bcl", "a built-in method, an entry-point name, or module:Class / file.py:Class")
    model: str = _opt("resnet32_bcl", "any timm model name (after `import kcl_models`)")
    pretrained: bool = _opt(False, "start from the model's pretrained weights")
    num_classes: int | None = _opt(None, "null: taken from the data; else must match it")

    # data (see kcl_models.data.build_dataset)
    data: str = _opt("digits-lt", "digits-lt | split-file | hf:<name> | imagefolder:<path>")
    data_root: str | None = _opt(None, "image root for split-file / imagefolder data")
    train_split: str | None = _opt(None, "split file (split-file data) or HF split name of the training set")
    val_split: str | None = _opt(None, "validation split (file, HF split, or 'heldout' for digits-lt); "
                                       "best/ is chosen on it")
    test_split: str | None = _opt(None, "split file or HF split name of the test set")
    imbalance_factor: float = _opt(100.0, "n_max / n_min of the exponential long-tail profile")
    input_size: int | None = _opt(None, "null: the model's pretrained cfg")
    randaug: str | None = _opt("rand-n2-m10-mstd0.5", "timm RandAugment of the classifier view (null: none)")
    hflip: float = _opt(0.5, "horizontal-flip probability (0 for digits: not flip-invariant)")
    sampler: str = _opt("instance", "instance | class_balanced | sqrt")
    workers: int = _opt(0, "DataLoader worker processes")
    data_pipeline: str = _opt("pil", "pil: per-image PIL views in loader workers | tensor: the images as one "
                                     "uint8 tensor on the training device, batched views (small images)")
    skip_corrupt: bool = _opt(False, "count and skip unreadable images instead of failing")
    data_kwargs: dict[str, Any] = _opt({}, "extra build_dataset options (e.g. {img_size: 16})")

    # optimisation (timm optimizer and scheduler factories)
    epochs: int = _opt(30, "stage-1 epochs")
    batch_size: int = _opt(64, "images per process and step")
    opt: str = _opt("sgd", "timm optimizer name")
    lr: float = _opt(0.1, "peak learning rate")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(5e-4, "weight decay")
    sched: str = _opt("cosine", "timm scheduler name")
    warmup_epochs: int = _opt(0, "linear warm-up epochs")
    min_lr: float = _opt(0.0, "final learning rate of the schedule")
    grad_accum_steps: int = _opt(1, "batches per optimizer step")
    clip_grad: float | None = _opt(None, "clip the gradient norm to this (null: no clipping)")
    mixed_precision: str = _opt("no", "no | bf16 | fp16")
    channels_last: bool = _opt(False, "channels-last memory format")
    compile_losses: str = _opt("no", "no | a torch.compile backend (inductor fuses each loss on GPU)")
    compile_model: str = _opt("no", "no | a torch.compile backend for the training module (nn.Module.compile)")
    seed: int = _opt(0, "seed of the data split, initialisation and augmentation")

    # stage 2 (cRT) for methods that ask for it: frozen backbone, class-balanced linear classifier
    crt_epochs: int = _opt(10, "cRT epochs (methods with a cRT stage)")
    crt_lr: float = _opt(0.1, "cRT learning rate")
    crt_batch_size: int | None = _opt(None, "cRT batch size (null: batch_size)")
    crt_sampler: str = _opt("class_balanced", "cRT sampler: instance | class_balanced | sqrt")
    crt_sched: str = _opt("cosine", "cRT scheduler: cosine | multistep")
    crt_decay_milestones: list[int] = _opt([60, 80], "cRT multistep milestones (epochs)")

    # evaluation
    eval_every: int = _opt(5, "epochs between evaluations (0: only at the end)")
    shot_many: int = _opt(100, "classes with more training images are many-shot")
    shot_few: int = _opt(20, "classes with fewer training images are few-shot")
    relative_shots: bool = _opt(False, "log-count bands instead of absolute shot thresholds")

    # outputs, checkpoints, logging
    output_dir: str = _opt("outputs/run", "where model/, checkpoints/, logs and metrics go")
    checkpoint_every: int = _opt(0, "optimizer steps between checkpoints (0: each epoch end)")
    keep_checkpoints: int = _opt(2, "complete checkpoints kept")
    resume: str | None = _opt(None, "a checkpoint folder, or auto for the newest complete one")
    resume_apply: bool = _opt(False, "on resume, apply changed lr / min_lr / clip_grad / crt_lr / mixed_precision")
    overwrite: bool = _opt(False, "replace an earlier run's results and checkpoints in output_dir")
    log_with: str | None = _opt("tensorboard", "Accelerate tracker (tensorboard) or none")
    log_every: int = _opt(10, "optimizer steps between log lines")
    max_steps: int | None = _opt(None, "stop after this many optimizer steps (smoke tests: an epoch "
                                      "it cuts short is not evaluated)")
    overfit_batches: int = _opt(0, ">0: train on the first N batches only (sanity check)")
    debug_checks: bool = _opt(False, "record cross-rank consistency checks (tests)")
    extra: dict[str, Any] = _opt({}, "free-form notes kept with the run")

    # the chosen method's options, resolved (defaults filled in); flat in YAML and on the CLI
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def method_class(self) -> type:
        return get_method(self.method)

    def validate(self) -> None:
        cls = self.method_class
        self.options = dataclasses.asdict(build_options(cls, self.options))
        for name in ("epochs", "batch_size", "grad_accum_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"config '{name}' must be > 0, got {getattr(self, name)}")
        for key in ("compile_losses", "compile_model"):
            value = getattr(self, key)
            if value != "no":
                import torch  # only here: the config stays cheap to import

                if value not in torch.compiler.list_backends(exclude_tags=()):
                    raise ValueError(f"config '{key}' must be 'no' or a torch.compile backend "
                                     f"(e.g. {torch.compiler.list_backends()}), got {value!r}")
        if self.data_pipeline not in ("pil", "tensor"):
            raise ValueError(f"config 'data_pipeline' must be pil or tensor, got {self.data_pipeline!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"config 'mixed_precision' must be no, bf16 or fp16, got {self.mixed_precision!r}")

    def to_dict(self) -> dict[str, Any]:
        """Flat: every trainer key, then the method's options (what a recipe file holds)."""
        values = dataclasses.asdict(self)
        options = values.pop("options")
        return {**values, **options}

    def save(self, path: str | Path) -> None:
        """Write the resolved config atomically (a kill never leaves a half-written file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        tmp.replace(path)


def trainer_keys() -> dict[str, Any]:
    return {k: v for k, v in field_types(TrainConfig).items() if k != "options"}


def _other_methods_taking(key: str, method: str) -> list[str]:
    owners = []
    for name in available_methods():
        if name == method:
            continue
        try:
            if key in option_names(get_method(name)):
                owners.append(name)
        except Exception:  # a broken third-party entry point must not hide the real message
            continue
    return owners


def config_from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Split raw values into trainer keys and method options; refuse keys that belong to neither."""
    types_ = trainer_keys()
    method = str(values.get("method", TrainConfig.__dataclass_fields__["method"].default))
    try:
        cls = get_method(method)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    own = set(option_names(cls))
    if clash := sorted(own & set(types_)):
        raise ValueError(f"{source}: method '{method}' declares option(s) {clash} that are trainer keys; rename them")
    trainer, options = {}, {}
    for key, value in values.items():
        if key in types_:
            trainer[key] = coerce_value(key, value, types_[key])
        elif key in own:
            options[key] = value
        elif key in RENAMED:
            new, owner = RENAMED[key]
            raise ValueError(f"{source}: config key '{key}' was renamed to '{new}' (an option of method {owner})")
        elif others := _other_methods_taking(key, method):
            raise ValueError(f"{source}: method '{method}' has no option '{key}' (it is an option of "
                             f"{', '.join(others)}); options of {method}: {', '.join(sorted(own)) or 'none'}")
        else:
            close = difflib.get_close_matches(key, [*types_, *own], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"{source}: unknown key '{key}'{hint}")
    try:
        return TrainConfig(**trainer, options=options)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """YAML file (optional) + overrides -> validated TrainConfig."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ValueError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys at the top level")
        values.update(loaded)
    values.update(overrides or {})
    return config_from_dict(values, source=str(path) if path else "config")


# ---- command line ----------------------------------------------------------------------------
def help_text(method: str | None = None) -> str:
    """Every trainer key, then every built-in method's options (and ``method``'s, if another)."""
    lines = ["usage: train.py [--config RECIPE.yaml] [--KEY VALUE ...] [--debug]", "",
             "Train a long-tailed recipe. Every key of the recipe can be given as --key value (or --key=value;",
             "--output-dir and --output_dir alike); a flag without value sets a boolean to true.", "",
             "trainer keys:"]

    def rows(cls: type) -> list[str]:
        return [f"  --{name:<22} {kind:<18} default {default!r:<14} {help_}"
                for name, kind, default, help_ in options_help(cls) if name != "options"]

    lines += rows(TrainConfig)
    names = list(available_methods())
    if method and method not in names:
        names.append(method)
    for name in names:
        try:
            cls = get_method(name)
        except Exception as err:  # noqa: BLE001 - list the others, say why this one is missing
            lines += ["", f"method {name}: cannot be loaded ({err})"]
            continue
        crt = " (+ cRT stage)" if cls.crt else ""
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        lines += ["", f"method {name}{crt}: {doc}"]
        lines += rows(cls.Options) or ["  (no options)"]
    return "\n".join(lines)


def parse_cli(argv: list[str]) -> tuple[str | None, dict[str, Any], bool, bool]:
    """``(config path, overrides, debug, help)`` from ``--key value`` pairs; no abbreviations."""
    config, overrides, debug, want_help = None, {}, False, False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            want_help, i = True, i + 1
            continue
        if not arg.startswith("--") or arg == "--":
            raise ValueError(f"unexpected argument {arg!r}: write options as --key value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            else:
                value = "true"  # a bare flag: a boolean switched on
        i += 1
        if key == "config":
            config = value
        elif key == "debug":
            debug = coerce_value("debug", value, bool)
        else:
            overrides[key] = value
    return config, overrides, debug, want_help


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """``--config file.yaml`` plus ``--key value`` overrides for any trainer key or method option."""
    import sys

    config, overrides, _, want_help = parse_cli(list(sys.argv[1:] if argv is None else argv))
    if want_help:
        print(help_text(overrides.get("method")))
        raise SystemExit(0)
    return load_config(config, overrides)
