"""all_gather_with_grad / concat_all_gather: identity in one process, and on 2 gloo CPU processes
the losses on the gathered batch match the single-process loss on the concatenated batch.

Gradient convention checked here: every rank computes the same loss L on the gathered batch,
so each rank's local features receive ``world_size * dL/dx_local`` (the backward of the gather
sums the ranks' gradients); a DDP-style average of parameter gradients over ranks then equals
the single-process gradient of L.
"""
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from gloo_script import run_gloo_script

from kcl_models.losses import BCLLoss, KCLLoss, LabelQueue, SupConLoss
from kcl_models.train.distributed import all_gather_with_grad, concat_all_gather, get_rank, get_world_size

WORLD, LOCAL_B, V, D, C = 2, 4, 2, 6, 5


def test_single_process_identity():
    assert not dist.is_initialized()
    assert get_world_size() == 1 and get_rank() == 0
    x = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(x) is x
    gathered = concat_all_gather(x)
    assert torch.equal(gathered, x) and not gathered.requires_grad


def _global_inputs():
    """The same tensors on every rank (seeded), float64."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(WORLD * LOCAL_B, V, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, C, (WORLD * LOCAL_B,), generator=g)
    enc = torch.randn(3, D, generator=g, dtype=torch.float64)
    protos = F.normalize(torch.randn(C, D, generator=g, dtype=torch.float64), dim=-1)
    return x, labels, enc, protos


def _encode(x, enc):
    return F.normalize(x @ enc, dim=-1)  # a tiny "network": [B, V, 3] -> [B, V, D]


def _check_contrastive(rank, loss_fn, use_protos):
    x, labels, enc_init, protos_init = _global_inputs()
    sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)

    # Single process, whole batch.
    enc_ref, protos_ref = enc_init.clone().requires_grad_(), protos_init.clone().requires_grad_()
    feats_ref = _encode(x, enc_ref)
    feats_ref.retain_grad()
    extra_ref = (protos_ref,) if use_protos else ()
    loss_ref = loss_fn(feats_ref, labels, *extra_ref)
    loss_ref.backward()

    # This rank: local slice, gathered with gradient.
    enc, protos = enc_init.clone().requires_grad_(), protos_init.clone().requires_grad_()
    local = _encode(x[sl], enc)
    local.retain_grad()
    gathered = all_gather_with_grad(local)
    all_labels = concat_all_gather(labels[sl])
    assert gathered.shape == (WORLD * LOCAL_B, V, D)
    assert torch.equal(all_labels, labels)
    loss = loss_fn(gathered, all_labels, *((protos,) if use_protos else ()))
    loss.backward()

    torch.testing.assert_close(loss, loss_ref.detach())
    # Local features: world_size times the full-batch gradient of their rows.
    torch.testing.assert_close(local.grad, WORLD * feats_ref.grad[sl])
    # Parameters, averaged over ranks as DDP does, equal the single-process gradients.
    for p, p_ref in ((enc, enc_ref),) + (((protos, protos_ref),) if use_protos else ()):
        grad = p.grad.clone()
        dist.all_reduce(grad)
        torch.testing.assert_close(grad / WORLD, p_ref.grad)


def _check_kcl(rank):
    # KCL needs no gathered queries: each rank averages over its own anchors; the queue holds
    # the gathered keys. The mean of the ranks' losses and DDP's averaged gradient equal the
    # single-process loss and gradient on the whole batch.
    x, labels, enc_init, _ = _global_inputs()
    sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
    g = torch.Generator().manual_seed(1)
    queue = F.normalize(torch.randn(16, D, generator=g, dtype=torch.float64), dim=-1)
    queue_labels = torch.randint(-1, C, (16,), generator=g)
    crit = KCLLoss(k=None, temperature=0.2)

    enc_ref = enc_init.clone().requires_grad_()
    feats_ref = _encode(x, enc_ref)
    loss_ref = crit(feats_ref[:, 0], feats_ref[:, 1].detach(), labels, queue, queue_labels)
    loss_ref.backward()

    enc = enc_init.clone().requires_grad_()
    feats = _encode(x[sl], enc)
    loss = crit(feats[:, 0], feats[:, 1].detach(), labels[sl], queue, queue_labels)
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    torch.testing.assert_close(mean_loss / WORLD, loss_ref.detach())
    grad = enc.grad.clone()
    dist.all_reduce(grad)
    torch.testing.assert_close(grad / WORLD, enc_ref.grad)

    # Enqueueing the gathered keys leaves the same queue on every rank.
    q = LabelQueue(D, 16).double()
    q.enqueue(concat_all_gather(feats[:, 1]), concat_all_gather(labels[sl]))
    torch.testing.assert_close(q.features[: WORLD * LOCAL_B], _encode(x, enc_init)[:, 1])
    assert q.labels[: WORLD * LOCAL_B].tolist() == labels.tolist()


def _worker(rank, init_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        assert get_world_size() == WORLD and dist.get_world_size() == WORLD
        assert get_rank() == rank
        _check_contrastive(rank, SupConLoss(temperature=0.2), use_protos=False)
        _check_contrastive(rank, BCLLoss(C, temperature=0.2), use_protos=True)
        _check_kcl(rank)
        print(f"rank ok {rank}", flush=True)
    finally:
        dist.destroy_process_group()


def _spawn(init_file: str) -> None:
    # Raises ProcessRaisedException (with the child's traceback) if any assertion fails.
    mp.spawn(_worker, args=(init_file,), nprocs=WORLD, join=True)


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path):
    run_gloo_script(__file__, tmp_path, WORLD)


if __name__ == "__main__":
    _spawn(sys.argv[1])
