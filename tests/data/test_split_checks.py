"""Every split checked when the datasets are built (issue 13, items 11 and 13), and validation splits."""
import logging
import re

import pytest

from kcl_models.data import (
    SplitFileDataset,
    UnreadableImageError,
    build_dataset,
    build_datasets,
    select_by_split_file,
)

datasets = pytest.importorskip("datasets")


def _relabel(line: str, label: int) -> str:
    return f"{line.rsplit(' ', 1)[0]} {label}"


def _three_class_lines(train_lines):
    return [ln for ln in train_lines if not ln.endswith(" 3")]


def test_unknown_data_option_names_the_option_and_the_fix(image_root, train_lines, write_split):
    # a digits config run with --data split-file: data_kwargs {img_size: 16} reached the constructor
    split = write_split(train_lines)
    with pytest.raises(ValueError, match=re.escape(
            "data option 'img_size' does not apply to dataset 'split-file' (its options: check_files, classes, "
            "on_error, require_all_classes); remove it from data_kwargs")):
        build_dataset("split-file", "train", root=str(image_root), split_file=str(split), img_size=16)
    with pytest.raises(ValueError, match="option 'image_column' does not apply to dataset 'digits-lt'"):
        build_dataset("digits-lt", "train", image_column="img")
    with pytest.raises(ValueError, match="option 'test_per_clas' .*did you mean 'test_per_class'"):
        build_dataset("digits-lt", "train", test_per_clas=3)
    # refused before anything is loaded, for every kind of dataset
    with pytest.raises(ValueError, match="option 'img_size' does not apply to dataset 'hf:/nowhere'"):
        build_dataset("hf:/nowhere", "train", img_size=16)
    with pytest.raises(ValueError, match="option 'check_files' does not apply to dataset 'imagefolder:"):
        build_dataset(f"imagefolder:{image_root}", "train", check_files=False)
    with pytest.raises(ValueError, match="'trust_remote_code' is refused"):
        build_dataset("hf:/nowhere", "train", load_kwargs={"trust_remote_code": True})
    # the options a dataset does take still pass
    ds = build_dataset(f"imagefolder:{image_root}", "train", split_file=str(split), check_files=False,
                       root=str(image_root), on_error="skip")
    assert len(ds) == 40


def test_unreadable_image_error_points_to_the_cli_flag(image_root, train_lines, write_split):
    ds = SplitFileDataset(image_root, write_split(train_lines + ["broken.jpg 3"]))
    with pytest.raises(UnreadableImageError) as err:
        ds[40]
    msg = str(err.value)
    assert "--skip_corrupt true for train.py" in msg and "on_error='skip'" in msg and "\n" not in msg


def test_num_classes_applies_to_split_file_parsing(image_root, train_lines, write_split):
    lines = _three_class_lines(train_lines)
    lines[4] = _relabel(lines[4], 7)  # a stray label
    split = write_split(lines)
    with pytest.raises(ValueError, match=re.escape(
            f"{split}:5: label 7 out of range [0, 3) for image 'train/class0/img_0_004.jpg' "
            f"(num_classes is 3: fix the line or the num_classes option)")):
        build_datasets("split-file", {"train": {"split_file": str(split)}}, num_classes=3, root=str(image_root))
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        build_dataset("split-file", "train", root=str(image_root), split_file=str(split), num_classes="3")
    with pytest.raises(ValueError, match="'digits-lt' has 10 classes, but num_classes=3"):
        build_dataset("digits-lt", "train", num_classes=3)


def test_eval_split_label_outside_the_training_classes_fails_at_build(image_root, train_lines, write_split):
    train = write_split(_three_class_lines(train_lines), "train.txt")
    test_lines = [ln.replace("train/", "test/") for ln in _three_class_lines(train_lines)[:3]]
    test_lines += ["test/class3/img_3_001.png 3"]  # a class the training split does not have
    test = write_split(test_lines, "test.txt")
    with pytest.raises(ValueError, match=re.escape(
            f"{test}:4: label 3 out of range [0, 3) for image 'test/class3/img_3_001.png' (the training split "
            f"has 3 classes; a test split may only use labels 0..2)")):
        build_datasets("split-file", {"train": {"split_file": str(train)}, "test": {"split_file": str(test)}},
                       root=str(image_root))


def test_hf_split_file_label_outside_num_classes_names_the_line(write_split):
    hf = datasets.Dataset.from_dict({"image": ["a.png", "b.png", "c.png"], "label": [0, 1, 5]})
    split = write_split(["0", "2"])
    with pytest.raises(ValueError, match=re.escape(f"{split}:2: '2' has label 5, outside the 3 classes [0, 3)")):
        select_by_split_file(hf, split, num_classes=3)
    assert len(select_by_split_file(hf, split)) == 2


def test_eval_split_missing_a_class_is_not_called_the_training_split(image_root, train_lines, write_split, caplog):
    test = write_split([ln.replace("train/", "test/") for ln in train_lines if ln.split("_")[-1][:3] in ("000", "001")
                        and not ln.endswith(" 2")], "test.txt")
    with pytest.raises(ValueError) as err:
        build_dataset("split-file", "test", root=str(image_root), split_file=str(test), num_classes=4)
    assert "1 of 4 classes have no image: [2]; the test split lacks them" in str(err.value)
    assert "training split" not in str(err.value)
    with pytest.raises(ValueError, match="every class must appear in the training split"):
        build_dataset("split-file", "train", root=str(image_root), split_file=str(test), num_classes=4)
    # built together with train, an evaluation split may lack classes: a warning names them
    train = write_split(train_lines, "train.txt")
    with caplog.at_level(logging.WARNING, logger="kcl_models.data.builder"):
        ds = build_datasets("split-file", {"train": {"split_file": str(train)}, "test": {"split_file": str(test)}},
                            root=str(image_root))
    assert ds["test"].class_counts() == [2, 2, 0, 2] and ds["test"].num_classes == 4
    assert "the test split of 'split-file' has no image of 1 class(es) [2]" in caplog.text
    with pytest.raises(ValueError, match=re.escape(f"{test}: 1 of 4 classes have no image: [2]; the test split")):
        build_datasets("split-file", {"train": {"split_file": str(train)},
                                      "test": {"split_file": str(test), "require_all_classes": True}},
                       root=str(image_root))


def test_eval_split_with_other_classes_is_refused(image_root, tmp_path):
    # an image folder whose test split lacks a class folder would shift every later label
    import shutil

    root = tmp_path / "folders"
    shutil.copytree(image_root / "train", root / "train")
    shutil.copytree(image_root / "test", root / "test", ignore=lambda d, names: ["class1"] if "class1" in names else [])
    with pytest.raises(ValueError, match=r"image folder .*test' has 3 class folders, but num_classes=4"):
        build_datasets(f"imagefolder:{root}", {"train": {}, "test": {}}, imbalance_factor=None)
    hf_train = datasets.Dataset.from_dict(
        {"image": ["a.png", "b.png"], "label": [0, 1]},
        features=datasets.Features({"image": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["cat", "dog"])}))
    hf_test = hf_train.cast_column("label", datasets.ClassLabel(names=["cat", "cow"]))
    hf_train.save_to_disk(str(tmp_path / "hf" / "train"))
    hf_test.save_to_disk(str(tmp_path / "hf" / "test"))
    from datasets import DatasetDict
    DatasetDict({"train": hf_train, "test": hf_test}).save_to_disk(str(tmp_path / "hfdd"))
    with pytest.raises(ValueError, match="the test split of 'hf:.*' has other classes than the training split: "
                                         "class 1 is 'cow' there but 'dog' in train"):
        build_datasets(f"hf:{tmp_path / 'hfdd'}", {"train": {}, "test": {}}, imbalance_factor=None)


def test_validation_split_by_file_or_by_name(image_root, train_lines, write_split):
    train = write_split(train_lines[:30] + train_lines[35:], "train.txt")
    val = write_split(train_lines[30:35], "val.txt")
    ds = build_datasets("split-file", {"train": {"split_file": str(train)}, "val": {"split_file": str(val)}},
                        root=str(image_root))
    assert list(ds) == ["train", "val"] and len(ds["val"]) == 5 and ds["val"].num_classes == 4
    assert not set(ds["val"].paths) & set(ds["train"].paths)
    # for image folders (and HF datasets) a split is also named: the 'test' folder serves as validation
    ds = build_datasets(f"imagefolder:{image_root}", {"val": {"split_file": "test"}, "train": {}}, imbalance_factor=5)
    assert list(ds) == ["val", "train"] and ds["val"].class_counts() == [3, 3, 3, 3]
    assert ds["train"].class_counts() == [10, 5, 3, 2]
    with pytest.raises(FileNotFoundError, match="val split: split file 'nope.txt' not found"):
        build_datasets(f"imagefolder:{image_root}", {"train": {}, "val": {"split_file": "nope.txt"}},
                       imbalance_factor=None)
    with pytest.raises(ValueError, match="needs a 'train' split"):
        build_datasets("digits-lt", {"test": {}})
    digits = build_datasets("digits-lt", {"train": {}, "val": {}, "test": {}}, img_size=8, seed=2)
    assert digits["val"].class_counts() == [4] * 10 and digits["test"].class_counts() == [50] * 10
    assert not set(digits["val"].indices) & set(digits["train"].indices)
