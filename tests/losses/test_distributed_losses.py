"""PaCoLoss and ProCoLoss on 2 gloo CPU processes equal the single-process loss on the concatenated
batch: the mean of the processes' losses equals the single-process loss, DDP's averaged gradients
its gradients, and ProCo's vMF statistics are identical on both processes (and to the
single-process ones).

PaCo layout under data parallelism (as PaCoLoss documents): this process's anchors first, then the
queries and keys of every process (gathered with gradient) and the queue. ProCo gathers its
statistics itself; each process's loss averages its own rows.
"""
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from gloo_script import run_gloo_script

from kcl_models.losses import PaCoLoss, ProCoLoss

WORLD, LOCAL_B, D, C, K = 2, 4, 6, 5, 8
COUNTS = [20, 10, 6, 3, 1]


def _global_inputs():
    """The same tensors on every process (seeded), float64: images [N, 2 views, 3], labels, weights."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(WORLD * LOCAL_B, 2, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, C, (WORLD * LOCAL_B,), generator=g)
    enc = torch.randn(3, D, generator=g, dtype=torch.float64)
    cls = torch.randn(3, C, generator=g, dtype=torch.float64)
    queue = F.normalize(torch.randn(K, D, generator=g, dtype=torch.float64), dim=-1)
    queue_labels = torch.randint(-1, C, (K,), generator=g)
    return x, labels, enc, cls, queue, queue_labels


def _gather_with_grad(t):
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(t), dim=0)


def _allreduce_mean(t):
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / WORLD


def _check_paco(rank):
    x, labels, enc_init, cls_init, queue, queue_labels = _global_inputs()
    sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
    crit = PaCoLoss(COUNTS, alpha=0.3, temperature=0.2, smoothing=0.1)

    def forward(xb, enc, cls):
        q = F.normalize(xb[:, 0] @ enc, dim=-1)  # [b, D] queries (with gradient)
        k = F.normalize(xb[:, 1] @ enc, dim=-1)  # [b, D] keys, from the same encoder as in GPaCo
        return xb[:, 0] @ cls, q, k  # centre logits [b, C]

    enc_ref, cls_ref = enc_init.clone().requires_grad_(), cls_init.clone().requires_grad_()
    center, q, k = forward(x, enc_ref, cls_ref)
    loss_ref = crit(center, torch.cat([q, k, queue]), torch.cat([labels, labels, queue_labels]))
    loss_ref.backward()

    enc, cls = enc_init.clone().requires_grad_(), cls_init.clone().requires_grad_()
    center, q, k = forward(x[sl], enc, cls)
    q_all, k_all = _gather_with_grad(q), _gather_with_grad(k)
    others = torch.cat([q_all[: rank * LOCAL_B], q_all[(rank + 1) * LOCAL_B:]])
    y_others = torch.cat([labels[: rank * LOCAL_B], labels[(rank + 1) * LOCAL_B:]])
    feats = torch.cat([q, others, k_all, queue])  # this process's anchors first
    loss = crit(center, feats, torch.cat([labels[sl], y_others, labels, queue_labels]))
    loss.backward()

    torch.testing.assert_close(_allreduce_mean(loss), loss_ref.detach())
    torch.testing.assert_close(_allreduce_mean(enc.grad), enc_ref.grad)
    torch.testing.assert_close(_allreduce_mean(cls.grad), cls_ref.grad)


def _check_proco(rank):
    x, labels, enc_init, _, _, _ = _global_inputs()
    sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
    single = ProCoLoss(COUNTS, feature_dim=D, temperature=0.1, seed=7, gather=False).double()  # whole batch here
    ours = ProCoLoss(COUNTS, feature_dim=D, temperature=0.1, seed=7).double()

    def encode(xb, enc):
        return F.normalize(xb @ enc, dim=-1)  # [b, 2, D]: ProCo's two contrastive views

    for step, epoch in enumerate([0, 0, 1]):
        single.start_epoch(epoch)
        ours.start_epoch(epoch)
        xs = x + 0.1 * step  # a different batch each step
        enc_ref = enc_init.clone().requires_grad_()
        loss_ref = single(encode(xs, enc_ref), labels)
        loss_ref.backward()

        enc = enc_init.clone().requires_grad_()
        loss = ours(encode(xs[sl], enc), labels[sl])  # gathers the statistics itself
        loss.backward()

        torch.testing.assert_close(_allreduce_mean(loss), loss_ref.detach(), atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(_allreduce_mean(enc.grad), enc_ref.grad, atol=1e-12, rtol=1e-12)
        for key, value in ours.state_dict().items():
            copies = [torch.empty_like(value) for _ in range(WORLD)]
            dist.all_gather(copies, value)
            assert all(torch.equal(value, c) for c in copies), f"step {step}: {key} differs between processes"
            torch.testing.assert_close(value, single.state_dict()[key], atol=1e-15, rtol=0)


def _worker(rank, init_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        _check_paco(rank)
        _check_proco(rank)
        print(f"rank ok {rank}", flush=True)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path):
    run_gloo_script(__file__, tmp_path, WORLD)


if __name__ == "__main__":
    mp.spawn(_worker, args=(sys.argv[1],), nprocs=WORLD, join=True)
