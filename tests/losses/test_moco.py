"""LabelQueue and momentum_update."""
import pytest
import torch
from torch import nn

from kcl_models.losses import LabelQueue, momentum_update


def test_queue_initial_state_and_buffers():
    q = LabelQueue(dim=4, size=6)
    assert q.features.shape == (6, 4)
    torch.testing.assert_close(q.features.norm(dim=1), torch.ones(6))
    assert torch.equal(q.labels, torch.full((6,), -1))
    assert q.num_filled == 0
    assert set(q.state_dict()) == {"features", "labels", "ptr"}


def test_enqueue_fifo_and_wraps():
    q = LabelQueue(dim=2, size=6)
    for step in range(4):  # 4 batches of 2 into 6 slots: the first batch is overwritten
        keys = torch.full((2, 2), float(step))
        q.enqueue(keys, torch.tensor([step, step]))
    assert int(q.ptr) == 2
    assert q.labels.tolist() == [3, 3, 1, 1, 2, 2]
    assert q.features[:, 0].tolist() == [3, 3, 1, 1, 2, 2]
    assert q.num_filled == 6


def test_enqueue_detaches():
    q = LabelQueue(dim=3, size=4)
    keys = torch.randn(2, 3, requires_grad=True)
    q.enqueue(keys * 2, torch.tensor([0, 1]))
    assert not q.features.requires_grad


def test_enqueue_errors():
    q = LabelQueue(dim=3, size=10)
    with pytest.raises(ValueError, match="queue size 10 is not divisible by the enqueued batch size 4"):
        q.enqueue(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"keys must be \[N, 3\]"):
        q.enqueue(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be \[5\]"):
        q.enqueue(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="size must be a positive int"):
        LabelQueue(3, 0)


def test_momentum_update():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    momentum_update(online, target, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    momentum_update(online, target, 0.0)
    for t, o in zip(target.parameters(), online.parameters()):
        assert torch.equal(t, o)
    assert all(not p.requires_grad or p.grad is None for p in target.parameters())


def test_momentum_update_errors():
    with pytest.raises(ValueError, match=r"m must be in \[0, 1\]"):
        momentum_update(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="parameter 0 has shape"):
        momentum_update(nn.Linear(2, 2), nn.Linear(3, 2), 0.5)
    with pytest.raises(ValueError, match="online has 2 parameters but target has 1"):
        momentum_update(nn.Linear(2, 2), nn.Linear(2, 2, bias=False), 0.5)
