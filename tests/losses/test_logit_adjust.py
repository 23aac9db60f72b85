"""LogitAdjustedLoss against a loop reference of Menon et al.'s logit-adjusted loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from kcl_models.losses import LogitAdjustedLoss


def la_reference(logits, labels, counts, tau):
    total = sum(counts)
    per_sample = []
    for i in range(logits.shape[0]):
        adjusted = [logits[i, c] + tau * math.log(counts[c] / total) for c in range(len(counts))]
        denom = sum(torch.exp(a) for a in adjusted)
        per_sample.append(-torch.log(torch.exp(adjusted[int(labels[i])]) / denom))
    return sum(per_sample) / len(per_sample)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_matches_loop_reference(tau):
    g = torch.Generator().manual_seed(0)
    counts = [500, 120, 40, 9, 2]
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 4, 3, 3, 1, 2, 0])
    loss = LogitAdjustedLoss(counts, tau=tau).double()(logits, labels)
    ref = la_reference(logits, labels, counts, tau)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(loss, logits)[0], torch.autograd.grad(ref, logits)[0])


def test_tau_zero_and_uniform_counts_are_plain_ce():
    logits, labels = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    ce = F.cross_entropy(logits, labels)
    torch.testing.assert_close(LogitAdjustedLoss([9, 5, 3, 1], tau=0.0)(logits, labels), ce)
    torch.testing.assert_close(LogitAdjustedLoss([7, 7, 7, 7])(logits, labels), ce)


def test_head_class_is_penalised():
    # Same logits, label = head class vs tail class: adjustment raises the tail's loss.
    loss = LogitAdjustedLoss(torch.tensor([1000, 10]))
    logits = torch.zeros(1, 2)
    assert loss(logits, torch.tensor([1])) > loss(logits, torch.tensor([0]))


def test_gradcheck():
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([3, 0, 1])
    crit = LogitAdjustedLoss([8, 4, 2, 1])
    assert torch.autograd.gradcheck(lambda x: crit(x, labels), (logits,))


def test_prior_is_not_in_state_dict_and_follows_device():
    crit = LogitAdjustedLoss([3, 1])
    assert crit.state_dict() == {}
    assert crit.to(torch.float64).adjustment.dtype == torch.float64


def test_errors():
    with pytest.raises(ValueError, match=r"zero training count .* classes \[1, 3\]"):
        LogitAdjustedLoss([5, 0, 2, 0])
    # tau = 0 ignores the prior, so zero counts are fine there (plain CE).
    logits = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(LogitAdjustedLoss([5, 0, 2, 0], tau=0.0)(logits, torch.tensor([1, 3])),
                               F.cross_entropy(logits, torch.tensor([1, 3])))
    with pytest.raises(ValueError, match="tau must be finite and >= 0"):
        LogitAdjustedLoss([1, 2], tau=-1)
    with pytest.raises(ValueError, match="non-empty 1-d"):
        LogitAdjustedLoss([])
    with pytest.raises(ValueError, match="finite and >= 0"):
        LogitAdjustedLoss([3, -1])
    crit = LogitAdjustedLoss([3, 2, 1])
    with pytest.raises(ValueError, match="logits have 4 classes but class_counts has 3"):
        crit(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="must be < num_classes=3, got label 3"):
        crit(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        crit(torch.zeros(3), torch.tensor([0]))


def test_validate_labels_false_skips_only_the_range_check():
    logits, labels = torch.randn(3, 3, dtype=torch.float64), torch.tensor([0, 2, 1])
    checked, unchecked = LogitAdjustedLoss([3, 2, 1]), LogitAdjustedLoss([3, 2, 1], validate_labels=False)
    assert checked(logits, labels).item() == unchecked(logits, labels).item()
    with pytest.raises(ValueError, match="logits have 4 classes"):
        unchecked(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(IndexError):  # cross_entropy's own check on CPU
        unchecked(logits, torch.tensor([0, 3, 1]))
