"""Map-style long-tailed image datasets: split files, image folders, Hugging Face datasets, digits-LT.

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

import io
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from .longtail import class_counts as _class_counts
from .longtail import exp_profile, make_longtailed, step_profile

__all__ = [
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DigitsLT",
    "HFImageDataset",
    "IMG_EXTENSIONS",
    "ImageFolderDataset",
    "SkippedSample",
    "SplitFileDataset",
    "UnreadableImageError",
    "build_dataset",
    "check_all_classes_present",
    "collate_skip",
    "load_hf_dataset",
    "longtailed_subset",
    "select_by_split_file",
]

logger = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# Pixel statistics of scikit-learn's digits (values / 16) over all 1797 images, replicated to
# three channels; nearest-neighbour up-sampling (what DigitsLT uses) keeps them unchanged.
DIGITS_MEAN = (0.3053, 0.3053, 0.3053)
DIGITS_STD = (0.3760, 0.3760, 0.3760)

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
                              split_file: str | os.PathLike | None = None) -> None:
    """Raise ValueError if a class in ``[0, num_classes)`` has no sample (e.g. absent from train).

    Args:
        dataset_or_targets: a dataset with ``.targets`` or a sequence of integer labels.
        num_classes: the number of classes every one of which must appear.
        split_file: named in the error message when given.
    """
    targets = getattr(dataset_or_targets, "targets", dataset_or_targets)
    counts = _class_counts(targets, num_classes)
    missing = [c for c, n in enumerate(counts) if n == 0]
    if missing:
        where = f"{split_file}: " if split_file is not None else ""
        raise ValueError(
            f"{where}{len(missing)} of {num_classes} classes have no image: {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}; every class must appear in the training split "
            f"(pass require_all_classes=False for an evaluation split that lacks classes)")


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
                    f"(pass on_error='skip' to drop unreadable images)") from err
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
    """

    def __init__(self, root: str | os.PathLike, split_file: str | os.PathLike,
                 transform: Callable | None = None, num_classes: int | None = None,
                 on_error: str = "raise", check_files: bool = True,
                 classes: Sequence[str] | None = None, require_all_classes: bool = True) -> None:
        self.root = os.fspath(root)
        self.split_file = os.fspath(split_file)
        _check_on_error(on_error)
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"image root {self.root!r} is not a directory")
        if not os.path.isfile(self.split_file):
            raise FileNotFoundError(f"split file {self.split_file!r} not found")
        paths, targets, lines = self._parse(num_classes)
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
            check_all_classes_present(targets, self.num_classes, self.split_file)
        self.classes = _resolve_classes(classes, self.num_classes, self.split_file)
        self._init_common(transform, on_error)

    def _parse(self, num_classes: int | None) -> tuple[list[str], list[int], list[int]]:
        paths: list[str] = []
        targets: list[int] = []
        lines: list[int] = []
        for lineno, key, label, line in _split_lines(self.split_file):
            if label is None:
                raise ValueError(
                    f"{self.split_file}:{lineno}: malformed line {line!r}: expected "
                    f"'<relative/path> <integer label>'")
            if label < 0 or (num_classes is not None and label >= num_classes):
                bound = f"[0, {num_classes})" if num_classes is not None else "[0, inf)"
                raise ValueError(
                    f"{self.split_file}:{lineno}: label {label} out of range {bound} "
                    f"for image {key!r}")
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


# --------------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------------

def _is_local_path(name_or_path: str) -> bool:
    return (os.path.exists(name_or_path) or name_or_path.startswith(("/", "./", "../", "~"))
            or (os.sep != "/" and os.sep in name_or_path))


def load_hf_dataset(name_or_path: str, split: str, *, cache_dir: str | None = None,
                    revision: str | None = None, **load_kwargs: Any) -> Any:
    """Load one split of a Hugging Face dataset as a ``datasets.Dataset``.

    ``name_or_path`` is, in this order:

    * a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (it holds
      ``state.json`` or ``dataset_dict.json``): read with ``datasets.load_from_disk``; for a
      ``DatasetDict`` the ``split`` is picked;
    * any other local folder: read with ``load_dataset('imagefolder', data_dir=...)`` (class
      sub-folders, optionally under ``train/``, ``test/``... split folders);
    * otherwise a Hub dataset name (``'org/name'``), read with ``datasets.load_dataset(name,
      split=split, revision=revision)``; remote code is never trusted.

    Extra keyword arguments go to ``load_dataset``. Raises FileNotFoundError for a local path
    that does not exist and ValueError (listing the available splits) for an unknown split.
    """
    import datasets

    name_or_path = os.fspath(name_or_path)
    if _is_local_path(name_or_path):
        path = os.path.expanduser(name_or_path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"local dataset folder {name_or_path!r} not found")
        if os.path.isfile(os.path.join(path, "dataset_dict.json")):
            dd = datasets.load_from_disk(path)
            if split not in dd:
                raise ValueError(
                    f"saved dataset {name_or_path!r} has no split {split!r}; available: {sorted(dd)}")
            return dd[split]
        if os.path.isfile(os.path.join(path, "state.json")):
            ds = datasets.load_from_disk(path)
            saved = getattr(ds, "split", None)
            if saved is not None and str(saved) != split:
                raise ValueError(
                    f"saved dataset {name_or_path!r} holds split {str(saved)!r}, not {split!r}")
            return ds
        try:
            return datasets.load_dataset("imagefolder", data_dir=path, split=split,
                                         cache_dir=cache_dir, **load_kwargs)
        except ValueError as err:
            if "split" in str(err).lower():
                raise ValueError(f"image folder {name_or_path!r}: {err}") from err
            raise
    return datasets.load_dataset(name_or_path, split=split, cache_dir=cache_dir, revision=revision,
                                 **load_kwargs)


def _hf_check_columns(hf_dataset: Any, columns: Sequence[str], what: str = "dataset") -> None:
    available = list(hf_dataset.column_names)
    for col in columns:
        if col not in available:
            raise KeyError(f"{what} has no column {col!r}; available columns: {available}")


def _check_hf_dataset(hf_dataset: Any) -> None:
    import datasets

    if isinstance(hf_dataset, datasets.DatasetDict):
        raise TypeError(f"got a DatasetDict, pick one split first; available splits: {sorted(hf_dataset)}")
    if not isinstance(hf_dataset, datasets.Dataset):
        raise TypeError(
            f"expected a map-style datasets.Dataset, got {type(hf_dataset).__name__} "
            f"(streaming IterableDatasets are not supported)")


def _hf_image_paths(hf_dataset: Any, image_column: str) -> list[str | None]:
    """Stored file paths of the image column, read without decoding or copying image bytes."""
    import datasets
    import pyarrow as pa

    feature = hf_dataset.features[image_column]
    if isinstance(feature, datasets.Value):
        return list(hf_dataset.with_format(None)[image_column])
    if not isinstance(feature, datasets.Image):
        raise TypeError(f"image column {image_column!r} has type {feature}, expected Image or string paths")

    def paths_of(col: pa.ChunkedArray) -> list:
        out: list = []
        for chunk in col.chunks:
            out.extend(chunk.field("path").to_pylist())
        return out

    table = hf_dataset.data
    if getattr(hf_dataset, "_indices", None) is None and len(table) == len(hf_dataset):
        return paths_of(table.column(image_column))  # zero-copy on the memory-mapped table
    out: list = []
    arrow = hf_dataset.select_columns([image_column]).with_format("arrow")
    for start in range(0, len(arrow), 8192):
        out.extend(paths_of(arrow[start:start + 8192].column(image_column)))
    return out


def _norm_parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))


def select_by_split_file(hf_dataset: Any, split_file: str | os.PathLike, key: str = "auto",
                         image_column: str = "image", label_column: str = "label") -> Any:
    """Rows of a ``datasets.Dataset`` listed in a split file, in the file's order.

    Split-file format for Hugging Face datasets: one sample per non-blank line, ``<key>`` or
    ``<key> <integer label>``, where the key is either

    * ``key='index'``: the row index in ``hf_dataset`` (an integer), or
    * ``key='path'``: an image path, matched to the image's stored file path (``datasets`` keeps
      it in the ``Image`` feature: absolute for ``imagefolder``, often the bare file name for Hub
      parquet data) when one is a component-wise suffix of the other; so the official
      ImageNet-LT line ``train/n01440764/n01440764_10026.JPEG 0`` finds that image. A path that
      matches no row or several rows is an error.
    * ``key='auto'`` (default): ``'index'`` if every key is an integer, else ``'path'``.

    When a line carries a label it must equal the dataset's label for that row: the split file
    never relabels (a mismatch is an error naming the file, line and both labels). A row listed
    twice is an error.

    Returns:
        ``hf_dataset.select(rows)``.
    """
    _check_hf_dataset(hf_dataset)
    if key not in ("auto", "index", "path"):
        raise ValueError(f"key must be 'auto', 'index' or 'path', got {key!r}")
    split_file = os.fspath(split_file)
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"split file {split_file!r} not found")
    _hf_check_columns(hf_dataset, [label_column], "dataset")
    # (line number, key, label or None)
    entries: list[tuple[int, str, int | None]] = [(n, key, label) for n, key, label, _ in _split_lines(split_file)]
    if not entries:
        raise ValueError(f"{split_file}: split file lists no samples")

    def as_int(s: str) -> int | None:
        try:
            return int(s)
        except ValueError:
            return None

    if key == "auto":
        key = "index" if all(as_int(k) is not None for _, k, _ in entries) else "path"
    n = len(hf_dataset)
    rows: list[int] = []
    if key == "index":
        for lineno, k, _ in entries:
            r = as_int(k)
            if r is None or " " in k:
                raise ValueError(f"{split_file}:{lineno}: malformed line: expected '<row index> [label]', got {k!r}")
            if not 0 <= r < n:
                raise ValueError(f"{split_file}:{lineno}: row index {r} out of range [0, {n})")
            rows.append(r)
    else:
        _hf_check_columns(hf_dataset, [image_column], "dataset")
        stored = [_norm_parts(p) if p else () for p in _hf_image_paths(hf_dataset, image_column)]
        by_base: dict[str, list[int]] = defaultdict(list)
        by_last2: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for r, parts in enumerate(stored):
            if parts:
                by_base[parts[-1]].append(r)
                if len(parts) >= 2:
                    by_last2[parts[-2:]].append(r)
        for lineno, k, _ in entries:
            parts = _norm_parts(k)
            if not parts:
                raise ValueError(f"{split_file}:{lineno}: empty image path")
            if len(parts) == 1:
                cands = by_base.get(parts[0], [])
            else:
                cands = by_last2.get(parts[-2:], []) + [r for r in by_base.get(parts[-1], [])
                                                        if len(stored[r]) == 1]
            m = len(parts)
            matches = [r for r in cands
                       if stored[r][-m:] == parts or parts[-len(stored[r]):] == stored[r]]
            if not matches:
                raise ValueError(
                    f"{split_file}:{lineno}: image path {k!r} matches no image of the dataset "
                    f"(column {image_column!r})")
            if len(matches) > 1:
                raise ValueError(
                    f"{split_file}:{lineno}: image path {k!r} matches {len(matches)} images "
                    f"(rows {matches[:5]}); give a longer path")
            rows.append(matches[0])
    labels = list(hf_dataset.select_columns([label_column]).with_format(None).select(rows)[label_column])
    seen: dict[int, int] = {}
    for (lineno, k, label), r, actual in zip(entries, rows, labels):
        if r in seen:
            raise ValueError(f"{split_file}:{lineno}: {k!r} lists row {r} again (first on line {seen[r]})")
        seen[r] = lineno
        if label is not None and label != actual:
            raise ValueError(
                f"{split_file}:{lineno}: label {label} for {k!r} but the dataset's label is {actual}; "
                f"the split file and the dataset disagree (refusing to relabel)")
    return hf_dataset.select(rows)


class HFImageDataset(_ImageDataset):
    """A ``datasets.Dataset`` with an image column and an integer label column.

    The image column may be an ``Image`` feature (decoded here with PIL, so errors name the file
    and follow ``on_error``) or a string column of file paths. The label column may be a
    ``ClassLabel`` (its names become ``.classes``) or integers. Missing columns raise KeyError
    listing the available ones; a label outside ``[0, num_classes)`` (e.g. the ``-1`` of an
    unlabelled test split) raises ValueError naming the row.

    To make it long-tailed use :func:`longtailed_subset` (a profile) or
    :func:`select_by_split_file` (a split file of row indices or image paths) on the
    ``datasets.Dataset`` before wrapping, or ``.subset(indices)``.

    Args:
        hf_dataset: a map-style ``datasets.Dataset`` (one split).
        transform: applied to the RGB PIL image.
        image_column: name of the image column.
        label_column: name of the label column.
        on_error: ``'raise'`` or ``'skip'`` for unreadable images.
        num_classes: default: the ``ClassLabel`` size, else ``max label + 1``.
        classes: class names (default: ``ClassLabel`` names, else ``'0' .. 'C-1'``).
    """

    def __init__(self, hf_dataset: Any, transform: Callable | None = None, image_column: str = "image",
                 label_column: str = "label", on_error: str = "raise", num_classes: int | None = None,
                 classes: Sequence[str] | None = None) -> None:
        import datasets

        _check_hf_dataset(hf_dataset)
        _check_on_error(on_error)
        _hf_check_columns(hf_dataset, [image_column, label_column], "dataset")
        self.image_column = image_column
        self.label_column = label_column
        img_feature = hf_dataset.features[image_column]
        ds = hf_dataset.select_columns([image_column, label_column]).with_format(None)
        if isinstance(img_feature, datasets.Image):
            if img_feature.decode:
                ds = ds.cast_column(image_column, datasets.Image(decode=False))
        elif not (isinstance(img_feature, datasets.Value) and img_feature.dtype in ("string", "large_string")):
            raise TypeError(f"image column {image_column!r} has type {img_feature}, expected Image or string paths")
        lab_feature = hf_dataset.features[label_column]
        names = None
        if isinstance(lab_feature, datasets.ClassLabel):
            names = list(lab_feature.names)
        elif not (isinstance(lab_feature, datasets.Value) and "int" in lab_feature.dtype):
            raise TypeError(
                f"label column {label_column!r} has type {lab_feature}, expected ClassLabel or integers")
        self.targets = [int(t) for t in ds[label_column]]
        if not self.targets:
            raise ValueError("the Hugging Face dataset is empty")
        if num_classes is None:
            num_classes = len(names) if names is not None else max(self.targets) + 1
        for i, t in enumerate(self.targets):
            if not 0 <= t < num_classes:
                raise ValueError(
                    f"row {i}: label {t} out of range [0, {num_classes}) in column {label_column!r}"
                    f"{' (an unlabelled split?)' if t < 0 else ''}")
        self.num_classes = int(num_classes)
        if classes is None and names is not None and len(names) == self.num_classes:
            classes = names
        self.classes = _resolve_classes(classes, self.num_classes, f"column {label_column!r}")
        self.hf_dataset = ds
        self._init_common(transform, on_error)

    def _entry(self, index: int) -> Any:
        return self.hf_dataset[int(index)][self.image_column]

    def _load_image(self, index: int) -> Image.Image:
        entry = self._entry(index)
        if isinstance(entry, str):
            return _open_rgb(entry)
        if entry is None:
            raise ValueError("the image cell is empty")
        if entry.get("bytes") is not None:
            return _open_rgb(io.BytesIO(entry["bytes"]))
        if entry.get("path"):
            return _open_rgb(entry["path"])
        raise ValueError("the image cell has neither bytes nor a path")

    def _describe(self, index: int) -> str:
        try:
            entry = self._entry(index)
            path = entry if isinstance(entry, str) else (entry or {}).get("path")
        except Exception:  # describing must never hide the original error
            path = None
        return f"{path} (row {index})" if path else f"row {index}"

    def subset(self, indices: Sequence[int]) -> HFImageDataset:
        """A dataset of the given rows (same classes and policies; fresh skip count)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        idx = [int(i) for i in indices]
        new.hf_dataset = self.hf_dataset.select(idx)
        new.targets = [self.targets[i] for i in idx]
        new._init_common(self.transform, self.on_error)
        return new


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


# --------------------------------------------------------------------------------------------
# digits-LT
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images / 16.0 * 255.0).astype(np.uint8)  # [1797, 8, 8], values 0..16
    return images, d.target.astype(np.int64)


@lru_cache(maxsize=4)
def _digits_upsampled(img_size: int) -> np.ndarray:
    images, _ = _digits_raw()
    if img_size == images.shape[1]:
        return images
    # Nearest neighbour: every source pixel becomes a block, so the pixel statistics (and the
    # normalisation constants DIGITS_MEAN/STD) stay those of the original 8x8 data.
    return np.stack([np.asarray(Image.fromarray(a).resize((img_size, img_size), Image.NEAREST))
                     for a in images])


class DigitsLT(_LabelledDataset):
    """digits-LT: scikit-learn's handwritten digits (1797 images, 10 classes) made long-tailed.

    No download: the data ships with scikit-learn. Construction:

    1. a balanced test set of ``test_per_class`` images per class is held out first (seeded);
    2. the train split is drawn from the remaining images with
       ``exp_profile(10, n_max, imbalance_factor)``, ``n_max`` = the smallest remaining class
       (124 with the defaults, so every class can supply its count; IF100 gives
       ``[124, 74, 44, 26, 16, 9, 5, 3, 2, 1]``), class 0 being the head.

    Train and test never overlap (``.indices`` are the scikit-learn indices). Images are the 8x8
    grey digits up-sampled to ``img_size`` with nearest-neighbour interpolation and returned as
    RGB PIL images with three identical channels; normalise with ``DIGITS_MEAN``/``DIGITS_STD``.

    Args:
        split: ``'train'`` or ``'test'``.
        imbalance_factor: ``n_max / n_min`` of the train split (1 = balanced).
        test_per_class: held-out test images per class (1..173).
        seed: seed of the test hold-out and of the long-tailed selection.
        img_size: output side length in pixels.
        transform: applied to the PIL image.
    """

    def __init__(self, split: str = "train", imbalance_factor: float = 100.0, test_per_class: int = 50,
                 seed: int = 0, img_size: int = 32, transform: Callable | None = None) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"DigitsLT split must be 'train' or 'test', got {split!r}")
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f"img_size must be a positive integer, got {img_size!r}")
        _, labels = _digits_raw()
        self.num_classes = 10
        self.classes = [str(i) for i in range(10)]
        per_class = np.bincount(labels, minlength=10)
        if not isinstance(test_per_class, int) or not 1 <= test_per_class < int(per_class.min()):
            raise ValueError(
                f"test_per_class must be an integer in [1, {int(per_class.min()) - 1}] "
                f"(smallest digits class has {int(per_class.min())} images), got {test_per_class!r}")
        test_idx, pool = [], []
        for c in range(10):
            members = np.flatnonzero(labels == c)
            perm = np.random.default_rng([int(seed), c, 1]).permutation(members.size)
            test_idx.append(members[perm[:test_per_class]])
            pool.append(members[perm[test_per_class:]])
        pool_idx = np.sort(np.concatenate(pool))
        self.profile: list[int] | None = None
        if split == "test":
            idx = np.sort(np.concatenate(test_idx))
        else:
            pool_targets = labels[pool_idx]
            n_max = int(np.bincount(pool_targets, minlength=10).min())
            self.profile = exp_profile(10, n_max, imbalance_factor)
            idx = pool_idx[make_longtailed(pool_targets, self.profile, seed)]
        self.split = split
        self.img_size = img_size
        self.indices: list[int] = [int(i) for i in idx]
        self.targets: list[int] = [int(labels[i]) for i in idx]
        self.transform = transform
        self._images = _digits_upsampled(img_size)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self._images[self.indices[index]]).convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


# --------------------------------------------------------------------------------------------
# dispatcher
# --------------------------------------------------------------------------------------------

def _maybe_longtail(dataset: Any, split: str, imbalance_factor: float | None, seed: int,
                    profile: str, n_max: int | None, mu: float) -> Any:
    if split != "train" or imbalance_factor is None or float(imbalance_factor) <= 1.0:
        return dataset
    return longtailed_subset(dataset, imbalance_factor, profile=profile, n_max=n_max, seed=seed, mu=mu)


def build_dataset(name: str, split: str, transform: Callable | None = None, root: str | None = None,
                  split_file: str | None = None, imbalance_factor: float | None = 100.0, seed: int = 0,
                  **kw: Any) -> Any:
    """Build a dataset by name.

    * ``'digits-lt'``: :class:`DigitsLT` (``kw``: ``test_per_class``, ``img_size``; ``root`` and
      ``on_error`` are accepted and ignored, so one set of options serves every dataset).
    * ``'split-file'``: :class:`SplitFileDataset` of ``root`` + ``split_file`` (the split file
      defines the long tail; ``kw``: ``num_classes``, ``on_error``, ``check_files``, ``classes``,
      ``require_all_classes``).
    * ``'hf:<hub name or local path>'``: :func:`load_hf_dataset` + :class:`HFImageDataset`
      (``kw``: ``image_column``, ``label_column``, ``cache_dir``, ``revision``, ``on_error``,
      ``num_classes``, ``split_key``, ``profile``, ``n_max``, ``mu``).
    * ``'imagefolder:<path>'``: :class:`ImageFolderDataset` of ``<path>/<split>`` if that folder
      exists, else of ``<path>`` (``kw``: ``on_error``, ``profile``, ``n_max``, ``mu``).

    For ``hf:`` and ``imagefolder:``: with ``split_file`` the rows it lists are used (see
    :func:`select_by_split_file`; ``imagefolder:`` reads it as a :class:`SplitFileDataset` under
    the folder); otherwise the ``'train'`` split is made long-tailed with the ``profile``
    (default ``'exp'``) unless ``imbalance_factor`` is None or <= 1, and other splits are used
    whole.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    low = name.lower()
    if low in ("digits-lt", "digits_lt", "digitslt"):
        if split_file is not None:
            raise ValueError("dataset 'digits-lt' takes no split_file (its splits are built in)")
        # in-memory data is never unreadable: accept (and ignore) the image datasets' policy
        _check_on_error(kw.pop("on_error", "raise"))
        return DigitsLT(split, imbalance_factor=1.0 if imbalance_factor is None else imbalance_factor,
                        seed=seed, transform=transform, **kw)
    if low == "split-file":
        if root is None or split_file is None:
            raise ValueError("dataset 'split-file' needs both root= (image root) and split_file=")
        return SplitFileDataset(root, split_file, transform=transform, **kw)
    profile = kw.pop("profile", "exp")
    n_max = kw.pop("n_max", None)
    mu = kw.pop("mu", 0.5)
    if low.startswith("hf:"):
        target = name[3:]
        image_column = kw.pop("image_column", "image")
        label_column = kw.pop("label_column", "label")
        split_key = kw.pop("split_key", "auto")
        wrap_kw = {k: kw.pop(k) for k in ("on_error", "num_classes", "classes") if k in kw}
        hf = load_hf_dataset(target, split, **kw)
        if split_file is not None:
            hf = select_by_split_file(hf, split_file, key=split_key, image_column=image_column,
                                      label_column=label_column)
        ds = HFImageDataset(hf, transform=transform, image_column=image_column, label_column=label_column,
                            **wrap_kw)
        if split_file is not None:
            return ds
        return _maybe_longtail(ds, split, imbalance_factor, seed, profile, n_max, mu)
    if low.startswith("imagefolder:"):
        path = os.path.expanduser(name[len("imagefolder:"):])
        folder = os.path.join(path, split) if os.path.isdir(os.path.join(path, split)) else path
        if split_file is not None:
            return SplitFileDataset(folder if root is None else root, split_file, transform=transform, **kw)
        ds = ImageFolderDataset(folder, transform=transform, **kw)
        return _maybe_longtail(ds, split, imbalance_factor, seed, profile, n_max, mu)
    raise ValueError(
        f"unknown dataset {name!r}; expected 'digits-lt', 'split-file', 'hf:<hub name or local path>' "
        f"or 'imagefolder:<path>'")
