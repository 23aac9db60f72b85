"""Long-tailed data: imbalance profiles, datasets, samplers and multi-view transforms.

Stands alone: needs torch, torchvision, timm, datasets, PIL, numpy and scikit-learn, never the
models, losses, eval or train packages.
"""
from .builder import build_dataset, build_datasets
from .datasets import (
    ImageFolderDataset,
    SkippedSample,
    SplitFileDataset,
    UnreadableImageError,
    check_all_classes_present,
    collate_skip,
    longtailed_subset,
)
from .digits import DIGITS_MEAN, DIGITS_STD, DigitsLT
from .hf import HFImageDataset, load_hf_dataset, select_by_split_file
from .longtail import class_counts, exp_profile, make_longtailed, shot_groups, step_profile
from .samplers import ClassBalancedSampler, SquareRootSampler, build_sampler
from .transforms import MultiViewTransform, build_eval_transform, build_train_transform, build_views

__all__ = [
    "DIGITS_MEAN",
    "DIGITS_STD",
    "ClassBalancedSampler",
    "DigitsLT",
    "HFImageDataset",
    "ImageFolderDataset",
    "MultiViewTransform",
    "SkippedSample",
    "SplitFileDataset",
    "SquareRootSampler",
    "UnreadableImageError",
    "build_dataset",
    "build_datasets",
    "build_eval_transform",
    "build_sampler",
    "build_train_transform",
    "build_views",
    "check_all_classes_present",
    "class_counts",
    "collate_skip",
    "exp_profile",
    "load_hf_dataset",
    "longtailed_subset",
    "make_longtailed",
    "select_by_split_file",
    "shot_groups",
    "step_profile",
]
