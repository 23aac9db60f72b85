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


DEFAULT_VAL_PER_CLASS = 4


class DigitsLT(_LabelledDataset):
    """digits-LT: scikit-learn's handwritten digits (1797 images, 10 classes) made long-tailed.

    No download: the data ships with scikit-learn. Construction:

    1. a balanced test set of ``test_per_class`` images per class is held out first (seeded);
    2. the train split is drawn from the remaining images (the training pool) with
       ``exp_profile(10, n_max, imbalance_factor)``, ``n_max`` = the smallest pool class
       (124 with the defaults, so every class can supply its count; IF100 gives
       ``[124, 74, 44, 26, 16, 9, 5, 3, 2, 1]``), class 0 being the head;
    3. the ``'val'`` split, a balanced validation set of ``val_per_class`` images per class, is
       drawn (seeded) from the pool images that the train split did not take, so asking for it
       changes neither train nor test. Default 4 per class: the head class keeps only 4 pool images
       outside train (its pool has 128 images and train takes ``n_max`` = 124, whatever the
       imbalance factor and ``test_per_class``); a larger ``val_per_class``, or a balanced train
       split (imbalance factor near 1) that takes a whole pool class, is an error naming the class.

    Train, val and test never overlap (``.indices`` are the scikit-learn indices). Images are the
    8x8 grey digits up-sampled to ``img_size`` with nearest-neighbour interpolation and returned
    as RGB PIL images with three identical channels; normalise with ``DIGITS_MEAN``/``DIGITS_STD``.

    Args:
        split: ``'train'``, ``'val'`` or ``'test'``.
        imbalance_factor: ``n_max / n_min`` of the train split (1 = balanced).
        test_per_class: held-out test images per class (1..173).
        seed: seed of the test hold-out, the long-tailed selection and the validation draw.
        img_size: output side length in pixels.
        transform: applied to the PIL image.
        val_per_class: images per class of the ``'val'`` split (ignored by the other splits).
    """

    def __init__(self, split: str = "train", imbalance_factor: float = 100.0, test_per_class: int = 50,
                 seed: int = 0, img_size: int = 32, transform: Callable | None = None,
                 val_per_class: int = DEFAULT_VAL_PER_CLASS) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"DigitsLT split must be 'train', 'val' or 'test', got {split!r}")
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
            profile = exp_profile(10, n_max, imbalance_factor)
            idx = pool_idx[make_longtailed(pool_targets, profile, seed)]
            if split == "train":
                self.profile = profile
            else:
                idx = self._draw_val(labels, pool_idx, idx, val_per_class, seed, imbalance_factor)
        self.split = split
        self.img_size = img_size
        self.indices: list[int] = [int(i) for i in idx]
        self.targets: list[int] = [int(labels[i]) for i in idx]
        self.transform = transform
        self._images = _digits_upsampled(img_size)

    @staticmethod
    def _draw_val(labels: np.ndarray, pool_idx: np.ndarray, train_idx: np.ndarray, val_per_class: int,
                  seed: int, imbalance_factor: float) -> np.ndarray:
        if not isinstance(val_per_class, int) or isinstance(val_per_class, bool) or val_per_class < 1:
            raise ValueError(f"val_per_class must be a positive integer, got {val_per_class!r}")
        left = np.setdiff1d(pool_idx, train_idx)  # sorted: the pool images train did not take
        chosen = []
        for c in range(10):
            members = left[labels[left] == c]
            if members.size < val_per_class:
                raise ValueError(
                    f"digits-LT val split: class {c} has {members.size} images outside train and test "
                    f"(imbalance_factor={imbalance_factor}), fewer than val_per_class={val_per_class}; "
                    f"lower val_per_class or test_per_class")
            perm = np.random.default_rng([int(seed), c, 2]).permutation(members.size)
            chosen.append(members[perm[:val_per_class]])
        return np.sort(np.concatenate(chosen))

    def uint8_images(self) -> np.ndarray:
        """All images of the split as one ``uint8`` array ``[N, 3, img_size, img_size]`` (a copy)."""
        grey = self._images[np.asarray(self.indices, dtype=np.int64)]
        return np.repeat(grey[:, None], 3, axis=1)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self._images[self.indices[index]]).convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]
