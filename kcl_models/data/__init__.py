"""Long-tailed data: imbalance profiles, datasets, samplers and multi-view transforms; GPU-resident
small-image datasets with batched augmentation (``to_tensor_dataset``, ``build_batched_views``,
``TensorLoader``).

Stands alone: needs torch, torchvision, timm, datasets, PIL, numpy and scikit-learn, never the
models, losses, eval or train packages.
"""
from .batched_views import build_batched_train_view, build_batched_views
from .builder import build_dataset, build_datasets
from .counter_rng import SampleKeys
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
from .tensor_data import TensorImageDataset, TensorLoader, to_tensor_dataset, tune_cpu_allocator
from .transforms import MultiViewTransform, build_eval_transform, build_train_transform, build_views

__all__ = [
    "DIGITS_MEAN",
    "DIGITS_STD",
    "ClassBalancedSampler",
    "DigitsLT",
    "HFImageDataset",
    "ImageFolderDataset",
    "MultiViewTransform",
    "SampleKeys",
    "SkippedSample",
    "SplitFileDataset",
    "SquareRootSampler",
    "TensorImageDataset",
    "TensorLoader",
    "UnreadableImageError",
    "build_batched_train_view",
    "build_batched_views",
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
    "to_tensor_dataset",
    "tune_cpu_allocator",
]
