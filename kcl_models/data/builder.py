"""``build_dataset``: one entry point for every dataset by name (digits-LT, split files, HF, image folders)."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .datasets import ImageFolderDataset, SplitFileDataset, _check_on_error, longtailed_subset
from .digits import DigitsLT
from .hf import HFImageDataset, load_hf_dataset, select_by_split_file

__all__ = ["build_dataset"]


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
