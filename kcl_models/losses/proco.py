"""Probabilistic contrastive learning, ProCo (Du et al., "Probabilistic Contrastive Learning for
Long-Tailed Visual Recognition", TPAMI 2024): a von Mises-Fisher distribution per class, estimated
from running feature means, replaces the contrast samples; the loss is the closed form of the
expectation over infinitely many samples, a logit per class."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ._bessel import _g_and_q
from ._checks import check_labels, check_temperature, check_tensor, compute_dtype
from .logit_adjust import LogitAdjustedLoss

__all__ = ["ProCoLoss", "proco_logits", "vmf_kappa"]

KAPPA_ESTIMATES = ("authors", "banerjee")


class _ProCoLogits(torch.autograd.Function):
    """``S_jc = g(kt_jc) - g(kappa_c)``, ``g(x) = log I_nu(x) - nu log x``, and its gradient.

    ``kt_jc^2 = kappa_c^2 |mu_c|^2 + 2 kappa_c (z_j.mu_c) / tau + |z_j|^2 / tau^2`` comes from one
    matmul (no ``[N, C, p]`` tensor). With ``g'(x) = A(x) = I_{nu+1}(x) / I_nu(x) = x q(x)``,
    ``dS/d(kt^2) = q(kt) / 2``, finite at ``kt = 0`` (where ``d kt / dz`` alone is not), so:

        ``dS_jc/dz_j = q_jc (kappa_c mu_c + z_j / tau) / tau``
        ``dS_jc/dmu_c = q_jc kappa_c (kappa_c mu_c + z_j / tau)``
        ``dS_jc/dkappa_c = q_jc (kappa_c |mu_c|^2 + z_j.mu_c / tau) - A(kappa_c)``

    exact for any ``z``, ``mu`` (nothing assumes unit norm). The Bessel part runs in float64.
    """

    @staticmethod
    def forward(ctx, z, mu, kappa, temperature, nu):
        inv_t = 1.0 / temperature
        m = torch.mm(z, mu.T).to(torch.float64)  # [N, p] @ [p, C] -> [N, C]
        k64 = kappa.to(torch.float64)  # [C]
        mu2 = mu.to(torch.float64).square().sum(dim=1)  # [C]
        z2 = z.to(torch.float64).square().sum(dim=1)  # [N]
        kt2 = m.mul_(k64 * (2.0 * inv_t)).add_(k64.square() * mu2).add_(z2[:, None] * inv_t ** 2)  # [N, C]
        kt = kt2.clamp_(min=0.0).sqrt_()  # rounding can push |kappa mu + z / tau|^2 below 0 near 0
        g_t, q_t = _g_and_q(nu, kt)  # [N, C]
        g_k, q_k = _g_and_q(nu, k64)  # [C]
        ctx.save_for_backward(z, mu, kappa, q_t.to(z.dtype), (k64 * q_k).to(z.dtype))
        ctx.temperature = temperature
        return (g_t - g_k).to(z.dtype)  # [N, C] - [C]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        z, mu, kappa, q_t, a_k = ctx.saved_tensors
        inv_t = 1.0 / ctx.temperature
        gq = grad_out * q_t  # [N, C]
        grad_z = grad_mu = grad_kappa = None
        if ctx.needs_input_grad[0]:
            grad_z = torch.mm(gq, kappa[:, None] * mu)  # [N, C] @ [C, p] -> [N, p]
            grad_z.addcmul_(gq.sum(dim=1, keepdim=True), z, value=inv_t).mul_(inv_t)
        if ctx.needs_input_grad[1]:
            grad_mu = torch.mm(gq.T, z).mul_(inv_t)  # [C, N] @ [N, p] -> [C, p]
            grad_mu.addcmul_((gq.sum(dim=0) * kappa)[:, None], mu).mul_(kappa[:, None])
        if ctx.needs_input_grad[2]:
            m = torch.mm(z, mu.T)  # [N, p] @ [p, C] -> [N, C]
            grad_kappa = (gq * m).sum(dim=0).mul_(inv_t)
            grad_kappa += gq.sum(dim=0) * kappa * mu.square().sum(dim=1) - a_k * grad_out.sum(dim=0)
        return grad_z, grad_mu, grad_kappa, None, None


def proco_logits(z: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor, temperature: float) -> torch.Tensor:
    """ProCo's per-class logits (Du et al., TPAMI 2024; METHODS.md's ``S``).

    For sample ``j`` and the vMF distribution ``(mu_c, kappa_c)`` of class ``c`` on the sphere in
    ``R^p``, with ``nu = p/2 - 1`` and ``kt_jc = |kappa_c mu_c + z_j / tau|``:

        ``S_jc = log I_nu(kt_jc) - nu log kt_jc - (log I_nu(kappa_c) - nu log kappa_c)``

    the log-ratio of vMF normalisers ``C_p(kappa_c) / C_p(kt_jc)``. Differentiable in all three
    inputs (ProCo itself passes a detached ``mu``, ``kappa``). Bessel values come from
    :func:`~kcl_models.losses.log_bessel_iv`'s expansion in float64 (accurate over every
    ``x >= 0``; ``kappa = 0`` and ``kt = 0`` are fine); the matmul runs in the inputs' dtype (at
    least float32, autocast off) and the result has that dtype. ``mu`` is used as given (pass
    unit rows), ``kappa >= 0``.

    Shape:
        - z: ``[N, p]``
        - mu: ``[C, p]``
        - kappa: ``[C]``
        - output: ``[N, C]``
    """
    owner = "proco_logits"
    check_tensor(z, "z", 2, owner, "[N, p]")
    check_tensor(mu, "mu", 2, owner, "[C, p]")
    check_tensor(kappa, "kappa", 1, owner, "[C]")
    if mu.shape[1] != z.shape[1]:
        raise ValueError(f"{owner}: mu has dim {mu.shape[1]} but z has dim {z.shape[1]}")
    if kappa.shape[0] != mu.shape[0]:
        raise ValueError(f"{owner}: kappa has {kappa.shape[0]} entries but mu has {mu.shape[0]} classes")
    temperature = check_temperature(temperature, owner)
    dtype = compute_dtype(z, mu, kappa)
    with torch.autocast(z.device.type, enabled=False):
        return _ProCoLogits.apply(z.to(dtype), mu.to(dtype), kappa.to(dtype), temperature, z.shape[1] / 2 - 1)


def vmf_kappa(r: torch.Tensor, p: int, estimate: str = "authors", kappa_max: float = 1e5) -> torch.Tensor:
    """Concentration ``kappa`` from the mean resultant length ``R = |mean of unit vectors|``.

    - ``'authors'`` (ProCo's code): ``kappa = p R / (1 - R^2)``;
    - ``'banerjee'`` (Banerjee et al., JMLR 2005, Eq. 4.4): ``kappa = R (p - R^2) / (1 - R^2)``.

    Clamped to ``kappa_max``; ``R >= 1`` (a class whose features all coincide) gives
    ``kappa_max``, as in the authors' code.

    Shape:
        - r: ``[C]``
        - output: ``[C]``
    """
    if estimate not in KAPPA_ESTIMATES:
        raise ValueError(f"vmf_kappa: estimate must be one of {KAPPA_ESTIMATES}, got {estimate!r}")
    one_minus = 1.0 - r.square()
    kappa = (p * r if estimate == "authors" else r * (p - r.square())) / one_minus
    return torch.where(r < 1.0, kappa.clamp(max=kappa_max), torch.full_like(r, kappa_max))


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.compiler.disable  # a collective: runs eagerly under torch.compile
def _all_gather(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().contiguous()
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x)
    return torch.cat(out, dim=0)


def _gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (detached) from every process along dim 0; ``x`` itself without a process group."""
    return _all_gather(x) if _world_size() > 1 else x.detach()


class ProCoLoss(nn.Module):
    """ProCo's contrastive term (Du et al., TPAMI 2024) with its per-class vMF estimators, as written in
    the project's METHODS.md from the authors' code (no paper text to cite an equation number from).

    For each view ``v`` of the batch, in order:

    1. (training mode) both estimators absorb the view's features of the **whole** batch (gathered
       from every process, detached): per class, the running mean of ``z`` since the estimator's
       last reset, ``Ave_c <- (1 - w) Ave_c + w mean_batch_c`` with ``w = n_c / (n_c + Amount_c)``,
       ``Amount_c += n_c`` (classes absent from the batch keep theirs);
    2. the **old** estimator gives ``mu_c = Ave_c / |Ave_c|`` and ``kappa_c`` from ``R_c = |Ave_c|``
       (:func:`vmf_kappa`, the authors' estimate or Banerjee's);
    3. ``S = proco_logits(z_v, mu, kappa, temperature)`` for this process's rows, and the view's
       loss is the logit-adjusted cross-entropy ``CE(S + tau log pi, y)``.

    The result is the mean over views (the authors' ``(LA-CE(S_2) + LA-CE(S_3)) / 2``; the method
    adds the classifier's LA-CE and weighs this term by ``alpha``). ``mu`` and ``kappa`` carry no
    gradient; ``z`` does. Views are processed one after the other because the authors' code calls
    its loss once per view, each call updating the statistics first.

    Epochs: call :meth:`start_epoch` before each epoch's first step. The current estimator then
    becomes the old one and a fresh one starts (``Ave = 0.9 *`` random unit vectors, drawn from a
    generator seeded by ``(seed, epoch)``, so every process draws the same). The old estimator thus
    holds the last epoch plus the current one so far. ``start_epoch`` with the epoch already
    started does nothing, so a run resumed mid-epoch keeps its statistics.

    State: ``mean_old``, ``count_old``, ``mean_new``, ``count_new`` and ``epoch`` are buffers, so
    ``state_dict()`` / ``load_state_dict()`` checkpoint them exactly and a resumed run continues
    bit for bit. ``.double()`` turns the means to float64 (counts stay int64).

    Processes: with an initialised ``torch.distributed`` process group (and ``gather=True``) the
    loss gathers each view's features and labels itself (one ``all_gather`` each, no gradient), so
    every process holds identical statistics, computed from the same tensor as a single process
    would on the whole batch. Every process must call it with the same batch size. Each process's
    loss averages its own rows: the mean of the processes' losses is the single-process loss, and
    DDP's averaged gradient its gradient. Pass ``gather=False`` and call :meth:`update` yourself
    (with gathered features) to manage the exchange elsewhere; :meth:`logits` then gives ``S``.

    The sums use a one-hot matmul rather than ``index_add_``, whose CUDA atomics would make the
    statistics differ in the last bits between processes and runs. ``nu = p/2 - 1`` exactly (the
    authors' code truncates it to an integer, the same for the even ``p`` of their recipes).

    Args:
        class_counts: training images per class, length ``C``, all > 0 (the LA prior).
        feature_dim: ``p``, the dimension of ``z`` (1024 ImageNet-LT/iNat, 128 CIFAR).
        temperature: ``tau`` > 0 (0.07 ImageNet-LT/iNat, 0.1 CIFAR).
        la_tau: strength of the logit adjustment on ``S``, >= 0 (1.0 in the authors' code).
        kappa_estimate: ``'authors'`` (default, ``p R / (1 - R^2)``) or ``'banerjee'``.
        kappa_max: upper clamp of ``kappa`` (1e5 in the authors' code).
        seed: seeds the random initial means (with the epoch).
        gather: gather the features across processes when a process group is initialised.
        validate_labels: check that labels lie in ``[0, C)`` (one device sync per call); False runs
            without host-device sync.

    Shape:
        - features: ``[B, V, p]`` (``V`` views, e.g. ProCo's views 2 and 3) or ``[B, p]``
        - labels: ``[B]`` integers in ``[0, C)``
        - output: scalar
    """

    mean_old: torch.Tensor
    count_old: torch.Tensor
    mean_new: torch.Tensor
    count_new: torch.Tensor
    epoch: torch.Tensor

    def __init__(self, class_counts: Sequence[int] | torch.Tensor, feature_dim: int, temperature: float = 0.07,
                 la_tau: float = 1.0, kappa_estimate: str = "authors", kappa_max: float = 1e5, seed: int = 0,
                 gather: bool = True, validate_labels: bool = True) -> None:
        super().__init__()
        owner = "ProCoLoss"
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 2:
            raise ValueError(f"{owner}: feature_dim must be an int >= 2, got {feature_dim!r}")
        if kappa_estimate not in KAPPA_ESTIMATES:
            raise ValueError(f"{owner}: kappa_estimate must be one of {KAPPA_ESTIMATES}, got {kappa_estimate!r}")
        kappa_max = float(kappa_max)
        if not math.isfinite(kappa_max) or kappa_max <= 0:
            raise ValueError(f"{owner}: kappa_max must be finite and > 0, got {kappa_max!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**40:
            raise ValueError(f"{owner}: seed must be an int in [0, 2**40), got {seed!r}")
        self.ce = LogitAdjustedLoss(class_counts, tau=la_tau, validate_labels=False)  # raises on bad counts
        self.num_classes = self.ce.num_classes
        self.feature_dim = feature_dim
        self.temperature = check_temperature(temperature, owner)
        self.kappa_estimate = kappa_estimate
        self.kappa_max = kappa_max
        self.seed = seed
        self.gather = bool(gather)
        self.validate_labels = bool(validate_labels)
        start = self._fresh_mean(-1, torch.device("cpu"), torch.float32)
        self.register_buffer("mean_old", start.clone())
        self.register_buffer("count_old", torch.zeros(self.num_classes, dtype=torch.long))
        self.register_buffer("mean_new", start)
        self.register_buffer("count_new", torch.zeros(self.num_classes, dtype=torch.long))
        self.register_buffer("epoch", torch.tensor(-1, dtype=torch.long))

    def _fresh_mean(self, epoch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The initial means of the estimator started at ``epoch``: 0.9 * random unit vectors."""
        gen = torch.Generator().manual_seed((self.seed << 20) + epoch + 2)  # epoch -1 (construction) -> seed+1
        unit = F.normalize(torch.randn(self.num_classes, self.feature_dim, generator=gen, dtype=torch.float64), dim=1)
        return (0.9 * unit).to(device=device, dtype=dtype)

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> None:
        """Swap the estimators at the start of ``epoch`` (no-op if that epoch was already started)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**20:
            raise ValueError(f"ProCoLoss.start_epoch: epoch must be an int in [0, 2**20), got {epoch!r}")
        if int(self.epoch) == epoch:  # one host read per epoch
            return
        self.mean_old.copy_(self.mean_new)
        self.count_old.copy_(self.count_new)
        self.mean_new.copy_(self._fresh_mean(epoch, self.mean_new.device, self.mean_new.dtype))
        self.count_new.zero_()
        self.epoch.fill_(epoch)

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Absorb a batch into both estimators (features of the whole batch over all processes).

        Shape:
            - features: ``[N, p]``
            - labels: ``[N]`` integers in ``[0, C)``
        """
        onehot = F.one_hot(labels.to(device=self.mean_new.device, dtype=torch.long), self.num_classes)  # [N, C]
        n = onehot.sum(dim=0)  # [C] images of each class in the batch
        with torch.autocast(self.mean_new.device.type, enabled=False):  # sums in the statistics' dtype
            sums = torch.mm(onehot.T.to(self.mean_new.dtype), features.to(self.mean_new.dtype))  # [C, N] @ [N, p]
        batch_mean = sums / n.clamp(min=1)[:, None].to(sums.dtype)  # [C, p]
        for mean, count in ((self.mean_old, self.count_old), (self.mean_new, self.count_new)):
            w = n.to(mean.dtype) / (n + count).clamp(min=1).to(mean.dtype)  # [C], 0 for absent classes
            mean.lerp_(batch_mean, w[:, None])  # (1 - w) Ave + w mean_batch
            count.add_(n)

    def vmf(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu [C, p], kappa [C])`` of the old estimator, detached, in the statistics' dtype."""
        mean = self.mean_old.detach()
        r = mean.to(torch.float64).norm(dim=1)  # [C]; float64: 1 - R^2 cancels for R near 1
        kappa = vmf_kappa(r, self.feature_dim, self.kappa_estimate, self.kappa_max)
        return F.normalize(mean, dim=1), kappa.to(mean.dtype)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``S [N, C]`` of ``features [N, p]`` under the old estimator (no update)."""
        mu, kappa = self.vmf()
        return proco_logits(features, mu, kappa, self.temperature)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        owner = "ProCoLoss"
        if isinstance(features, torch.Tensor) and features.dim() == 2:
            features = features[:, None]
        check_tensor(features, "features", 3, owner, "[B, V, p] (or [B, p])")
        b, v, p = features.shape
        if p != self.feature_dim:
            raise ValueError(f"{owner}: features have dim {p} but feature_dim is {self.feature_dim}")
        if b == 0 or v == 0:
            raise ValueError(f"{owner}: empty batch (features has shape {tuple(features.shape)})")
        check_labels(labels, b, owner, num_classes=self.num_classes, check_range=self.validate_labels)
        labels = labels.to(device=features.device, dtype=torch.long)
        all_labels = _gather(labels) if (self.training and self.gather) else labels
        total = features.new_zeros((), dtype=compute_dtype(features))
        for view in range(v):
            z = features[:, view]  # [B, p]
            if self.training:
                self.update(_gather(z) if self.gather else z, all_labels)
            total = total + self.ce(self.logits(z), labels)
        return total / v

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feature_dim={self.feature_dim}, temperature={self.temperature}, "
                f"la_tau={self.ce.tau}, kappa_estimate={self.kappa_estimate!r}, kappa_max={self.kappa_max}, "
                f"seed={self.seed}, gather={self.gather}, validate_labels={self.validate_labels}")
