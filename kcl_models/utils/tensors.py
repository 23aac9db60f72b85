"""Finiteness of weights: parameters *and* buffers (a diverged BatchNorm running_var is a buffer)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["NonFiniteWeightsError", "first_nonfinite", "check_finite"]


class NonFiniteWeightsError(ValueError):
    """A tensor holds NaN or inf. ``name`` is the first bad tensor, ``count`` its bad values."""

    def __init__(self, message: str, name: str, count: int, numel: int) -> None:
        super().__init__(message)
        self.name, self.count, self.numel = name, count, numel


def _items(tensors: Mapping[str, Any] | Iterable[tuple[str, Any]] | Any) -> Iterable[tuple[str, Any]]:
    if hasattr(tensors, "state_dict") and callable(tensors.state_dict):  # an nn.Module
        return tensors.state_dict(keep_vars=False).items()
    if isinstance(tensors, Mapping):
        return tensors.items()
    return tensors


def first_nonfinite(tensors: Mapping[str, Any] | Iterable[tuple[str, Any]] | Any) -> tuple[str, int, int] | None:
    """``(name, non-finite count, numel)`` of the first floating tensor with NaN/inf, else ``None``.

    Accepts a module (its ``state_dict``: parameters and buffers), a mapping or ``(name, tensor)``
    pairs, in their order.
    """
    import torch

    for name, value in _items(tensors):
        if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.is_complex()):
            continue  # integer buffers (num_batches_tracked) cannot be non-finite
        if value.device.type == "meta":
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            return name, int((~finite).sum()), int(value.numel())
    return None


def check_finite(tensors: Mapping[str, Any] | Iterable[tuple[str, Any]] | Any, what: str) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the first tensor of ``what`` with NaN/inf."""
    bad = first_nonfinite(tensors)
    if bad is not None:
        name, count, numel = bad
        raise NonFiniteWeightsError(
            f"{what}: tensor '{name}' holds {count} non-finite value(s) (NaN/inf) of {numel}; the weights "
            f"diverged or are corrupt: use an earlier checkpoint whose tensors are all finite", name, count, numel)
