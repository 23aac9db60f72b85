import numpy as np
import pytest

from kcl_models.data import class_counts, exp_profile, make_longtailed, shot_groups, step_profile


def test_exp_profile_matches_cifar_lt_sizes():
    # CIFAR-100-LT IF100 has 10,847 images and CIFAR-10-LT IF100 12,406 (Cao et al. 2019).
    assert sum(exp_profile(100, 500, 100)) == 10847
    assert sum(exp_profile(10, 5000, 100)) == 12406
    p = exp_profile(10, 5000, 100)
    assert p[0] == 5000 and p[-1] == 50
    assert all(a >= b for a, b in zip(p, p[1:]))
    for i, n in enumerate(p):
        assert n == int(5000 * 0.01 ** (i / 9))


def test_exp_profile_edge_cases():
    assert exp_profile(1, 7, 100) == [7]
    assert exp_profile(5, 10, 1) == [10] * 5
    with pytest.raises(ValueError, match="0 images"):
        exp_profile(10, 50, 100)  # tail class would get int(0.5) = 0
    with pytest.raises(ValueError, match="imbalance_factor"):
        exp_profile(10, 100, 0.5)
    with pytest.raises(ValueError, match="num_classes"):
        exp_profile(0, 100, 10)


def test_step_profile():
    assert step_profile(10, 100, 10) == [100] * 5 + [10] * 5
    assert step_profile(5, 100, 10) == [100, 100, 10, 10, 10]
    assert step_profile(4, 100, 10, mu=0.25) == [100, 100, 100, 10]
    with pytest.raises(ValueError, match="mu"):
        step_profile(4, 100, 10, mu=1.5)


def test_class_counts_and_range_error():
    assert class_counts([0, 2, 2, 1, 2], 4) == [1, 1, 3, 0]
    with pytest.raises(ValueError, match="label 5 at position 1"):
        class_counts([0, 5, 1], 3)


def test_make_longtailed_counts_seeded_nested():
    rng = np.random.default_rng(1)
    targets = rng.permutation(np.repeat(np.arange(5), 40)).tolist()
    counts = exp_profile(5, 40, 10)
    idx = make_longtailed(targets, counts, seed=3)
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert class_counts([targets[i] for i in idx], 5) == counts
    assert make_longtailed(targets, counts, seed=3) == idx
    other = make_longtailed(targets, counts, seed=4)
    assert other != idx
    # same seed, smaller counts: a nested subset
    small = make_longtailed(targets, [c // 2 for c in counts], seed=3)
    assert set(small) <= set(idx)


def test_make_longtailed_errors():
    with pytest.raises(ValueError, match="class 1 has 2 samples but 3 were asked"):
        make_longtailed([0, 0, 0, 1, 1], [1, 3])
    with pytest.raises(ValueError, match="out of range"):
        make_longtailed([0, 4], [1, 1])


def test_shot_groups_absolute_thresholds():
    assert shot_groups([101, 100, 20, 19, 0]) == ["many", "medium", "medium", "few", "few"]
    assert shot_groups([50, 10, 5], many=40, few=6) == ["many", "medium", "few"]
    with pytest.raises(ValueError, match="few threshold"):
        shot_groups([1], many=10, few=20)


def test_shot_groups_relative_log_bands():
    counts = exp_profile(10, 124, 100)  # digits-LT IF100
    assert counts == [124, 74, 44, 26, 16, 9, 5, 3, 2, 1]
    groups = shot_groups(counts, relative=True)
    assert groups == ["many"] * 4 + ["medium"] * 3 + ["few"] * 3
    # absolute thresholds leave a single many-shot class here
    assert shot_groups(counts).count("many") == 1
    assert shot_groups([5, 5], relative=True) == ["many", "many"]
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        shot_groups([5, 0], relative=True)
