"""KCLLoss against a loop reference of Kang et al. Eq. 4, the positive draw, FCL and errors."""
import itertools
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from kcl_models.losses import KCLLoss
from kcl_models.losses.kcl import draw_queue_positives


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def kcl_reference(query, key, queue, positives, tau):
    """Eq. 4 with explicit positive sets: ``positives[i]`` lists queue indices for anchor i."""
    per_anchor = []
    for i in range(query.shape[0]):
        q = query[i]
        denom = torch.exp(q @ key[i] / tau) + sum(torch.exp(q @ queue[j] / tau) for j in range(queue.shape[0]))
        terms = [torch.log(torch.exp(q @ key[i] / tau) / denom)]
        terms += [torch.log(torch.exp(q @ queue[j] / tau) / denom) for j in positives[i]]
        per_anchor.append(-sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


def all_same_class(labels, queue_labels):
    return [[j for j in range(len(queue_labels)) if int(queue_labels[j]) == int(y)] for y in labels]


@pytest.fixture
def data():
    b, k, d = 6, 20, 5
    query, key, queue = unit(b, d, seed=1), unit(b, d, seed=2), unit(k, d, seed=3)
    labels = torch.tensor([0, 1, 2, 0, 3, 1])  # class 3 is absent from the queue
    queue_labels = torch.tensor([0, 1, 0, 2, -1, 0, 1, 0, 2, 0, -1, 1, 0, 0, 2, 4, 0, 1, 0, -1])
    return query, key, labels, queue, queue_labels


def test_fcl_matches_reference(data):
    query, key, labels, queue, queue_labels = (t.clone() for t in data)
    for t in (query, key, queue):
        t.requires_grad_()
    loss = KCLLoss(k=None, temperature=0.2)(query, key, labels, queue, queue_labels)
    ref = kcl_reference(query, key, queue, all_same_class(labels, queue_labels), 0.2)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    grads = torch.autograd.grad(loss, (query, key, queue))
    grads_ref = torch.autograd.grad(ref, (query, key, queue))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_random_draw_matches_reference_with_same_draw(data, k):
    query, key, labels, queue, queue_labels = data
    loss = KCLLoss(k=k, temperature=0.2)(query, key, labels, queue, queue_labels,
                                         generator=torch.Generator().manual_seed(7))
    index, valid = draw_queue_positives(labels, queue_labels, k, torch.Generator().manual_seed(7))
    positives = [index[i][valid[i]].tolist() for i in range(len(labels))]
    ref = kcl_reference(query, key, queue, positives, 0.2)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)


def test_draw_properties(data):
    _, _, labels, _, queue_labels = data
    k = 3
    counts = Counter(queue_labels.tolist())
    index, valid = draw_queue_positives(labels, queue_labels, k, torch.Generator().manual_seed(0))
    for i, y in enumerate(labels.tolist()):
        chosen = index[i][valid[i]].tolist()
        assert len(chosen) == min(k, counts.get(y, 0))  # fewer than k -> all available
        assert len(set(chosen)) == len(chosen)  # without replacement
        assert all(int(queue_labels[j]) == y for j in chosen)  # same class, never an empty slot


def test_draw_is_uniform_over_subsets():
    # Class 0 has 5 queue entries; k = 2 -> each of the 10 pairs has probability 1/10.
    queue_labels = torch.tensor([1, 0, 0, 2, 0, 0, 1, 0])
    labels = torch.zeros(2000, dtype=torch.long)
    index, valid = draw_queue_positives(labels, queue_labels, 2, torch.Generator().manual_seed(0))
    assert bool(valid.all())
    pairs = Counter(tuple(sorted(row)) for row in index.tolist())
    expected = set(itertools.combinations([1, 2, 4, 5, 7], 2))
    assert set(pairs) == expected
    for n in pairs.values():  # 200 expected, sd ~13.4: a 5-sd band
        assert 133 <= n <= 267


def test_reproducible_with_generator_and_differs_across_seeds():
    b, k, d = 32, 256, 8
    query, key, queue = unit(b, d, seed=1), unit(b, d, seed=2), unit(k, d, seed=3)
    labels = torch.randint(0, 4, (b,), generator=torch.Generator().manual_seed(0))
    queue_labels = torch.randint(0, 4, (k,), generator=torch.Generator().manual_seed(1))
    loss = KCLLoss(k=6)

    def run(seed):
        return loss(query, key, labels, queue, queue_labels, generator=torch.Generator().manual_seed(seed))

    assert run(0).item() == run(0).item()
    assert run(0).item() != run(1).item()


def test_k_covering_every_class_equals_fcl(data):
    query, key, labels, queue, queue_labels = data
    fcl = KCLLoss(k=None)(query, key, labels, queue, queue_labels)
    max_count = max(Counter(queue_labels.tolist()).values())
    for k in (max_count, max_count + 5):
        torch.testing.assert_close(KCLLoss(k=k)(query, key, labels, queue, queue_labels), fcl)
    # (the random path for classes with <= k entries is covered by test_draw_properties)


def test_no_queue_positive_is_moco_infonce(data):
    query, key, _, queue, queue_labels = data
    labels = torch.full((query.shape[0],), 3)  # class 3 is not in the queue
    tau = 0.07
    l_pos = (query * key).sum(1) / tau
    l_neg = query @ queue.T / tau
    infonce = F.cross_entropy(torch.cat([l_pos[:, None], l_neg], 1), torch.zeros(len(labels), dtype=torch.long))
    torch.testing.assert_close(KCLLoss(k=6, temperature=tau)(query, key, labels, queue, queue_labels), infonce)


def test_empty_slots_never_positive():
    query, key, queue = unit(4, 3, seed=1), unit(4, 3, seed=2), unit(10, 3, seed=3)
    queue_labels = torch.full((10,), -1)
    labels = torch.zeros(4, dtype=torch.long)
    index, valid = draw_queue_positives(labels, queue_labels, None)
    assert valid.numel() == 0
    loss = KCLLoss(k=None)(query, key, labels, queue, queue_labels)
    assert torch.isfinite(loss)


def test_permutation_invariance(data):
    query, key, labels, queue, queue_labels = data
    g = torch.Generator().manual_seed(0)
    pb, pk = torch.randperm(len(labels), generator=g), torch.randperm(len(queue_labels), generator=g)
    loss = KCLLoss(k=None)
    torch.testing.assert_close(loss(query, key, labels, queue, queue_labels),
                               loss(query[pb], key[pb], labels[pb], queue[pk], queue_labels[pk]))


def test_gradcheck(data):
    query, key, labels, queue, queue_labels = (t[:4].clone() if t.shape[0] == 6 else t for t in data)
    queue, queue_labels = queue[:8].clone(), queue_labels[:8]
    inputs = tuple(t.requires_grad_() for t in (query, key, queue))

    def fn(q, k, z):
        return KCLLoss(k=2, temperature=0.5)(q, k, labels, z, queue_labels,
                                             generator=torch.Generator().manual_seed(3))

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradcheck(lambda q, k, z: KCLLoss(None, 0.5)(q, k, labels, z, queue_labels), inputs)


def test_empty_queue_tensor():
    query, key = unit(3, 4, seed=1), unit(3, 4, seed=2)
    loss = KCLLoss()(query, key, torch.zeros(3, dtype=torch.long), unit(0, 4), torch.zeros(0, dtype=torch.long))
    assert math.isclose(loss.item(), 0.0, abs_tol=1e-12)  # own key is the only column


def test_half_precision_inputs_are_upcast(data):
    query, key, labels, queue, queue_labels = data
    loss = KCLLoss(k=None)(query.bfloat16(), key.bfloat16(), labels, queue.bfloat16(), queue_labels)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("bad, match", [
    (dict(query=torch.zeros(6)), r"query must be \[B, D\]"),
    (dict(key=torch.zeros(5, 5, dtype=torch.float64)), "key shape"),
    (dict(queue=torch.zeros(20, 4, dtype=torch.float64)), "queue feature dim 4 does not match query dim 5"),
    (dict(labels=torch.tensor([0, 1, 2, 0, -1, 1])), "labels must be >= 0, got label -1"),
    (dict(queue_labels=torch.full((20,), -2)), "queue_labels must be >= -1"),
    (dict(queue_labels=torch.zeros(19, dtype=torch.long)), r"queue_labels must have shape \[20\]"),
    (dict(labels=torch.zeros(6)), "integer"),
])
def test_errors(data, bad, match):
    names = ("query", "key", "labels", "queue", "queue_labels")
    args = dict(zip(names, data)) | bad
    with pytest.raises((ValueError, TypeError), match=match):
        KCLLoss()(**args)


def test_constructor_errors():
    with pytest.raises(ValueError, match="k must be >= 1"):
        KCLLoss(k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        KCLLoss(k=2.5)
    with pytest.raises(ValueError, match="temperature"):
        KCLLoss(temperature=0.0)


def test_backward_twice_with_retained_graph(data):
    # The forward keeps its exponentiated logits; the backward must not consume them.
    query, key, labels, queue, queue_labels = data
    query = query.clone().requires_grad_()
    loss = KCLLoss(k=2)(query, key, labels, queue, queue_labels, generator=torch.Generator().manual_seed(0))
    loss.backward(retain_graph=True)
    first = query.grad.clone()
    loss.backward()
    torch.testing.assert_close(query.grad, 2 * first)


def test_empty_batch_error(data):
    _, _, _, queue, queue_labels = data
    with pytest.raises(ValueError, match="empty batch"):
        KCLLoss()(unit(0, 5), unit(0, 5), torch.zeros(0, dtype=torch.long), queue, queue_labels)


@pytest.mark.parametrize("k", [2, None])
def test_query_gradient_sparse_and_dense_paths(k):
    # Queue without gradient and k' * D <= K: the backward gathers the positive rows instead of
    # forming the [B, K] gradient (k=2); FCL on wide classes takes the dense path.
    b, qk, d = 5, 48, 4
    query, key, queue = unit(b, d, seed=11).requires_grad_(), unit(b, d, seed=12), unit(qk, d, seed=13)
    labels = torch.tensor([0, 1, 2, 1, 0])
    queue_labels = torch.randint(-1, 3, (qk,), generator=torch.Generator().manual_seed(4))
    loss = KCLLoss(k=k, temperature=0.3)(query, key, labels, queue, queue_labels,
                                         generator=torch.Generator().manual_seed(5))
    index, valid = draw_queue_positives(labels, queue_labels, k, torch.Generator().manual_seed(5))
    assert (index.shape[1] * d > qk) == (k is None)  # the path this case is meant to take
    ref = kcl_reference(query, key, queue, [index[i][valid[i]].tolist() for i in range(b)], 0.3)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(loss, query)[0], torch.autograd.grad(ref, query)[0],
                               atol=1e-6, rtol=1e-6)

    def fn(q):
        return KCLLoss(k=k, temperature=0.3)(q, key, labels, queue, queue_labels,
                                             generator=torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(fn, (query,))


def test_dense_fcl_mask_path_matches_reference(data):
    # On accelerators FCL takes its positives from a [B, K] label mask (no device sync); on CPU
    # from a gathered index. Both must equal Eq. 4 with every same-class entry as a positive.
    from kcl_models.losses.kcl import _KCLFunction

    query, key, labels, queue, queue_labels = (t.clone() for t in data)
    inputs = tuple(t.requires_grad_() for t in (query, key, queue))
    same = labels[:, None] == queue_labels[None, :]

    def fn(q, k, z):
        return _KCLFunction.apply(q, k, z, None, None, same, 0.2)

    ref = kcl_reference(query, key, queue, all_same_class(labels, queue_labels), 0.2)
    torch.testing.assert_close(fn(*inputs), ref, atol=1e-6, rtol=1e-6)
    for g, g_ref in zip(torch.autograd.grad(fn(*inputs), inputs), torch.autograd.grad(ref, inputs)):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-6)
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("draw", ["sort", "rank"])
def test_floyd_draw_is_uniform_over_larger_subsets(draw, monkeypatch):
    # n_c = 6, k = 3: each of the C(6, 3) = 20 subsets has probability 1/20 (Floyd's algorithm),
    # whether the class entries are found in the sorted queue or by a running count (CUDA, K <= 4096).
    from kcl_models.losses import kcl
    monkeypatch.setitem(kcl.RANK_DRAW_MAX_QUEUE, "cpu", 1 << 40 if draw == "rank" else 0)
    queue_labels = torch.tensor([2, 0, 0, 1, 0, 0, 2, 0, 0])
    labels = torch.zeros(4000, dtype=torch.long)
    index, valid = draw_queue_positives(labels, queue_labels, 3, torch.Generator().manual_seed(1))
    assert bool(valid.all())
    subsets = Counter(tuple(sorted(row)) for row in index.tolist())
    assert set(subsets) == set(itertools.combinations([1, 2, 4, 5, 7, 8], 3))
    for n in subsets.values():  # 200 expected, sd ~13.8: a 5-sd band
        assert 131 <= n <= 269


def test_validate_labels_false_skips_only_the_range_check(data):
    query, key, labels, queue, queue_labels = data
    gen = torch.Generator().manual_seed(0)
    checked = KCLLoss(k=2)(query, key, labels, queue, queue_labels, generator=gen.manual_seed(3))
    unchecked = KCLLoss(k=2, validate_labels=False)(query, key, labels, queue, queue_labels,
                                                     generator=gen.manual_seed(3))
    assert checked.item() == unchecked.item()
    with pytest.raises(ValueError, match="queue feature dim"):  # shape checks stay
        KCLLoss(validate_labels=False)(query, key, labels, queue[:, :4], queue_labels)


@pytest.fixture
def rank_draw(monkeypatch):
    """Make CPU take the running-count draw that CUDA takes at small sizes."""
    from kcl_models.losses import kcl
    monkeypatch.setitem(kcl.RANK_DRAW_MAX_QUEUE, "cpu", 1 << 40)


@pytest.mark.parametrize("k", [1, 3, 7, 40])
def test_rank_draw_picks_what_the_sort_draw_picks(k, monkeypatch):
    # The r-th entry of a class in queue order, found by a running count or in the label-sorted
    # queue: the same uniforms must give the same positives (k=40 exceeds the queue's 30 slots).
    from kcl_models.losses import kcl

    g = torch.Generator().manual_seed(k)
    labels = torch.randint(0, 6, (50,), generator=g)  # class 5 is absent from the queue
    queue_labels = torch.randint(-1, 5, (30,), generator=g)
    u = torch.rand(k, 50, generator=g, dtype=torch.float64)
    sort_index, sort_valid = kcl._draw(labels, queue_labels, u)
    monkeypatch.setitem(kcl.RANK_DRAW_MAX_QUEUE, "cpu", 1 << 40)
    monkeypatch.setattr(kcl, "_class_segments", None)  # the rank draw must not sort
    rank_index, rank_valid = kcl._draw(labels, queue_labels, u)
    assert torch.equal(rank_valid, sort_valid)
    assert torch.equal(rank_index[rank_valid], sort_index[sort_valid])
    assert int(rank_index.max()) < 30  # padding points at a real slot, as the gather needs
    assert bool((queue_labels[rank_index][rank_valid] == labels[:, None].expand(-1, k)[rank_valid]).all())


def test_rank_draw_loss_and_gradients_match_the_reference(data, rank_draw):
    query, key, labels, queue, queue_labels = (t.clone() for t in data)
    query.requires_grad_()
    loss = KCLLoss(k=2, temperature=0.2)(query, key, labels, queue, queue_labels,
                                         generator=torch.Generator().manual_seed(8))
    index, valid = draw_queue_positives(labels, queue_labels, 2, torch.Generator().manual_seed(8))
    ref = kcl_reference(query, key, queue, [index[i][valid[i]].tolist() for i in range(len(labels))], 0.2)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(loss, query)[0], torch.autograd.grad(ref, query)[0],
                               atol=1e-6, rtol=1e-6)

