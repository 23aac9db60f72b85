from __future__ import annotations

import pytest

from kcl_models.data import build_dataset, build_datasets


def test_default_shape_is_cifar100_lt_if100():
    ds = build_dataset("synthetic", "train", seed=3)
    assert len(ds) == 10847 and ds.num_classes == 100
    counts = ds.class_counts()
    assert counts[0] == 500 and counts[-1] == 5 and sorted(counts, reverse=True) == counts
    img, label = ds[0]
    assert img.size == (32, 32) and label == 0


def test_splits_are_seeded_and_balanced():
    a = build_datasets("synthetic", {"train": None, "test": None, "val": None}, num_classes=7, seed=1,
                       imbalance_factor=10, n_max=20, img_size=8, test_per_class=3, val_per_class=2)
    assert a["test"].class_counts() == [3] * 7 and a["val"].class_counts() == [2] * 7
    b = build_dataset("synthetic", "train", num_classes=7, seed=1, imbalance_factor=10, n_max=20, img_size=8)
    assert (a["train"].uint8_images() == b.uint8_images()).all()
    assert a["train"].uint8_images().shape == (len(b), 3, 8, 8)
    with pytest.raises(ValueError, match="data option 'classes' does not apply to dataset 'synthetic'"):
        build_dataset("synthetic", "train", classes=["a"])
