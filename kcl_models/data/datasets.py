"""Map-style image datasets read from files: split files and image folders, plus the shared base classes.

Hugging Face datasets are in :mod:`.hf`, digits-LT in :mod:`.digits`, the ``build_dataset``
dispatcher in :mod:`.builder`.

Every dataset here returns ``(image_or_views, label: int)`` from ``__getitem__`` and has
``.targets: list[int]``, ``.num_classes: int``, ``.classes: list[str]`` and ``class_counts()``.
Images are decoded with PIL and converted to RGB before the transform runs.

Unreadable images (``on_error``)
--------------------------------
``on_error='raise'`` (default): a corrupt, truncated or vanished image raises
:class:`UnreadableImageError` naming the file (and the split-file line, if any).

``on_error='skip'``: the sample is **dropped**, never replaced: ``__getitem__`` returns a
:class:`SkippedSample` marker instead of ``(image, label)``, and the dataset's ``collate_fn``
(:func:`collate_skip`) removes markers before collating, so a batch may hold fewer samples than
the batch size (``None`` if every sample of the batch was unreadable) and no label ever moves to
another image. Skipped images are flagged in a shared-memory table, so the count is right with
any number of DataLoader workers: ``.num_skipped`` (distinct images skipped so far),
``.skipped_items`` (their names) and ``report_skipped()`` (logs a summary, meant for the end of an
epoch/run). Each newly skipped image is also logged at WARNING level when it happens.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from .longtail import class_counts as _class_counts
from .longtail import exp_profile, make_longtailed, step_profile

__all__ = [
    "IMG_EXTENSIONS",
    "ImageFolderDataset",
    "SkippedSample",
    "SplitFileDataset",
    "UnreadableImageError",
    "check_all_classes_present",
    "collate_skip",
    "longtailed_subset",
]

logger = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# What PIL (or the file system) raises for a corrupt, truncated, unsupported or vanished image.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_ON_ERROR = ("raise", "skip")


class UnreadableImageError(OSError):
    """An image file could not be opened or decoded (message names the file)."""


class SkippedSample:
    """Marker returned by ``__getitem__`` for an unreadable image under ``on_error='skip'``.

    It is not a ``(image, label)`` pair on purpose: code that does not drop it (e.g. a plain
    ``default_collate``) fails loudly instead of training on a wrong sample.
    """

    __slots__ = ("index", "name")

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name

    def __repr__(self) -> str:
        return f"SkippedSample(index={self.index}, name={self.name!r})"


def collate_skip(batch: list) -> Any:
    """``default_collate`` after dropping :class:`SkippedSample` markers; ``None`` if none is left."""
    kept = [b for b in batch if not isinstance(b, SkippedSample)]
    if not kept:
        return None
    return default_collate(kept)


def check_all_classes_present(dataset_or_targets: Any, num_classes: int,
                              split_file: str | os.PathLike | None = None, split: str | None = "train") -> None:
    """Raise ValueError if a class in ``[0, num_classes)`` has no sample (e.g. absent from train).

    Args:
        dataset_or_targets: a dataset with ``.targets`` or a sequence of integer labels.
        num_classes: the number of classes every one of which must appear.
        split_file: named in the error message when given.
        split: the split's name for the message (``'train'``: every class must appear in it;
            another name: the message says that split lacks the classes and how to allow that).
    """
    targets = getattr(dataset_or_targets, "targets", dataset_or_targets)
    counts = _class_counts(targets, num_classes)
    missing = [c for c, n in enumerate(counts) if n == 0]
    if missing:
        where = f"{split_file}: " if split_file is not None else ""
        if split in (None, "train"):
            why = ("every class must appear in the training split (pass require_all_classes=False for an "
                   "evaluation split that lacks classes)")
        else:
            why = (f"the {split} split lacks them (pass require_all_classes=False to evaluate without them: "
                   f"their per-class accuracy is then undefined)")
        raise ValueError(
            f"{where}{len(missing)} of {num_classes} classes have no image: {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}; {why}")


def _check_on_error(on_error: str) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    return on_error


def _open_rgb(path_or_file: Any) -> Image.Image:
    # Same loading as torchvision's pil_loader; convert() forces the full decode so a truncated
    # file fails here (inside the error policy), not later inside a transform.
    with Image.open(path_or_file) as img:
        return img.convert("RGB")


class _LabelledDataset(Dataset):
    """Common attributes: ``targets``, ``num_classes``, ``classes``, ``class_counts()``."""

    targets: list[int]
    num_classes: int
    classes: list[str]

    def __len__(self) -> int:
        return len(self.targets)

    def class_counts(self) -> list[int]:
        """Number of samples per class (length ``num_classes``)."""
        return _class_counts(self.targets, self.num_classes)


def _resolve_classes(classes: Sequence[str] | None, num_classes: int, source: str) -> list[str]:
    if classes is None:
        return [str(i) for i in range(num_classes)]
    classes = [str(c) for c in classes]
    if len(classes) != num_classes:
        raise ValueError(f"{source}: {len(classes)} class names given for {num_classes} classes")
    return classes


class _ImageDataset(_LabelledDataset):
    """Decoding, transform and the unreadable-image policy shared by the image datasets."""

    collate_fn = staticmethod(collate_skip)

    def _init_common(self, transform: Callable | None, on_error: str) -> None:
        self.transform = transform
        self.on_error = _check_on_error(on_error)
        # One byte per sample in shared memory: DataLoader workers (fork or spawn) flag skipped
        # images here and the main process reads the count.
        self._skipped = torch.zeros(len(self.targets), dtype=torch.uint8)
        if on_error == "skip" and len(self.targets):
            self._skipped.share_memory_()

    def _load_image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def _describe(self, index: int) -> str:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        try:
            img = self._load_image(index)
        except _DECODE_ERRORS as err:
            name = self._describe(index)
            if self.on_error == "raise":
                raise UnreadableImageError(
                    f"cannot read image {name}: {type(err).__name__}: {err} "
                    f"(to drop unreadable images instead: --skip_corrupt true for train.py, "
                    f"--on-error skip for eval.py, on_error='skip' in code)") from err
            if not self._skipped[index]:
                self._skipped[index] = 1
                logger.warning("skipping unreadable image %s: %s: %s", name, type(err).__name__, err)
            return SkippedSample(index, name)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]

    @property
    def num_skipped(self) -> int:
        """Number of distinct images skipped as unreadable so far (all workers)."""
        return int(self._skipped.sum())

    @property
    def skipped_items(self) -> list[str]:
        """Names of the images skipped so far."""
        return [self._describe(int(i)) for i in torch.nonzero(self._skipped).flatten()]

    def report_skipped(self, log: logging.Logger | None = None) -> int:
        """Log how many images were skipped (call at the end of an epoch or run); return the count."""
        n = self.num_skipped
        if n:
            names = self.skipped_items
            shown = ", ".join(names[:5]) + (" ..." if n > 5 else "")
            (log or logger).warning("%d of %d images were unreadable and skipped: %s", n, len(self), shown)
        return n


def _split_lines(split_file: str | os.PathLike):
    """Yield ``(line number, key, label or None, stripped line)`` for each non-empty line of a split
    file in the ``<key> [<integer label>]`` format; a line without an integer label keeps the whole
    line as its key."""
    with open(split_file, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            parts = line.rsplit(None, 1)
            label = None
            if len(parts) == 2:
                try:
                    label = int(parts[1])
                except ValueError:
                    label = None
            yield lineno, (parts[0] if label is not None else line), label, line


class SplitFileDataset(_ImageDataset):
    """Images listed in a split file (ImageNet-LT / Places-LT / iNaturalist 2018 format).

    Each non-blank line is ``<relative/path> <integer label>``, the path relative to ``root``
    (the label is the last whitespace-separated token, so paths may contain spaces). Every problem
    is reported as ``<split_file>:<line>: ...``:

    * a malformed line (not two fields, a non-integer or negative label): ValueError;
    * a label ``>= num_classes`` (when ``num_classes`` is given): ValueError;
    * an image missing under ``root`` (checked with ``os.path.exists`` at construction unless
      ``check_files=False``, for huge splits on slow file systems): FileNotFoundError with the
      first missing line and the number missing;
    * a class with no image (``require_all_classes=True``, the default, over ``num_classes`` given
      or inferred as ``max label + 1``): ValueError naming the file and the classes.

    Args:
        root: image root the paths are relative to.
        split_file: the split file.
        transform: applied to the RGB PIL image (e.g. a multi-view transform).
        num_classes: number of classes; default ``max label + 1``.
        on_error: ``'raise'`` or ``'skip'`` for unreadable images (see the module docstring).
        check_files: check at construction that every listed image exists.
        classes: class names (default ``'0' .. 'C-1'``; split files carry no names).
        require_all_classes: error if a class has no image (set False for an evaluation split
            that legitimately lacks classes).
        split: the split's name, used in messages (``'train'``, ``'test'``, ``'val'``...).
    """

    def __init__(self, root: str | os.PathLike, split_file: str | os.PathLike,
                 transform: Callable | None = None, num_classes: int | None = None,
                 on_error: str = "raise", check_files: bool = True,
                 classes: Sequence[str] | None = None, require_all_classes: bool = True,
                 split: str | None = None) -> None:
        self.root = os.fspath(root)
        self.split_file = os.fspath(split_file)
        _check_on_error(on_error)
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"image root {self.root!r} is not a directory")
        if not os.path.isfile(self.split_file):
            raise FileNotFoundError(f"split file {self.split_file!r} not found")
        paths, targets, lines = self._parse(num_classes, split)
        if check_files:
            missing = [i for i, p in enumerate(paths) if not os.path.exists(os.path.join(self.root, p))]
            if missing:
                i = missing[0]
                raise FileNotFoundError(
                    f"{self.split_file}:{lines[i]}: image {paths[i]!r} not found under root "
                    f"{self.root!r} ({len(missing)} of {len(paths)} listed images missing)")
        self.paths = paths
        self.targets = targets
        self.lines = lines
        self.num_classes = num_classes if num_classes is not None else max(targets) + 1
        if require_all_classes:
            check_all_classes_present(targets, self.num_classes, self.split_file, split=split)
        self.classes = _resolve_classes(classes, self.num_classes, self.split_file)
        self._init_common(transform, on_error)

    def _parse(self, num_classes: int | None, split: str | None) -> tuple[list[str], list[int], list[int]]:
        paths: list[str] = []
        targets: list[int] = []
        lines: list[int] = []
        for lineno, key, label, line in _split_lines(self.split_file):
            if label is None:
                raise ValueError(
                    f"{self.split_file}:{lineno}: malformed line {line!r}: expected "
                    f"'<relative/path> <integer label>'")
            if label < 0 or (num_classes is not None and label >= num_classes):
                if num_classes is None:
                    hint = ""
                elif split in (None, "train"):
                    hint = f" (num_classes is {num_classes}: fix the line or the num_classes option)"
                else:
                    hint = (f" (the training split has {num_classes} classes; a {split} split may only use "
                            f"labels 0..{num_classes - 1})")
                bound = f"[0, {num_classes})" if num_classes is not None else "[0, inf)"
                raise ValueError(
                    f"{self.split_file}:{lineno}: label {label} out of range {bound} "
                    f"for image {key!r}{hint}")
            paths.append(key)
            targets.append(label)
            lines.append(lineno)
        if not paths:
            raise ValueError(f"{self.split_file}: split file lists no images")
        return paths, targets, lines

    def _load_image(self, index: int) -> Image.Image:
        return _open_rgb(os.path.join(self.root, self.paths[index]))

    def _describe(self, index: int) -> str:
        return (f"{os.path.join(self.root, self.paths[index])} "
                f"({self.split_file}:{self.lines[index]})")

    def subset(self, indices: Sequence[int]) -> SplitFileDataset:
        """A dataset of the given samples (same root, classes and policies; fresh skip count)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        idx = [int(i) for i in indices]
        new.paths = [self.paths[i] for i in idx]
        new.targets = [self.targets[i] for i in idx]
        new.lines = [self.lines[i] for i in idx]
        new._init_common(self.transform, self.on_error)
        return new


class ImageFolderDataset(SplitFileDataset):
    """``root/<class name>/**/<image>`` folders (torchvision ``ImageFolder`` layout).

    Classes are the sorted sub-folder names; files with an extension in ``IMG_EXTENSIONS`` are
    taken in sorted order. Same error policy and attributes as :class:`SplitFileDataset`.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 on_error: str = "raise", extensions: Sequence[str] = IMG_EXTENSIONS) -> None:
        self.root = os.fspath(root)
        _check_on_error(on_error)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"image folder {self.root!r} is not a directory")
        classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not classes:
            raise FileNotFoundError(f"image folder {self.root!r} has no class sub-folders")
        exts = tuple(e.lower() for e in extensions)
        paths, targets = [], []
        for label, name in enumerate(classes):
            found = []
            for dirpath, _dirs, files in os.walk(os.path.join(self.root, name), followlinks=True):
                for fn in files:
                    if fn.lower().endswith(exts):
                        found.append(os.path.relpath(os.path.join(dirpath, fn), self.root))
            if not found:
                raise FileNotFoundError(
                    f"class folder {os.path.join(self.root, name)!r} has no image with extension in {exts}")
            found.sort()
            paths.extend(found)
            targets.extend([label] * len(found))
        self.split_file = None
        self.paths = paths
        self.targets = targets
        self.lines = [0] * len(paths)
        self.num_classes = len(classes)
        self.classes = classes
        self._init_common(transform, on_error)

    def _describe(self, index: int) -> str:
        return os.path.join(self.root, self.paths[index])


def longtailed_subset(dataset: Any, imbalance_factor: float, profile: str = "exp", n_max: int | None = None,
                      seed: int = 0, mu: float = 0.5) -> Any:
    """Make a dataset long-tailed with an imbalance profile (seeded per-class selection).

    Works on any dataset with ``.targets``, ``.num_classes`` and ``.subset(indices)``: the
    datasets of this module (wrap a ``datasets.Dataset`` in :class:`HFImageDataset` first, or
    call :func:`make_longtailed` on its label column and ``select`` the indices).

    Args:
        dataset: the (balanced) dataset.
        imbalance_factor: ``n_max / n_min``.
        profile: ``'exp'`` (CIFAR-LT) or ``'step'``.
        n_max: head-class size; default the smallest class size, so every class can supply its
            count (for a balanced dataset such as CIFAR this is the standard choice).
        seed: selection seed (see :func:`make_longtailed`).
        mu: fraction of minority classes for the step profile.
    """
    counts = _class_counts(dataset.targets, dataset.num_classes)
    if n_max is None:
        n_max = min(counts)
        if n_max < 1:
            raise ValueError("a class has no sample, cannot make the dataset long-tailed; pass n_max")
    if profile == "exp":
        wanted = exp_profile(dataset.num_classes, int(n_max), imbalance_factor)
    elif profile == "step":
        wanted = step_profile(dataset.num_classes, int(n_max), imbalance_factor, mu)
    else:
        raise ValueError(f"profile must be 'exp' or 'step', got {profile!r}")
    return dataset.subset(make_longtailed(dataset.targets, wanted, seed))
