"""Long-tailed subsets of labelled datasets: imbalance profiles, selection, counts, shot groups.

Everything here works on plain label lists, so it applies to any labelled dataset (split files,
Hugging Face datasets, scikit-learn digits, ...). Only numpy is needed.

References:
    * Exponential profile (CIFAR-10/100-LT): Cao et al., "Learning Imbalanced Datasets with
      Label-Distribution-Aware Margin Loss", NeurIPS 2019; used by KCL (Kang et al., ICLR 2021)
      and BCL (Zhu et al., CVPR 2022): ``n_i = int(n_max * (1 / IF) ** (i / (C - 1)))``.
    * Step profile: Buda et al. 2018 / Cao et al. 2019: ``mu`` of the classes are minority
      classes with ``n_max / IF`` images, the rest have ``n_max``.
    * Shot groups (many / medium / few): Liu et al., "Large-Scale Long-Tailed Recognition in an
      Open World", CVPR 2019: many > 100, few < 20 training images, medium otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "class_counts",
    "exp_profile",
    "make_longtailed",
    "shot_groups",
    "step_profile",
]


def _check_profile_args(num_classes: int, n_max: int, imbalance_factor: float) -> None:
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ValueError(f"n_max must be a positive integer, got {n_max!r}")
    if not math.isfinite(float(imbalance_factor)) or float(imbalance_factor) < 1.0:
        raise ValueError(
            f"imbalance_factor must be a finite number >= 1 (n_max / n_min), got {imbalance_factor!r}")


def _check_no_empty_class(counts: list[int], n_max: int, imbalance_factor: float) -> None:
    empty = [i for i, n in enumerate(counts) if n < 1]
    if empty:
        raise ValueError(
            f"imbalance profile gives 0 images to class(es) {empty[:10]} (n_max={n_max}, "
            f"imbalance_factor={imbalance_factor}); every class needs at least one image: use a "
            f"smaller imbalance_factor or a larger n_max (n_max / imbalance_factor must be >= 1)")


def exp_profile(num_classes: int, n_max: int, imbalance_factor: float) -> list[int]:
    """Exponential long-tailed class sizes, as for CIFAR-10/100-LT.

    ``n_i = int(n_max * (1 / IF) ** (i / (C - 1)))`` for ``i = 0 .. C-1``: class 0 is the head
    with ``n_max`` images, class ``C-1`` the tail with ``int(n_max / IF)`` images. For
    ``C = 100, n_max = 500, IF = 100`` this gives the 10,847 images of CIFAR-100-LT.

    Args:
        num_classes: number of classes ``C >= 1`` (a single class gets ``n_max``).
        n_max: size of the head class.
        imbalance_factor: ``IF = n_max / n_min >= 1``; 1 gives a balanced profile.

    Returns:
        ``C`` class sizes, non-increasing.

    Raises:
        ValueError: on bad arguments, or when a class would get 0 images.
    """
    _check_profile_args(num_classes, n_max, imbalance_factor)
    if num_classes == 1:
        return [int(n_max)]
    ratio = 1.0 / float(imbalance_factor)
    # Same expression (and float rounding) as the CIFAR-LT reference code, so counts match exactly.
    counts = [int(n_max * ratio ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    _check_no_empty_class(counts, n_max, imbalance_factor)
    return counts


def step_profile(num_classes: int, n_max: int, imbalance_factor: float, mu: float = 0.5) -> list[int]:
    """Step long-tailed class sizes: head classes get ``n_max``, minority classes ``n_max / IF``.

    The last ``C - int(C * (1 - mu))`` classes are minority classes (for ``mu = 0.5`` and even
    ``C`` exactly half, matching the LDAM reference code for odd ``C`` too).

    Args:
        num_classes: number of classes ``C >= 1``.
        n_max: size of a head class.
        imbalance_factor: ``n_max / n_minority >= 1``.
        mu: fraction of minority classes, in ``[0, 1]``.

    Returns:
        ``C`` class sizes, non-increasing.
    """
    _check_profile_args(num_classes, n_max, imbalance_factor)
    if not 0.0 <= float(mu) <= 1.0:
        raise ValueError(f"mu (fraction of minority classes) must be in [0, 1], got {mu!r}")
    n_head = int(num_classes * (1.0 - float(mu)))
    n_minor = int(n_max * (1.0 / float(imbalance_factor)))
    counts = [int(n_max)] * n_head + [n_minor] * (num_classes - n_head)
    _check_no_empty_class(counts, n_max, imbalance_factor)
    return counts


def _as_int_array(targets: Sequence[int], name: str = "targets") -> np.ndarray:
    arr = np.asarray(targets)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-d sequence of integer labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def class_counts(targets: Sequence[int], num_classes: int) -> list[int]:
    """Number of samples per class.

    Args:
        targets: integer labels in ``[0, num_classes)``.
        num_classes: number of classes (classes with no sample get 0).

    Returns:
        ``num_classes`` counts.

    Raises:
        ValueError: naming the first label out of range and its position.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    arr = _as_int_array(targets)
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"label {int(arr[i])} at position {i} is out of range [0, {num_classes}) "
            f"({bad.size} labels out of range)")
    return np.bincount(arr, minlength=num_classes).tolist()


def make_longtailed(targets: Sequence[int], counts: Sequence[int], seed: int = 0) -> list[int]:
    """Pick a long-tailed subset: ``counts[c]`` samples of each class ``c``, seeded.

    For each class the indices of its samples are shuffled with a generator seeded by
    ``(seed, c)`` and the first ``counts[c]`` are kept. Seeding per class makes each class's
    choice independent of the others, and subsets with smaller counts (same seed) are nested in
    those with larger counts.

    Args:
        targets: the full dataset's integer labels, ``targets[i]`` in ``[0, len(counts))``.
        counts: wanted number of samples per class (e.g. from :func:`exp_profile`).
        seed: random seed.

    Returns:
        Indices into ``targets``, sorted ascending (the subset keeps the dataset's order).

    Raises:
        ValueError: if a label is out of range, a count is negative, or a class has fewer
            samples than asked (naming the class, what is available and what was asked).
    """
    num_classes = len(counts)
    if num_classes < 1:
        raise ValueError("counts must name at least one class")
    wanted = []
    for c, n in enumerate(counts):
        if int(n) != n or n < 0:
            raise ValueError(f"counts[{c}] must be a non-negative integer, got {n!r}")
        wanted.append(int(n))
    arr = _as_int_array(targets)
    available = class_counts(arr, num_classes)  # also validates the label range
    short = [c for c in range(num_classes) if available[c] < wanted[c]]
    if short:
        c = short[0]
        raise ValueError(
            f"class {c} has {available[c]} samples but {wanted[c]} were asked "
            f"({len(short)} class(es) too small: {short[:10]}); lower n_max or the counts")
    order = np.argsort(arr, kind="stable")  # indices grouped by class, original order within
    starts = np.concatenate([[0], np.cumsum(available)])
    chosen = []
    for c in range(num_classes):
        if wanted[c] == 0:
            continue
        members = order[starts[c]:starts[c + 1]]
        rng = np.random.default_rng([int(seed), c])
        chosen.append(members[rng.permutation(members.size)[: wanted[c]]])
    if not chosen:
        return []
    return np.sort(np.concatenate(chosen)).tolist()


def shot_groups(class_counts: Sequence[int], many: int = 100, few: int = 20,
                relative: bool = False) -> list[str]:
    """Assign each class to the 'many', 'medium' or 'few' shot group by its training count.

    Absolute thresholds (default, Liu et al. 2019): ``'many'`` if ``count > many``, ``'few'``
    if ``count < few``, else ``'medium'`` (so with the defaults 20..100 images is medium; the
    KCL code puts exactly 20 in 'few': pass ``few=21`` to reproduce it).

    Relative thresholds (``relative=True``), for small datasets such as digits-LT where the
    absolute thresholds put every class in one group: the log-count range
    ``[log(min count), log(max count)]`` is split into three bands of equal width ``w``;
    a class is ``'few'`` if ``log(count) < log(min) + w``, ``'many'`` if
    ``log(count) > log(max) - w``, else ``'medium'``. ``many``/``few`` are ignored. Every
    count must be >= 1. If all counts are equal (no tail) every class is ``'many'``.
    Example: digits-LT IF100 counts ``[124, 74, 44, 26, 16, 9, 5, 3, 2, 1]`` give
    4 many / 3 medium / 3 few.

    Args:
        class_counts: training images per class.
        many: a class with more than ``many`` images is 'many'-shot.
        few: a class with fewer than ``few`` images is 'few'-shot.
        relative: use the log-band thresholds described above.

    Returns:
        One of ``'many'``, ``'medium'``, ``'few'`` per class.
    """
    counts = [int(n) for n in class_counts]
    if not counts:
        raise ValueError("class_counts is empty")
    for c, n in enumerate(counts):
        if n < 0:
            raise ValueError(f"class_counts[{c}] is negative: {n}")
    if not relative:
        if few > many:
            raise ValueError(f"few threshold ({few}) must not exceed the many threshold ({many})")
        return ["many" if n > many else "few" if n < few else "medium" for n in counts]
    zero = [c for c, n in enumerate(counts) if n < 1]
    if zero:
        raise ValueError(
            f"relative shot groups need every class count >= 1; class(es) {zero[:10]} have 0 images")
    lo, hi = math.log(min(counts)), math.log(max(counts))
    if hi - lo == 0.0:
        return ["many"] * len(counts)
    width = (hi - lo) / 3.0
    groups = []
    for n in counts:
        v = math.log(n)
        groups.append("few" if v < lo + width else "many" if v > hi - width else "medium")
    return groups
