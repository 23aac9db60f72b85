import math

import numpy as np
import pytest
import torch

from kcl_models.data import ClassBalancedSampler, SquareRootSampler, build_sampler

COUNTS = [400, 100, 25, 4]
TARGETS = np.random.default_rng(0).permutation(np.repeat(np.arange(4), COUNTS)).tolist()


def _freq(indices, targets=TARGETS, num_classes=4):
    labels = np.asarray(targets)[np.asarray(indices)]
    return np.bincount(labels, minlength=num_classes) / len(indices)


def test_class_balanced_frequencies():
    s = ClassBalancedSampler(TARGETS, num_samples=40000, seed=1)
    idx = list(s)
    assert len(idx) == len(s) == 40000
    np.testing.assert_allclose(_freq(idx), [0.25] * 4, atol=0.01)
    # uniform within a class: each of the 4 tail samples about 1/16 of draws
    tail = [i for i, t in enumerate(TARGETS) if t == 3]
    per = np.array([idx.count(i) for i in tail]) / len(idx)
    np.testing.assert_allclose(per, [1 / 16] * 4, atol=0.006)


def test_square_root_frequencies():
    s = SquareRootSampler(TARGETS, num_samples=40000, seed=2)
    expect = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()  # 20, 10, 5, 2 out of 37
    np.testing.assert_allclose(_freq(list(s)), expect, atol=0.01)
    assert len(SquareRootSampler(TARGETS)) == len(TARGETS)


def test_absent_classes_are_never_drawn():
    targets = [0] * 10 + [2] * 3  # class 1 absent
    idx = list(ClassBalancedSampler(torch.tensor(targets), num_samples=2000))
    f = _freq(idx, targets, 3)
    assert f[1] == 0 and abs(f[0] - 0.5) < 0.05


def test_seed_epoch_and_rank_independence():
    a = ClassBalancedSampler(TARGETS, seed=5)
    b = ClassBalancedSampler(TARGETS, seed=5)
    assert list(a) == list(b)  # every process computes the same sequence
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(ClassBalancedSampler(TARGETS, seed=6)) != first


@pytest.mark.parametrize("cls", [ClassBalancedSampler, SquareRootSampler])
@pytest.mark.parametrize("num_samples,replicas", [(100, 3), (96, 4), (7, 2)])
def test_shards_disjoint_and_covering(cls, num_samples, replicas):
    full = cls(TARGETS, num_samples=num_samples, seed=3)
    full.set_epoch(2)
    seq = list(full)
    total = math.ceil(num_samples / replicas) * replicas
    padded = seq + seq[: total - num_samples]
    shards = []
    for r in range(replicas):
        s = cls(TARGETS, num_samples=num_samples, seed=3, num_replicas=replicas, rank=r)
        s.set_epoch(2)
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == total // replicas
    # shard r holds positions r, r + R, ...: disjoint positions that together cover the sequence
    rebuilt = [None] * total
    for r, shard in enumerate(shards):
        for j, v in enumerate(shard):
            pos = r + j * replicas
            assert rebuilt[pos] is None
            rebuilt[pos] = v
    assert rebuilt == padded


def test_build_sampler_and_errors():
    assert build_sampler("instance", TARGETS) is None
    assert isinstance(build_sampler("class_balanced", TARGETS, seed=1), ClassBalancedSampler)
    s = build_sampler("sqrt", TARGETS, seed=1, num_replicas=2, rank=1)
    assert isinstance(s, SquareRootSampler) and s.rank == 1
    with pytest.raises(ValueError, match="unknown sampler 'balanced'"):
        build_sampler("balanced", TARGETS)
    with pytest.raises(ValueError, match="label -1 at position 1"):
        ClassBalancedSampler([0, -1])
    with pytest.raises(ValueError, match="rank 2 out of range"):
        ClassBalancedSampler(TARGETS, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="both num_replicas and rank"):
        ClassBalancedSampler(TARGETS, num_replicas=2)
    with pytest.raises(ValueError, match="non-empty"):
        ClassBalancedSampler([])


def test_accelerate_batch_sharding_covers_the_common_sequence():
    # what Accelerate's prepare() does with a custom sampler: every rank iterates the same
    # sampler and keeps its own batches; they must partition the sequence.
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    sampler = ClassBalancedSampler(TARGETS, num_samples=96, seed=7)
    sampler.set_epoch(3)
    expected = list(sampler)
    batches = [list(BatchSamplerShard(BatchSampler(sampler, 8, drop_last=True), num_processes=2,
                                      process_index=r)) for r in range(2)]
    assert all(len(b) == 6 for b in batches)
    interleaved = [i for pair in zip(*batches) for batch in pair for i in batch]
    assert interleaved == expected
