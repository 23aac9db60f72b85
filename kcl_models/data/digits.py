"""digits-LT: scikit-learn's 8x8 handwritten digits made long-tailed (no download, for demos and tests)."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from .datasets import _LabelledDataset
from .longtail import exp_profile, make_longtailed

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "DigitsLT"]

# Pixel statistics of scikit-learn's digits (values / 16) over all 1797 images, replicated to
# three channels; nearest-neighbour up-sampling (what DigitsLT uses) keeps them unchanged.
DIGITS_MEAN = (0.3053, 0.3053, 0.3053)
DIGITS_STD = (0.3760, 0.3760, 0.3760)


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images / 16.0 * 255.0).astype(np.uint8)  # [1797, 8, 8], values 0..16
    return images, d.target.astype(np.int64)


@lru_cache(maxsize=4)
def _digits_upsampled(img_size: int) -> np.ndarray:
    images, _ = _digits_raw()
    if img_size == images.shape[1]:
        return images
    # Nearest neighbour: every source pixel becomes a block, so the pixel statistics (and the
    # normalisation constants DIGITS_MEAN/STD) stay those of the original 8x8 data.
    return np.stack([np.asarray(Image.fromarray(a).resize((img_size, img_size), Image.NEAREST))
                     for a in images])


class DigitsLT(_LabelledDataset):
    """digits-LT: scikit-learn's handwritten digits (1797 images, 10 classes) made long-tailed.

    No download: the data ships with scikit-learn. Construction:

    1. a balanced test set of ``test_per_class`` images per class is held out first (seeded);
    2. the train split is drawn from the remaining images with
       ``exp_profile(10, n_max, imbalance_factor)``, ``n_max`` = the smallest remaining class
       (124 with the defaults, so every class can supply its count; IF100 gives
       ``[124, 74, 44, 26, 16, 9, 5, 3, 2, 1]``), class 0 being the head.

    Train and test never overlap (``.indices`` are the scikit-learn indices). Images are the 8x8
    grey digits up-sampled to ``img_size`` with nearest-neighbour interpolation and returned as
    RGB PIL images with three identical channels; normalise with ``DIGITS_MEAN``/``DIGITS_STD``.

    Args:
        split: ``'train'`` or ``'test'``.
        imbalance_factor: ``n_max / n_min`` of the train split (1 = balanced).
        test_per_class: held-out test images per class (1..173).
        seed: seed of the test hold-out and of the long-tailed selection.
        img_size: output side length in pixels.
        transform: applied to the PIL image.
    """

    def __init__(self, split: str = "train", imbalance_factor: float = 100.0, test_per_class: int = 50,
                 seed: int = 0, img_size: int = 32, transform: Callable | None = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"DigitsLT split must be 'train' or 'test', got {split!r}")
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f"img_size must be a positive integer, got {img_size!r}")
        _, labels = _digits_raw()
        self.num_classes = 10
        self.classes = [str(i) for i in range(10)]
        per_class = np.bincount(labels, minlength=10)
        if not isinstance(test_per_class, int) or not 1 <= test_per_class < int(per_class.min()):
            raise ValueError(
                f"test_per_class must be an integer in [1, {int(per_class.min()) - 1}] "
                f"(smallest digits class has {int(per_class.min())} images), got {test_per_class!r}")
        test_idx, pool = [], []
        for c in range(10):
            members = np.flatnonzero(labels == c)
            perm = np.random.default_rng([int(seed), c, 1]).permutation(members.size)
            test_idx.append(members[perm[:test_per_class]])
            pool.append(members[perm[test_per_class:]])
        pool_idx = np.sort(np.concatenate(pool))
        self.profile: list[int] | None = None
        if split == "test":
            idx = np.sort(np.concatenate(test_idx))
        else:
            pool_targets = labels[pool_idx]
            n_max = int(np.bincount(pool_targets, minlength=10).min())
            self.profile = exp_profile(10, n_max, imbalance_factor)
            idx = pool_idx[make_longtailed(pool_targets, self.profile, seed)]
        self.split = split
        self.img_size = img_size
        self.indices: list[int] = [int(i) for i in idx]
        self.targets: list[int] = [int(labels[i]) for i in idx]
        self.transform = transform
        self._images = _digits_upsampled(img_size)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self._images[self.indices[index]]).convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]
