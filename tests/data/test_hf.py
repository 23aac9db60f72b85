"""Hugging Face `datasets` paths, with local data built in the test (no network)."""
import re

import pytest
import torch
from torch.utils.data import DataLoader

from kcl_models.data import (
    HFImageDataset,
    UnreadableImageError,
    build_dataset,
    exp_profile,
    load_hf_dataset,
    longtailed_subset,
    select_by_split_file,
)

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def offline_hf(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    # the environment is read at import time: patch the live flags too
    for flag in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if hasattr(datasets.config, flag):
            monkeypatch.setattr(datasets.config, flag, True)


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "ds_cache")


@pytest.fixture
def imagefolder_train(image_root, cache):
    return load_hf_dataset(str(image_root), "train", cache_dir=cache)


def test_imagefolder_loads_and_wraps(imagefolder_train, image_root, cache):
    hf = imagefolder_train
    assert len(hf) == 40
    ds = HFImageDataset(hf)
    assert ds.classes == ["class0", "class1", "class2", "class3"]
    assert ds.num_classes == 4 and ds.class_counts() == [10, 10, 10, 10]
    img, label = ds[0]
    assert img.mode == "RGB" and img.size == (16, 16) and label == hf[0]["label"]
    test = load_hf_dataset(str(image_root), "test", cache_dir=cache)
    assert len(test) == 12
    with pytest.raises(ValueError, match=r'image folder .*Unknown split "val"'):
        load_hf_dataset(str(image_root), "val", cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="local dataset folder"):
        load_hf_dataset(str(image_root / "nope"), "train")


def test_column_and_type_errors(imagefolder_train):
    with pytest.raises(KeyError, match=re.escape("no column 'img'; available columns: ['image', 'label']")):
        HFImageDataset(imagefolder_train, image_column="img")
    with pytest.raises(KeyError, match="no column 'fine_label'"):
        HFImageDataset(imagefolder_train, label_column="fine_label")
    dd = datasets.DatasetDict({"train": imagefolder_train})
    with pytest.raises(TypeError, match=re.escape("available splits: ['train']")):
        HFImageDataset(dd)
    unlabelled = imagefolder_train.cast_column("label", datasets.Value("int64")).map(lambda r: {"label": -1})
    with pytest.raises(ValueError, match="row 0: label -1 out of range .*unlabelled split"):
        HFImageDataset(unlabelled)


def test_save_to_disk_dataset_and_dict(imagefolder_train, image_root, tmp_path, cache):
    imagefolder_train.save_to_disk(str(tmp_path / "saved"))
    hf = load_hf_dataset(str(tmp_path / "saved"), "train")
    ds = HFImageDataset(hf)
    assert len(ds) == 40 and ds.classes[0] == "class0"
    assert ds[5][0].mode == "RGB"  # image bytes are embedded in the Arrow file
    with pytest.raises(ValueError, match="holds split 'train', not 'test'"):
        load_hf_dataset(str(tmp_path / "saved"), "test")
    dd = datasets.DatasetDict({"train": imagefolder_train,
                               "test": load_hf_dataset(str(image_root), "test", cache_dir=cache)})
    dd.save_to_disk(str(tmp_path / "saved_dict"))
    assert len(load_hf_dataset(str(tmp_path / "saved_dict"), "test")) == 12
    with pytest.raises(ValueError, match=re.escape("no split 'val'; available: ['test', 'train']")):
        load_hf_dataset(str(tmp_path / "saved_dict"), "val")


def test_longtailed_by_profile_keeps_labels(imagefolder_train):
    ds = HFImageDataset(imagefolder_train)
    lt = longtailed_subset(ds, imbalance_factor=5, seed=2)
    assert lt.class_counts() == exp_profile(4, 10, 5)
    # every kept row still carries its own label, read back from the Arrow data
    assert lt.targets == list(lt.hf_dataset["label"])
    paths = [lt.hf_dataset[i]["image"]["path"] for i in range(len(lt))]
    assert all(f"/class{y}/" in p for p, y in zip(paths, lt.targets))
    assert longtailed_subset(ds, 5, seed=2).targets == lt.targets


def test_build_dataset_hf_profile_and_saved(imagefolder_train, image_root, tmp_path, cache):
    lt = build_dataset(f"hf:{image_root}", "train", imbalance_factor=5, cache_dir=cache)
    assert isinstance(lt, HFImageDataset) and lt.class_counts() == [10, 5, 3, 2]
    test = build_dataset(f"hf:{image_root}", "test", cache_dir=cache)
    assert test.class_counts() == [3, 3, 3, 3]
    imagefolder_train.save_to_disk(str(tmp_path / "saved"))
    saved = build_dataset(f"hf:{tmp_path / 'saved'}", "train", imbalance_factor=5, profile="step")
    assert saved.class_counts() == [10, 10, 2, 2]


def test_split_file_of_indices(imagefolder_train, write_split):
    labels = imagefolder_train["label"]
    split = write_split([f"{i} {labels[i]}" for i in (3, 0, 17)] + ["25"])
    sub = select_by_split_file(imagefolder_train, split)
    assert len(sub) == 4 and list(sub["label"]) == [labels[i] for i in (3, 0, 17, 25)]
    bad = write_split(["3 0", "99 1"], "oob.txt")
    with pytest.raises(ValueError, match=re.escape(f"{bad}:2: row index 99 out of range [0, 40)")):
        select_by_split_file(imagefolder_train, bad)
    wrong = write_split([f"3 {(labels[3] + 1) % 4}"], "wrong.txt")
    with pytest.raises(ValueError, match=re.escape(f"{wrong}:1: label") + ".*refusing to relabel"):
        select_by_split_file(imagefolder_train, wrong)
    dup = write_split(["3", "4", "3"], "dup.txt")
    with pytest.raises(ValueError, match=re.escape(f"{dup}:3: '3' lists row 3 again (first on line 1)")):
        select_by_split_file(imagefolder_train, dup)


def test_split_file_of_paths_imagefolder_and_saved(imagefolder_train, train_lines, tmp_path, write_split):
    # ImageNet-LT style lines: a long-tailed choice of 10/5/3/2 images
    chosen = [ln for ln in train_lines if int(ln.split()[1]) == 0]
    chosen += [ln for ln in train_lines if ln.split()[1] == "1"][:5]
    chosen += [ln for ln in train_lines if ln.split()[1] == "2"][:3]
    chosen += [ln for ln in train_lines if ln.split()[1] == "3"][:2]
    split = write_split(chosen)
    imagefolder_train.save_to_disk(str(tmp_path / "saved"))
    saved = load_hf_dataset(str(tmp_path / "saved"), "train")  # stored paths are bare file names
    for hf in (imagefolder_train, saved):  # absolute stored paths, then bare file names
        sub = select_by_split_file(hf, split)
        ds = HFImageDataset(sub)
        assert ds.class_counts() == [10, 5, 3, 2]
        stored = [sub.cast_column("image", datasets.Image(decode=False))[i]["image"]["path"]
                  for i in range(len(sub))]
        assert [p.rsplit("/", 1)[-1] for p in stored] == [ln.split()[0].rsplit("/", 1)[-1] for ln in chosen]
    built = build_dataset(f"hf:{tmp_path / 'saved'}", "train", split_file=str(split))
    assert built.class_counts() == [10, 5, 3, 2]
    unknown = write_split(chosen[:2] + ["train/class0/nope.jpg 0"], "unknown.txt")
    with pytest.raises(ValueError, match=re.escape(f"{unknown}:3: image path 'train/class0/nope.jpg' matches no")):
        select_by_split_file(imagefolder_train, unknown)
    relabel = write_split([chosen[0].split()[0] + " 3"], "relabel.txt")
    with pytest.raises(ValueError, match="refusing to relabel"):
        select_by_split_file(saved, relabel, key="path")


def test_string_path_column_and_skip_policy(image_root):
    paths = [str(image_root / "train" / f"class{c}" / f"img_{c}_000.jpg") for c in range(4)]
    paths.append(str(image_root / "broken.jpg"))
    hf = datasets.Dataset.from_dict({"file": paths, "y": [0, 1, 2, 3, 1]})
    with pytest.raises(UnreadableImageError, match=re.escape(f"{image_root / 'broken.jpg'} (row 4)")):
        HFImageDataset(hf, image_column="file", label_column="y")[4]
    ds = HFImageDataset(hf, transform=lambda im: torch.tensor(im.size), image_column="file", label_column="y",
                        on_error="skip")
    assert ds.classes == ["0", "1", "2", "3"]
    loader = DataLoader(ds, batch_size=5, num_workers=2, collate_fn=ds.collate_fn)
    (x, y), = list(loader)
    assert y.tolist() == [0, 1, 2, 3] and ds.num_skipped == 1


def test_hub_name_uses_load_dataset(monkeypatch, imagefolder_train):
    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, args, kwargs))
        return imagefolder_train

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = load_hf_dataset("some-org/some-dataset", "validation", revision="v1")
    assert out is imagefolder_train
    (path, args, kwargs), = calls
    assert path == "some-org/some-dataset" and kwargs["split"] == "validation" and kwargs["revision"] == "v1"
    assert "trust_remote_code" not in kwargs


def test_hub_name_offline_fails_cleanly():
    # the real code path: offline, an uncached hub dataset cannot be resolved
    with pytest.raises(Exception, match="kcl-models-test/does-not-exist"):
        load_hf_dataset("kcl-models-test/does-not-exist", "train")
