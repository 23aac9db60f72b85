"""PaCo and ProCo as straightforward implementations of the authors' approach, for bench/losses.py.

Written here from the description of the authors' code in the project's METHODS.md (not copied):

- PaCo: one ``[A, C + M]`` logit matrix ``[centre logits + log prior | samples / T]``, a row-max
  shift, a self-exclusion mask built with ``scatter``, a one-hot (smoothed) centre target
  concatenated with the ``alpha``-weighted sample mask, ``log_softmax`` by hand, and the mean of
  the masked log-probabilities;
- ProCo: per view, both estimators updated from one-hot features expanded to ``[N, C, p]``;
  ``kt = |kappa mu + z / tau|`` as the norm of an ``[N, C, p]`` tensor; ``log I_nu`` from a Miller
  backward recurrence in float64 started at order ``2 nu``, normalised with ``I_0`` (``i0e``), with a
  global rescale (one host sync per step to test for overflow); the gradient of the Bessel part is
  the ratio ``I_{nu+1}/I_nu``, clipped at 1; then the logit-adjusted cross-entropy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def paco_authors(center: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor,
                 alpha: float, beta: float = 1.0, gamma: float = 1.0, tau: float = 0.2,
                 smoothing: float = 0.0) -> torch.Tensor:
    a, c = center.shape
    labels = labels[:, None]
    mask = (labels[:a] == labels.T).float()  # [A, M]
    logits = torch.cat([center + log_prior, features[:a] @ features.T / tau], dim=1)  # [A, C + M]
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    self_mask = torch.ones_like(mask).scatter(1, torch.arange(a, device=mask.device)[:, None], 0.0)
    one_hot = F.one_hot(labels[:a, 0], c).float()
    one_hot = smoothing / max(c - 1, 1) * (1 - one_hot) + (1 - smoothing) * one_hot
    weights = torch.cat([one_hot * beta, mask * self_mask * alpha], dim=1)
    denom_mask = torch.cat([torch.ones(a, c, device=mask.device), gamma * self_mask], dim=1)
    log_prob = logits - torch.log((torch.exp(logits) * denom_mask).sum(1, keepdim=True) + 1e-12)
    return -((weights * log_prob).sum(1) / weights.sum(1)).mean()


def miller_log_iv(nu: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log I_nu(x), log I_{nu+1}(x))`` by Miller's backward recurrence from order ``2 nu`` (float64)."""
    x = x.double()
    cur, nxt = torch.ones_like(x), torch.zeros_like(x)  # orders 2 nu and 2 nu + 1 (unnormalised)
    scale = torch.zeros_like(x)  # log of the rescalings so far
    rec0 = rec1 = None
    for k in range(2 * nu, 0, -1):  # order k - 1 from orders k and k + 1
        new = (2.0 * k / x) * cur + nxt
        if torch.isinf(new).any():  # host sync each step
            nxt, scale, cur = nxt / cur, scale + torch.log(cur), torch.ones_like(cur)
            new = (2.0 * k / x) * cur + nxt
        nxt, cur = cur, new
        if k - 1 == nu + 1:
            rec1 = torch.log(cur) + scale
        elif k - 1 == nu:
            rec0 = torch.log(cur) + scale
    log_i0 = torch.log(torch.special.i0e(x)) + x
    norm = torch.log(cur) + scale  # order 0
    return log_i0 + rec0 - norm, log_i0 + rec1 - norm


class _LogRatio(torch.autograd.Function):
    """``log I_nu(kt) - nu log kt - logc``; backward: the ratio ``I_{nu+1}/I_nu`` clipped at 1."""

    @staticmethod
    def forward(ctx, kt, nu, logc):
        log_inu, log_inu1 = miller_log_iv(nu, kt)
        ctx.save_for_backward(torch.exp(log_inu1 - log_inu))
        return (log_inu - nu * torch.log(kt.double() + 1e-20) - logc).to(kt.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (ratio,) = ctx.saved_tensors
        return (ratio.clamp(max=1.0) * grad_out).to(grad_out.dtype), None, None


class ProCoAuthors:
    """ProCo's estimators and logits, one-hot/expand style (see the module docstring)."""

    def __init__(self, counts: torch.Tensor, dim: int, tau: float, device: torch.device) -> None:
        self.c, self.p, self.tau = len(counts), dim, tau
        self.nu = dim // 2 - 1
        self.log_prior = torch.log(counts.float() / counts.sum()).to(device)
        self.est = []
        for _ in range(2):  # old, current
            ave = F.normalize(torch.randn(self.c, dim), dim=1).mul(0.9).to(device)
            self.est.append({"ave": ave, "amount": torch.zeros(self.c, device=device)})

    def _update(self, est: dict, z: torch.Tensor, y: torch.Tensor) -> None:
        n, c, p = z.shape[0], self.c, self.p
        onehot = torch.zeros(n, c, device=z.device).scatter_(1, y[:, None], 1.0)  # [N, C]
        onehot_ncp = onehot[:, :, None].expand(n, c, p)
        by_class = z[:, None, :].expand(n, c, p) * onehot_ncp  # [N, C, p]
        amount = onehot_ncp.sum(0)  # [C, p]
        mean = by_class.sum(0) / amount.clamp(min=1)
        w = onehot.sum(0)[:, None].expand(c, p)
        w = w / (w + est["amount"][:, None])
        w = torch.nan_to_num(w, nan=0.0)
        est["ave"] = (est["ave"] * (1 - w) + mean * w).detach()
        est["amount"] = est["amount"] + onehot.sum(0)

    def view_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for est in self.est:
            self._update(est, z.detach(), y)
        old = self.est[0]
        r = torch.linalg.norm(old["ave"], dim=1)
        kappa = self.p * r / (1 - r**2)
        kappa = torch.where((kappa > 1e5) | (kappa < 0), torch.full_like(kappa, 1e5), kappa)
        log_ik, _ = miller_log_iv(self.nu, kappa)
        logc = log_ik - self.nu * torch.log(kappa.double() + 1e-20)
        tem = kappa[:, None] * F.normalize(old["ave"], dim=1)  # [C, p]
        kt = torch.linalg.norm(tem[None] + z[:, None] / self.tau, dim=2)  # [N, C, p] -> [N, C]
        logits = _LogRatio.apply(kt, self.nu, logc)
        return F.cross_entropy(logits + self.log_prior, y)

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sum(self.view_loss(features[:, v], labels) for v in range(features.shape[1])) / features.shape[1]
