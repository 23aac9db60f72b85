"""GPU-resident small-image data: the uint8 images of a split as one tensor, and a loader that
augments whole batches where they live (``data_pipeline: tensor``).

For small in-memory datasets (CIFAR-10/100-LT, digits-LT, any array) the long-tailed split fits on
the device (CIFAR-100-LT IF100: 10,847 x 3 x 32 x 32 bytes = 33 MB). Each step then indexes a batch
there and augments it with the batched views of :mod:`.batched_views`: no DataLoader workers, no
per-image Python, no host-device copy per step (the epoch's order is copied once per epoch).

What the trainer calls, in place of ``build_dataset`` + ``DataLoader``::

    ds = build_dataset(cfg.data, "train", as_tensor=True, device=accelerator.device, ...)
    views = build_batched_views(cfg.method, size, mean, std, randaug=cfg.randaug, hflip=cfg.hflip)
    loader = TensorLoader(ds, views, cfg.batch_size, sampler=cfg.sampler, seed=cfg.seed,
                          num_replicas=accelerator.num_processes, rank=accelerator.process_index)
    for epoch in ...:
        loader.set_epoch(epoch)
        batches = loader.skip_first_batches(state.batch_in_epoch) if resuming else loader
        for images, labels in batches:   # images: a tensor, or a list of views; all on ds.device
            ...

``len(loader)`` is the number of batches this process yields per epoch (like an Accelerate-prepared
loader, so do not divide it by the number of processes again). Do not pass the loader to
``accelerator.prepare`` (it would be returned unchanged) nor to ``accelerator.skip_first_batches``
(use the loader's own). The loader consumes no global RNG state.
"""
from __future__ import annotations

import copy
import ctypes
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .counter_rng import SampleKeys, mix32_int
from .longtail import class_counts as _class_counts
from .samplers import build_sampler

__all__ = ["TensorImageDataset", "TensorLoader", "to_tensor_dataset", "tune_cpu_allocator"]

logger = logging.getLogger(__name__)


class TensorImageDataset:
    """Images of one split as a single uint8 tensor ``[N, 3, H, W]`` on a device, with their labels.

    Same label attributes as the other datasets of this package: ``targets`` (list of int),
    ``num_classes``, ``classes``, ``class_counts()``; plus ``images`` and ``labels`` (int64 tensor
    ``[N]``), both on ``device``. ``ds[i]`` is ``(uint8 image [3, H, W], label)``.

    Args:
        images: uint8 ``[N, 3, H, W]``, ``[N, H, W, 3]`` (numpy layout) or grey ``[N, H, W]``, as a
            tensor or array.
        targets: integer label of each image.
        num_classes: default ``max label + 1``.
        classes: class names (default ``'0' .. 'C-1'``).
        device: where the images live (default: where ``images`` are, the CPU for arrays).
    """

    def __init__(self, images: Any, targets: Sequence[int] | torch.Tensor, num_classes: int | None = None,
                 classes: Sequence[str] | None = None, device: str | torch.device | None = None) -> None:
        x = torch.as_tensor(images)
        if x.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (0..255), got {x.dtype}")
        if x.dim() == 3:
            x = x[:, None].expand(-1, 3, -1, -1)
        elif x.dim() == 4 and x.shape[1] != 3 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], [N, H, W, 3] or [N, H, W], got {tuple(x.shape)}")
        targets = [int(t) for t in (targets.tolist() if isinstance(targets, torch.Tensor) else targets)]
        if len(targets) != x.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {len(targets)} targets")
        if not targets:
            raise ValueError("a tensor dataset needs at least one image")
        self.num_classes = int(num_classes) if num_classes is not None else max(targets) + 1
        _class_counts(targets, self.num_classes)  # range check naming the first bad label
        self.classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(self.num_classes)]
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.num_classes} classes")
        device = torch.device(device) if device is not None else x.device
        self.images = x.contiguous().to(device)
        self.targets = targets
        self.labels = torch.tensor(targets, dtype=torch.int64, device=device)
        self.num_skipped = 0
        self.skipped_items: list[str] = []

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]

    def class_counts(self) -> list[int]:
        """Number of images per class (length ``num_classes``)."""
        return _class_counts(self.targets, self.num_classes)

    def subset(self, indices: Sequence[int]) -> TensorImageDataset:
        """The given images (same classes and device)."""
        idx = torch.as_tensor(list(indices), dtype=torch.int64, device=self.device)
        new = copy.copy(self)
        new.images = self.images.index_select(0, idx)
        new.labels = self.labels.index_select(0, idx)
        new.targets = [self.targets[int(i)] for i in indices]
        return new

    def to(self, device: str | torch.device) -> TensorImageDataset:
        """The same data on another device."""
        new = copy.copy(self)
        new.images, new.labels = self.images.to(device), self.labels.to(device)
        return new

    def report_skipped(self, log: logging.Logger | None = None) -> int:
        """Log how many source images were unreadable and left out at conversion; return the count."""
        if self.num_skipped:
            shown = ", ".join(self.skipped_items[:5]) + (" ..." if self.num_skipped > 5 else "")
            (log or logger).warning("%d images were unreadable and left out of the tensor dataset: %s",
                                    self.num_skipped, shown)
        return self.num_skipped

    def __repr__(self) -> str:
        n, _, h, w = self.images.shape
        return f"{type(self).__name__}({n} images of 3x{h}x{w}, {self.num_classes} classes, device={self.device})"


def _size_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    hw = tuple(int(s) for s in size)[-2:]
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"size must be an int or (H, W), got {size!r}")
    return hw  # type: ignore[return-value]


class _ToUint8:
    """PIL image -> uint8 [3, H, W], after the PIL path's ``Resize`` when the size differs."""

    def __init__(self, size: tuple[int, int] | None, interpolation: str) -> None:
        from torchvision import transforms as T
        from torchvision.transforms import InterpolationMode

        self.size = size
        self.resize = None
        if size is not None:  # what build_train_transform does for small inputs
            self.resize = T.Resize(size[0] if size[0] == size[1] else size,
                                   interpolation=InterpolationMode(interpolation))

    def __call__(self, img: Any) -> torch.Tensor:
        from torchvision.transforms.functional import pil_to_tensor

        if isinstance(img, Image.Image):
            img = img.convert("RGB")
            if self.resize is not None and img.size != (self.size[1], self.size[0]):
                img = self.resize(img)
            return pil_to_tensor(img)
        t = torch.as_tensor(img)
        if t.dtype != torch.uint8 or t.dim() != 3 or t.shape[0] != 3:
            raise TypeError(f"to_tensor_dataset needs PIL images or uint8 [3, H, W] tensors, got {type(img).__name__}")
        if self.size is not None and tuple(t.shape[-2:]) != self.size:
            raise ValueError(f"a tensor item of size {tuple(t.shape[-2:])} cannot be resized like a PIL image; "
                             f"give PIL images or tensors of size {self.size}")
        return t


class _CollateUint8:
    """Decoded items -> (uint8 [B, 3, H, W], labels); drops SkippedSample markers (unreadable images)."""

    def __init__(self, size: tuple[int, int] | None, interpolation: str) -> None:
        self.convert = _ToUint8(size, interpolation)

    def __call__(self, batch: list) -> Any:
        kept = [b for b in batch if isinstance(b, tuple)]
        if not kept:
            return None
        images = [self.convert(b[0]) for b in kept]
        shapes = {tuple(x.shape) for x in images}
        if len(shapes) > 1:
            raise ValueError(f"images of different sizes {sorted(shapes)[:3]}: a tensor dataset holds one size; "
                             f"pass size= (the view size) or use data_pipeline pil")
        return torch.stack(images), torch.tensor([int(b[1]) for b in kept], dtype=torch.int64)


def to_tensor_dataset(dataset: Any, device: str | torch.device | None = None, size: int | Sequence[int] | None = None,
                      interpolation: str = "bilinear", workers: int = 0, batch_size: int = 256) -> TensorImageDataset:
    """Decode every image of a dataset once into a :class:`TensorImageDataset` on ``device``.

    Works on the datasets of this package (their long-tail selection, label checks and
    unreadable-image policy apply unchanged: with ``on_error='skip'`` unreadable images are left
    out and counted) and on any map-style dataset of ``(PIL image or uint8 [3, H, W], label)``
    with ``targets``. ``size`` applies the PIL path's ``Resize(size)`` (bilinear, antialiased) once
    here instead of in every view; all images must then share one size.

    Args:
        dataset: the source dataset (its ``transform``, if any, is not applied: views are batched).
        device: where the tensor lives (default: the CPU).
        size: resize to this size first (int or ``(H, W)``), as the small-input views do.
        interpolation: of that resize.
        workers: DataLoader workers for decoding (0: in this process).
        batch_size: images decoded per step.
    """
    hw = _size_hw(size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    classes = getattr(dataset, "classes", None)
    num_classes = getattr(dataset, "num_classes", None)
    native = getattr(dataset, "img_size", None)
    if hasattr(dataset, "uint8_images") and (hw is None or hw == (native, native)):  # digits-LT: no decoding
        return TensorImageDataset(torch.from_numpy(dataset.uint8_images()), dataset.targets, num_classes, classes,
                                  device)
    src = copy.copy(dataset)
    if getattr(src, "transform", None) is not None:
        src.transform = None  # decode only: the views are batched
    from torch.utils.data import DataLoader

    images, labels = [], []
    collate = _CollateUint8(hw, interpolation)
    for batch in DataLoader(src, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate):
        if batch is None:
            continue
        images.append(batch[0])
        labels.append(batch[1])
    if not images:
        raise ValueError("no readable image in the dataset")
    shapes = {tuple(x.shape[1:]) for x in images}
    if len(shapes) > 1:
        raise ValueError(f"images of different sizes {sorted(shapes)[:3]}: pass size= (the view size) or use "
                         f"data_pipeline pil")
    out = TensorImageDataset(torch.cat(images), torch.cat(labels), num_classes, classes, device)
    if hasattr(src, "num_skipped"):
        out.num_skipped, out.skipped_items = src.num_skipped, src.skipped_items
    return out


def tune_cpu_allocator(max_bytes: int = 1 << 30) -> bool:
    """Keep freed memory in the process (glibc ``mallopt``) so batched CPU augmentation does not
    page-fault on every large temporary.

    glibc returns big freed blocks to the system (``mmap`` / heap trimming) and re-faults them on
    the next allocation; for per-batch temporaries of a few MB this costs several times the
    arithmetic for some allocation patterns (measured: a 1.5 MB gather 21 -> 2.8 us per image, the
    affine op at batch 64 121 -> 24 us per image). This raises the mmap and trim
    thresholds to ``max_bytes``: freed memory up to that size is reused. Process-wide; a no-op
    (returning False) off glibc. The :class:`TensorLoader` calls it when its data is on the CPU.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, int(max_bytes)) and libc.mallopt(m_trim_threshold, int(max_bytes)))
    except (OSError, AttributeError):
        return False


class TensorLoader:
    """Per-step batches of a :class:`TensorImageDataset`, augmented where the images are.

    Each epoch has one sequence of dataset indices, a function of ``(seed, epoch)``: a permutation
    (``sampler='instance'``) or the class-balanced / square-root sampler's draws (with replacement,
    :mod:`.samplers`). Step ``k`` takes the global batch ``seq[k*W*B : (k+1)*W*B]`` (``W`` processes,
    ``B`` = ``batch_size`` per process) and process ``r`` its slice ``[r*B : (r+1)*B]``, as an
    Accelerate-prepared loader shards the batches; with ``drop_last`` an incomplete global batch is
    dropped. A sample's views are keyed by its position in the epoch's sequence, so they do not
    depend on the batch size, the number of processes or where a resumed run starts.

    Yields ``(views, labels)``: ``views(images, keys)`` of the uint8 batch (a tensor or a list of
    tensors), ``labels`` int64 ``[B]``, all on the dataset's device.

    Args:
        dataset: the images.
        views: batched views (:func:`.batched_views.build_batched_views`), or any callable
            ``(uint8 [B, 3, H, W], SampleKeys) -> tensor or list``.
        batch_size: samples per process and step.
        sampler: ``'instance'``, ``'class_balanced'`` or ``'sqrt'``.
        seed: seed of the sample order and of the augmentation.
        drop_last: drop the last incomplete global batch (required with several processes).
        num_replicas, rank: number of processes and this one's rank.
        num_samples: length of the epoch's sequence (default: the dataset size).
        tune_allocator: on the CPU, call :func:`tune_cpu_allocator` once.
    """

    def __init__(self, dataset: TensorImageDataset, views: Any, batch_size: int, *, sampler: str = "instance",
                 seed: int = 0, drop_last: bool = True, num_replicas: int = 1, rank: int = 0,
                 num_samples: int | None = None, tune_allocator: bool = True) -> None:
        if not isinstance(dataset, TensorImageDataset):
            raise TypeError(f"TensorLoader needs a TensorImageDataset (to_tensor_dataset), "
                            f"got {type(dataset).__name__}")
        if not callable(views):
            raise TypeError("views must be callable: (uint8 images, SampleKeys) -> views")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(num_replicas, int) or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        if num_replicas > 1 and not drop_last:
            raise ValueError("several processes need drop_last=True (equal batches for the gathers)")
        self.dataset, self.views, self.batch_size = dataset, views, batch_size
        self.seed, self.drop_last = int(seed), bool(drop_last)
        self.num_replicas, self.rank = num_replicas, rank
        self.num_samples = int(num_samples) if num_samples is not None else len(dataset)
        self.sampler = build_sampler(sampler, dataset.targets, seed=self.seed, num_samples=self.num_samples)
        self.epoch = 0
        global_batch = batch_size * num_replicas
        self._steps = (self.num_samples // global_batch if drop_last else math.ceil(self.num_samples / global_batch))
        if self._steps == 0:
            raise ValueError(f"the epoch has {self.num_samples} samples, fewer than one global batch ({global_batch})")
        self._cache: tuple[int, torch.Tensor] | None = None
        if tune_allocator and dataset.device.type == "cpu":
            tune_cpu_allocator()

    def set_epoch(self, epoch: int) -> None:
        """Use the sample order and augmentation of this epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._steps

    def epoch_sequence(self) -> torch.Tensor:
        """The current epoch's dataset indices (all processes), int64 on the dataset's device."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        if self.sampler is None:
            gen = torch.Generator().manual_seed(mix32_int(mix32_int(self.seed ^ 0x2545F491) ^ self.epoch))
            seq = torch.randperm(len(self.dataset), generator=gen)
            if self.num_samples != len(self.dataset):  # longer or shorter epochs: repeat permutations
                reps = -(-self.num_samples // len(self.dataset))
                seq = torch.cat([seq] + [torch.randperm(len(self.dataset), generator=gen) for _ in range(reps - 1)])
                seq = seq[:self.num_samples]
        else:
            self.sampler.set_epoch(self.epoch)
            seq = torch.from_numpy(np.ascontiguousarray(self.sampler.full_sequence(), dtype=np.int64))
        seq = seq.to(self.dataset.device)  # one copy per epoch
        self._cache = (self.epoch, seq)
        return seq

    def batch_positions(self, step: int) -> torch.Tensor:
        """Positions in the epoch's sequence of this process's batch ``step``."""
        start = (step * self.num_replicas + self.rank) * self.batch_size
        stop = min(start + self.batch_size, self.num_samples)
        return torch.arange(start, stop, device=self.dataset.device)

    def _batches(self, first: int) -> Iterator[tuple[Any, torch.Tensor]]:
        seq = self.epoch_sequence()
        for step in range(first, self._steps):
            pos = self.batch_positions(step)
            idx = seq[pos]
            images = self.dataset.images.index_select(0, idx)
            labels = self.dataset.labels.index_select(0, idx)
            yield self.views(images, SampleKeys(self.seed, self.epoch, pos)), labels

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        return self._batches(0)

    def skip_first_batches(self, num_batches: int) -> Iterator[tuple[Any, torch.Tensor]]:
        """The current epoch from batch ``num_batches`` on (mid-epoch resume): the same batches the
        uninterrupted epoch yields there, bit for bit."""
        if not isinstance(num_batches, int) or num_batches < 0:
            raise ValueError(f"num_batches must be a non-negative integer, got {num_batches!r}")
        return self._batches(num_batches)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.dataset!r}, batch_size={self.batch_size}, "
                f"sampler={type(self.sampler).__name__ if self.sampler else 'instance'}, seed={self.seed}, "
                f"epoch={self.epoch}, rank={self.rank}/{self.num_replicas})")
