"""The trainer's datasets and loaders: the method's views over the training split, evaluation
splits, and the cRT stage's plain views. Names no method: views come from the method class."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch.utils.data import DataLoader

from kcl_models.data import build_dataset, build_sampler
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


def view_transform(views: tuple[str, ...], size: int, mean, std, randaug: str | None, hflip: float):
    """One transform per named view (RandAugment on classifier views only; the BCL default)."""
    made = {v: build_train_transform(v, size, mean, std, randaug if v == "classifier" else None, hflip=hflip)
            for v in dict.fromkeys(views)}
    return made[views[0]] if len(views) == 1 else MultiViewTransform([made[v] for v in views])


def make_loader(ds, batch_size: int, cfg: TrainConfig, sampler=None, train: bool = True) -> DataLoader:
    # workers are re-created per epoch: they must see the dataset's new epoch (EpochSeededDataset)
    return DataLoader(ds, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      drop_last=train, num_workers=cfg.workers, pin_memory=torch.cuda.is_available(),
                      collate_fn=getattr(ds, "collate_fn", None))


@dataclass
class RunData:
    """Everything the loop reads from the data: datasets, counts and preprocessing."""

    train: EpochSeededDataset
    test: Any
    val: Any | None
    counts: list[int]
    size: int
    mean: tuple
    std: tuple
    kwargs: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def crt_dataset(self, cfg: TrainConfig) -> EpochSeededDataset:
        """The training split again, with the plain view (crop + flip) for the cRT stage."""
        tf = build_train_transform("plain", self.size, self.mean, self.std, randaug=None, hflip=cfg.hflip)
        ds = build_dataset(cfg.data, "train", transform=tf, split_file=cfg.train_split, **self.kwargs)
        return EpochSeededDataset(ds, cfg.seed + 1)


def build_run_data(cfg: TrainConfig, views: tuple[str, ...], global_batch: int) -> RunData:
    pcfg = timm.models.get_pretrained_cfg(cfg.model)
    if pcfg is None:
        raise ValueError(f"unknown model {cfg.model!r}; see timm.list_models('*_kcl') / ('*_bcl')")
    size = cfg.input_size or pcfg.input_size[-1]
    mean, std = pcfg.mean, pcfg.std
    kwargs = dict(root=cfg.data_root, imbalance_factor=cfg.imbalance_factor, seed=cfg.seed,
                  on_error="skip" if cfg.skip_corrupt else "raise", **cfg.data_kwargs)
    train_tf = view_transform(views, size, mean, std, cfg.randaug, cfg.hflip)
    train_ds = build_dataset(cfg.data, "train", transform=train_tf, split_file=cfg.train_split, **kwargs)
    eval_tf = build_eval_transform(dict(input_size=(3, size, size), mean=mean, std=std, crop_pct=pcfg.crop_pct,
                                        interpolation=pcfg.interpolation))
    test_ds = build_dataset(cfg.data, "test", transform=eval_tf, split_file=cfg.test_split, **kwargs)
    val_ds = (build_dataset(cfg.data, "val", transform=eval_tf, split_file=cfg.val_split, **kwargs)
              if cfg.val_split else None)
    num_classes = train_ds.num_classes
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise ValueError(f"config num_classes={cfg.num_classes} does not match the data "
                         f"'{cfg.data}', which has {num_classes} classes")
    counts = train_ds.class_counts()  # also range-checks every training label on the host
    if min(counts) == 0:
        missing = [c for c, n in enumerate(counts) if n == 0]
        raise ValueError(f"classes {missing[:10]} have no training images in '{cfg.data}'")
    if len(train_ds) < global_batch:
        raise ValueError(f"the training set has {len(train_ds)} images, fewer than one global batch "
                         f"({global_batch}); lower batch_size")
    keep = list(range(min(len(train_ds), cfg.overfit_batches * global_batch))) if cfg.overfit_batches else None
    return RunData(EpochSeededDataset(train_ds, cfg.seed, keep), test_ds, val_ds, counts, size, mean, std, kwargs)


def train_loader(data: RunData, cfg: TrainConfig) -> DataLoader:
    return make_loader(data.train, cfg.batch_size, cfg, build_sampler(cfg.sampler, data.train.targets, cfg.seed))
