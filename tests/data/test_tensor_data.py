"""GPU-resident small-image data (on the CPU here): tensor datasets and the batched loader."""
import numpy as np
import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.functional import pil_to_tensor

from kcl_models.data import (
    DIGITS_MEAN,
    DIGITS_STD,
    ClassBalancedSampler,
    SampleKeys,
    SplitFileDataset,
    TensorImageDataset,
    TensorLoader,
    build_batched_views,
    build_dataset,
    build_datasets,
    to_tensor_dataset,
)

datasets = pytest.importorskip("datasets")


def _pil_stack(ds, size=None):
    out = []
    for i in range(len(ds)):
        img = ds[i][0]
        if size is not None:
            img = T.Resize(size)(img)
        out.append(pil_to_tensor(img))
    return torch.stack(out)


def test_digits_as_tensor_holds_the_pil_items():
    pil = build_dataset("digits-lt", "train", img_size=16, seed=1)
    ds = build_dataset("digits-lt", "train", img_size=16, seed=1, as_tensor=True, device="cpu")
    assert isinstance(ds, TensorImageDataset) and ds.images.shape == (len(pil), 3, 16, 16)
    assert ds.images.dtype == torch.uint8 and ds.targets == pil.targets and ds.class_counts() == pil.class_counts()
    assert torch.equal(ds.images, _pil_stack(pil)) and torch.equal(ds.labels, torch.tensor(pil.targets))
    assert ds.num_classes == 10 and ds.classes == pil.classes and len(ds) == 304
    img, label = ds[5]
    assert img.shape == (3, 16, 16) and label == pil.targets[5]
    sub = ds.subset([3, 0])
    assert sub.targets == [ds.targets[3], ds.targets[0]] and torch.equal(sub.images[1], ds.images[0])
    # a size other than the stored one goes through the PIL path's Resize once
    resized = to_tensor_dataset(pil, size=12)
    assert torch.equal(resized.images, _pil_stack(pil, 12))
    with pytest.raises(ValueError, match="transform=None"):
        build_dataset("digits-lt", "train", transform=lambda x: x, as_tensor=True)
    with pytest.raises(ValueError, match="device= applies to as_tensor=True"):
        build_dataset("digits-lt", "train", device="cpu")
    # every split in tensor form, checked together as build_datasets does for the PIL datasets
    splits = build_datasets("digits-lt", {"train": {"as_tensor": True}, "val": {"as_tensor": True}, "test": {}},
                            img_size=16, seed=1)
    assert isinstance(splits["val"], TensorImageDataset) and splits["val"].class_counts() == [4] * 10
    assert torch.equal(splits["train"].images, ds.images) and not isinstance(splits["test"], TensorImageDataset)


def test_split_file_and_hf_data_as_tensor(image_root, train_lines, write_split, tmp_path):
    lines = list(train_lines)
    lines.insert(3, "broken.jpg 0")  # unreadable: left out and counted under on_error='skip'
    split = write_split(lines)
    pil = SplitFileDataset(image_root, split, on_error="skip")
    ds = build_dataset("split-file", "train", root=str(image_root), split_file=str(split), on_error="skip",
                       as_tensor=True)
    assert len(ds) == 40 and ds.num_skipped == 1 and "broken.jpg" in ds.skipped_items[0]
    assert ds.targets == [int(ln.split()[1]) for ln in lines if not ln.startswith("broken")]
    readable = [i for i in range(len(pil)) if i != 3]
    assert torch.equal(ds.images, torch.stack([pil_to_tensor(pil[i][0]) for i in readable]))  # grey, RGBA -> RGB
    assert ds.report_skipped() == 1
    hf = build_dataset(f"hf:{image_root}", "train", imbalance_factor=5, cache_dir=str(tmp_path / "c"), as_tensor=True)
    assert hf.class_counts() == [10, 5, 3, 2] and hf.classes == ["class0", "class1", "class2", "class3"]
    assert to_tensor_dataset(SplitFileDataset(image_root, write_split(train_lines[:8], "s.txt")), size=8,
                             workers=2, batch_size=3).images.shape == (8, 3, 8, 8)


def test_arrays_and_errors():
    rng = np.random.default_rng(0)
    hwc = (rng.random((5, 6, 7, 3)) * 255).astype(np.uint8)
    ds = TensorImageDataset(hwc, [0, 1, 2, 1, 0], classes=["a", "b", "c"])
    assert ds.images.shape == (5, 3, 6, 7) and torch.equal(ds.images[2], torch.from_numpy(hwc[2]).permute(2, 0, 1))
    grey = TensorImageDataset(hwc[..., 0], [0, 0, 0, 0, 1])
    assert grey.images.shape == (5, 3, 6, 7) and torch.equal(grey.images[:, 0], grey.images[:, 2])
    with pytest.raises(TypeError, match="uint8"):
        TensorImageDataset(hwc.astype(np.float32), [0] * 5)
    with pytest.raises(ValueError, match="5 images but 4 targets"):
        TensorImageDataset(hwc, [0] * 4)
    with pytest.raises(ValueError, match="label 3 at position 1 is out of range"):
        TensorImageDataset(hwc, [0, 3, 0, 0, 0], num_classes=3)

    class Mixed(torch.utils.data.Dataset):
        transform = None
        targets = [0, 1]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            from PIL import Image
            return Image.new("RGB", (8, 8 + i)), i

    with pytest.raises(ValueError, match="images of different sizes"):
        to_tensor_dataset(Mixed())


@pytest.fixture(scope="module")
def digits():
    return build_dataset("digits-lt", "train", img_size=16, as_tensor=True)


def _collect(batches):
    return [(v if isinstance(v, torch.Tensor) else torch.stack(v), y) for v, y in batches]


def test_loader_batches_views_and_epochs(digits):
    views = build_batched_views("ce", 16, DIGITS_MEAN, DIGITS_STD, randaug=None, hflip=0.0)
    loader = TensorLoader(digits, views, 64, seed=3)
    assert len(loader) == 304 // 64
    rng_before = torch.get_rng_state()
    loader.set_epoch(2)
    batches = _collect(loader)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    seq = loader.epoch_sequence()
    assert sorted(seq.tolist()) == list(range(304))  # instance sampling: a permutation
    for step, (x, y) in enumerate(batches):
        idx = seq[step * 64:(step + 1) * 64]
        assert x.shape == (64, 3, 16, 16) and torch.equal(y, digits.labels[idx])
        assert torch.equal(x, views(digits.images[idx], SampleKeys(3, 2, torch.arange(step * 64, step * 64 + 64))))
    again = TensorLoader(digits, views, 64, seed=3)
    again.set_epoch(2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, _collect(again)))
    again.set_epoch(3)
    assert not torch.equal(again.epoch_sequence(), seq)


def test_skip_first_batches_resumes_bit_exactly(digits):
    views = build_batched_views("bcl", 16, DIGITS_MEAN, DIGITS_STD)
    loader = TensorLoader(digits, views, 32, seed=0)
    loader.set_epoch(1)
    full = _collect(loader)
    resumed = TensorLoader(digits, views, 32, seed=0)  # a fresh process after a kill
    resumed.set_epoch(1)
    tail = _collect(resumed.skip_first_batches(4))
    assert len(tail) == len(full) - 4 and len(full[0][0]) == 3
    for (a, ya), (b, yb) in zip(full[4:], tail):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="non-negative"):
        loader.skip_first_batches(-1)


def test_ranks_take_slices_of_the_global_batch(digits):
    views = build_batched_views("supcon", 16, DIGITS_MEAN, DIGITS_STD, hflip=0.0)
    single = TensorLoader(digits, views, 64, seed=5, sampler="class_balanced")
    ranks = [TensorLoader(digits, views, 32, seed=5, sampler="class_balanced", num_replicas=2, rank=r) for r in (0, 1)]
    for ld in [single] + ranks:
        ld.set_epoch(4)
    assert len(ranks[0]) == len(single) == 304 // 64
    expect = ClassBalancedSampler(digits.targets, seed=5)
    expect.set_epoch(4)
    assert torch.equal(single.epoch_sequence(), torch.from_numpy(expect.full_sequence()))
    seen = set()
    for (x, y), (x0, y0), (x1, y1) in zip(_collect(single), _collect(ranks[0]), _collect(ranks[1])):
        # the two ranks' batches are the halves of the single process's global batch, views included
        assert torch.equal(torch.cat([x0, x1], 1), x) and torch.equal(torch.cat([y0, y1]), y)
    for step in range(len(ranks[0])):
        pos = [set(ld.batch_positions(step).tolist()) for ld in ranks]
        assert not pos[0] & pos[1] and not (pos[0] | pos[1]) & seen
        seen |= pos[0] | pos[1]
    last = TensorLoader(digits, views, 100, seed=5, drop_last=False)
    sizes = [len(y) for _, y in last]
    assert sizes == [100, 100, 100, 4]
    with pytest.raises(ValueError, match="drop_last=True"):
        TensorLoader(digits, views, 32, num_replicas=2, rank=0, drop_last=False)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TensorLoader(digits, views, 200, num_replicas=2, rank=1)
    with pytest.raises(ValueError, match="rank"):
        TensorLoader(digits, views, 32, num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="TensorImageDataset"):
        TensorLoader(build_dataset("digits-lt", "train"), views, 32)
