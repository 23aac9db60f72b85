"""Metrics against hand-computed cases."""
import math

import pytest
import torch

from kcl_models.eval.metrics import (
    DEFAULT_SIGMA,
    accuracy_topk,
    balancedness,
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    shot_group_accuracy,
)


def test_accuracy_topk_hand_case():
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.03, 0.07], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    targets = torch.tensor([1, 1, 0, 0])
    top1, top2, top5 = accuracy_topk(logits, targets, ks=(1, 2, 5))
    assert top1 == pytest.approx(50.0)  # rows 0 and 3
    assert top2 == pytest.approx(50.0)  # rows 1, 2: the true class is third
    assert top5 == pytest.approx(100.0)  # k clipped to C = 3
    with pytest.raises(ValueError, match="targets must be"):
        accuracy_topk(logits, targets[:3])


def test_per_class_accuracy_and_confusion():
    preds = torch.tensor([0, 0, 1, 1, 1, 2])
    targets = torch.tensor([0, 1, 1, 1, 2, 2])
    acc = per_class_accuracy(preds, targets, num_classes=4)
    assert acc[:3].tolist() == pytest.approx([100.0, 200 / 3, 50.0])
    assert math.isnan(acc[3])  # no test sample of class 3
    cm = confusion_matrix(preds, targets, 3)
    assert cm.tolist() == [[1, 0, 0], [1, 2, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match="label 5"):
        per_class_accuracy(preds, torch.tensor([0, 1, 1, 1, 2, 5]), num_classes=3)


def test_balancedness_equal_accuracies_is_one():
    assert balancedness([0.3] * 7) == pytest.approx(1.0)
    assert balancedness(torch.ones(100), sigma=1e-6) == pytest.approx(1.0)


def test_balancedness_two_class_closed_form():
    # beta = (2 * 1 + 2 * exp(-(0.1)^2 / 0.01)) / 4 = (1 + e^-1) / 2
    assert balancedness([1.0, 0.9], sigma=0.01) == pytest.approx((1 + math.exp(-1)) / 2, rel=1e-9)
    assert balancedness([0.8, 0.5], sigma=0.1) == pytest.approx((1 + math.exp(-0.9)) / 2, rel=1e-9)
    # far-apart classes tend to 1/C
    assert balancedness([0.0, 1.0, 0.5], sigma=1e-4) == pytest.approx(1 / 3, abs=1e-9)
    assert DEFAULT_SIGMA == 0.01


def test_balancedness_bad_input():
    with pytest.raises(ValueError, match="divide percentages by 100"):
        balancedness([90.0, 80.0])
    with pytest.raises(ValueError, match="sigma"):
        balancedness([0.5, 0.5], sigma=0.0)
    with pytest.raises(ValueError, match="no class accuracy"):
        balancedness([float("nan")])
    # NaN classes (no test sample) are left out
    assert balancedness([1.0, float("nan"), 0.9]) == pytest.approx((1 + math.exp(-1)) / 2)


def test_shot_groups_on_boundary_counts():
    # many > 100, few < 20: 100 and 20 are medium
    counts = [101, 100, 20, 19]
    logits = torch.eye(4)[[0, 1, 2, 3, 0, 0, 0, 3]]  # class 1, 2 wrong on their 2nd sample
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    m = compute_metrics(logits, targets, counts)
    assert m["groups"] == ["many", "medium", "medium", "few"]
    assert m["per_class"] == pytest.approx([100.0, 50.0, 50.0, 100.0])
    assert m["many"] == pytest.approx(100.0)
    assert m["medium"] == pytest.approx(50.0)  # mean of per-class accuracies
    assert m["few"] == pytest.approx(100.0)
    assert m["top1"] == pytest.approx(75.0)
    assert m["top5"] == pytest.approx(100.0)
    assert m["train_count"] == counts
    # beta over [1, .5, .5, 1]: 8 equal pairs, 8 pairs at gap 0.5
    assert m["balancedness"] == pytest.approx((8 + 8 * math.exp(-0.25 / 0.01)) / 16)


def test_shot_group_accuracy_empty_group_is_none():
    out = shot_group_accuracy([80.0, 60.0, float("nan")], ["many", "many", "few"])
    assert out == {"many": pytest.approx(70.0), "medium": None, "few": None}
    with pytest.raises(ValueError, match="unknown group"):
        shot_group_accuracy([1.0], ["rare"])
    with pytest.raises(ValueError, match="2 class accuracies but 1"):
        shot_group_accuracy([1.0, 2.0], ["many"])


def test_ece_closed_case():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]], dtype=torch.float64)
    targets = torch.tensor([0, 1, 1, 0])
    # bin (0.8, 0.9]: 2 samples, acc 0.5, conf 0.9 -> 2/4 * 0.4; bin (0.5, 0.6]: acc 1, conf .6 -> 2/4 * 0.4
    assert expected_calibration_error(probs, targets, n_bins=10) == pytest.approx(0.4)
    # one bin: |mean acc - mean conf| = |0.75 - 0.75|
    assert expected_calibration_error(probs, targets, n_bins=1) == pytest.approx(0.0, abs=1e-12)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == pytest.approx(0.0)


def test_compute_metrics_checks_and_missing_classes():
    logits = torch.randn(6, 3)
    with pytest.raises(ValueError, match="3 classes but train_class_counts has 2"):
        compute_metrics(logits, torch.zeros(6, dtype=torch.long), [5, 5])
    targets = torch.tensor([0, 0, 1, 1, 0, 1])  # class 2 never in the test set
    m = compute_metrics(logits, targets, [300, 50, 2])
    assert m["per_class"][2] is None
    assert m["few"] is None  # the only few class has no test sample
    assert 0.0 < m["balancedness"] <= 1.0
