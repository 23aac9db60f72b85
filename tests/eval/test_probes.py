"""Linear probe, kNN and open-set probes on synthetic features."""
import pytest
import torch

from kcl_models.eval.probes import (
    _balanced_batches,
    fit_linear_classifier,
    knn_classify,
    linear_probe,
    open_set_probe,
    read_class_split,
)

TRAIN_COUNTS = [200, 100, 40, 15, 5]


def _clusters(counts, dim=16, spread=0.3, seed=0):
    """Well-separated Gaussian clusters (means far apart relative to the spread)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(len(counts), dim, generator=torch.Generator().manual_seed(123)) * 3.0
    feats, labels = [], []
    for c, n in enumerate(counts):
        feats.append(means[c] + spread * torch.randn(n, dim, generator=g))
        labels.append(torch.full((n,), c))
    return torch.cat(feats), torch.cat(labels)


@pytest.fixture(scope="module")
def data():
    tr_x, tr_y = _clusters(TRAIN_COUNTS, seed=0)
    te_x, te_y = _clusters([30] * len(TRAIN_COUNTS), seed=1)
    return tr_x, tr_y, te_x, te_y


def test_linear_probe_separable_reaches_100(data):
    tr_x, tr_y, te_x, te_y = data
    m = linear_probe(tr_x, tr_y, te_x, te_y, num_classes=5, epochs=10, device="cpu")
    assert m["top1"] >= 99.0
    assert m["balancedness"] > 0.95  # all classes near 100% -> balanced feature space
    assert m["train_count"] == TRAIN_COUNTS
    assert m["groups"] == ["many", "medium", "medium", "few", "few"]
    assert m["params"]["balanced"] is True


def test_linear_probe_is_deterministic(data):
    tr_x, tr_y, _, _ = data
    a = fit_linear_classifier(tr_x, tr_y, 5, epochs=2, seed=3, device="cpu")
    b = fit_linear_classifier(tr_x, tr_y, 5, epochs=2, seed=3, device="cpu")
    c = fit_linear_classifier(tr_x, tr_y, 5, epochs=2, seed=4, device="cpu")
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_class_balanced_batches_are_uniform_over_classes():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    idx = _balanced_batches(labels, 4, batch_size=500, steps=20, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(labels[idx.flatten()], minlength=4).float() / idx.numel()
    assert freq[3] == 0  # class without training samples is never drawn
    assert torch.allclose(freq[:3], torch.full((3,), 1 / 3), atol=0.02)


def test_knn_separable_reaches_100(data):
    tr_x, tr_y, te_x, te_y = data
    m = knn_classify(tr_x, tr_y, te_x, te_y, num_classes=5, k=10, temperature=0.07, device="cpu")
    assert m["top1"] >= 99.0
    assert m["top5"] == pytest.approx(100.0)
    assert m["params"] == {"k": 10, "temperature": 0.07}
    assert 0.0 <= m["ece"] <= 1.0


def test_knn_weighting_beats_majority():
    # one query close to a single class-1 sample, far-ish from three class-0 samples: the
    # exp(sim / T) weighting lets the close neighbour win with a small temperature
    tr = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [-0.1, 1.0]])
    tr_y = torch.tensor([1, 0, 0, 0])
    q = torch.tensor([[1.0, 0.05]])
    sharp = knn_classify(tr, tr_y, q, torch.tensor([1]), 2, k=4, temperature=0.01, device="cpu")
    flat = knn_classify(tr, tr_y, q, torch.tensor([1]), 2, k=4, temperature=100.0, device="cpu")
    assert sharp["top1"] == 100.0 and flat["top1"] == 0.0


def test_probe_bad_input(data):
    tr_x, tr_y, te_x, te_y = data
    with pytest.raises(ValueError, match="labels must lie in"):
        linear_probe(tr_x, tr_y, te_x, te_y, num_classes=3)
    with pytest.raises(ValueError, match="no samples"):
        knn_classify(tr_x[:0], tr_y[:0], te_x, te_y, num_classes=5)


def test_open_set_probe(data):
    tr_x, tr_y, te_x, te_y = data
    res = open_set_probe(tr_x, tr_y, te_x, te_y, target_classes=[4, 2], num_classes=5, epochs=5, device="cpu")
    assert res["target_classes"] == [4, 2]
    assert set(res) == {"target_classes", "target", "source", "all"}
    assert res["target"]["classes"] == [4, 2]
    assert res["target"]["train_count"] == [5, 40]  # re-indexed in target order
    assert res["source"]["classes"] == [0, 1, 3]
    assert len(res["all"]["per_class"]) == 5
    assert res["target"]["top1"] >= 99.0
    with pytest.raises(ValueError, match="outside"):
        open_set_probe(tr_x, tr_y, te_x, te_y, target_classes=[7], num_classes=5)


def test_read_class_split(tmp_path):
    f = tmp_path / "target.txt"
    f.write_text("# target classes\n/n02\n3\n\nn00  # a name\n")
    assert read_class_split(f, class_names=["n00", "n01", "n02", "n03"]) == [2, 3, 0]
    f.write_text("1\nbogus\n")
    with pytest.raises(ValueError, match=r"target.txt:2: 'bogus'"):
        read_class_split(f, class_names=["a", "b"])
    f.write_text("1\n1\n")
    with pytest.raises(ValueError, match="already listed on line 1"):
        read_class_split(f, num_classes=3)
    f.write_text("5\n")
    with pytest.raises(ValueError, match=r"class id 5 outside \[0, 3\)"):
        read_class_split(f, num_classes=3)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_class_split(tmp_path / "missing.txt")
