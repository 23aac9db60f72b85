"""Parametric contrastive loss, PaCo (Cui et al., "Parametric Contrastive Learning", ICCV 2021), and
its generalised form GPaCo (Cui et al., "Generalized Parametric Contrastive Learning", TPAMI 2023):
supervised contrastive learning in which learnable class centres (the rows of a linear
classifier) sit in the same softmax as the samples, with a balanced-softmax log prior."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._checks import check_label_range, check_labels, check_temperature, check_tensor, compute_dtype

__all__ = ["PaCoLoss"]

# The authors add 1e-9 to the prior before the log; kept, so the values match theirs (it moves
# log pi by 2e-5 for ImageNet-LT's rarest classes) and a class absent from training stays finite.
PRIOR_EPS = 1e-9


class _PaCoFunction(torch.autograd.Function):
    """Loss and hand-written gradient over the centre block ``[A, C]`` and the sample block ``[A, M]``.

    ``L_i = log D_i - (beta * sum_c t_ic z_ic + alpha * sum_{j in P(i)} s_ij) / W_i`` with
    ``W_i = beta + alpha |P(i)|`` (the targets ``t_i`` sum to 1), so ``dL_i/dz_ic = softmax_ic -
    beta t_ic / W_i`` and ``dL_i/ds_ij = gamma softmax_ij - alpha [j in P(i)] / W_i``. The weight
    ``gamma`` enters the denominator as the additive log-weight ``log gamma`` on the sample logits.
    Both blocks are exponentiated in place and kept for the backward; no one-hot ``[A, C]`` is
    built (the targets are a constant plus one ``(i, y_i)`` entry per row).
    """

    @staticmethod
    def forward(ctx, center, feats, y_anchor, y_all, log_prior, alpha, beta, gamma, temperature, smoothing):
        a, c = center.shape
        rows = torch.arange(a, device=center.device)
        x_c = center + log_prior  # [A, C] + [C]: balanced-softmax centre logits, no temperature
        s = torch.mm(feats[:a], feats.T).mul_(1.0 / temperature)  # [A, D] @ [D, M] -> [A, M]
        pos = y_anchor[:, None] == y_all[None, :]  # [A, M]; labels -1 (empty queue slots) never match
        pos.diagonal().fill_(False)  # the anchor's own row is no positive
        pos = pos.to(s.dtype)
        w = pos.sum(dim=1).mul_(alpha).add_(beta)  # [A] W_i = beta + alpha |P(i)| >= beta > 0
        own = x_c[rows, y_anchor]  # [A]
        if smoothing:  # GPaCo: t = (1 - eps) on y_i, eps / (C - 1) elsewhere
            off = smoothing / (c - 1)
            target_sum = x_c.sum(dim=1).mul_(off).add_(own, alpha=1.0 - smoothing - off)
        else:
            off, target_sum = 0.0, own
        numer = target_sum.mul_(beta).add_((s * pos).sum(dim=1), alpha=alpha)  # [A]
        s.diagonal().fill_(float("-inf"))  # nor is it in the denominator
        if gamma != 1.0:
            s.add_(math.log(gamma) if gamma > 0 else float("-inf"))
        row_max = torch.maximum(x_c.amax(dim=1), s.amax(dim=1))  # [A], finite: C >= 1 centres
        e_c = x_c.sub_(row_max[:, None]).exp_()  # in place: [A, C]
        e_s = s.sub_(row_max[:, None]).exp_()  # in place: [A, M]
        denom = e_c.sum(dim=1) + e_s.sum(dim=1)  # [A]
        per_anchor = denom.log() + row_max - numer / w
        ctx.save_for_backward(feats, e_c, e_s, denom, pos, w, y_anchor)
        ctx.consts = (alpha, beta, temperature, smoothing, off)
        return per_anchor.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        feats, e_c, e_s, denom, pos, w, y_anchor = ctx.saved_tensors
        alpha, beta, temperature, smoothing, off = ctx.consts
        a = e_c.shape[0]
        scale = grad_out / a
        inv_denom = denom.reciprocal()[:, None]  # [A, 1]
        grad_center = grad_feats = None
        if ctx.needs_input_grad[0]:
            bw = beta / w  # [A]
            g_c = e_c * inv_denom  # [A, C] softmax over the centres
            if smoothing:
                g_c.sub_((bw * off)[:, None])
            rows = torch.arange(a, device=g_c.device)
            g_c.index_put_((rows, y_anchor), g_c[rows, y_anchor] - bw * (1.0 - smoothing - off))
            grad_center = g_c.mul_(scale)
        if ctx.needs_input_grad[1]:
            g_s = (e_s * inv_denom).addcmul_(pos, (alpha / w)[:, None], value=-1.0)  # [A, M]
            # s_ij = f_i.f_j / T: columns get G^T f_anchor, the anchor rows also G f
            grad_feats = torch.mm(g_s.T, feats[:a])  # [M, A] @ [A, D] -> [M, D]
            grad_feats[:a].addmm_(g_s, feats)  # [A, M] @ [M, D] -> [A, D]
            grad_feats.mul_(scale / temperature)
        return grad_center, grad_feats, None, None, None, None, None, None, None, None


class PaCoLoss(nn.Module):
    """Parametric contrastive loss, Cui et al. (ICCV 2021, PaCo loss; TPAMI 2023, GPaCo), as written in
    the project's METHODS.md from the authors' code (the project has no paper text to cite an
    equation number from).

    ``features`` holds the contrast set ``F`` (L2-normalised projections); its first ``A`` rows are
    the anchors, whose raw classifier outputs are ``center_logits`` (``w_c.h_i + b_c``: the rows
    of the linear classifier are the parametric class centres). For anchor ``i``:

        ``z_ic = center_logits_ic + log(pi_c + 1e-9)``  (balanced-softmax prior; no temperature)
        ``s_ij = f_i.f_j / T`` for ``j != i``  (the anchor's own row is excluded everywhere)
        ``D_i = sum_c exp(z_ic) + gamma * sum_{j != i} exp(s_ij)``
        ``L_i = -[ beta * sum_c t_ic (z_ic - log D_i) + alpha * sum_{j in P(i)} (s_ij - log D_i) ]
        / (beta + alpha * |P(i)|)``

    with ``P(i)`` every other row with the anchor's label and the centre target
    ``t_i = onehot(y_i)``, or GPaCo's smoothed ``(1 - eps) onehot + eps / (C - 1) (1 - onehot)``.
    The loss is the mean of ``L_i`` over the ``A`` anchors. Every class centre is in every
    denominator. An anchor without any sample positive keeps its centre target, so it is finite.
    With ``alpha = 0`` and ``gamma = 0`` this is balanced-softmax cross-entropy on the classifier.

    One loss serves both methods:
    - PaCo: anchors = the ``B`` queries, ``F = [q; k; queue]`` (momentum keys, queue of ``K``);
    - GPaCo: anchors = both views ``[q; k]`` (``A = 2B``, ``center_logits`` of both), then the queue.
    Under data parallelism put this process's anchors first and the gathered rows
    (``all_gather_with_grad``) of every process after them: the mean of the processes' losses is
    then the single-process loss of the whole batch, and DDP's averaged gradient its gradient.
    Rows with label ``-1`` (empty queue slots) are never positives but stay in the denominator.
    At test time the classifier is used alone, without the prior. The authors' extra factor
    ``T / base_temperature`` is 1 in all their scripts and is not offered. Computed in float32 at
    least (half-precision inputs are upcast, autocast is off inside).

    Args:
        class_counts: training images per class, length ``C`` (the prior ``pi``); zeros allowed
            (the ``1e-9`` keeps them finite, as in the authors' code), not all zero.
        alpha: weight of the sample positives, >= 0 (0.05 ImageNet-LT/iNat, 0.01 CIFAR in PaCo).
        beta: weight of the centre target, > 0 (1.0).
        gamma: weight of the samples in the denominator, >= 0 (1.0).
        temperature: ``T`` of the sample logits, > 0 (0.2 R-50, 0.07 X-50, 0.05 CIFAR).
        smoothing: GPaCo's centre label smoothing ``eps`` in ``[0, 1]`` (0 in the long-tailed scripts).
        validate_labels: check that anchor labels lie in ``[0, C)`` and the others in ``[-1, C)``
            (one device sync per call, so a bad label is named in the error). Without it the loss
            runs without any host-device sync; pass False where the data pipeline guarantees it.

    Shape:
        - center_logits: ``[A, C]``
        - features: ``[M, D]``, ``M >= A``, rows ``0..A-1`` the anchors
        - labels: ``[M]`` integers (``>= 0`` for the anchors, ``-1`` allowed after them)
        - output: scalar
    """

    log_prior: torch.Tensor

    def __init__(self, class_counts: Sequence[int] | torch.Tensor, alpha: float, beta: float = 1.0,
                 gamma: float = 1.0, temperature: float = 0.2, smoothing: float = 0.0,
                 validate_labels: bool = True) -> None:
        super().__init__()
        owner = "PaCoLoss"
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        if counts.dim() != 1 or counts.numel() == 0:
            raise ValueError(f"{owner}: class_counts must be a non-empty 1-d sequence, got shape "
                             f"{tuple(counts.shape)}")
        bad = torch.nonzero(~torch.isfinite(counts) | (counts < 0)).flatten().tolist()
        if bad:
            raise ValueError(f"{owner}: class_counts must be finite and >= 0, bad classes {bad[:10]}")
        if counts.sum() <= 0:
            raise ValueError(f"{owner}: class_counts are all zero; pass the training images per class")
        self.alpha = _number(alpha, "alpha", owner, minimum=0.0)
        self.beta = _number(beta, "beta", owner, minimum=0.0, strict=True)
        self.gamma = _number(gamma, "gamma", owner, minimum=0.0)
        self.temperature = check_temperature(temperature, owner)
        self.smoothing = _number(smoothing, "smoothing", owner, minimum=0.0, maximum=1.0)
        self.num_classes = int(counts.numel())
        if self.smoothing and self.num_classes < 2:
            raise ValueError(f"{owner}: smoothing needs at least 2 classes, got num_classes=1")
        self.validate_labels = bool(validate_labels)
        # log(pi + 1e-9), derived from the counts: non-persistent, never in a checkpoint.
        self.register_buffer("log_prior", (counts / counts.sum() + PRIOR_EPS).log(), persistent=False)

    def forward(self, center_logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        owner = "PaCoLoss"
        check_tensor(center_logits, "center_logits", 2, owner, "[A, C]")
        check_tensor(features, "features", 2, owner, "[M, D]")
        a, c = center_logits.shape
        m = features.shape[0]
        if c != self.num_classes:
            raise ValueError(f"{owner}: center_logits have {c} classes but class_counts has {self.num_classes}")
        if a == 0:
            raise ValueError(f"{owner}: no anchors (center_logits has 0 rows)")
        if m < a:
            raise ValueError(f"{owner}: features has {m} rows, fewer than the {a} anchors of center_logits "
                             f"(the anchors must be the first rows of features)")
        check_labels(labels, m, owner, check_range=False)
        labels = labels.to(device=features.device, dtype=torch.long)
        if self.validate_labels:
            # One device sync for both ranges.
            stats = [*torch.aminmax(labels[:a])] + ([*torch.aminmax(labels[a:])] if m > a else [])
            lo, hi, *rest = torch.stack(stats).tolist()
            check_label_range(lo, hi, owner, "labels (anchors)", num_classes=c)
            if rest:
                check_label_range(*rest, owner, "labels (contrast rows)", num_classes=c, min_value=-1)
        dtype = compute_dtype(center_logits, features)
        log_prior = self.log_prior.to(device=features.device, dtype=dtype)
        with torch.autocast(features.device.type, enabled=False):
            return _PaCoFunction.apply(center_logits.to(dtype), features.to(dtype), labels[:a], labels, log_prior,
                                       self.alpha, self.beta, self.gamma, self.temperature, self.smoothing)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, "
                f"temperature={self.temperature}, smoothing={self.smoothing}, "
                f"validate_labels={self.validate_labels}")


def _number(value: float, name: str, owner: str, minimum: float, maximum: float = math.inf,
            strict: bool = False) -> float:
    """``value`` as a float; raise unless finite and in ``[minimum, maximum]`` (``> minimum`` if strict)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}") from None
    low_ok = out > minimum if strict else out >= minimum
    if not math.isfinite(out) or not low_ok or out > maximum:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        if maximum < math.inf:
            bound += f" and <= {maximum}"
        raise ValueError(f"{owner}: {name} must be finite and {bound}, got {value!r}")
    return out
