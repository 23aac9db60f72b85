"""Balanced contrastive loss, BCL (Zhu et al., "Balanced Contrastive Learning for Long-Tailed
Visual Recognition", CVPR 2022): supervised contrastive learning with class-averaging and
class-complement (class prototypes as extra contrast columns)."""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_labels, check_temperature, check_tensor, compute_dtype

__all__ = ["BCLLoss"]


class _BCLFunction(torch.autograd.Function):
    """Loss and hand-written gradient over the two logit blocks (views ``[N, N]``, prototypes
    ``[N, C]``).

    Every column weight of the class-averaged denominator is folded into the logits as an additive
    log-weight, so the denominator is a plain logsumexp and ``dL_i/dx_ij = softmax_ij -
    [j in P_i]/|P_i|``. Nothing of size ``[N, C]`` is built besides the logits themselves
    (no one-hot), and the backward needs three matmuls (the symmetric view block takes one).
    """

    @staticmethod
    def forward(ctx, z, prototypes, y, temperature):  # noqa: D401
        n, c = z.shape[0], prototypes.shape[0]
        # n_c: views of class c in the batch (prototypes not counted), no one-hot.
        counts = torch.zeros(c, dtype=z.dtype, device=z.device).index_add_(0, y, torch.ones_like(y, dtype=z.dtype))
        n_y = counts[y]  # [N], >= 1 (the anchor itself)
        # |A_c(i)| = n_c + 1 (views + prototype) for c != y_i, and n_{y_i} for c = y_i (i excluded).
        log_w_other = -(counts + 1).log()  # [C]
        log_w_same = -n_y.log()  # [N]
        same_fix = log_w_same - log_w_other[y]  # [N], turns an other-class weight into the own-class one
        zt = z / temperature  # [N, D]

        same = y[:, None] == y[None, :]  # [N, N]
        same.fill_diagonal_(False)  # P_i among the views: same class, not i itself
        x_v = torch.addmm(log_w_other[y], zt, z.T)  # [N, D] @ [D, N] -> [N, N], + column log-weight
        x_v.add_(same * same_fix[:, None])
        x_v.fill_diagonal_(float("-inf"))  # i is not in A(i)
        rows = torch.arange(n, device=z.device)
        x_p = torch.addmm(log_w_other, zt, prototypes.T)  # [N, D] @ [D, C] -> [N, C]
        x_p.index_put_((rows, y), same_fix, accumulate=True)  # own prototype: own-class weight

        # log sum_c 1/|A_c(i)| sum_{j in A_c(i)} exp(s_ij); logsumexp shifts by the row max.
        log_denom = torch.logaddexp(x_v.logsumexp(dim=1), x_p.logsumexp(dim=1))  # [N]
        # Positives are the n_{y_i} - 1 other same-class views and prototype y_i: |P_i| = n_{y_i}.
        # Their logits carry the offset log_w_same, removed again here.
        pos_sum = torch.where(same, x_v, 0.0).sum(dim=1) + x_p[rows, y]  # [N]
        per_anchor = log_denom - pos_sum / n_y + log_w_same
        ctx.save_for_backward(z, prototypes, y, x_v, x_p, log_denom, same, n_y)
        ctx.temperature = temperature
        return per_anchor.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        z, prototypes, y, x_v, x_p, log_denom, same, n_y = ctx.saved_tensors
        n = z.shape[0]
        inv_pos = 1.0 / n_y  # [N]
        g_v = (x_v - log_denom[:, None]).exp_()  # [N, N] softmax (0 on the diagonal)
        g_v.sub_(same * inv_pos[:, None])
        g_p = (x_p - log_denom[:, None]).exp_()  # [N, C]
        g_p.index_put_((torch.arange(n, device=z.device), y), -inv_pos, accumulate=True)
        scale = grad_out / (n * ctx.temperature)
        grad_z = grad_p = None
        if ctx.needs_input_grad[0]:
            # z is both anchor (rows) and column: (G + G^T) @ z, plus the prototype block.
            grad_z = torch.mm(g_p, prototypes)  # [N, C] @ [C, D] -> [N, D]
            grad_z.addmm_(g_v + g_v.T, z).mul_(scale)  # [N, N] @ [N, D] -> [N, D]
        if ctx.needs_input_grad[1]:
            grad_p = torch.mm(g_p.T, z).mul_(scale)  # [C, N] @ [N, D] -> [C, D]
        return grad_z, grad_p, None, None


class BCLLoss(nn.Module):
    """Balanced contrastive loss, Zhu et al. (CVPR 2022): the final BCL loss, class-averaging plus
    class-complement (equation as in the project's METHODS.md; the paper text available to the
    project carries no equation numbers, so none is cited).

    Anchors are the ``N = B * V`` sample views ``z_i``; the contrast columns are the same views
    plus the ``C`` class prototypes ``p_c`` (class-complement: every class is present in every
    batch). For anchor ``i``:

        ``L_i = -1/|P_i| * sum_{p in P_i} [ z_i.z_p/tau
        - log sum_{c=1..C} 1/|A_c(i)| * sum_{j in A_c(i)} exp(z_i.z_j/tau) ]``

    - ``A_c(i)``: all columns of class c (views and prototype c), without ``i`` itself;
      class-averaging divides each class's sum by ``|A_c(i)|``;
    - ``P_i``: the columns of class ``y_i`` except ``i``, i.e. the other same-class views and the
      prototype ``p_{y_i}``.

    The loss is the mean of ``L_i`` over the ``N`` anchors. Because the prototype is always in
    ``P_i`` and in ``A_{y_i}(i)``, every anchor has a positive and every ``|A_c(i)| >= 1``: no
    anchor is dropped and nothing is divided by zero. Any number of views ``V >= 1`` works.

    Features and prototypes are assumed L2-normalised (not normalised here). The loss is computed
    in float32 at least (half-precision inputs are upcast, autocast is off inside). For a batch
    spread over processes pass the gathered features and labels
    (``kcl_models.train.distributed.all_gather_with_grad``).

    Args:
        num_classes: ``C``, the number of prototypes.
        temperature: ``tau`` > 0 (0.07 ImageNet-LT/iNat, 0.1 CIFAR in the paper's recipes).

    Shape:
        - features: ``[B, V, D]``
        - labels: ``[B]`` integers in ``[0, C)``
        - prototypes: ``[C, D]``
        - output: scalar
    """

    def __init__(self, num_classes: int, temperature: float = 0.07) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"BCLLoss: num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.temperature = check_temperature(temperature, "BCLLoss")

    def forward(self, features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        owner = "BCLLoss"
        check_tensor(features, "features", 3, owner, "[B, V, D]")
        check_tensor(prototypes, "prototypes", 2, owner, "[C, D]")
        b, v, d = features.shape
        if prototypes.shape[0] != self.num_classes:
            raise ValueError(f"{owner}: prototypes has {prototypes.shape[0]} rows but num_classes is "
                             f"{self.num_classes}")
        if prototypes.shape[1] != d:
            raise ValueError(f"{owner}: prototype dim {prototypes.shape[1]} does not match feature dim {d}")
        check_labels(labels, b, owner, num_classes=self.num_classes)
        dtype = compute_dtype(features, prototypes)
        z = features.reshape(b * v, d).to(dtype)  # row b*V + v: image b, view v
        y = labels.to(device=features.device, dtype=torch.long).repeat_interleave(v)  # [N]
        with torch.autocast(features.device.type, enabled=False):
            return _BCLFunction.apply(z, prototypes.to(dtype), y, self.temperature)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, temperature={self.temperature}"
