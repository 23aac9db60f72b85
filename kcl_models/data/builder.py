"""``build_dataset``: one entry point for every dataset by name (digits-LT, split files, HF, image folders)."""
from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .datasets import ImageFolderDataset, SplitFileDataset, _check_on_error, longtailed_subset
from .digits import DigitsLT
from .hf import HFImageDataset, load_hf_dataset, select_by_split_file
from .synthetic import SyntheticLT

__all__ = ["build_dataset", "build_datasets", "dataset_kind"]

logger = logging.getLogger(__name__)

# Options each dataset takes besides the named parameters of build_dataset; anything else is refused
# with a one-line error (a raw TypeError from deep inside a constructor names neither the option nor
# the fix). ``on_error`` is accepted everywhere so one set of options serves every dataset.
_HF_LOAD_KW = ("name", "data_dir", "data_files", "keep_in_memory", "num_proc", "download_mode",
               "verification_mode")
_OPTIONS = {
    "digits-lt": ("test_per_class", "img_size", "val_per_class", "on_error"),
    "synthetic": ("n_max", "img_size", "test_per_class", "val_per_class", "on_error"),
    "split-file": ("on_error", "check_files", "classes", "require_all_classes"),
    "hf": ("image_column", "label_column", "cache_dir", "revision", "on_error", "classes", "split_key",
           "profile", "n_max", "mu", "load_kwargs") + _HF_LOAD_KW,
    "imagefolder": ("on_error", "extensions", "profile", "n_max", "mu"),
    "imagefolder+split-file": ("on_error", "check_files", "classes", "require_all_classes"),
}


def _maybe_longtail(dataset: Any, split: str, imbalance_factor: float | None, seed: int,
                    profile: str, n_max: int | None, mu: float) -> Any:
    if split != "train" or imbalance_factor is None or float(imbalance_factor) <= 1.0:
        return dataset
    return longtailed_subset(dataset, imbalance_factor, profile=profile, n_max=n_max, seed=seed, mu=mu)


def dataset_kind(name: str) -> str:
    """``'digits-lt'``, ``'split-file'``, ``'hf'`` or ``'imagefolder'`` for a dataset name (ValueError otherwise)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    low = name.lower()
    if low in ("digits-lt", "digits_lt", "digitslt"):
        return "digits-lt"
    if low == "synthetic":
        return "synthetic"
    if low == "split-file":
        return "split-file"
    if low.startswith("hf:"):
        return "hf"
    if low.startswith("imagefolder:"):
        return "imagefolder"
    raise ValueError(
        f"unknown dataset {name!r}; expected 'digits-lt', 'synthetic', 'split-file', "
        f"'hf:<hub name or local path>' or 'imagefolder:<path>'")


def _check_options(name: str, kind: str, kw: Mapping[str, Any]) -> None:
    allowed = _OPTIONS[kind]
    unknown = sorted(k for k in kw if k not in allowed)
    if not unknown:
        return
    key = unknown[0]
    if key == "trust_remote_code":
        raise ValueError("data option 'trust_remote_code' is refused: remote dataset code is never run "
                         "(use a dataset with parquet/arrow files or a local folder)")
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(
        f"data option '{key}' does not apply to dataset '{name}' (its options: {', '.join(sorted(allowed))}); "
        f"{hint}remove it from data_kwargs (or the call) or choose the dataset it belongs to")


def _check_num_classes(num_classes: Any) -> int | None:
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def _maybe_longtail(dataset: Any, split: str, imbalance_factor: float | None, seed: int,
                    profile: str, n_max: int | None, mu: float) -> Any:
    if split != "train" or imbalance_factor is None or float(imbalance_factor) <= 1.0:
        return dataset
    return longtailed_subset(dataset, imbalance_factor, profile=profile, n_max=n_max, seed=seed, mu=mu)


def build_dataset(name: str, split: str, transform: Callable | None = None, root: str | None = None,
                  split_file: str | None = None, imbalance_factor: float | None = 100.0, seed: int = 0,
                  num_classes: int | None = None, as_tensor: bool = False, device: Any = None, **kw: Any) -> Any:
    """Build a dataset by name.

    * ``'digits-lt'``: :class:`DigitsLT`, splits ``'train'``, ``'val'``, ``'test'`` (``kw``:
      ``test_per_class``, ``img_size``, ``val_per_class``; ``root`` and ``on_error`` are
      accepted and ignored, so one set of options serves every dataset).
    * ``'synthetic'``: :class:`.synthetic.SyntheticLT`, random images in a recipe's shape
      (``num_classes``, default 100; ``kw``: ``n_max``, ``img_size``, ``test_per_class``, ``val_per_class``).
    * ``'split-file'``: :class:`SplitFileDataset` of ``root`` + ``split_file`` (the split file
      defines the long tail; ``kw``: ``on_error``, ``check_files``, ``classes``,
      ``require_all_classes``).
    * ``'hf:<hub name or local path>'``: :func:`load_hf_dataset` + :class:`HFImageDataset`
      (``kw``: ``image_column``, ``label_column``, ``cache_dir``, ``revision``, ``on_error``,
      ``classes``, ``split_key``, ``profile``, ``n_max``, ``mu``; ``load_dataset`` options
      ``name``, ``data_dir``, ``data_files``, ``keep_in_memory``, ``num_proc``,
      ``download_mode``, ``verification_mode``, or any other in ``load_kwargs={...}``).
    * ``'imagefolder:<path>'``: :class:`ImageFolderDataset` of ``<path>/<split>`` if that folder
      exists, else of ``<path>`` (``kw``: ``on_error``, ``extensions``, ``profile``, ``n_max``,
      ``mu``; with ``split_file`` those of ``'split-file'``).

    ``num_classes`` (every dataset): the number of classes; labels outside ``[0, num_classes)`` are
    an error naming the split file and line (``split-file``, split files of ``hf:`` and
    ``imagefolder:``) or the row; digits-LT has 10. An option a dataset does not take is a
    ValueError naming the option and the options it takes.

    For ``hf:`` and ``imagefolder:``: with ``split_file`` the rows it lists are used (see
    :func:`select_by_split_file`; ``imagefolder:`` reads it as a :class:`SplitFileDataset` under
    the folder); otherwise the ``'train'`` split is made long-tailed with the ``profile``
    (default ``'exp'``) unless ``imbalance_factor`` is None or <= 1, and other splits are used
    whole. To build the train split and its evaluation splits together, with the evaluation
    splits' labels checked against the training classes, use :func:`build_datasets`.

    ``as_tensor=True`` returns the same split (same images, long tail and checks) decoded once into
    a :class:`.tensor_data.TensorImageDataset` on ``device`` (default the CPU), for the batched views
    of :mod:`.batched_views`; ``transform`` must then be None. For other sizes than the stored one,
    call :func:`.tensor_data.to_tensor_dataset` with ``size``.
    """
    if as_tensor:
        if transform is not None:
            raise ValueError("as_tensor=True returns undecorated uint8 images: pass transform=None and augment "
                             "with build_batched_views")
        from .tensor_data import to_tensor_dataset

        ds = build_dataset(name, split, None, root, split_file, imbalance_factor, seed, num_classes, **kw)
        return to_tensor_dataset(ds, device=device)
    if device is not None:
        raise ValueError("device= applies to as_tensor=True datasets only")
    kind = dataset_kind(name)
    num_classes = _check_num_classes(num_classes)
    _check_options(name, "imagefolder+split-file" if kind == "imagefolder" and split_file is not None else kind, kw)
    if kind == "digits-lt":
        if split_file is not None:
            raise ValueError("dataset 'digits-lt' takes no split_file (its splits are built in)")
        if num_classes is not None and num_classes != 10:
            raise ValueError(f"dataset 'digits-lt' has 10 classes, but num_classes={num_classes} was given")
        # in-memory data is never unreadable: accept (and ignore) the image datasets' policy
        _check_on_error(kw.pop("on_error", "raise"))
        return DigitsLT(split, imbalance_factor=1.0 if imbalance_factor is None else imbalance_factor,
                        seed=seed, transform=transform, **kw)
    if kind == "synthetic":  # recipe-shaped random images (benchmarks, recipe smoke tests)
        if split_file is not None:
            raise ValueError("dataset 'synthetic' takes no split_file (its splits are built in)")
        _check_on_error(kw.pop("on_error", "raise"))
        if num_classes is not None:
            kw["num_classes"] = num_classes
        return SyntheticLT(split, imbalance_factor=imbalance_factor or 1.0, seed=seed, transform=transform, **kw)
    if kind == "split-file":
        if root is None or split_file is None:
            raise ValueError("dataset 'split-file' needs both root= (image root) and split_file=")
        return SplitFileDataset(root, split_file, transform=transform, num_classes=num_classes, split=split, **kw)
    profile = kw.pop("profile", "exp")
    n_max = kw.pop("n_max", None)
    mu = kw.pop("mu", 0.5)
    if kind == "hf":
        target = name[3:]
        image_column = kw.pop("image_column", "image")
        label_column = kw.pop("label_column", "label")
        split_key = kw.pop("split_key", "auto")
        wrap_kw = {k: kw.pop(k) for k in ("on_error", "classes") if k in kw}
        load_kw = dict(kw.pop("load_kwargs", None) or {})
        if "trust_remote_code" in load_kw:
            _check_options(name, "hf", {"trust_remote_code": True})
        hf = load_hf_dataset(target, split, **kw, **load_kw)
        if split_file is not None:
            hf = select_by_split_file(hf, split_file, key=split_key, image_column=image_column,
                                      label_column=label_column, num_classes=num_classes)
        ds = HFImageDataset(hf, transform=transform, image_column=image_column, label_column=label_column,
                            num_classes=num_classes, **wrap_kw)
        if split_file is not None:
            return ds
        return _maybe_longtail(ds, split, imbalance_factor, seed, profile, n_max, mu)
    path = os.path.expanduser(name[len("imagefolder:"):])
    folder = os.path.join(path, split) if os.path.isdir(os.path.join(path, split)) else path
    if split_file is not None:
        return SplitFileDataset(folder if root is None else root, split_file, transform=transform,
                                num_classes=num_classes, split=split, **kw)
    ds = ImageFolderDataset(folder, transform=transform, **kw)
    if num_classes is not None and ds.num_classes != num_classes:
        raise ValueError(f"image folder {folder!r} has {ds.num_classes} class folders, but num_classes="
                         f"{num_classes} was given")
    return _maybe_longtail(ds, split, imbalance_factor, seed, profile, n_max, mu)


def _resolve_split(kind: str, split: str, value: str | None) -> tuple[str, str | None]:
    """A split given as a split file or (``hf:``/``imagefolder:`` data) a split name -> (name, file)."""
    if value is None:
        return split, None
    p = Path(str(value)).expanduser()
    if kind in ("split-file", "digits-lt", "synthetic") or p.is_file():
        return split, str(value)  # digits-LT refuses it with its own message
    if p.suffix == ".txt" or os.sep in str(value) or "/" in str(value):
        raise FileNotFoundError(f"{split} split: split file {value!r} not found")
    return str(value), None


def build_datasets(name: str, splits: Mapping[str, Mapping[str, Any] | None], *,
                   num_classes: int | None = None, **common: Any) -> dict[str, Any]:
    """Build the training split and its evaluation splits together, checking every split up front.

    ``splits`` maps a split's role (``'train'``, required, and e.g. ``'test'``, ``'val'``) to its
    options: ``transform``, ``split_file`` and any :func:`build_dataset` option that differs from
    ``common``. ``split_file`` is a split file, or for ``hf:`` / ``imagefolder:`` data a split name
    (``'validation'``: the HF split or sub-folder of that name); a ``.txt`` or path that does not
    exist is a FileNotFoundError. The train split is built first, with ``num_classes`` if given;
    every other split is then built with the training split's class count, so a label outside the
    training classes is an error naming the split file and line (or the row) before any training,
    and its class names must equal the training split's. An evaluation split may lack classes
    (a warning names them; their per-class accuracy is undefined) unless its options say
    ``require_all_classes=True``.

    Example (what a trainer calls)::

        ds = build_datasets(cfg.data, {"train": {"transform": views, "split_file": cfg.train_split},
                                       "test": {"transform": eval_tf, "split_file": cfg.test_split}},
                            num_classes=cfg.num_classes, root=cfg.data_root, seed=cfg.seed,
                            imbalance_factor=cfg.imbalance_factor, **cfg.data_kwargs)

    Returns:
        ``{role: dataset}`` in the order of ``splits``.
    """
    if "train" not in splits:
        raise ValueError(f"build_datasets needs a 'train' split (its classes define the others), got {list(splits)}")
    kind = dataset_kind(name)
    order = ["train"] + [s for s in splits if s != "train"]
    built: dict[str, Any] = {}
    for role in order:
        opts = dict(common)
        opts.update(splits[role] or {})
        split, split_file = _resolve_split(kind, role, opts.pop("split_file", None))
        if role == "train":
            ds = build_dataset(name, split, split_file=split_file, num_classes=num_classes, **opts)
        else:
            train = built["train"]
            strict = opts.pop("require_all_classes", None)
            if kind == "split-file" or (kind == "imagefolder" and split_file is not None):
                opts["require_all_classes"] = bool(strict)
            ds = build_dataset(name, split, split_file=split_file, num_classes=train.num_classes, **opts)
            if list(ds.classes) != list(train.classes):
                a, b = list(ds.classes), list(train.classes)
                diff = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
                raise ValueError(
                    f"the {role} split of '{name}' has other classes than the training split: class {diff} is "
                    f"{_at(ds.classes, diff)!r} there but {_at(train.classes, diff)!r} in train "
                    f"({len(ds.classes)} vs {len(train.classes)} classes); evaluate on data with the training classes")
            counts = ds.class_counts()
            missing = [c for c, n in enumerate(counts) if n == 0]
            if missing and strict:
                raise ValueError(f"the {role} split of '{name}' has no image of classes {missing[:20]}")
            if missing:
                logger.warning("the %s split of '%s' has no image of %d class(es) %s: their per-class "
                               "accuracy is undefined", role, name, len(missing), missing[:20])
        built[role] = ds
    return {role: built[role] for role in splits}


def _at(seq: Any, i: int) -> Any:
    return seq[i] if i < len(seq) else None
