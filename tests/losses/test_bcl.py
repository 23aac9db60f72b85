"""BCLLoss against a loop reference of the BCL equation (METHODS.md), closed forms and errors."""
import pytest
import torch
import torch.nn.functional as F

from kcl_models.losses import BCLLoss, SupConLoss


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def bcl_reference(features, labels, prototypes, tau):
    """Loops over anchors, classes and columns, exactly as the equation reads."""
    b, v, _ = features.shape
    cols = [(features[i, j], int(labels[i])) for i in range(b) for j in range(v)]
    cols += [(prototypes[c], c) for c in range(prototypes.shape[0])]
    per_anchor = []
    for i in range(b * v):
        zi, yi = cols[i]
        denom = 0.0
        for c in range(prototypes.shape[0]):
            a_c = [j for j in range(len(cols)) if j != i and cols[j][1] == c]  # A_c(i)
            denom = denom + sum(torch.exp(zi @ cols[j][0] / tau) for j in a_c) / len(a_c)
        pos = [j for j in range(len(cols)) if j != i and cols[j][1] == yi]  # P_i, prototype included
        per_anchor.append(-sum(zi @ cols[p][0] / tau - torch.log(denom) for p in pos) / len(pos))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("v", [1, 2, 3])
def test_matches_loop_reference(v):
    feats = unit(6, v, 5, seed=v).requires_grad_()
    protos = unit(4, 5, seed=10).requires_grad_()
    labels = torch.tensor([0, 2, 2, 0, 1, 2])  # class 3 only as a prototype (class-complement)
    loss = BCLLoss(4, temperature=0.2)(feats, labels, protos)
    ref = bcl_reference(feats, labels, protos, 0.2)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    grads = torch.autograd.grad(loss, (feats, protos))
    grads_ref = torch.autograd.grad(ref, (feats, protos))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-6)


def test_gradcheck():
    feats = unit(4, 2, 3, seed=1).requires_grad_()
    protos = unit(3, 3, seed=2).requires_grad_()
    labels = torch.tensor([0, 1, 0, 0])
    assert torch.autograd.gradcheck(lambda f, p: BCLLoss(3, 0.5)(f, labels, p), (feats, protos))


def test_one_sample_per_class_single_view_closed_form():
    # B = C, V = 1, every class once. For anchor i of class y: P_i = {p_y}, A_y(i) = {p_y}
    # (|A_y| = 1), A_c(i) = {z_c, p_c} (|A_c| = 2) for c != y, so
    #   L_i = -s(z_i, p_y) + log( exp(s(z_i, p_y)) + sum_{c != y} (exp(s(z_i, z_c)) + exp(s(z_i, p_c))) / 2 ).
    c, d, tau = 5, 6, 0.3
    perm = torch.tensor([3, 0, 4, 1, 2])
    feats, protos = unit(c, 1, d, seed=1), unit(c, d, seed=2)
    z = feats[:, 0]
    s_zp, s_zz = z @ protos.T / tau, z @ z.T / tau  # rows: anchors; columns of s_zz: anchors
    expected = []
    for i in range(c):
        y = int(perm[i])
        others = sum((torch.exp(s_zz[i, j]) + torch.exp(s_zp[i, int(perm[j])])) / 2 for j in range(c) if j != i)
        expected.append(-s_zp[i, y] + torch.log(torch.exp(s_zp[i, y]) + others))
    loss = BCLLoss(c, tau)(feats, perm, protos)
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    # If each sample sits on its prototype (z_i = p_{y_i}), the pair (z_c, p_c) averages to
    # exp(s(z_i, p_c)) and BCL is exactly softmax cross-entropy over the prototypes.
    on_proto = protos[perm][:, None, :]
    ce = F.cross_entropy(protos[perm] @ protos.T / tau, perm)
    torch.testing.assert_close(BCLLoss(c, tau)(on_proto, perm, protos), ce)


def test_permutation_invariance():
    feats, protos = unit(8, 2, 4, seed=3), unit(5, 4, seed=4)
    labels = torch.tensor([0, 1, 1, 4, 0, 0, 2, 1])
    g = torch.Generator().manual_seed(0)
    loss = BCLLoss(5)
    base = loss(feats, labels, protos)
    pb = torch.randperm(8, generator=g)
    torch.testing.assert_close(loss(feats[pb], labels[pb], protos), base)
    torch.testing.assert_close(loss(feats.flip(1), labels, protos), base)
    # Renaming the classes (prototype rows move with their labels) changes nothing.
    pc = torch.randperm(5, generator=g)  # new class id of old class c is pc[c]
    new_protos = torch.empty_like(protos)
    new_protos[pc] = protos
    torch.testing.assert_close(loss(feats, pc[labels], new_protos), base)


def test_differs_from_supcon_but_finite_for_rare_classes():
    feats, protos = unit(6, 2, 4, seed=5), unit(6, 4, seed=6)
    labels = torch.arange(6)  # every class once: SupCon has the other view only
    loss = BCLLoss(6)(feats, labels, protos)
    assert torch.isfinite(loss)
    assert not torch.allclose(loss, SupConLoss()(feats, labels))
    single = BCLLoss(1)(unit(1, 1, 4), torch.zeros(1, dtype=torch.long), unit(1, 4))
    assert torch.isfinite(single)  # one anchor, one prototype: L = -s + log exp(s) = 0
    assert abs(single.item()) < 1e-12


def test_half_precision_inputs_are_upcast():
    loss = BCLLoss(3)(unit(4, 2, 8).bfloat16(), torch.tensor([0, 1, 2, 0]), unit(3, 8).bfloat16())
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("bad, match", [
    (dict(features=torch.zeros(4, 8, dtype=torch.float64)), r"\[B, V, D\]"),
    (dict(prototypes=unit(4, 8)), "prototypes has 4 rows but num_classes is 3"),
    (dict(prototypes=unit(3, 7)), "prototype dim 7 does not match feature dim 8"),
    (dict(labels=torch.tensor([0, 1, 3, 0])), "must be < num_classes=3, got label 3"),
    (dict(labels=torch.tensor([0, -1, 2, 0])), "must be >= 0, got label -1"),
    (dict(labels=torch.tensor([0, 1, 2])), r"labels must have shape \[4\]"),
])
def test_errors(bad, match):
    args = dict(features=unit(4, 2, 8), labels=torch.tensor([0, 1, 2, 0]), prototypes=unit(3, 8)) | bad
    with pytest.raises(ValueError, match=match):
        BCLLoss(3)(**args)


def test_constructor_errors():
    with pytest.raises(ValueError, match="num_classes"):
        BCLLoss(0)
    with pytest.raises(ValueError, match="temperature must be finite and > 0, got -1"):
        BCLLoss(3, temperature=-1)


def test_backward_twice_with_retained_graph():
    feats = unit(5, 2, 4, seed=7).requires_grad_()
    protos = unit(3, 4, seed=8).requires_grad_()
    loss = BCLLoss(3)(feats, torch.tensor([0, 1, 1, 2, 0]), protos)
    loss.backward(retain_graph=True)
    first = feats.grad.clone(), protos.grad.clone()
    loss.backward()
    torch.testing.assert_close(feats.grad, 2 * first[0])
    torch.testing.assert_close(protos.grad, 2 * first[1])


def test_empty_batch_error():
    with pytest.raises(ValueError, match="empty batch"):
        BCLLoss(3)(unit(0, 2, 4), torch.zeros(0, dtype=torch.long), unit(3, 4))


def test_validate_labels_false_skips_only_the_range_check():
    feats, protos, labels = unit(4, 2, 8), unit(3, 8), torch.tensor([0, 1, 2, 0])
    assert BCLLoss(3, validate_labels=False)(feats, labels, protos).item() == BCLLoss(3)(feats, labels, protos).item()
    with pytest.raises(ValueError, match="prototypes has 4 rows"):  # shape checks stay
        BCLLoss(3, validate_labels=False)(feats, labels, unit(4, 8))
    with pytest.raises((IndexError, RuntimeError)):  # an unchecked bad label still fails, inside indexing
        BCLLoss(3, validate_labels=False)(feats, torch.tensor([0, 1, 3, 0]), protos)
