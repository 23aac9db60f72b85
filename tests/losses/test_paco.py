"""PaCoLoss against a loop reference of the PaCo/GPaCo equation (METHODS.md), closed forms and errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from kcl_models.losses import PaCoLoss

COUNTS = [40, 20, 9, 3, 1]


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def paco_reference(center, feats, labels, counts, alpha, beta, gamma, tau, eps):
    """Loops over anchors, classes and contrast rows, exactly as METHODS.md reads."""
    a, c = center.shape
    m = feats.shape[0]
    prior = [n / sum(counts) for n in counts]
    per_anchor = []
    for i in range(a):
        y = int(labels[i])
        z = [center[i, k] + math.log(prior[k] + 1e-9) for k in range(c)]
        s = {j: feats[i] @ feats[j] / tau for j in range(m) if j != i}
        log_d = torch.log(sum(torch.exp(zk) for zk in z) + gamma * sum(torch.exp(v) for v in s.values()))
        positives = [j for j in s if int(labels[j]) == y]
        target = [(1 - eps) if k == y else eps / (c - 1) for k in range(c)]
        numer = beta * sum(target[k] * (z[k] - log_d) for k in range(c))
        numer = numer + alpha * sum((s[j] - log_d for j in positives), torch.zeros((), dtype=torch.float64))
        per_anchor.append(-numer / (beta + alpha * len(positives)))
    return sum(per_anchor) / a


def _paco_batch(b=4, k=6, d=5, seed=0):
    """PaCo layout: anchors = B queries; F = [q; k; queue] with labels [y; y; queue labels (-1 = empty)]."""
    q, key, queue = unit(b, d, seed=seed), unit(b, d, seed=seed + 1), unit(k, d, seed=seed + 2)
    y = torch.tensor([0, 2, 2, 4])[:b]
    queue_labels = torch.tensor([1, 2, -1, 0, 2, 3])[:k]
    return randn(b, len(COUNTS), seed=seed + 3), torch.cat([q, key, queue]), torch.cat([y, y, queue_labels])


CONFIGS = {
    "paco": dict(alpha=0.05, beta=1.0, gamma=1.0, temperature=0.2, smoothing=0.0),
    "strong_alpha": dict(alpha=0.7, beta=0.6, gamma=1.0, temperature=0.07, smoothing=0.0),
    "gamma": dict(alpha=0.3, beta=1.0, gamma=0.4, temperature=0.5, smoothing=0.0),
    "gpaco_smoothing": dict(alpha=0.045, beta=1.0, gamma=1.0, temperature=0.2, smoothing=0.1),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_loop_reference_paco_layout(name):
    cfg = CONFIGS[name]
    center, feats, labels = _paco_batch()
    center.requires_grad_()
    feats.requires_grad_()
    loss = PaCoLoss(COUNTS, **cfg)(center, feats, labels)
    ref = paco_reference(center, feats, labels, COUNTS, cfg["alpha"], cfg["beta"], cfg["gamma"],
                         cfg["temperature"], cfg["smoothing"])
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    for g, g_ref in zip(torch.autograd.grad(loss, (center, feats)), torch.autograd.grad(ref, (center, feats))):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-6)


def test_matches_loop_reference_gpaco_layout():
    # GPaCo: anchors = both views (2B rows, centre logits for both), then the queue.
    b, d = 3, 4
    q, key, queue = unit(b, d, seed=5), unit(b, d, seed=6), unit(5, d, seed=7)
    y = torch.tensor([1, 1, 3])
    labels = torch.cat([y, y, torch.tensor([1, 0, 4, -1, 3])])
    feats = torch.cat([q, key, queue]).requires_grad_()
    center = randn(2 * b, len(COUNTS), seed=8).requires_grad_()
    cfg = dict(alpha=0.05, beta=1.0, gamma=1.0, temperature=0.2, smoothing=0.2)
    loss = PaCoLoss(COUNTS, **cfg)(center, feats, labels)
    ref = paco_reference(center, feats, labels, COUNTS, 0.05, 1.0, 1.0, 0.2, 0.2)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    for g, g_ref in zip(torch.autograd.grad(loss, (center, feats)), torch.autograd.grad(ref, (center, feats))):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-6)


def test_gradcheck():
    center, feats, labels = _paco_batch(b=3, k=4, d=3, seed=11)
    center.requires_grad_()
    feats.requires_grad_()
    for cfg in (CONFIGS["paco"], CONFIGS["gpaco_smoothing"], CONFIGS["gamma"]):
        loss = PaCoLoss(COUNTS, **{**cfg, "alpha": 0.5})
        assert torch.autograd.gradcheck(lambda c, f, loss=loss: loss(c, f, labels), (center, feats))


def test_alpha_zero_gamma_zero_is_balanced_softmax_ce():
    center, feats, labels = _paco_batch()
    balanced = F.cross_entropy(center + torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS) + 1e-9),
                               labels[:4])
    loss = PaCoLoss(COUNTS, alpha=0.0, gamma=0.0)(center, feats, labels)
    torch.testing.assert_close(loss, balanced)
    # alpha = 0 with gamma = 1: the samples still sit in the denominator, so the loss is larger
    assert PaCoLoss(COUNTS, alpha=0.0, gamma=1.0)(center, feats, labels) > balanced + 1e-3
    # beta scales nothing when alpha = 0 (the centre target is the only positive)
    torch.testing.assert_close(PaCoLoss(COUNTS, alpha=0.0, beta=3.0, gamma=0.0)(center, feats, labels), balanced)


def test_anchor_without_sample_positive_is_finite_and_exact():
    center, feats, labels = _paco_batch()
    labels = labels.clone()
    labels[7] = 1  # anchor 3 (class 4) loses its own key as a positive: no other row is class 4
    assert (labels[torch.arange(14) != 3] == 4).sum() == 0
    center.requires_grad_()
    feats.requires_grad_()
    loss = PaCoLoss(COUNTS, alpha=0.5)(center, feats, labels)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, paco_reference(center, feats, labels, COUNTS, 0.5, 1.0, 1.0, 0.2, 0.0))
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, (center, feats)))


def test_empty_queue_slots_are_never_positives():
    center, feats, labels = _paco_batch()
    loss = PaCoLoss(COUNTS, alpha=0.5)
    base = loss(center, feats, labels)
    # an empty slot (label -1) keeps its denominator term but is no positive, whatever its feature
    swapped = labels.clone()
    swapped[10] = 2  # slot 2 of the queue (label -1) becomes a class-2 positive for two anchors
    assert not torch.allclose(loss(center, feats, swapped), base)
    torch.testing.assert_close(base, paco_reference(center, feats, labels, COUNTS, 0.5, 1.0, 1.0, 0.2, 0.0))


def test_contrast_rows_after_the_anchors_can_be_permuted():
    center, feats, labels = _paco_batch()
    loss = PaCoLoss(COUNTS, alpha=0.3)
    base = loss(center, feats, labels)
    rest = torch.randperm(feats.shape[0] - 4, generator=torch.Generator().manual_seed(1))
    perm = torch.cat([torch.arange(4), 4 + rest])
    torch.testing.assert_close(loss(center, feats[perm], labels[perm]), base)
    # permuting the anchors together with their centre logits changes nothing either
    pa = torch.tensor([2, 0, 3, 1])
    perm = torch.cat([pa, torch.arange(4, feats.shape[0])])
    torch.testing.assert_close(loss(center[pa], feats[perm], labels[perm]), base)


def test_zero_count_class_stays_finite():
    center, feats, labels = _paco_batch()
    counts = [40, 20, 9, 3, 0]  # class 4 (anchor 3's) absent from training: log(0 + 1e-9), as the authors
    loss = PaCoLoss(counts, alpha=0.05)(center, feats, labels)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, paco_reference(center, feats, labels, counts, 0.05, 1.0, 1.0, 0.2, 0.0))


def test_half_precision_inputs_are_upcast():
    center, feats, labels = _paco_batch()
    loss = PaCoLoss(COUNTS, alpha=0.05)(center.bfloat16(), feats.bfloat16(), labels)
    assert loss.dtype == torch.float32


def test_backward_twice_with_retained_graph():
    center, feats, labels = _paco_batch()
    center.requires_grad_()
    feats.requires_grad_()
    loss = PaCoLoss(COUNTS, alpha=0.2, smoothing=0.1)(center, feats, labels)
    loss.backward(retain_graph=True)
    first = center.grad.clone(), feats.grad.clone()
    loss.backward()
    torch.testing.assert_close(center.grad, 2 * first[0])
    torch.testing.assert_close(feats.grad, 2 * first[1])


@pytest.mark.parametrize("bad, match", [
    (dict(center=randn(4, 3)), "center_logits have 3 classes but class_counts has 5"),
    (dict(center=randn(0, 5)), "no anchors"),
    (dict(center=randn(15, 5)), "fewer than the 15 anchors"),
    (dict(feats=unit(14, 5)[None]), r"\[M, D\]"),
    (dict(labels=torch.arange(13)), r"labels must have shape \[14\]"),
    (dict(labels=torch.tensor([0, 2, 2, 5] + [0] * 10)), r"labels \(anchors\) must be < num_classes=5, got label 5"),
    (dict(labels=torch.tensor([0, -1, 2, 4] + [0] * 10)), r"labels \(anchors\) must be >= 0, got label -1"),
    (dict(labels=torch.tensor([0, 2, 2, 4] + [-2] + [0] * 9)), r"labels \(contrast rows\) must be >= -1, got label -2"),
])
def test_errors(bad, match):
    center, feats, labels = _paco_batch()
    args = dict(center=center, feats=feats, labels=labels) | bad
    with pytest.raises(ValueError, match=match):
        PaCoLoss(COUNTS, alpha=0.05)(args["center"], args["feats"], args["labels"])


def test_constructor_errors():
    with pytest.raises(ValueError, match="beta must be finite and > 0.0, got 0"):
        PaCoLoss(COUNTS, alpha=0.1, beta=0)
    with pytest.raises(ValueError, match="alpha must be finite and >= 0.0"):
        PaCoLoss(COUNTS, alpha=-0.1)
    with pytest.raises(ValueError, match="smoothing must be finite and >= 0.0 and <= 1.0"):
        PaCoLoss(COUNTS, alpha=0.1, smoothing=1.5)
    with pytest.raises(ValueError, match="smoothing needs at least 2 classes"):
        PaCoLoss([3], alpha=0.1, smoothing=0.1)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        PaCoLoss(COUNTS, alpha=0.1, temperature=0)
    with pytest.raises(ValueError, match="all zero"):
        PaCoLoss([0, 0], alpha=0.1)
    with pytest.raises(ValueError, match=r"finite and >= 0, bad classes \[1\]"):
        PaCoLoss([3, -1], alpha=0.1)


def test_validate_labels_false_skips_only_the_range_check():
    center, feats, labels = _paco_batch()
    checked = PaCoLoss(COUNTS, alpha=0.05)(center, feats, labels)
    assert PaCoLoss(COUNTS, alpha=0.05, validate_labels=False)(center, feats, labels).item() == checked.item()
    with pytest.raises(ValueError, match="center_logits have 3 classes"):
        PaCoLoss(COUNTS, alpha=0.05, validate_labels=False)(center[:, :3], feats, labels)
