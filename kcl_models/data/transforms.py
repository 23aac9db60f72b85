"""Training views for CE/LA, SupCon/KCL and BCL, and the evaluation transform, from timm/torchvision.

Views (every one ends with ``ToTensor`` + ``Normalize(mean, std)``, so it is a float tensor
``[3, H, W]``):

* ``'classifier'`` (BCL classifier branch, CE/LA): crop + horizontal flip + ColorJitter(0.4, 0.4,
  0.4, 0) + RandAugment (timm ``rand_augment_transform``, default ``'rand-n2-m10-mstd0.5'``);
* ``'contrastive'`` (SimCLR style, Chen et al. 2020; KCL, SupCon, BCL contrastive branch): crop +
  flip + ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8 + RandomGrayscale(p = 0.2), followed by
  RandAugment when ``randaug`` is given (BCL's optional stacked views);
* ``'plain'``: crop + flip only (cRT classifier re-training, linear probes).

The crop is ``RandomResizedCrop(size, scale=(0.08, 1))`` for inputs larger than 64 px and, for
small inputs (<= 64 px: CIFAR, digits), ``Resize(size)`` + ``RandomCrop(size, padding=size // 8)``,
the CIFAR recipe (``Resize`` is a no-op when the image already has that size).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from timm.data import create_transform, rand_augment_transform
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

__all__ = [
    "DEFAULT_RANDAUG",
    "MultiViewTransform",
    "build_eval_transform",
    "build_train_transform",
    "build_views",
]

DEFAULT_RANDAUG = "rand-n2-m10-mstd0.5"
SMALL_INPUT_MAX = 64
_VIEWS = ("classifier", "contrastive", "plain")
_SINGLE_VIEW_METHODS = {"ce": "classifier", "la": "classifier", "crt": "plain", "plain": "plain"}
_TWO_VIEW_METHODS = ("supcon", "kcl", "fcl", "simclr", "cl")
_EVAL_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


class MultiViewTransform:
    """Apply each transform to the same image and return the list of results (one per view).

    Args:
        transforms: one callable per view (the same object may appear several times: each call
            draws fresh random parameters).
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        transforms = list(transforms)
        if not transforms:
            raise ValueError("MultiViewTransform needs at least one transform")
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] is not callable: {t!r}")
        self.transforms = transforms

    def __call__(self, img: Any) -> list:
        return [t(img) for t in self.transforms]

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = "\n".join(f"  view {i}: {t!r}".replace("\n", "\n  ") for i, t in enumerate(self.transforms))
        return f"{type(self).__name__}(\n{inner}\n)"


def _hw(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        size = (input_size, input_size)
    else:
        size = tuple(int(s) for s in input_size)[-2:]
        if len(size) != 2:
            raise ValueError(f"input_size must be an int, (H, W) or (C, H, W), got {input_size!r}")
    if min(size) < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return size  # type: ignore[return-value]


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={mean}, std={std}")
    if min(std) <= 0:
        raise ValueError(f"std values must be > 0, got {std}")
    return mean, std


def _randaug(config: str, mean: tuple[float, ...], size: tuple[int, int]) -> Callable:
    if not isinstance(config, str) or not config.startswith("rand"):
        raise ValueError(f"randaug must be a timm RandAugment string like {DEFAULT_RANDAUG!r}, got {config!r}")
    hparams = {
        "translate_const": int(min(size) * 0.45),
        "img_mean": tuple(min(255, round(255 * m)) for m in mean),  # fill colour of geometric ops
    }
    return rand_augment_transform(config, hparams)


def build_train_transform(view: str, input_size: int | Sequence[int], mean: Sequence[float],
                          std: Sequence[float], randaug: str | None = DEFAULT_RANDAUG, *,
                          scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                          interpolation: str = "bilinear") -> Callable:
    """One training view (see the module docstring for what each view does).

    Args:
        view: ``'classifier'``, ``'contrastive'`` or ``'plain'``.
        input_size: output size: int, ``(H, W)`` or timm's ``(C, H, W)``.
        mean: normalisation mean (RGB, in [0, 1]).
        std: normalisation std.
        randaug: timm RandAugment config string or None; used by the classifier and contrastive
            views (for a pure SimCLR contrastive view pass None), ignored by ``'plain'``.
        scale: RandomResizedCrop scale range (inputs > 64 px).
        hflip: horizontal flip probability.
        interpolation: RandomResizedCrop interpolation (``'bilinear'``, ``'bicubic'``, ...).

    Returns:
        A callable PIL image -> float tensor ``[3, H, W]``.
    """
    if view not in _VIEWS:
        raise ValueError(f"view must be one of {_VIEWS}, got {view!r}")
    size = _hw(input_size)
    mean, std = _check_stats(mean, std)
    try:
        interp = InterpolationMode(interpolation)
    except ValueError as err:
        raise ValueError(f"unknown interpolation {interpolation!r}") from err
    if max(size) <= SMALL_INPUT_MAX:
        crop: list[Callable] = [
            T.Resize(size[0] if size[0] == size[1] else size, interpolation=interp),
            T.RandomCrop(size, padding=min(size) // 8),
        ]
    else:
        crop = [T.RandomResizedCrop(size, scale=scale, interpolation=interp)]
    ops: list[Callable] = crop + [T.RandomHorizontalFlip(hflip)]
    if view == "classifier":
        ops.append(T.ColorJitter(0.4, 0.4, 0.4, 0.0))
    elif view == "contrastive":
        ops += [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if view != "plain" and randaug:
        ops.append(_randaug(randaug, mean, size))
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def build_views(method: str, input_size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                randaug: str | None = DEFAULT_RANDAUG, contrastive_randaug: str | None = None,
                **kw: Any) -> Callable:
    """The training transform a method needs.

    * ``'ce'``, ``'la'``: one classifier view (a tensor, not a list);
    * ``'crt'``, ``'plain'``: one plain view (crop + flip) as a tensor;
    * ``'supcon'``, ``'kcl'``, ``'fcl'``, ``'simclr'``, ``'cl'``: a list of 2 contrastive views;
    * ``'bcl'``: ``[classifier view, contrastive view, contrastive view]`` (BCL authors' order).

    Args:
        method: one of the names above (case-insensitive).
        input_size, mean, std: as for :func:`build_train_transform`.
        randaug: RandAugment of the classifier view (None to disable).
        contrastive_randaug: RandAugment stacked on the contrastive views (default None: plain
            SimCLR views, the BCL default ``sim-sim``).
        **kw: ``scale``, ``hflip``, ``interpolation`` for :func:`build_train_transform`.
    """
    m = method.lower()
    if m in _SINGLE_VIEW_METHODS:
        return build_train_transform(_SINGLE_VIEW_METHODS[m], input_size, mean, std, randaug, **kw)
    contrastive = build_train_transform("contrastive", input_size, mean, std, contrastive_randaug, **kw)
    if m in _TWO_VIEW_METHODS:
        return MultiViewTransform([contrastive, contrastive])
    if m == "bcl":
        classifier = build_train_transform("classifier", input_size, mean, std, randaug, **kw)
        return MultiViewTransform([classifier, contrastive, contrastive])
    known = sorted(set(_SINGLE_VIEW_METHODS) | set(_TWO_VIEW_METHODS) | {"bcl"})
    raise ValueError(f"unknown method {method!r}; expected one of {known}")


def build_eval_transform(data_config: dict) -> Callable:
    """Evaluation transform (resize, centre crop, normalise) from a timm data config.

    ``data_config`` is what ``timm.data.resolve_model_data_config(model)`` returns (keys
    ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``); it is
    passed to ``timm.data.create_transform(..., is_training=False)``.
    """
    if not isinstance(data_config, dict):
        raise TypeError(f"data_config must be a dict, got {type(data_config).__name__}")
    missing = [k for k in ("input_size", "mean", "std") if k not in data_config]
    if missing:
        raise ValueError(
            f"data_config lacks key(s) {missing}; build it with timm.data.resolve_model_data_config(model)")
    unknown = sorted(set(data_config) - set(_EVAL_KEYS))
    if unknown:
        raise ValueError(f"data_config has unexpected key(s) {unknown}; expected only {list(_EVAL_KEYS)}")
    _check_stats(data_config["mean"], data_config["std"])
    return create_transform(**data_config, is_training=False)
