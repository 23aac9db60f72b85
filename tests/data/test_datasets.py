import logging
import re

import pytest
import torch
from torch.utils.data import DataLoader

from kcl_models.data import (
    ImageFolderDataset,
    SkippedSample,
    SplitFileDataset,
    UnreadableImageError,
    build_dataset,
    check_all_classes_present,
    collate_skip,
    exp_profile,
)


def _label_tensor(img):
    # a cheap transform that keeps the batch collatable and shows the image was decoded as RGB
    assert img.mode == "RGB"
    return torch.tensor(img.size)


def test_split_file_loads_all(image_root, train_lines, write_split):
    split = write_split(train_lines)
    ds = SplitFileDataset(image_root, split)
    assert len(ds) == 40 and ds.num_classes == 4
    assert ds.class_counts() == [10, 10, 10, 10]
    assert ds.classes == ["0", "1", "2", "3"]
    assert ds.targets == [int(line.split()[1]) for line in train_lines]
    for i in (0, 1, 3):  # RGB jpg, grey png, RGBA png: all come out RGB
        img, label = ds[i]
        assert img.mode == "RGB" and img.size == (16, 16) and label == 0
    assert ds.num_skipped == 0


def test_split_file_with_transform_and_class_names(image_root, train_lines, write_split):
    ds = SplitFileDataset(image_root, write_split(train_lines), transform=_label_tensor, num_classes=4,
                          classes=["a", "b", "c", "d"])
    x, y = ds[15]
    assert torch.equal(x, torch.tensor([16, 16])) and y == 1
    assert ds.classes == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="3 class names given for 4 classes"):
        SplitFileDataset(image_root, write_split(train_lines), classes=["a", "b", "c"])


@pytest.mark.parametrize("bad_line", ["train/class0/img_0_000.jpg", "train/class0/img_0_000.jpg zero",
                                      "train/class0/img_0_000.jpg 1.5"])
def test_malformed_line_names_file_and_line(image_root, train_lines, write_split, bad_line):
    lines = train_lines[:2] + [bad_line] + train_lines[2:]
    split = write_split(lines)
    with pytest.raises(ValueError, match=re.escape(f"{split}:3: malformed line")):
        SplitFileDataset(image_root, split)


def test_blank_lines_are_ignored_but_counted(image_root, train_lines, write_split):
    split = write_split(train_lines[:1] + [""] + ["   "] + ["nope.jpg 0"])
    with pytest.raises(FileNotFoundError, match=re.escape(f"{split}:4: image 'nope.jpg' not found")):
        SplitFileDataset(image_root, split, require_all_classes=False)


def test_missing_image_names_file_line_and_count(image_root, train_lines, write_split):
    lines = list(train_lines)
    lines[4] = "train/class0/missing.jpg 0"
    lines[7] = "train/class0/missing2.jpg 0"
    split = write_split(lines)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{split}:5: image 'train/class0/missing.jpg'")) as e:
        SplitFileDataset(image_root, split)
    assert "2 of 40 listed images missing" in str(e.value)
    # without the check the dataset builds, and reading the image names the file and line
    ds = SplitFileDataset(image_root, split, check_files=False)
    with pytest.raises(UnreadableImageError, match=re.escape(f"{split}:5")):
        ds[4]


def test_label_out_of_range_names_file_and_line(image_root, train_lines, write_split):
    lines = list(train_lines)
    lines[9] = lines[9].rsplit(" ", 1)[0] + " 7"
    split = write_split(lines)
    with pytest.raises(ValueError, match=re.escape(f"{split}:10: label 7 out of range [0, 4)")):
        SplitFileDataset(image_root, split, num_classes=4)
    lines[9] = lines[9].rsplit(" ", 1)[0] + " -1"
    split = write_split(lines, "neg.txt")
    with pytest.raises(ValueError, match=re.escape(f"{split}:10: label -1 out of range")):
        SplitFileDataset(image_root, split)


def test_class_absent_from_train(image_root, train_lines, write_split):
    split = write_split(train_lines)
    with pytest.raises(ValueError, match=re.escape(f"{split}: 1 of 5 classes have no image: [4]")):
        SplitFileDataset(image_root, split, num_classes=5)
    gap = write_split([ln for ln in train_lines if not ln.endswith(" 2")], "gap.txt")
    with pytest.raises(ValueError, match=re.escape(f"{gap}: 1 of 4 classes have no image: [2]")):
        SplitFileDataset(image_root, gap)
    ds = SplitFileDataset(image_root, gap, require_all_classes=False)
    assert ds.class_counts() == [10, 10, 0, 10]
    with pytest.raises(ValueError, match="have no image"):
        check_all_classes_present(ds, 4, gap)
    check_all_classes_present([0, 1, 2], 3)


def test_missing_root_or_split_file(image_root, tmp_path, train_lines, write_split):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        SplitFileDataset(tmp_path / "nope", write_split(train_lines))
    with pytest.raises(FileNotFoundError, match="split file"):
        SplitFileDataset(image_root, tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="lists no images"):
        SplitFileDataset(image_root, write_split([""], "empty.txt"))
    with pytest.raises(ValueError, match="on_error"):
        SplitFileDataset(image_root, write_split(train_lines), on_error="ignore")


@pytest.mark.parametrize("bad", ["broken.jpg", "truncated.jpg"])
def test_corrupt_image_raises_naming_file(image_root, train_lines, write_split, bad):
    split = write_split(train_lines + [f"{bad} 3"])
    ds = SplitFileDataset(image_root, split)
    with pytest.raises(UnreadableImageError, match=re.escape(bad)) as e:
        ds[40]
    assert f"{split}:41" in str(e.value)
    assert isinstance(e.value, OSError)


def _corrupt_split(image_root, train_lines, write_split):
    # the corrupt files sit at positions 5 and 30; labels must stay with their own images
    lines = list(train_lines)
    lines.insert(5, "broken.jpg 0")
    lines.insert(30, "truncated.jpg 2")
    return write_split(lines), lines


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_policy_drops_and_counts(image_root, train_lines, write_split, workers, caplog):
    split, lines = _corrupt_split(image_root, train_lines, write_split)
    ds = SplitFileDataset(image_root, split, transform=_label_tensor, on_error="skip")
    assert len(ds) == 42
    loader = DataLoader(ds, batch_size=8, shuffle=False, num_workers=workers, collate_fn=ds.collate_fn)
    labels, sizes = [], []
    for epoch in range(2):
        for batch in loader:
            x, y = batch
            assert x.shape[0] == y.shape[0]
            sizes.append(x.shape[0])
            if epoch == 0:
                labels.extend(y.tolist())
    assert sum(sizes) == 2 * 40
    # dropped, not replaced: the labels are exactly those of the 40 readable lines, in order
    assert labels == [int(ln.split()[1]) for ln in lines if not ln.startswith(("broken", "truncated"))]
    assert ds.num_skipped == 2  # distinct images, counted across workers and epochs
    assert any("broken.jpg" in s and f"{split}:6" in s for s in ds.skipped_items)
    assert any("truncated.jpg" in s and f"{split}:31" in s for s in ds.skipped_items)
    with caplog.at_level(logging.WARNING, logger="kcl_models.data.datasets"):
        assert ds.report_skipped() == 2
    assert "2 of 42 images were unreadable and skipped" in caplog.text


def test_skip_marker_and_collate(image_root, train_lines, write_split):
    split, _ = _corrupt_split(image_root, train_lines, write_split)
    ds = SplitFileDataset(image_root, split, transform=_label_tensor, on_error="skip")
    marker = ds[5]
    assert isinstance(marker, SkippedSample) and "broken.jpg" in marker.name
    with pytest.raises(TypeError):
        _img, _label = marker  # never mistaken for a sample
    assert collate_skip([marker]) is None
    x, y = collate_skip([marker, ds[0], ds[1]])
    assert x.shape == (2, 2) and y.tolist() == [0, 0]
    # a subset gets a fresh count but keeps the original line numbers in messages
    sub = ds.subset([5, 0])
    assert sub.num_skipped == 0 and sub.targets == [0, 0]
    assert isinstance(sub[0], SkippedSample) and sub.num_skipped == 1
    assert f"{split}:6" in sub.skipped_items[0]


def test_image_folder_dataset(image_root):
    ds = ImageFolderDataset(image_root / "train")
    assert ds.classes == ["class0", "class1", "class2", "class3"]
    assert ds.class_counts() == [10, 10, 10, 10]
    img, label = ds[39]
    assert img.mode == "RGB" and label == 3
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolderDataset(image_root / "train" / "class0")


def test_build_dataset_dispatch(image_root, train_lines, write_split):
    split = write_split(train_lines)
    ds = build_dataset("split-file", "train", root=str(image_root), split_file=str(split), num_classes=4)
    assert isinstance(ds, SplitFileDataset) and len(ds) == 40
    lt = build_dataset(f"imagefolder:{image_root}", "train", imbalance_factor=5, seed=1)
    assert lt.class_counts() == exp_profile(4, 10, 5) == [10, 5, 3, 2]
    assert lt.classes == ["class0", "class1", "class2", "class3"]
    again = build_dataset(f"imagefolder:{image_root}", "train", imbalance_factor=5, seed=1)
    assert again.paths == lt.paths
    step = build_dataset(f"imagefolder:{image_root}", "train", imbalance_factor=5, profile="step")
    assert step.class_counts() == [10, 10, 2, 2]
    test = build_dataset(f"imagefolder:{image_root}", "test", imbalance_factor=5)
    assert test.class_counts() == [3, 3, 3, 3]
    full = build_dataset(f"imagefolder:{image_root}", "train", imbalance_factor=None)
    assert len(full) == 40
    with pytest.raises(ValueError, match="needs both root"):
        build_dataset("split-file", "train", root=str(image_root))
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        build_dataset("cifar", "train")
