"""The training views of :mod:`.transforms`, batched: uint8 image batches in, normalised views out.

``build_batched_views(method, input_size, mean, std, randaug=..., contrastive_randaug=..., hflip=...)``
mirrors :func:`.transforms.build_views` (same method names, views, order and options) and returns a
callable ``views(images, keys)``:

* ``images``: uint8 ``[B, 3, H, W]`` on any device (a :class:`.tensor_data.TensorImageDataset`
  batch; for inputs <= 64 px ``H, W`` must already be the view size, which ``to_tensor_dataset``
  ensures with the PIL path's ``Resize``);
* ``keys``: :class:`.counter_rng.SampleKeys` of the batch (seed, epoch, per-sample positions);
* returns a float32 tensor ``[B, 3, h, w]`` for one-view methods and a list of them otherwise
  (view ``k`` draws from stream ``k``, so two identical views differ), like the PIL transform.

Each view is a list of steps (crop + flip, colour jitter, greyscale, RandAugment, normalise), each
drawing its parameters from its own slots of the keys, so a sample's view depends only on
``(seed, epoch, position, view)``. ``view.trace(images, keys)`` also returns the drawn parameters
(for the distribution tests and for debugging).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from . import batched_ops as B
from .batched_randaug import BatchedRandAugment
from .counter_rng import SampleKeys
from .transforms import (
    _SINGLE_VIEW_METHODS,
    _TWO_VIEW_METHODS,
    _VIEWS,
    DEFAULT_RANDAUG,
    SMALL_INPUT_MAX,
    _check_stats,
    _hw,
    _randaug,
)

__all__ = ["BatchedMultiView", "BatchedView", "build_batched_train_view", "build_batched_views"]


class _Step:
    num_draws = 0

    def draw(self, keys: SampleKeys, first: int, in_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        return {}

    def apply(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class CropPadFlip(_Step):
    """``RandomCrop(size, padding)`` + ``RandomHorizontalFlip(hflip)``: offsets uniform, flip rate ``hflip``."""

    num_draws = 3

    def __init__(self, size: tuple[int, int], padding: int, hflip: float) -> None:
        self.size, self.padding, self.hflip = size, padding, float(hflip)

    def draw(self, keys, first, in_hw):
        if tuple(in_hw) != tuple(self.size):
            raise ValueError(f"the batched crop expects images of the view size {self.size}, got {tuple(in_hw)}: "
                             f"build the tensor dataset with to_tensor_dataset(ds, size={self.size[0]})")
        u = keys.uniform(first, 3)
        span_h = in_hw[0] + 2 * self.padding - self.size[0] + 1
        span_w = in_hw[1] + 2 * self.padding - self.size[1] + 1
        return {"top": (u[:, 0] * span_h).long().clamp(max=span_h - 1),
                "left": (u[:, 1] * span_w).long().clamp(max=span_w - 1),
                "flip": u[:, 2] < self.hflip}

    def apply(self, x, p):
        return B.crop_pad_flip(x, p["top"], p["left"], p["flip"], self.size, self.padding)


class ResizedCropFlip(_Step):
    """``RandomResizedCrop(size, scale, ratio)`` (torchvision's 10 attempts, then the central
    fallback) + ``RandomHorizontalFlip(hflip)``."""

    attempts = 10
    num_draws = 2 * attempts + 3

    def __init__(self, size: tuple[int, int], scale: tuple[float, float], hflip: float,
                 ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)) -> None:
        self.size, self.scale, self.ratio, self.hflip = size, tuple(scale), tuple(ratio), float(hflip)

    def draw(self, keys, first, in_hw):
        height, width = in_hw
        u = keys.uniform(first, self.num_draws)
        n = self.attempts
        area = height * width
        target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, :n])
        lr0, lr1 = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lr0 + (lr1 - lr0) * u[:, n:2 * n])
        w = torch.round(torch.sqrt(target * aspect))
        h = torch.round(torch.sqrt(target / aspect))
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first_ok = ok.to(torch.int64).argmax(1, keepdim=True)
        w = w.gather(1, first_ok).squeeze(1)
        h = h.gather(1, first_ok).squeeze(1)
        found = ok.any(1)
        # torchvision's fallback: the largest central crop within the ratio range
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            fw, fh = width, round(width / min(self.ratio))
        elif in_ratio > max(self.ratio):
            fw, fh = round(height * max(self.ratio)), height
        else:
            fw, fh = width, height
        w = torch.where(found, w, float(fw)).long()
        h = torch.where(found, h, float(fh)).long()
        top = torch.where(found, (u[:, 2 * n] * (height - h + 1)).long().clamp(max=height - h), (height - h) // 2)
        left = torch.where(found, (u[:, 2 * n + 1] * (width - w + 1)).long().clamp(max=width - w), (width - w) // 2)
        return {"top": top, "left": left, "height": h, "width": w, "flip": u[:, 2 * n + 2] < self.hflip}

    def apply(self, x, p):
        return B.resized_crop(x, p["top"], p["left"], p["height"], p["width"], self.size, p["flip"])


def _jitter_range(value: float, name: str, centre: float, bound: tuple[float, float] | None = None):
    if value < 0:
        raise ValueError(f"ColorJitter {name} must be >= 0, got {value}")
    lo, hi = centre - value, centre + value
    if bound is None:
        lo = max(lo, 0.0)
    elif not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"ColorJitter {name} must lie in {bound}, got {value}")
    return None if lo == hi == centre else (lo, hi)


class ColorJitterStep(_Step):
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)``: each factor uniform
    in torchvision's range, the four adjustments in a random order per sample (``randperm(4)``)."""

    num_draws = 9  # apply, 4 factors, 4 order keys

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float = 1.0) -> None:
        self.ranges = [_jitter_range(brightness, "brightness", 1.0), _jitter_range(contrast, "contrast", 1.0),
                       _jitter_range(saturation, "saturation", 1.0), _jitter_range(hue, "hue", 0.0, (-0.5, 0.5))]
        self.p = float(p)

    def draw(self, keys, first, in_hw):
        u = keys.uniform(first, self.num_draws)
        cols = []
        for k, r in enumerate(self.ranges):
            lo, hi = r if r is not None else (1.0, 1.0)  # an unused adjustment keeps factor 1
            cols.append(lo + (hi - lo) * u[:, 1 + k])
        factors = torch.stack(cols, 1)
        return {"apply": u[:, 0] < self.p, "factors": factors.to(torch.float32),
                "order": torch.argsort(u[:, 5:9], dim=1)}

    def apply(self, x, p):
        kinds = (B.BRIGHTNESS, B.CONTRAST, B.COLOR)
        for step in range(4):
            op = p["order"][:, step]
            for j in range(4):
                if self.ranges[j] is None:
                    continue
                mask = p["apply"] & (op == j)
                if j < 3:
                    x = B.masked_apply(x, mask, lambda t, f, kind=kinds[j]: B.blend(t, f, kind), p["factors"][:, j])
                else:
                    x = B.masked_apply(x, mask, B.adjust_hue, p["factors"][:, 3].to(torch.float64))
        return x


class GrayscaleStep(_Step):
    """``RandomGrayscale(p)`` with three output channels."""

    num_draws = 1

    def __init__(self, p: float) -> None:
        self.p = float(p)

    def draw(self, keys, first, in_hw):
        return {"apply": keys.uniform(first, 1)[:, 0] < self.p}

    def apply(self, x, p):
        return B.masked_apply(x, p["apply"], lambda t: B.grayscale(t).expand_as(t).contiguous())


class RandAugmentStep(_Step):
    """timm's RandAugment (see :mod:`.batched_randaug`)."""

    def __init__(self, ra: BatchedRandAugment) -> None:
        self.ra = ra
        self.num_draws = ra.num_draws

    def draw(self, keys, first, in_hw):
        return self.ra.draw(keys.uniform(first, self.num_draws), keys.normal(first, self.num_draws))

    def apply(self, x, p):
        return self.ra.apply(x, p)


class BatchedView:
    """One training view: steps applied in order to a uint8 batch, then normalisation.

    Args:
        steps: the augmentation steps (each draws from its own slots of the keys).
        mean, std: normalisation (RGB, in [0, 1]).
    """

    def __init__(self, steps: Sequence[_Step], mean: Sequence[float], std: Sequence[float]) -> None:
        self.steps = list(steps)
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.offsets, n = [], 0
        for s in self.steps:
            self.offsets.append(n)
            n += s.num_draws
        self.num_draws = n

    def trace(self, images: torch.Tensor, keys: SampleKeys) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """``(views, parameters of each step)`` for a uint8 batch ``[B, 3, H, W]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        if len(keys) != images.shape[0]:
            raise ValueError(f"{len(keys)} keys for {images.shape[0]} images")
        x, params = images, []
        for step, first in zip(self.steps, self.offsets):
            p = step.draw(keys, first, tuple(x.shape[-2:]))
            x = step.apply(x, p)
            params.append(p)
        if x.device not in self._stats:  # no host-to-device copy per batch
            self._stats[x.device] = (self.mean.to(x.device), self.std.to(x.device))
        return B.normalize(x.to(torch.float32), *self._stats[x.device]), params

    def __call__(self, images: torch.Tensor, keys: SampleKeys) -> torch.Tensor:
        return self.trace(images, keys)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(type(s).__name__ for s in self.steps)})"


class BatchedMultiView:
    """Several views of the same batch, view ``k`` drawing from stream ``k``; returns a list."""

    def __init__(self, views: Sequence[BatchedView]) -> None:
        self.views = list(views)
        if not self.views:
            raise ValueError("BatchedMultiView needs at least one view")

    def __call__(self, images: torch.Tensor, keys: SampleKeys) -> list[torch.Tensor]:
        return [v(images, keys.with_stream(k)) for k, v in enumerate(self.views)]

    def __len__(self) -> int:
        return len(self.views)


def build_batched_train_view(view: str, input_size: int | Sequence[int], mean: Sequence[float],
                             std: Sequence[float], randaug: str | None = DEFAULT_RANDAUG, *,
                             scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                             interpolation: str = "bilinear") -> BatchedView:
    """The batched twin of :func:`.transforms.build_train_transform` (same arguments and views)."""
    if view not in _VIEWS:
        raise ValueError(f"view must be one of {_VIEWS}, got {view!r}")
    size = _hw(input_size)
    mean, std = _check_stats(mean, std)
    if max(size) <= SMALL_INPUT_MAX:
        steps: list[_Step] = [CropPadFlip(size, min(size) // 8, hflip)]
    else:
        if interpolation != "bilinear":
            raise NotImplementedError(f"the batched random resized crop resamples bilinearly, not {interpolation!r}")
        steps = [ResizedCropFlip(size, scale, hflip)]
    if view == "classifier":
        steps.append(ColorJitterStep(0.4, 0.4, 0.4, 0.0))
    elif view == "contrastive":
        steps += [ColorJitterStep(0.4, 0.4, 0.4, 0.1, p=0.8), GrayscaleStep(0.2)]
    if view != "plain" and randaug:
        steps.append(RandAugmentStep(BatchedRandAugment(_randaug(randaug, mean, size), size)))
    return BatchedView(steps, mean, std)


def build_batched_views(method: str, input_size: int | Sequence[int], mean: Sequence[float],
                        std: Sequence[float], randaug: str | None = DEFAULT_RANDAUG,
                        contrastive_randaug: str | None = None, **kw: Any) -> BatchedView | BatchedMultiView:
    """The batched twin of :func:`.transforms.build_views`: same methods, views and order.

    * ``'ce'``, ``'la'``: one classifier view; ``'crt'``, ``'plain'``: one plain view (a tensor);
    * ``'supcon'``, ``'kcl'``, ``'fcl'``, ``'simclr'``, ``'cl'``: a list of 2 contrastive views;
    * ``'bcl'``: ``[classifier, contrastive, contrastive]``.
    """
    m = method.lower()
    if m in _SINGLE_VIEW_METHODS:
        return build_batched_train_view(_SINGLE_VIEW_METHODS[m], input_size, mean, std, randaug, **kw)
    contrastive = build_batched_train_view("contrastive", input_size, mean, std, contrastive_randaug, **kw)
    if m in _TWO_VIEW_METHODS:
        return BatchedMultiView([contrastive, contrastive])
    if m == "bcl":
        classifier = build_batched_train_view("classifier", input_size, mean, std, randaug, **kw)
        return BatchedMultiView([classifier, contrastive, contrastive])
    known = sorted(set(_SINGLE_VIEW_METHODS) | set(_TWO_VIEW_METHODS) | {"bcl"})
    raise ValueError(f"unknown method {method!r}; expected one of {known}")
