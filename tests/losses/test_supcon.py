"""SupConLoss against a loop reference written from Khosla et al. Eq. 2, plus closed forms."""
import math

import pytest
import torch
import torch.nn.functional as F

from kcl_models.losses import SupConLoss


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def supcon_reference(features, labels, tau):
    """Loop over anchors, positives and denominator terms, straight from the equation."""
    b, v, _ = features.shape
    views = [features[i, j] for i in range(b) for j in range(v)]
    ys = [i if labels is None else int(labels[i]) for i in range(b) for _ in range(v)]
    per_anchor = []
    for i, zi in enumerate(views):
        others = [a for a in range(len(views)) if a != i]
        positives = [p for p in others if ys[p] == ys[i]]
        if not positives:
            continue  # no positive: excluded from the mean
        denom = sum(torch.exp(zi @ views[a] / tau) for a in others)
        terms = [torch.log(torch.exp(zi @ views[p] / tau) / denom) for p in positives]
        per_anchor.append(-sum(terms) / len(positives))
    return sum(per_anchor) / len(per_anchor) if per_anchor else features.sum() * 0.0


@pytest.mark.parametrize("v", [1, 2, 3])
@pytest.mark.parametrize("with_labels", [True, False])
def test_matches_loop_reference(v, with_labels):
    feats = unit(7, v, 5, seed=v).requires_grad_()
    labels = torch.tensor([0, 1, 1, 2, 0, 3, 1]) if with_labels else None
    loss = SupConLoss(temperature=0.3)(feats, labels)
    ref = supcon_reference(feats, labels, 0.3)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    g, = torch.autograd.grad(loss, feats)
    g_ref, = torch.autograd.grad(ref, feats)
    torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-6)


def test_gradcheck():
    feats = unit(4, 2, 3, seed=1).requires_grad_()
    labels = torch.tensor([0, 1, 0, 2])
    assert torch.autograd.gradcheck(lambda f: SupConLoss(0.5)(f, labels), (feats,))


def test_simclr_closed_form_identical_embeddings():
    # Every logit equals 1/tau, so each anchor's one positive has probability 1 / (N - 1).
    b, v = 5, 2
    feats = unit(1, 1, 8).expand(b, v, 8).contiguous()
    loss = SupConLoss(0.1)(feats, None)
    assert math.isclose(loss.item(), math.log(b * v - 1), rel_tol=1e-12)


def test_no_labels_equals_unique_labels():
    feats = unit(6, 2, 4, seed=3)
    assert torch.allclose(SupConLoss()(feats, None), SupConLoss()(feats, torch.arange(10, 16)))


def test_permutation_invariance():
    feats = unit(9, 2, 6, seed=4)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1, 0])
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    loss = SupConLoss()
    torch.testing.assert_close(loss(feats, labels), loss(feats[perm], labels[perm]))
    view_perm = feats.flip(1)  # swapping views changes nothing either
    torch.testing.assert_close(loss(feats, labels), loss(view_perm, labels))


def test_anchor_without_positive_is_excluded_and_never_nan():
    feats = unit(3, 1, 4, seed=5).requires_grad_()
    # V = 1 and all labels distinct: no anchor has a positive -> exact zero, gradient zero.
    loss = SupConLoss()(feats, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))
    # One singleton among pairs: equals the loss over the other anchors only.
    labels = torch.tensor([0, 0, 1])
    full = SupConLoss()(feats.detach(), labels)
    assert torch.isfinite(full)
    torch.testing.assert_close(full, supcon_reference(feats.detach(), labels, 0.07))
    single = SupConLoss()(unit(1, 1, 4), None)
    assert single.item() == 0.0


@pytest.mark.parametrize("bad, match", [
    (dict(features=torch.zeros(4, 8)), r"\[B, V, D\]"),
    (dict(labels=torch.zeros(3, dtype=torch.long)), r"labels must have shape \[4\]"),
    (dict(labels=torch.zeros(4)), "integer"),
    (dict(features=torch.zeros(4, 2, 8, dtype=torch.long)), "floating"),
])
def test_errors(bad, match):
    args = dict(features=unit(4, 2, 8), labels=torch.zeros(4, dtype=torch.long)) | bad
    with pytest.raises((ValueError, TypeError), match=match):
        SupConLoss()(**args)


@pytest.mark.parametrize("tau", [0, -0.1, float("nan"), float("inf")])
def test_bad_temperature(tau):
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(tau)


def test_backward_twice_with_retained_graph():
    feats = unit(5, 2, 4, seed=7).requires_grad_()
    loss = SupConLoss()(feats, torch.tensor([0, 1, 1, 2, 0]))
    loss.backward(retain_graph=True)
    first = feats.grad.clone()
    loss.backward()
    torch.testing.assert_close(feats.grad, 2 * first)
