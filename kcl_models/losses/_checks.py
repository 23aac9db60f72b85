"""Argument checks shared by the losses: every error names the argument and the bad value."""
from __future__ import annotations

import math

import torch


def check_temperature(temperature: float, owner: str) -> float:
    """Return ``temperature`` as a float; raise unless it is finite and > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: temperature must be a number, got {temperature!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: temperature must be finite and > 0, got {temperature!r}")
    return value


def check_tensor(x: torch.Tensor, name: str, ndim: int, owner: str, layout: str) -> None:
    """Raise unless ``x`` is a floating-point tensor with ``ndim`` dimensions (``layout`` explains them)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor {layout}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{owner}: {name} must be {layout} ({ndim} dims), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype {x.dtype}")


def check_labels(labels: torch.Tensor, n: int, owner: str, name: str = "labels",
                 num_classes: int | None = None, min_value: int | None = 0, check_range: bool = True) -> None:
    """Raise unless ``labels`` is an integer tensor of shape ``[n]`` with values in range.

    Values must lie in ``[min_value, num_classes)`` (no bound where that argument is None).
    Checking the range costs one device sync; it turns an index error deep inside a CUDA kernel
    into a message naming the bad label. ``check_range=False`` checks only type and shape (the
    caller then calls ``check_label_range`` itself, e.g. to share one sync between tensors).
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor of shape [{n}], got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{owner}: {name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{owner}: {name} must have shape [{n}], got {tuple(labels.shape)}")
    if check_range and n > 0 and (min_value is not None or num_classes is not None):
        lo, hi = torch.stack(torch.aminmax(labels)).tolist()  # one device sync
        check_label_range(lo, hi, owner, name, num_classes, min_value)


def check_label_range(lo: int, hi: int, owner: str, name: str, num_classes: int | None = None,
                      min_value: int | None = 0) -> None:
    """Raise unless the smallest label ``lo`` and the largest ``hi`` lie in ``[min_value, num_classes)``."""
    if min_value is not None and lo < min_value:
        raise ValueError(f"{owner}: {name} must be >= {min_value}, got label {lo}")
    if num_classes is not None and hi >= num_classes:
        raise ValueError(f"{owner}: {name} must be < num_classes={num_classes}, got label {hi}")


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Common floating dtype of ``tensors``, at least float32.

    Contrastive logits ``z_i.z_j / tau`` reach ``1/tau ~ 14``; half precision would round them
    to ~0.06, so the losses upcast fp16/bf16 inputs and run with autocast disabled.
    """
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.promote_types(dtype, torch.float32)
