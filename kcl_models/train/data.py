"""The trainer's datasets and loaders: the method's views over the training split, evaluation
splits, and the cRT stage's plain views. Names no method: views come from the method class.

Two pipelines (``data_pipeline``): ``pil`` decodes and augments each item in DataLoader workers;
``tensor`` keeps the training split as one uint8 tensor on the training device and augments whole
batches there (:mod:`kcl_models.data.tensor_data`, small images only). Both draw augmentation
randomness as a pure function of ``(seed, epoch, index)``, so mid-epoch resume is exact.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import timm
import torch
from accelerate.data_loader import DataLoaderStateMixin
from accelerate.state import GradientState
from torch.utils.data import DataLoader

from kcl_models.data import (
    TensorImageDataset,
    TensorLoader,
    build_batched_train_view,
    build_dataset,
    build_datasets,
    build_sampler,
    to_tensor_dataset,
)
from kcl_models.data.batched_views import BatchedMultiView
from kcl_models.data.transforms import MultiViewTransform, build_eval_transform, build_train_transform

from .config import TrainConfig


class EpochSeededDataset(torch.utils.data.Dataset):
    """Augmentation randomness as a pure function of ``(seed, epoch, index)``.

    Each item's transforms run under RNGs seeded from its index and the epoch (the global RNG
    states are restored afterwards). A resumed run therefore re-creates exactly the views of the
    uninterrupted one, whatever the loader prefetched before the checkpoint and however many
    workers there are. Also keeps the dataset interface the trainer relies on.
    """

    def __init__(self, dataset, seed: int, indices: list[int] | None = None) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0
        self.indices = indices
        targets = dataset.targets
        self.targets = [targets[i] for i in indices] if indices is not None else list(targets)
        self.num_classes, self.classes = dataset.num_classes, dataset.classes
        self.class_counts = dataset.class_counts
        self.collate_fn = getattr(dataset, "collate_fn", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def __getitem__(self, index: int):
        item_seed = (self.seed * 0x9E3779B1 + self.epoch * 0x85EBCA77 + index * 0xC2B2AE3D) % (2**63)
        torch_state, py_state = torch.get_rng_state(), random.getstate()
        torch.default_generator.manual_seed(item_seed)  # CPU only: torch.manual_seed would also queue a
        random.seed(item_seed)                          # lazy CUDA seed that records a stack trace per call
        try:
            return self.dataset[self.indices[index] if self.indices is not None else index]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)


def view_transform(views: tuple[str, ...], size: int, mean, std, randaug: str | None, hflip: float,
                   batched: bool = False):
    """One transform per named view (RandAugment on classifier views only; the BCL default);
    ``batched``: the tensor pipeline's twin of each view."""
    build = build_batched_train_view if batched else build_train_transform
    made = {v: build(v, size, mean, std, randaug if v == "classifier" else None, hflip=hflip)
            for v in dict.fromkeys(views)}
    if len(views) == 1:
        return made[views[0]]
    return (BatchedMultiView if batched else MultiViewTransform)([made[v] for v in views])


def make_loader(ds, batch_size: int, cfg: TrainConfig, sampler=None, train: bool = True) -> DataLoader:
    # workers are re-created per epoch: they must see the dataset's new epoch (EpochSeededDataset)
    return DataLoader(ds, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      drop_last=train, num_workers=cfg.workers, pin_memory=torch.cuda.is_available(),
                      collate_fn=getattr(ds, "collate_fn", None))


@dataclass
class RunData:
    """Everything the loop reads from the data: datasets, counts and preprocessing."""

    train: Any                   # EpochSeededDataset (pil) or TensorImageDataset (tensor)
    test: Any
    val: Any | None
    counts: list[int]
    size: int
    mean: tuple
    std: tuple
    kwargs: dict[str, Any]
    views: Any = None            # tensor pipeline: the batched views of the method

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def classes(self) -> list[str]:
        return list(self.train.classes)

    @property
    def tensor(self) -> bool:
        return isinstance(self.train, TensorImageDataset)

    def skipped(self) -> dict[str, int]:
        base = self.train.dataset if isinstance(self.train, EpochSeededDataset) else self.train
        return {k: ds.num_skipped for k, ds in (("train", base), ("test", self.test)) if hasattr(ds, "num_skipped")}


def _eval_transform(pcfg, size: int):
    return build_eval_transform(dict(input_size=(3, size, size), mean=pcfg.mean, std=pcfg.std,
                                     crop_pct=pcfg.crop_pct, interpolation=pcfg.interpolation))


def build_run_data(cfg: TrainConfig, views: tuple[str, ...], global_batch: int, device: torch.device) -> RunData:
    """Every split, built and checked together before training (labels outside the training classes
    name their split file and line), with the method's views on the training split."""
    pcfg = timm.models.get_pretrained_cfg(cfg.model)
    if pcfg is None:
        raise ValueError(f"unknown model {cfg.model!r}; see kcl_models.list_kcl_models() or timm.list_models()")
    size = cfg.input_size or pcfg.input_size[-1]
    mean, std = pcfg.mean, pcfg.std
    kwargs = dict(root=cfg.data_root, imbalance_factor=cfg.imbalance_factor, seed=cfg.seed,
                  on_error="skip" if cfg.skip_corrupt else "raise", **cfg.data_kwargs)
    tensor = cfg.data_pipeline == "tensor"
    eval_tf = _eval_transform(pcfg, size)
    splits = {"train": {"transform": None if tensor else view_transform(views, size, mean, std, cfg.randaug,
                                                                         cfg.hflip),
                        "split_file": cfg.train_split},
              "test": {"transform": eval_tf, "split_file": cfg.test_split}}
    if cfg.val_split:
        splits["val"] = {"transform": eval_tf, "split_file": None if cfg.val_split == "heldout" else cfg.val_split}
    built = build_datasets(cfg.data, splits, num_classes=cfg.num_classes, **kwargs)
    train_ds = built["train"]
    counts = train_ds.class_counts()
    if min(counts) == 0:
        missing = [c for c, n in enumerate(counts) if n == 0]
        raise ValueError(f"classes {missing[:10]} have no training images in '{cfg.data}'")
    if len(train_ds) < global_batch:
        raise ValueError(f"the training set has {len(train_ds)} images, fewer than one global batch "
                         f"({global_batch}); lower batch_size")
    keep = list(range(min(len(train_ds), cfg.overfit_batches * global_batch))) if cfg.overfit_batches else None
    batched = None
    if tensor:
        train_ds = to_tensor_dataset(train_ds, device=device, size=size)
        if keep is not None:
            train_ds = train_ds.subset(keep)
        batched = view_transform(views, size, mean, std, cfg.randaug, cfg.hflip, batched=True)
    else:
        train_ds = EpochSeededDataset(train_ds, cfg.seed, keep)
    return RunData(train_ds, built["test"], built.get("val"), counts, size, mean, std, kwargs, batched)


def train_loader(data: RunData, cfg: TrainConfig, accelerator: Any):
    if data.tensor:
        return TensorLoader(data.train, data.views, cfg.batch_size, sampler=cfg.sampler, seed=cfg.seed,
                            num_replicas=accelerator.num_processes, rank=accelerator.process_index)
    return make_loader(data.train, cfg.batch_size, cfg, build_sampler(cfg.sampler, data.train.targets, cfg.seed))


def crt_loader(data: RunData, cfg: TrainConfig, accelerator: Any):
    """The training split again with the plain view (crop + flip), class-balanced, for the cRT stage."""
    batch = cfg.crt_batch_size or cfg.batch_size
    if data.tensor:
        plain = build_batched_train_view("plain", data.size, data.mean, data.std, None, hflip=cfg.hflip)
        return TensorLoader(data.train, plain, batch, sampler=cfg.crt_sampler, seed=cfg.seed + 1,
                            num_replicas=accelerator.num_processes, rank=accelerator.process_index)
    tf = build_train_transform("plain", data.size, data.mean, data.std, randaug=None, hflip=cfg.hflip)
    ds = EpochSeededDataset(build_dataset(cfg.data, "train", transform=tf, split_file=cfg.train_split,
                                          num_classes=data.num_classes, **data.kwargs), cfg.seed + 1)
    return make_loader(ds, batch, cfg, build_sampler(cfg.crt_sampler, ds.targets, cfg.seed + 1))


def needs_prepare(loader: Any) -> bool:
    """DataLoaders are sharded by Accelerate; the tensor loader shards itself and stays on its device."""
    return not isinstance(loader, TensorLoader)


def steps_per_epoch(loader: Any, num_processes: int) -> int:
    """Batches each process sees per epoch, whether or not Accelerate has prepared the loader yet."""
    return len(loader) if isinstance(loader, TensorLoader) else -(-len(loader) // num_processes)


def begin_epoch(loader: Any, epoch: int) -> None:
    """Point a loader (its sampler and its dataset's augmentation) at ``epoch``."""
    loader.set_epoch(epoch)
    if isinstance(loader, TensorLoader):
        return
    loader.dataset.set_epoch(epoch)
    if hasattr(loader.batch_sampler, "sampler") and hasattr(loader.batch_sampler.sampler, "set_epoch"):
        loader.batch_sampler.sampler.set_epoch(epoch)


class _TensorEpoch(DataLoaderStateMixin):
    """A :class:`TensorLoader` epoch that tells Accelerate's gradient accumulation where it ends, as
    Accelerate's own loaders do: the epoch's last, partial accumulation is applied at its last batch
    instead of being carried into the next epoch."""

    def __init__(self, loader: TensorLoader, skip: int) -> None:
        self.loader, self.skip, self._drop_last = loader, skip, True
        self.gradient_state = GradientState()

    def __len__(self) -> int:
        return len(self.loader) - self.skip

    def __iter__(self):
        self.begin()
        try:
            last = len(self) - 1
            for i, batch in enumerate(self.loader.skip_first_batches(self.skip)):
                self.end_of_dataloader = i == last
                yield batch
        finally:
            self.end()


def epoch_batches(loader: Any, skip: int, accelerator: Any):
    """The epoch's batches from batch ``skip`` on (a mid-epoch resume), exactly as uninterrupted."""
    if isinstance(loader, TensorLoader):
        return _TensorEpoch(loader, skip)
    if not skip:
        return loader
    # the DataLoader iterator draws its base seed from the global RNG, which the uninterrupted run
    # did at the epoch start; undo that draw so the restored global RNG stream continues as saved
    rng = torch.get_rng_state()
    batches = iter(accelerator.skip_first_batches(loader, skip))
    torch.set_rng_state(rng)
    return batches
