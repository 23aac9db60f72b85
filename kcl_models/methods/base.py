"""The method interface: what a training method tells the generic trainer.

A method is one class (one file) with

- ``name``: how configs and logs call it;
- ``views``: the training views of one item, by name (``'classifier'``, ``'contrastive'``,
  ``'plain'``; see :mod:`kcl_models.data.transforms`); one view gives a tensor per item, several
  give a list;
- ``Options``: a dataclass of its hyperparameters (defaults, types, help), validated in
  ``__post_init__``; the trainer refuses any key that is neither a trainer key nor an option;
- ``crt``: whether a cRT stage (frozen backbone, class-balanced linear classifier) follows;
- ``build(backbone)``: the training module made from a timm backbone (what the optimizer trains);
- ``loss(model, batch, generator)``: a :class:`LossOutput` with the total and its named parts;
- ``start_epoch(epoch)``: per-epoch state (e.g. ProCo swaps its class statistics);
- ``after_step(model)``: its own state after each optimizer step (momentum encoder, queue);
- ``checkpoint_state()``: extra stateful objects saved with every checkpoint;
- ``eval_module(model)`` / ``export_module(model)``: the timm model evaluated during stage 1 and
  the one published (backbone + classifier); ``feature_backbone(model)`` for the cRT stage.

The trainer hands each method a :class:`MethodContext` (accelerator, device, class counts, the
gather helpers, compile setting). Methods use losses, models and data; they never import train.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["LossOutput", "Method", "MethodContext", "NoOptions", "build_options", "check_range", "coerce_value",
           "option", "options_help"]


def option(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a one-line ``help`` (shown by ``train.py --help``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class NoOptions:
    """A method without hyperparameters of its own."""


@dataclass
class LossOutput:
    """A step's loss: the total to back-propagate, its named parts (logged), images processed."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor]
    num_images: int


@dataclass
class MethodContext:
    """What the trainer gives a method: the run's environment, never the trainer itself.

    ``gather`` concatenates a tensor from every process with gradients (contrastive features);
    ``gather_nograd`` without (labels, momentum keys). ``checks`` is a dict when the run records
    cross-rank debug checks (tests), else None.
    """

    accelerator: Any
    num_classes: int
    class_counts: list[int]
    gather: Callable[[torch.Tensor], torch.Tensor]
    gather_nograd: Callable[[torch.Tensor], torch.Tensor]
    compile_backend: str = "no"
    checks: dict[str, Any] | None = None
    log: Callable[[str], None] = print

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    def compile(self, module: nn.Module) -> nn.Module:
        """``torch.compile`` a loss module when the run asks for it (fuses its small kernels on GPU)."""
        if self.compile_backend == "no":
            return module
        return torch.compile(module, backend=self.compile_backend)

    def record(self, key: str, value: Any) -> None:
        """Add ``value`` to the debug check ``key`` (a set of seen values) when checks are on."""
        if self.checks is not None:
            self.checks.setdefault(key, set()).add(value)


class Method:
    """Base class of every training method; subclasses override what differs (see module doc)."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    views: ClassVar[tuple[str, ...]] = ("classifier",)
    crt: ClassVar[bool] = False
    # contrastive features are gathered across processes in equal-size batches
    equal_batches: ClassVar[bool] = False

    def __init__(self, options: Any, ctx: MethodContext) -> None:
        self.opts, self.ctx = options, ctx

    # ---- set-up -----------------------------------------------------------------------------
    def check_data(self, global_batch: int) -> None:
        """Refuse data or batch settings the method cannot train with (called before building)."""

    def build(self, backbone: nn.Module) -> nn.Module:
        """The training module (prepared by Accelerate, trained by the optimizer)."""
        return backbone

    def on_prepared(self, model: nn.Module) -> None:
        """Called once after ``accelerator.prepare``: create state that copies the prepared model."""

    def before_training(self, model: nn.Module, loader: Any) -> None:
        """Called before stage 1 starts or resumes (e.g. fill a queue that is still empty)."""

    # ---- each epoch and step -----------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        """Called at the start (or mid-epoch resume) of every stage-1 epoch (e.g. swap class statistics)."""

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> LossOutput:
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step of stage 1, with the prepared model."""

    # ---- state and outputs --------------------------------------------------------------------
    def checkpoint_state(self) -> list[Any]:
        """Objects with ``state_dict``/``load_state_dict`` saved in every checkpoint."""
        return []

    def feature_backbone(self, model: nn.Module) -> nn.Module:
        """The timm backbone inside the (unwrapped) training module."""
        return getattr(model, "backbone", model)

    def eval_module(self, model: nn.Module) -> nn.Module | None:
        """The classifier evaluated during stage 1; None when only the cRT stage gives one."""
        return None if self.crt else self.feature_backbone(model)

    def export_module(self, model: nn.Module) -> nn.Module:
        """The timm model (backbone + classifier) published after training (methods without cRT)."""
        return self.feature_backbone(model)


# ---- typed options ---------------------------------------------------------------------------
def coerce_value(name: str, value: Any, hint: Any) -> Any:
    """Convert a YAML/CLI value to a field's type; a clear error naming the key otherwise."""
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
            if isinstance(value, float) and not value.is_integer() or isinstance(value, bool):
                raise ValueError
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
        if typing.get_origin(base) is list or base is list:
            import yaml

            if isinstance(value, str):
                value = yaml.safe_load(value if value.startswith("[") else f"[{value}]")
            if not isinstance(value, list):
                raise ValueError
            return [int(v) for v in value]
        if typing.get_origin(base) is dict or base is dict:
            import yaml

            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ValueError(f"config '{name}': cannot read {value!r} as {type_name(base)}") from None
    return value


def type_name(hint: Any) -> str:
    """``int``, ``float or null``, ``list[int]``: how a field's type reads in messages and --help."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    if is_union:
        args = typing.get_args(hint)
        names = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(names) + (" or null" if type(None) in args else "")
    if typing.get_origin(hint) in (list, dict):
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", str(hint))


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def options_help(cls: type) -> list[tuple[str, str, Any, str]]:
    """``(name, type, default, help)`` of every field of an options dataclass."""
    rows = []
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append((f.name, type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return rows


def build_options(method_cls: type[Method], values: dict[str, Any]) -> Any:
    """The method's Options from raw config values (typed; its ``__post_init__`` validates)."""
    types_ = field_types(method_cls.Options)
    return method_cls.Options(**{k: coerce_value(k, v, types_[k]) for k, v in values.items()})


def option_names(method_cls: type[Method]) -> Sequence[str]:
    return [f.name for f in dataclasses.fields(method_cls.Options)]


def check_range(name: str, value: float | None, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """Refuse an option outside its range with a message that names it and the range."""
    if value is None:
        return
    bad = (low is not None and (value <= low if low_open else value < low)) or \
          (high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"option '{name}' must be {' and '.join(s for s in (lo, hi) if s)}, got {value}")
