"""Hugging Face ``datasets``: loading one split, selecting rows by a split file, and the image dataset.
"""
from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from .datasets import _check_on_error, _ImageDataset, _open_rgb, _resolve_classes, _split_lines

__all__ = ["HFImageDataset", "load_hf_dataset", "select_by_split_file"]


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
                         image_column: str = "image", label_column: str = "label",
                         num_classes: int | None = None) -> Any:
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
    twice is an error, and so is (with ``num_classes``) a row whose label lies outside
    ``[0, num_classes)``, naming the line.

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
        if num_classes is not None and not 0 <= actual < num_classes:
            raise ValueError(
                f"{split_file}:{lineno}: {k!r} has label {actual}, outside the {num_classes} classes "
                f"[0, {num_classes}); list only images of those classes or change num_classes")
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
