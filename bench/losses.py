"""Forward+backward time and peak memory of the project's losses at paper scales.

Each loss is timed beside
  (a) "authors": a straightforward implementation written here from the description of the
      authors' approach (BCL: one-hot class counts via an identity matrix and per-entry weights
      built in a Python list; KCL: top-k over the label mask, which takes the first k same-class
      entries; SupCon: the usual mask-based formulation; PaCo and ProCo: see
      bench/authors_paco_proco.py). Not copied from their repositories;
  (b) "bound": the logits matmuls alone, forward and backward (the backward gets ready-made
      output gradients), the cost no implementation can avoid.

Scales (B=256 images, two views):
  imagenet_lt  D=1024, C=1000 prototypes, K=65536 queue (KCL), labels long-tailed IF 256
  inat         D=1024, C=8142, K=65536, IF 500
  inat_d128    D=128,  C=8142, K=65536, IF 500
  cifar        D=128,  C=100,  K=4096 (project's choice), IF 100
PaCo uses its own queue, K=8192 (1024 for cifar), with A=B anchors and M=2B+K contrast rows, T=0.2,
alpha=0.05; ProCo takes the two views of the batch (p=D, tau=0.07) with its statistics updated per
view, as in training. The authors' ProCo builds [N, C, p] tensors (8.5 GB at inat): it is run only
where one of them stays under AUTHORS_PROCO_MAX_BYTES; its Miller recurrence is inaccurate for
large arguments (METHODS.md), so no agreement is printed for it.

Usage:
  python bench/losses.py                       # cuda if available, all scales
  python bench/losses.py --device cpu --repeats 3 --scales cifar,inat_d128
Prints a markdown table.

Times. On CUDA the headline "ms" is device time: ``repeats`` calls are queued behind a GPU sleep
long enough for the host to enqueue them all, and CUDA events time the GPU alone (what a loss
costs inside a training step, where the model keeps the GPU busy and the host runs ahead). A host
sync inside a call stalls the queue, so its cost shows up there too. "latency" is the wall time
of one call between two synchronisations (host overhead included), median or min over the runs.
On CPU the two are the same and one time is printed. "ours" is called as the trainer calls it
(``validate_labels=False``: its datasets check labels at load time) and "ours checked" with the
default label-range check (one host sync per call).

Peak memory is the memory allocated above the inputs during one forward+backward (gradients
included): torch.cuda.max_memory_allocated on GPU; on CPU the running sum of the profiler's
allocation records (op granularity; tracemalloc cannot see PyTorch's CPU allocator).
Kernels: device kernels and memory operations launched by one call (CUDA profiler).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_paco_proco import ProCoAuthors, paco_authors  # noqa: E402

from kcl_models.losses import BCLLoss, KCLLoss, LogitAdjustedLoss, PaCoLoss, ProCoLoss, SupConLoss  # noqa: E402
from kcl_models.losses import kcl as kcl_module  # noqa: E402


@dataclass(frozen=True)
class Scale:
    batch: int
    views: int
    dim: int
    classes: int
    queue: int
    imbalance: float
    paco_queue: int = 8192


SCALES = {
    "imagenet_lt": Scale(256, 2, 1024, 1000, 65536, 256.0),
    "inat": Scale(256, 2, 1024, 8142, 65536, 500.0),
    "inat_d128": Scale(256, 2, 128, 8142, 65536, 500.0),
    "cifar": Scale(256, 2, 128, 100, 4096, 100.0, 1024),
    "tiny": Scale(8, 2, 16, 5, 64, 10.0, 32),  # smoke test only; not in the default list
}
# Largest [N, C, p] float32 tensor the authors' ProCo may build, per device type (it builds several).
AUTHORS_PROCO_MAX_BYTES = {"cpu": 2**28, "cuda": 2**34}
PACO_ALPHA, PACO_T = 0.05, 0.2
DEFAULT_SCALES = "imagenet_lt,inat,inat_d128,cifar"
TEMPERATURE = 0.07
KCL_K = 6


# ---- straightforward implementations following the authors' approach ------------------------

def bcl_authors(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                tau: float = TEMPERATURE) -> torch.Tensor:
    """BCL as a direct transcription of its description: one-hot counts, per-entry weight list."""
    b, v, _ = features.shape
    c = prototypes.shape[0]
    n = b * v
    targets = torch.cat([labels.repeat(v), torch.arange(c, device=labels.device)])  # [N + C]
    contrast = torch.cat([torch.cat(features.unbind(1)), prototypes])  # [N + C, D], view-major
    batch_cls_count = torch.eye(c, device=labels.device)[targets].sum(dim=0)  # one-hot [N + C, C] -> [C]
    mask = (targets[:n, None] == targets[None, :]).float()  # [N, N + C]
    logits_mask = torch.ones_like(mask).scatter(1, torch.arange(n, device=mask.device)[:, None], 0.0)
    mask = mask * logits_mask
    logits = contrast[:n] @ contrast.T / tau  # [N, D] @ [D, N + C]
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    exp_logits = torch.exp(logits) * logits_mask
    counts = batch_cls_count.tolist()  # per-entry weights in a Python list (one sync, then a loop)
    per_ins_weight = torch.tensor([counts[t] for t in targets.tolist()], device=mask.device)
    per_ins_weight = per_ins_weight.view(1, -1).expand(n, -1) - mask  # |A_c(i)| per entry
    log_prob = logits - torch.log((exp_logits / per_ins_weight).sum(dim=1, keepdim=True))
    return -((mask * log_prob).sum(1) / mask.sum(1)).mean()


def kcl_authors(query: torch.Tensor, key: torch.Tensor, labels: torch.Tensor, queue: torch.Tensor,
                queue_labels: torch.Tensor, k: int = KCL_K, tau: float = TEMPERATURE) -> torch.Tensor:
    """KCL with positives = top-k over the 0/1 label mask (the first k same-class entries)."""
    l_pos = (query * key).sum(dim=1, keepdim=True)  # [B, 1]
    l_neg = query @ queue.T  # [B, K]
    logits = torch.cat([l_pos, l_neg], dim=1) / tau  # [B, 1 + K]
    same = (labels[:, None] == queue_labels[None, :]).float()  # [B, K]
    _, idx = torch.topk(same, k, dim=1)
    chosen = torch.zeros_like(same).scatter(1, idx, 1.0) * same
    pos_mask = torch.cat([torch.ones_like(l_pos), chosen], dim=1)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -((pos_mask * log_prob).sum(1) / pos_mask.sum(1)).mean()


def supcon_authors(features: torch.Tensor, labels: torch.Tensor, tau: float = TEMPERATURE) -> torch.Tensor:
    """SupCon in its common mask-based form (every anchor here has a positive: V = 2)."""
    b, v, _ = features.shape
    contrast = torch.cat(features.unbind(1))  # [N, D]
    mask = (labels[:, None] == labels[None, :]).float().repeat(v, v)
    n = b * v
    logits = contrast @ contrast.T / tau
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    logits_mask = torch.ones_like(mask).scatter(1, torch.arange(n, device=mask.device)[:, None], 0.0)
    mask = mask * logits_mask
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True))
    return -((mask * log_prob).sum(1) / mask.sum(1)).mean()


# ---- inputs, timing -------------------------------------------------------------------------

def longtailed_labels(n: int, classes: int, imbalance: float, gen: torch.Generator) -> torch.Tensor:
    """Labels sampled with probability proportional to an exponential long-tailed profile."""
    prior = imbalance ** (-torch.arange(classes, dtype=torch.float64) / max(classes - 1, 1))
    return torch.multinomial(prior, n, replacement=True, generator=gen)


def unit(*shape, gen, device):
    return F.normalize(torch.randn(*shape, generator=gen), dim=-1).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_peak_mib(fn) -> float:
    """Peak CPU tensor memory allocated by ``fn`` (MiB), from the profiler's allocation records.

    Running sum of every op's own allocations and frees in time order: exact at op granularity
    (an allocation freed inside the same op is not seen), and it excludes Python-side objects.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


def _peak_mib(step, device: torch.device) -> float | None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if device.type == "cpu":
        return cpu_peak_mib(step)
    return None


def _kernels_per_call(step) -> int:
    """Device kernels and memcpy/memset operations one call launches (CUDA profiler)."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        step()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def _syncs(step) -> bool:
    """Whether one call synchronises host and device (CUDA sync debug mode)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        return False
    except RuntimeError as err:
        if "synchroniz" not in str(err):
            raise
        return True
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()


def _sleep_cycles_per_ms() -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(10_000_000)  # let the clocks settle first
    start.record()
    torch.cuda._sleep(10_000_000)
    end.record()
    torch.cuda.synchronize()
    return 10_000_000 / start.elapsed_time(end)


# A CUDA stream holds about a thousand pending launches; past that, the host blocks until the
# GPU drains some, which behind a sleep means waiting for the sleep. Queued calls stay below it.
PENDING_LAUNCH_BUDGET = 800


def _device_ms(step, calls: int, host_ms: float, cycles_per_ms: float, syncs: bool) -> tuple[float, bool]:
    """GPU milliseconds per call with ``calls`` calls queued behind a sleep that outlasts their
    enqueueing, and whether that held: the start event must still be pending when the host has
    queued the last call (else the sleep is lengthened and the run repeated). A call that syncs
    cannot be queued ahead; its figure then includes the host time and the flag is False.
    ``calls`` times the call's launches must stay within ``PENDING_LAUNCH_BUDGET``."""
    sleep_ms = 2.0 * calls * host_ms + 5.0
    for _ in range(1 if syncs else 4):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        torch.cuda._sleep(int(sleep_ms * cycles_per_ms))
        start.record()
        for _ in range(calls):
            step()
        end.record()
        ahead = not start.query()  # the GPU had not reached `start` when the host was done
        torch.cuda.synchronize()
        if ahead:
            break
        sleep_ms *= 4
    return start.elapsed_time(end) / calls, ahead


def measure(variants: dict, device: torch.device, repeats: int, warmup: int, stat: str = "median") -> dict:
    """Per variant: ``time`` (s; device time on CUDA, else = latency), ``latency`` (s, one call between
    synchronisations, median or min over ``repeats``), ``peak`` (MiB above the inputs), and on CUDA
    ``kernels`` per call and ``syncs`` (whether a call synchronises host and device).

    Latencies are taken round-robin (one run of each variant per round), so a change in machine
    load affects the variants alike.
    """
    def stepper(fn, params):
        def step():
            for p in params:
                p.grad = None
            fn()
        return step

    steps = {name: stepper(fn, params) for name, (fn, params) in variants.items()}
    res = {name: {} for name in variants}
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        sync(device)
        for p in variants[name][1]:
            p.grad = None
        res[name]["peak"] = _peak_mib(step, device)
        if device.type == "cuda":
            res[name]["kernels"] = _kernels_per_call(step)
            res[name]["syncs"] = _syncs(step)
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            tic = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - tic)
    pick = min if stat == "min" else statistics.median
    cycles_per_ms = _sleep_cycles_per_ms() if device.type == "cuda" else None
    for name, step in steps.items():
        res[name]["latency"] = res[name]["time"] = pick(times[name])
        if device.type == "cuda":
            calls = max(1, min(repeats, PENDING_LAUNCH_BUDGET // max(res[name]["kernels"], 1)))
            ms, ahead = _device_ms(step, calls, res[name]["latency"] * 1e3, cycles_per_ms, res[name]["syncs"])
            res[name]["time"], res[name]["host_ahead"] = ms / 1e3, ahead
    return res


def cases(scale: Scale, device: torch.device, gen: torch.Generator, compiled: bool = False):
    """(loss name, {variant: (callable running forward+backward, params)}, agreement check)."""
    b, v, d, c, k = scale.batch, scale.views, scale.dim, scale.classes, scale.queue
    labels = longtailed_labels(b, c, scale.imbalance, gen).to(device)
    feats = unit(b, v, d, gen=gen, device=device).requires_grad_()
    protos = unit(c, d, gen=gen, device=device).requires_grad_()
    query = unit(b, d, gen=gen, device=device).requires_grad_()
    key = unit(b, d, gen=gen, device=device)
    queue = unit(k, d, gen=gen, device=device)
    queue_labels = longtailed_labels(k, c, scale.imbalance, gen).to(device)
    logits = torch.randn(b, c, generator=gen).to(device).requires_grad_()
    counts = (1000 * scale.imbalance ** (-torch.arange(c) / max(c - 1, 1))).long().clamp(min=1)

    n = b * v
    z = feats.detach().reshape(n, d).clone().requires_grad_()
    g_vv, g_vp = torch.randn(n, n, device=device), torch.randn(n, c, device=device)
    g_qk = torch.randn(b, k, device=device)
    draw_gen = torch.Generator(device="cpu").manual_seed(0)

    # as the trainer calls them (labels were checked when the dataset loaded), and with the check
    bcl, kcl = BCLLoss(c, TEMPERATURE, validate_labels=False), KCLLoss(KCL_K, TEMPERATURE, validate_labels=False)
    la = LogitAdjustedLoss(counts, validate_labels=False).to(device)
    fcl, sup = KCLLoss(None, TEMPERATURE, validate_labels=False), SupConLoss(TEMPERATURE)
    bcl_chk, kcl_chk = BCLLoss(c, TEMPERATURE), KCLLoss(KCL_K, TEMPERATURE)
    la_chk, fcl_chk = LogitAdjustedLoss(counts).to(device), KCLLoss(None, TEMPERATURE)
    bcl_a, kcl_a, sup_a = bcl_authors, kcl_authors, supcon_authors
    if compiled:  # the bound is three matmuls either way; the authors' BCL builds a Python list per
        # entry (a sync, then a loop dynamo would unroll over N + C items), so it stays eager
        bcl, kcl, fcl, sup, la, bcl_chk, kcl_chk, la_chk, fcl_chk, kcl_a, sup_a = (
            torch.compile(f) for f in (bcl, kcl, fcl, sup, la, bcl_chk, kcl_chk, la_chk, fcl_chk, kcl_a, sup_a))

    def backward(t):
        t.backward()

    yield "BCL", {
        "ours": (lambda: backward(bcl(feats, labels, protos)), [feats, protos]),
        "checked": (lambda: backward(bcl_chk(feats, labels, protos)), [feats, protos]),
        "authors": (lambda: backward(bcl_a(feats, labels, protos)), [feats, protos]),
        # z @ z^T and z @ P^T, forward + backward (3 grads of the 2 matmuls: z twice, P once)
        "bound": (lambda: torch.autograd.backward([z @ z.T, z @ protos.T], [g_vv, g_vp]), [z, protos]),
    }, lambda: (bcl(feats, labels, protos), bcl_authors(feats, labels, protos))
    yield "KCL k=6", {
        "ours": (lambda: backward(kcl(query, key, labels, queue, queue_labels, generator=draw_gen)), [query]),
        "checked": (lambda: backward(kcl_chk(query, key, labels, queue, queue_labels, generator=draw_gen)), [query]),
        "authors": (lambda: backward(kcl_a(query, key, labels, queue, queue_labels)), [query]),
        "bound": (lambda: torch.autograd.backward([query @ queue.T], [g_qk]), [query]),
    }, None
    yield "FCL", {
        "ours": (lambda: backward(fcl(query, key, labels, queue, queue_labels)), [query]),
        "checked": (lambda: backward(fcl_chk(query, key, labels, queue, queue_labels)), [query]),
        "bound": (lambda: torch.autograd.backward([query @ queue.T], [g_qk]), [query]),
    }, None
    yield "SupCon", {
        "ours": (lambda: backward(sup(feats, labels)), [feats]),
        "authors": (lambda: backward(sup_a(feats, labels)), [feats]),
        "bound": (lambda: torch.autograd.backward([z @ z.T], [g_vv]), [z]),
    }, lambda: (sup(feats, labels), supcon_authors(feats, labels))
    yield "LA-CE", {
        "ours": (lambda: backward(la(logits, labels)), [logits]),
        "checked": (lambda: backward(la_chk(logits, labels)), [logits]),
        "bound": (lambda: backward(F.cross_entropy(logits, labels)), [logits]),  # plain CE
    }, None

    # PaCo: anchors = the B queries, contrast = [queries; keys; queue of paco_queue]
    kp = scale.paco_queue
    p_queue, p_queue_labels = unit(kp, d, gen=gen, device=device), longtailed_labels(kp, c, scale.imbalance, gen)
    p_labels = torch.cat([labels, labels, p_queue_labels.to(device)])
    center = torch.randn(b, c, generator=gen).to(device).requires_grad_()
    paco = PaCoLoss(counts, PACO_ALPHA, temperature=PACO_T, validate_labels=False).to(device)
    paco_chk = PaCoLoss(counts, PACO_ALPHA, temperature=PACO_T).to(device)
    log_prior = paco.log_prior.float()
    paco_a = paco_authors
    if compiled:
        paco, paco_chk, paco_a = (torch.compile(f) for f in (paco, paco_chk, paco_authors))
    contrast = lambda: torch.cat([query, key, p_queue])  # noqa: E731  [2B + K, D], queries with grad
    g_paco = torch.randn(b, 2 * b + kp, device=device)
    yield "PaCo", {
        "ours": (lambda: backward(paco(center, contrast(), p_labels)), [center, query]),
        "checked": (lambda: backward(paco_chk(center, contrast(), p_labels)), [center, query]),
        "authors": (lambda: backward(paco_a(center, contrast(), p_labels, log_prior, PACO_ALPHA, tau=PACO_T)),
                    [center, query]),
        # q @ F^T, forward + backward (F = [q; k; queue]: q as anchor and as column)
        "bound": (lambda: torch.autograd.backward([query @ contrast().T], [g_paco]), [query]),
    }, lambda: (paco(center, contrast(), p_labels), paco_authors(center, contrast(), p_labels, log_prior,
                                                                  PACO_ALPHA, tau=PACO_T))

    # ProCo: the two views of the batch, statistics updated per view (training mode)
    proco = ProCoLoss(counts, feature_dim=d, temperature=TEMPERATURE, validate_labels=False).to(device)
    proco_chk = ProCoLoss(counts, feature_dim=d, temperature=TEMPERATURE).to(device)
    mu = F.normalize(proco.mean_old, dim=1)
    g_pro = torch.randn(b, c, device=device)
    if compiled:
        proco, proco_chk = torch.compile(proco), torch.compile(proco_chk)
    variants = {
        "ours": (lambda: backward(proco(feats, labels)), [feats]),
        "checked": (lambda: backward(proco_chk(feats, labels)), [feats]),
        # z_v @ mu^T per view, forward + backward to z
        "bound": (lambda: torch.autograd.backward([feats[:, 0] @ mu.T, feats[:, 1] @ mu.T], [g_pro, g_pro]),
                  [feats]),
    }
    if b * c * d * 4 <= AUTHORS_PROCO_MAX_BYTES.get(device.type, 0):
        proco_a = ProCoAuthors(counts, d, TEMPERATURE, device)  # stays eager: a host sync per recurrence step
        variants["authors"] = (lambda: backward(proco_a(feats, labels)), [feats])
    yield "ProCo", variants, None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 20 cuda, 3 cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs (default 5 cuda, 1 cpu)")
    parser.add_argument("--scales", default=DEFAULT_SCALES, help=f"comma list of {list(SCALES)}")
    parser.add_argument("--losses", default="BCL,KCL k=6,FCL,SupCon,LA-CE,PaCo,ProCo", help="comma list")
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="statistic over the timed runs (min is steadier on a shared CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 avoids OpenMP stalls on a busy shared CPU)")
    parser.add_argument("--skip-authors", action="store_true", help="time only ours and the bound")
    parser.add_argument("--compile", action="store_true", help="run ours and the authors' approach under torch.compile")
    parser.add_argument("--kcl-draw", choices=("auto", "sort", "rank"), default="auto",
                        help="KCL's positive draw: the library's choice by size (auto), always sort the queue "
                             "by label, or always rank with a running count over [B, K]")
    parser.add_argument("--profile", action="store_true",
                        help="also print the profiler's kernel table of one call of ours (CUDA)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.kcl_draw != "auto":
        kcl_module.RANK_DRAW_MAX_QUEUE[device.type] = 0 if args.kcl_draw == "sort" else 1 << 62
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (20 if device.type == "cuda" else 3)
    warmup = args.warmup if args.warmup is not None else (5 if device.type == "cuda" else 1)
    wanted = set(args.losses.split(","))
    scales = args.scales.split(",")
    unknown = [s for s in scales if s not in SCALES]
    if unknown:
        parser.error(f"unknown scale(s) {unknown}; choose from {list(SCALES)}")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    cuda = device.type == "cuda"
    print(f"device: {name}, torch {torch.__version__}, float32, threads {torch.get_num_threads()}, "
          f"{args.stat} of {repeats} (warm-up {warmup}), forward+backward per call"
          + (", ours and authors' under torch.compile" if args.compile else "")
          + (f", KCL draw: {args.kcl_draw}" if args.kcl_draw != "auto" else "") + "\n")
    head = "| scale | loss | ours ms | authors ms | bound ms | ours / bound | authors / ours | ours checked ms "
    rule = "|---|---|---|---|---|---|---|---|"
    if cuda:
        head += "| latency ms ours / authors / bound | kernels ours / authors / bound | host sync ours "
        rule += "---|---|---|"
    print(head + "| peak MiB ours / authors / bound | max abs diff vs authors |")
    print(rule + "---|---|")
    profiles = []
    for scale_name in scales:
        gen = torch.Generator().manual_seed(0)
        torch._dynamo.reset()  # compiled variants: a fresh cache per scale (shapes change), as in one run
        for loss_name, variants, agree in cases(SCALES[scale_name], device, gen, args.compile):
            if loss_name not in wanted:
                continue
            if args.skip_authors:
                variants.pop("authors", None)
            res = measure(variants, device, repeats, warmup, args.stat)
            diff = "-"
            if agree is not None and not args.skip_authors:
                with torch.no_grad():
                    a, b = agree()
                diff = f"{abs(a.item() - b.item()):.1e}"
            print(format_row(scale_name, loss_name, res, diff, cuda), flush=True)
            if args.profile and cuda:
                profiles.append((scale_name, loss_name, kernel_table(variants["ours"])))
    for scale_name, loss_name, table in profiles:
        print(f"\n{scale_name} {loss_name}, ours, one call:\n{table}")


def kernel_table(variant, rows: int = 30) -> str:
    fn, params = variant
    for p in params:
        p.grad = None
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=60)


def format_row(scale_name: str, loss_name: str, res: dict, diff: str, cuda: bool = False) -> str:
    def ms(v, key="time"):
        if v not in res:
            return "-"
        mark = "" if key != "time" or res[v].get("host_ahead", True) else "*"  # the GPU waited for the host
        return f"{res[v][key] * 1e3:.2f}{mark}"

    def field(v, key, fmt):
        return "n/a" if v not in res or res[v].get(key) is None else fmt(res[v][key])

    def trio(key, fmt):
        return " / ".join(field(v, key, fmt) for v in ("ours", "authors", "bound"))

    ratio_bound = f"{res['ours']['time'] / res['bound']['time']:.2f}x"
    speedup = f"{res['authors']['time'] / res['ours']['time']:.2f}x" if "authors" in res else "-"
    row = (f"| {scale_name} | {loss_name} | {ms('ours')} | {ms('authors')} | {ms('bound')} | {ratio_bound} | "
           f"{speedup} | {ms('checked')} ")
    if cuda:
        row += (f"| {' / '.join(ms(v, 'latency') for v in ('ours', 'authors', 'bound'))} "
                f"| {trio('kernels', str)} | {field('ours', 'syncs', lambda s: 'yes' if s else 'no')} ")
    return row + f"| {trio('peak', lambda m: f'{m:.0f}')} | {diff} |"


if __name__ == "__main__":
    main()
