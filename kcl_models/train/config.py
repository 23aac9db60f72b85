"""Training configuration: one dataclass, loaded from YAML, overridable from the command line.

The resolved config is saved next to the outputs (``config.yaml``) and inside every checkpoint,
so a run can always be traced back to the exact settings that produced it.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

METHODS = ("ce", "la", "supcon", "kcl", "bcl")


@dataclass
class TrainConfig:
    # what to train
    method: str = "bcl"                  # ce | la | supcon | kcl (+cRT) | bcl
    model: str = "resnet32_bcl"          # any timm name (after `import kcl_models`)
    pretrained: bool = False
    num_classes: int | None = None       # None: taken from the data; else must match it

    # data (see kcl_models.data.build_dataset)
    data: str = "digits-lt"              # digits-lt | split-file | hf:<name> | imagefolder:<path>
    data_root: str | None = None
    train_split: str | None = None       # split file (split-file data) or HF split name
    test_split: str | None = None
    imbalance_factor: float = 100.0
    input_size: int | None = None        # None: the model's pretrained cfg
    randaug: str | None = "rand-n2-m10-mstd0.5"
    hflip: float = 0.5                   # horizontal-flip probability (0 for digits: not flip-invariant)
    sampler: str = "instance"            # instance | class_balanced | sqrt
    workers: int = 0
    skip_corrupt: bool = False           # count and skip unreadable images instead of failing
    data_kwargs: dict[str, Any] = field(default_factory=dict)  # extra build_dataset options

    # optimisation (timm optimizer and scheduler factories)
    epochs: int = 30
    batch_size: int = 64                 # per process
    opt: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sched: str = "cosine"
    warmup_epochs: int = 0
    min_lr: float = 0.0
    grad_accum_steps: int = 1
    clip_grad: float | None = None
    mixed_precision: str = "no"          # no | bf16 | fp16
    channels_last: bool = False
    compile_losses: str = "no"           # no | a torch.compile backend: inductor on GPU fuses each loss
    seed: int = 0

    # losses
    temperature: float = 0.07
    la_tau: float = 1.0                  # logit adjustment strength (LA, and BCL's CE branch)
    alpha: float = 1.0                   # BCL: weight of the LA-CE branch
    beta: float = 0.35                   # BCL: weight of the contrastive branch
    feat_dim: int = 128                  # projection output size
    proj_hidden: int | None = None       # projection hidden size (None: backbone width)
    kcl_k: int | None = 6                # KCL positives per anchor (None: FCL)
    queue_size: int = 4096               # KCL queue length
    moco_m: float = 0.999                # KCL momentum of the key encoder

    # stage 2 (cRT) for kcl / supcon: frozen backbone, class-balanced linear classifier
    crt_epochs: int = 10
    crt_lr: float = 0.1
    crt_batch_size: int | None = None    # None: batch_size
    crt_sampler: str = "class_balanced"
    crt_sched: str = "cosine"            # cosine | multistep
    crt_decay_milestones: list[int] = field(default_factory=lambda: [60, 80])

    # evaluation
    eval_every: int = 5                  # epochs; 0 disables periodic evaluation
    shot_many: int = 100
    shot_few: int = 20
    relative_shots: bool = False         # log-count bands instead of absolute thresholds

    # outputs, checkpoints, logging
    output_dir: str = "outputs/run"
    checkpoint_every: int = 0            # optimizer steps between checkpoints (0: each epoch end)
    keep_checkpoints: int = 2
    resume: str | None = None            # a checkpoint folder, or "auto" for the latest one
    log_with: str | None = "tensorboard"
    log_every: int = 10
    max_steps: int | None = None         # stop after this many optimizer steps (smoke tests)
    overfit_batches: int = 0             # >0: train on the first N batches only (sanity check)
    debug_checks: bool = False           # record cross-rank consistency checks (tests)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the run

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        for name in ("epochs", "batch_size", "grad_accum_steps", "feat_dim", "queue_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"config '{name}' must be > 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"config 'temperature' must be > 0, got {self.temperature}")
        if self.compile_losses != "no":
            import torch  # only here: the config stays cheap to import

            if self.compile_losses not in torch.compiler.list_backends(exclude_tags=()):
                raise ValueError(f"config 'compile_losses' must be 'no' or a torch.compile backend "
                                 f"(e.g. {torch.compiler.list_backends()}), got {self.compile_losses!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"config 'mixed_precision' must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if not 0.0 <= self.moco_m < 1.0:
            raise ValueError(f"config 'moco_m' must be in [0, 1), got {self.moco_m}")
        if self.kcl_k is not None and self.kcl_k < 1:
            raise ValueError(f"config 'kcl_k' must be >= 1 or null (FCL), got {self.kcl_k}")

    @property
    def two_stage(self) -> bool:
        return self.method in ("kcl", "supcon")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a YAML/CLI value to the field's type; clear error naming the key otherwise."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    args = typing.get_args(hint) if is_union else ()
    optional = type(None) in args
    if isinstance(value, str) and value.lower() in ("none", "null", "~") and optional:
        return None
    if value is None:
        if optional:
            return None
        raise ValueError(f"config '{name}' may not be null")
    base = next(a for a in args if a is not type(None)) if is_union else hint
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
        if typing.get_origin(base) is list or base is list:
            if isinstance(value, str):
                value = yaml.safe_load(value if value.startswith("[") else f"[{value}]")
            if not isinstance(value, list):
                raise ValueError
            return [int(v) for v in value]
        if typing.get_origin(base) is dict or base is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ValueError(f"config '{name}': cannot read {value!r} as {getattr(base, '__name__', base)}") from None
    return value


def config_from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    types_ = _field_types()
    unknown = [k for k in values if k not in types_]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, types_.keys(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"{source}: unknown key '{key}'{hint}")
    return TrainConfig(**{k: _coerce(k, v, types_[k]) for k, v in values.items()})


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """YAML file (optional) + overrides -> validated TrainConfig."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of config keys at the top level")
        values.update(loaded)
    values.update(overrides or {})
    return config_from_dict(values, source=str(path) if path else "config")


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """``--config file.yaml`` plus ``--key value`` overrides for any TrainConfig field."""
    parser = argparse.ArgumentParser(description="Train long-tailed models (CE, LA, SupCon, KCL+cRT, BCL).")
    parser.add_argument("--config", type=str, default=None, help="YAML recipe (configs/*.yaml)")
    for name in _field_types():
        parser.add_argument(f"--{name}", type=str, default=None, dest=name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    return load_config(args.config, overrides)
