"""Long-tailed classification metrics.

Conventions used everywhere in ``kcl_models.eval``:

- accuracies are **percentages** in [0, 100] (top-1, top-5, per-class, shot groups);
- ``balancedness`` takes per-class accuracies as **fractions** in [0, 1] (the paper's ``a_j``) and
  returns a value in [1/C, 1];
- the expected calibration error is a **fraction** in [0, 1];
- a class with no test sample has accuracy NaN in tensors and ``None`` in result dicts; it is left
  out of shot-group means and of the balancedness (it has no accuracy to compare);
- a shot group with no class has accuracy ``None`` (never NaN, so results stay valid JSON).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..data import shot_groups

__all__ = [
    "DEFAULT_SIGMA", "SHOT_GROUPS", "accuracy_topk", "per_class_accuracy", "shot_group_accuracy",
    "balancedness", "confusion_matrix", "expected_calibration_error", "compute_metrics",
]

# Balancedness kernel width (KCL Eq. 3). The paper calls sigma "a fixed parameter" without giving
# its value. With accuracies as fractions, sqrt(sigma) is the accuracy gap at which a pair of classes
# counts as clearly unbalanced: sigma = 0.01 puts that scale at 10 points, so a 1-point gap keeps
# 99% of the pair's weight, a 5-point gap 78%, a 10-point gap 37%, and a 20-point gap 2%. Gaps of
# 10-40 points are what separates many-shot from few-shot classes in long-tailed benchmarks, so
# this width spreads models across the [1/C, 1] range instead of saturating at either end.
DEFAULT_SIGMA = 0.01

SHOT_GROUPS = ("many", "medium", "few")


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor, fn: str) -> None:
    if logits.dim() != 2:
        raise ValueError(f"{fn}: logits must be [N, C], got shape {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"{fn}: targets must be [N] with N = {logits.shape[0]} (logits rows), "
                         f"got shape {tuple(targets.shape)}")


def _check_labels(targets: torch.Tensor, num_classes: int, fn: str, what: str = "targets") -> None:
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        bad = int(targets.min()) if int(targets.min()) < 0 else int(targets.max())
        raise ValueError(f"{fn}: {what} must lie in [0, {num_classes - 1}], found label {bad}")


def accuracy_topk(logits: torch.Tensor, targets: torch.Tensor,
                  ks: Sequence[int] = (1, 5)) -> list[float]:
    """Top-k accuracy in percent for each ``k`` in ``ks``.

    ``k`` larger than the number of classes is clipped to it (top-5 of a 3-class problem is top-3,
    i.e. 100%), matching timm's ``accuracy``. An empty input gives ``nan``.

    Shape:
        - logits: ``[N, C]``
        - targets: ``[N]`` integer labels
    """
    _check_logits_targets(logits, targets, "accuracy_topk")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"accuracy_topk: every k must be >= 1, got ks={tuple(ks)}")
    n, num_classes = logits.shape
    if n == 0:
        return [float("nan") for _ in ks]
    maxk = min(max(int(k) for k in ks), num_classes)
    top = logits.topk(maxk, dim=1).indices  # [N, maxk]
    correct = top.eq(targets.view(-1, 1).to(top.device))  # [N, maxk]
    return [float(correct[:, :min(int(k), num_classes)].any(dim=1).double().mean() * 100.0) for k in ks]


def per_class_accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Recall of every class in percent (NaN for a class with no test sample).

    Shape:
        - preds: ``[N]`` predicted labels
        - targets: ``[N]`` true labels
        - output: ``[num_classes]`` float
    """
    if preds.shape != targets.shape or preds.dim() != 1:
        raise ValueError(f"per_class_accuracy: preds and targets must both be [N], got "
                         f"{tuple(preds.shape)} and {tuple(targets.shape)}")
    if num_classes < 1:
        raise ValueError(f"per_class_accuracy: num_classes must be >= 1, got {num_classes}")
    _check_labels(targets, num_classes, "per_class_accuracy")
    targets = targets.long().cpu()
    correct = preds.long().cpu().eq(targets).double()
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, targets, correct)
    totals = torch.bincount(targets, minlength=num_classes).double()
    acc = hits / totals * 100.0  # 0/0 -> NaN for classes without test samples
    return acc.float()


def shot_group_accuracy(per_class_acc: torch.Tensor | Sequence[float],
                        groups: Sequence[str]) -> dict[str, float | None]:
    """Many/medium/few accuracy: the **mean of the per-class accuracies** of each group.

    This is the macro average used by the long-tailed literature (Liu et al. 2019, KCL, BCL); on the
    usual balanced test sets it equals the sample-weighted accuracy of the group. Classes whose
    accuracy is NaN (no test sample) are left out; a group with no class left gives ``None``.

    Shape:
        - per_class_acc: ``[C]`` (any unit; the output has the same unit)
        - groups: ``C`` strings from ``{'many', 'medium', 'few'}``
    """
    acc = torch.as_tensor(per_class_acc, dtype=torch.float64).flatten()
    if len(groups) != acc.numel():
        raise ValueError(f"shot_group_accuracy: got {acc.numel()} class accuracies but {len(groups)} "
                         f"group labels")
    unknown = sorted(set(groups) - set(SHOT_GROUPS))
    if unknown:
        raise ValueError(f"shot_group_accuracy: unknown group label(s) {unknown}; expected {SHOT_GROUPS}")
    out: dict[str, float | None] = {}
    for name in SHOT_GROUPS:
        vals = [float(a) for a, g in zip(acc.tolist(), groups) if g == name and not math.isnan(a)]
        out[name] = sum(vals) / len(vals) if vals else None
    return out


def balancedness(per_class_accuracy: torch.Tensor | Sequence[float], sigma: float = DEFAULT_SIGMA) -> float:
    """Balancedness ``beta`` of a feature space, KCL (Kang et al., ICLR 2021) Eq. 3.

    ``beta = 1/C^2 * sum_{i,j} exp(-|a_i - a_j|^2 / sigma)`` where ``a_j`` is the accuracy of a
    linear classifier on class ``j`` as a fraction in [0, 1]. It is 1 when all class accuracies are
    equal and tends to ``1/C`` when they are all far apart. Classes with NaN accuracy (no test
    sample) are left out, so ``C`` counts the classes that have one.

    Args:
        per_class_accuracy: class accuracies as fractions in [0, 1] (divide percentages by 100).
        sigma: kernel width; see ``DEFAULT_SIGMA`` for the project's choice (0.01: a 10-point gap
            keeps exp(-1) = 37% of a pair's weight).

    Shape:
        - per_class_accuracy: ``[C]``
        - output: scalar float
    """
    if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"balancedness: sigma must be a positive finite number, got {sigma!r}")
    a = torch.as_tensor(per_class_accuracy, dtype=torch.float64).flatten()
    a = a[~torch.isnan(a)]
    if a.numel() == 0:
        raise ValueError("balancedness: no class accuracy given (empty input or all NaN)")
    if float(a.min()) < 0.0 or float(a.max()) > 1.0:
        bad = float(a.max()) if float(a.max()) > 1.0 else float(a.min())
        raise ValueError(f"balancedness: accuracies must be fractions in [0, 1], found {bad}"
                         + ("; divide percentages by 100" if bad > 1.0 else ""))
    diff2 = (a[:, None] - a[None, :]).pow(2)  # [C, C]
    return float(torch.exp(-diff2 / sigma).mean())


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``M[t, p]`` of samples of true class ``t`` predicted as ``p``.

    Shape:
        - preds, targets: ``[N]``
        - output: ``[num_classes, num_classes]`` int64 (rows: true class, columns: prediction)
    """
    if preds.shape != targets.shape or preds.dim() != 1:
        raise ValueError(f"confusion_matrix: preds and targets must both be [N], got "
                         f"{tuple(preds.shape)} and {tuple(targets.shape)}")
    _check_labels(targets, num_classes, "confusion_matrix")
    _check_labels(preds, num_classes, "confusion_matrix", what="preds")
    idx = targets.long().cpu() * num_classes + preds.long().cpu()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error (Naeini et al. 2015; Guo et al. 2017, Eq. 3) with equal-width bins.

    ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` where the confidence of a sample is its top
    probability and bin ``b`` holds confidences in ``((b-1)/n_bins, b/n_bins]`` (the first bin also
    takes 0). Returned as a fraction in [0, 1]; ``nan`` for an empty input.

    Shape:
        - probs: ``[N, C]`` probabilities (softmax of the logits)
        - targets: ``[N]``
    """
    _check_logits_targets(probs, targets, "expected_calibration_error")
    if n_bins < 1:
        raise ValueError(f"expected_calibration_error: n_bins must be >= 1, got {n_bins}")
    if probs.shape[0] == 0:
        return float("nan")
    conf, pred = probs.double().max(dim=1)
    correct = pred.eq(targets.to(pred.device)).double()
    # ceil(conf * n) - 1 maps (lo, hi] to one bin; clamp puts conf = 0 into bin 0.
    bins = (torch.ceil(conf * n_bins) - 1).clamp_(0, n_bins - 1).long()
    conf_sum = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(0, bins, conf)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(0, bins, correct)
    # |sum acc - sum conf| / N per bin == |B|/N * |mean acc - mean conf|
    return float((acc_sum - conf_sum).abs().sum() / probs.shape[0])


def _none_if_nan(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def compute_metrics(logits: torch.Tensor, targets: torch.Tensor, train_class_counts: Sequence[int],
                    many: int = 100, few: int = 20, relative: bool = False,
                    sigma: float = DEFAULT_SIGMA, n_bins: int = 15) -> dict:
    """Every metric of a classifier's test-set logits, by shot group of the training counts.

    Args:
        logits: class scores.
        targets: true labels.
        train_class_counts: training images per class (defines the many/medium/few groups with
            ``kcl_models.data.shot_groups(counts, many, few, relative)``).
        many, few, relative: shot-group thresholds (many > ``many``, few < ``few``).
        sigma: balancedness kernel width (``DEFAULT_SIGMA``).
        n_bins: ECE bins.

    Returns:
        ``{"top1", "top5", "many", "medium", "few", "balancedness", "ece", "per_class", "groups",
        "train_count"}``: accuracies in percent (``None`` for an empty shot group), balancedness of
        the per-class accuracies, ECE as a fraction, per-class accuracy list (``None`` for a class
        without test samples), group label and training count per class.

    Shape:
        - logits: ``[N, C]``
        - targets: ``[N]``
        - train_class_counts: ``C`` ints
    """
    _check_logits_targets(logits, targets, "compute_metrics")
    num_classes = logits.shape[1]
    counts = [int(c) for c in train_class_counts]
    if len(counts) != num_classes:
        raise ValueError(f"compute_metrics: logits have {num_classes} classes but train_class_counts "
                         f"has {len(counts)} entries")
    if logits.shape[0] == 0:
        raise ValueError("compute_metrics: no test samples (empty logits)")
    _check_labels(targets, num_classes, "compute_metrics")
    logits = logits.detach().float().cpu()
    targets = targets.detach().long().cpu()
    top1, top5 = accuracy_topk(logits, targets, ks=(1, 5))
    preds = logits.argmax(dim=1)
    pca = per_class_accuracy(preds, targets, num_classes)
    groups = list(shot_groups(counts, many=many, few=few, relative=relative))
    group_acc = shot_group_accuracy(pca, groups)
    ece = expected_calibration_error(logits.softmax(dim=1), targets, n_bins=n_bins)
    return {
        "top1": top1,
        "top5": top5,
        "many": group_acc["many"],
        "medium": group_acc["medium"],
        "few": group_acc["few"],
        "balancedness": balancedness(pca / 100.0, sigma=sigma),
        "ece": ece,
        "per_class": [_none_if_nan(float(a)) for a in pca],
        "groups": groups,
        "train_count": counts,
    }
