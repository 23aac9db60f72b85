"""``synthetic``: random images in the shape of a recipe's data, for benchmarks and smoke tests.

The training split follows the exponential long-tail profile (``n_max`` images of the head class,
``n_max / imbalance_factor`` of the tail): with the defaults (100 classes, n_max 500, IF 100,
32x32) it has the 10,847 images of CIFAR-100-LT IF100. The test and val splits hold
``test_per_class`` / ``val_per_class`` images of every class. Pixels are uniform noise from the
seed (plus a per-class tint, so a model can learn something), never a download.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from .datasets import _LabelledDataset
from .longtail import exp_profile

__all__ = ["SyntheticLT"]


class SyntheticLT(_LabelledDataset):
    """Seeded random uint8 images ``[3, img_size, img_size]`` with long-tailed training labels."""

    def __init__(self, split: str = "train", imbalance_factor: float = 100.0, seed: int = 0,
                 transform: Callable | None = None, num_classes: int = 100, n_max: int = 500,
                 img_size: int = 32, test_per_class: int = 10, val_per_class: int = 5) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"synthetic data has splits train, val and test, got {split!r}")
        for name, value in (("num_classes", num_classes), ("n_max", n_max), ("img_size", img_size),
                            ("test_per_class", test_per_class), ("val_per_class", val_per_class)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"synthetic data: {name} must be a positive integer, got {value!r}")
        if split == "train":
            counts = exp_profile(num_classes, n_max, max(float(imbalance_factor or 1.0), 1.0))
        else:
            counts = [test_per_class if split == "test" else val_per_class] * num_classes
        self.split, self.num_classes, self.img_size = split, num_classes, img_size
        self.classes = [str(c) for c in range(num_classes)]
        self.targets = [c for c, n in enumerate(counts) for _ in range(int(n))]
        self.transform = transform
        rng = np.random.default_rng([int(seed), ("train", "val", "test").index(split)])
        tint = np.random.default_rng([int(seed), 7]).integers(0, 128, size=(num_classes, 3), dtype=np.uint8)
        noise = rng.integers(0, 128, size=(len(self.targets), img_size, img_size, 3), dtype=np.uint8)
        self._images = noise + tint[np.asarray(self.targets)][:, None, None, :]   # [N, H, W, 3]

    def uint8_images(self) -> np.ndarray:
        """All images as one ``uint8`` array ``[N, 3, H, W]``."""
        return np.ascontiguousarray(self._images.transpose(0, 3, 1, 2))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self._images[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]
