import numpy as np
import pytest
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

from kcl_models.data import DIGITS_MEAN, DIGITS_STD, DigitsLT, build_dataset, build_views, exp_profile


@pytest.fixture(scope="module")
def sk():
    return load_digits()


def test_counts_follow_exp_profile():
    train = DigitsLT("train")
    # smallest digits class has 174 images, 50 held out -> n_max = 124
    assert train.class_counts() == exp_profile(10, 124, 100) == [124, 74, 44, 26, 16, 9, 5, 3, 2, 1]
    assert train.profile == train.class_counts()
    assert DigitsLT("train", imbalance_factor=10).class_counts() == exp_profile(10, 124, 10)
    assert DigitsLT("train", test_per_class=20).class_counts() == exp_profile(10, 154, 100)
    assert DigitsLT("train", imbalance_factor=1).class_counts() == [124] * 10


def test_test_split_is_balanced_and_disjoint(sk):
    for seed in (0, 1):
        train, test = DigitsLT("train", seed=seed), DigitsLT("test", seed=seed)
        assert test.class_counts() == [50] * 10
        assert not set(train.indices) & set(test.indices)
        assert len(set(train.indices)) == len(train.indices)
        # labels are scikit-learn's labels of those very images
        assert train.targets == sk.target[train.indices].tolist()
        assert test.targets == sk.target[test.indices].tolist()
    # the held-out test set does not depend on the imbalance factor
    assert DigitsLT("test", imbalance_factor=10).indices == DigitsLT("test").indices
    # train of IF100 never takes a test image of IF10's split either (same seed -> same hold-out)
    assert not set(DigitsLT("train", imbalance_factor=10).indices) & set(DigitsLT("test").indices)


def test_seeded():
    assert DigitsLT("train", seed=3).indices == DigitsLT("train", seed=3).indices
    assert DigitsLT("train", seed=3).indices != DigitsLT("train", seed=4).indices
    assert DigitsLT("test", seed=3).indices != DigitsLT("test", seed=4).indices


def test_images_are_upsampled_rgb_digits(sk):
    ds = DigitsLT("test", img_size=32)
    img, label = ds[7]
    assert img.mode == "RGB" and img.size == (32, 32)
    arr = np.asarray(img)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()
    raw = np.round(sk.images[ds.indices[7]] / 16 * 255).astype(np.uint8)
    # nearest neighbour: each source pixel is a 4x4 block
    assert (arr[::4, ::4, 0] == raw).all() and (arr[3::4, 3::4, 0] == raw).all()
    assert label == sk.target[ds.indices[7]]
    assert DigitsLT("test", img_size=8)[0][0].size == (8, 8)


def test_mean_std_constants_match_data(sk):
    x = sk.images / 16.0
    assert DIGITS_MEAN == (round(float(x.mean()), 4),) * 3
    assert DIGITS_STD == (round(float(x.std()), 4),) * 3


def test_errors():
    with pytest.raises(ValueError, match="'train', 'val' or 'test', got 'validation'"):
        DigitsLT("validation")
    with pytest.raises(ValueError, match="test_per_class"):
        DigitsLT("test", test_per_class=174)
    with pytest.raises(ValueError, match="0 images"):
        DigitsLT("train", imbalance_factor=200)


def test_build_dataset_and_views_loader():
    views = build_views("bcl", 32, DIGITS_MEAN, DIGITS_STD)
    ds = build_dataset("digits-lt", "train", transform=views, imbalance_factor=100, seed=0)
    assert isinstance(ds, DigitsLT) and len(ds) == 304
    batch, labels = next(iter(DataLoader(ds, batch_size=16, shuffle=True)))
    assert len(batch) == 3 and all(b.shape == (16, 3, 32, 32) for b in batch)
    assert labels.shape == (16,)
    assert build_dataset("digits-lt", "test", test_per_class=10).class_counts() == [10] * 10
    # the trainer passes the same options to every dataset
    same = build_dataset("digits-lt", "train", root=None, on_error="skip", imbalance_factor=100, seed=0)
    assert same.indices == ds.indices
    with pytest.raises(ValueError, match="no split_file"):
        build_dataset("digits-lt", "train", split_file="x.txt")


def test_val_split_is_balanced_disjoint_and_leaves_train_unchanged():
    for seed, imbalance in ((0, 100), (1, 100), (0, 10)):
        train = DigitsLT("train", seed=seed, imbalance_factor=imbalance)
        test = DigitsLT("test", seed=seed, imbalance_factor=imbalance)
        val = DigitsLT("val", seed=seed, imbalance_factor=imbalance)
        assert val.class_counts() == [4] * 10  # default: the head class keeps 4 images outside train
        assert not set(val.indices) & set(train.indices) and not set(val.indices) & set(test.indices)
        assert len(set(val.indices)) == 40
        # asking for a validation split changes neither train nor test
        assert train.indices == DigitsLT("train", seed=seed, imbalance_factor=imbalance).indices
    assert DigitsLT("val", seed=3).indices == DigitsLT("val", seed=3).indices
    assert DigitsLT("val", seed=3).indices != DigitsLT("val", seed=4).indices
    # the seed also draws within a class, not only the train split it is disjoint from
    assert DigitsLT("val", seed=0, val_per_class=2).indices != DigitsLT("val", seed=0).indices[:20]
    built = build_dataset("digits-lt", "val", imbalance_factor=100, seed=0, val_per_class=3, on_error="raise")
    assert built.class_counts() == [3] * 10 and built.split == "val" and len(built[0][0].getbands()) == 3
    with pytest.raises(ValueError, match="class 0 has 4 images outside train and test.*lower val_per_class"):
        DigitsLT("val", val_per_class=5)
    with pytest.raises(ValueError, match=r"class 2 has 3 images outside train and test \(imbalance_factor=1\)"):
        DigitsLT("val", imbalance_factor=1)  # a balanced train split takes the whole smallest class
    with pytest.raises(ValueError, match="val_per_class must be a positive integer"):
        DigitsLT("val", val_per_class=0)


def test_uint8_images_match_the_pil_items():
    ds = DigitsLT("test", img_size=16, test_per_class=3)
    arr = ds.uint8_images()
    assert arr.shape == (30, 3, 16, 16) and arr.dtype == np.uint8
    for i in (0, 17, 29):
        assert (np.asarray(ds[i][0]).transpose(2, 0, 1) == arr[i]).all()
