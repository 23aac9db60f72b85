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
    log-weight (``x_ij = s_ij + log w_ij``), so the denominator is a plain logsumexp and
    ``dL_i/dx_ij = softmax_ij - [j in P_i]/|P_i|``. Nothing of size ``[N, C]`` is built besides
    the logits themselves (no one-hot): class counts come from ``index_add_``, the own-prototype
    entries are touched through ``(row, y_i)`` indices. The logits are exponentiated in place and
    kept for the backward, which needs three matmuls (the symmetric view block takes one) and no
    ``[N, C]`` pass: the prototype block's softmax normaliser is applied as a row scaling.
    """

    @staticmethod
    def forward(ctx, z, prototypes, y, temperature):
        n, c = z.shape[0], prototypes.shape[0]
        inv_t = 1.0 / temperature
        # n_c: views of class c in the batch (prototypes not counted).
        counts = torch.zeros(c, dtype=z.dtype, device=z.device).index_add_(0, y, z.new_ones(n))  # [C]
        n_y = counts[y]  # [N], >= 1 (the anchor itself)
        # |A_c(i)| = n_c + 1 (views + prototype) for c != y_i, and n_{y_i} for c = y_i (i excluded):
        # column log-weight -log(n_c + 1), plus log((n+1)/n) on the anchor's own class.
        log_w_other = torch.log1p(counts).neg_()  # [C]
        same_fix = torch.log1p(n_y.reciprocal())  # [N]

        same = (y[:, None] == y[None, :]).to(z.dtype)  # [N, N]
        same.fill_diagonal_(0.0)  # P_i among the views: same class, not i itself
        x_v = torch.addmm(log_w_other[y], z, z.T, alpha=inv_t)  # [N, D] @ [D, N] -> [N, N]
        x_v.addcmul_(same, same_fix[:, None])
        pos_sum = (x_v * same).sum(dim=1)  # [N] other same-class views (diagonal still finite)
        x_v.fill_diagonal_(float("-inf"))  # i is not in A(i)
        rows = torch.arange(n, device=z.device)
        x_p = torch.addmm(log_w_other, z, prototypes.T, alpha=inv_t)  # [N, D] @ [D, C] -> [N, C]
        own = x_p[rows, y] + same_fix  # [N] own prototype: own-class weight; (row, y_i) pairs are unique
        x_p.index_put_((rows, y), own)  # so a plain write (no sorting accumulate) suffices
        pos_sum += own

        # log sum_c 1/|A_c(i)| sum_{j in A_c(i)} exp(s_ij), shifted by the row max.
        row_max = torch.maximum(x_v.amax(dim=1), x_p.amax(dim=1))  # [N]
        e_v = x_v.sub_(row_max[:, None]).exp_()  # in place: [N, N]
        e_p = x_p.sub_(row_max[:, None]).exp_()  # in place: [N, C]
        denom = e_v.sum(dim=1) + e_p.sum(dim=1)  # [N]
        # Positives: the n_{y_i} - 1 other same-class views and prototype y_i, |P_i| = n_{y_i};
        # their logits carry the offset log w = -log n_{y_i}, removed again by the last term.
        per_anchor = denom.log() + row_max - pos_sum / n_y - n_y.log()
        ctx.save_for_backward(z, prototypes, y, e_v, e_p, denom, same, n_y)
        ctx.temperature = temperature
        return per_anchor.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        z, prototypes, y, e_v, e_p, denom, same, n_y = ctx.saved_tensors
        inv_denom, inv_pos = denom.reciprocal()[:, None], n_y.reciprocal()  # [N, 1], [N]
        g_v = (e_v * inv_denom).addcmul_(same, inv_pos[:, None], value=-1.0)  # [N, N]
        scale = grad_out / (z.shape[0] * ctx.temperature)
        # The prototype block's gradient softmax - [c = y_i]/|P_i| is never formed as [N, C]:
        # its 1/denom is a row scaling and its positive part one prototype row per anchor.
        grad_z = grad_p = None
        if ctx.needs_input_grad[0]:
            grad_z = torch.mm(e_p, prototypes).mul_(inv_denom)  # [N, C] @ [C, D] -> [N, D]
            grad_z.addcmul_(prototypes[y], inv_pos[:, None], value=-1.0)
            # z is both anchor (rows) and column of the view block: (G + G^T) @ z
            grad_z.addmm_(g_v + g_v.T, z).mul_(scale)  # [N, N] @ [N, D] -> [N, D]
        if ctx.needs_input_grad[1]:
            grad_p = torch.mm(e_p.T, z * inv_denom)  # [C, N] @ [N, D] -> [C, D]
            grad_p.index_add_(0, y, z * inv_pos[:, None], alpha=-1.0)
            grad_p.mul_(scale)
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
        validate_labels: check that labels lie in ``[0, C)`` (one device sync per call, so a bad
            label is named in the error). Without it the loss runs without any host-device sync
            and a bad label fails inside an indexing kernel; pass False where the data pipeline
            guarantees the range (the trainer's datasets check labels when they load).

    Shape:
        - features: ``[B, V, D]``
        - labels: ``[B]`` integers in ``[0, C)``
        - prototypes: ``[C, D]``
        - output: scalar
    """

    def __init__(self, num_classes: int, temperature: float = 0.07, validate_labels: bool = True) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"BCLLoss: num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.temperature = check_temperature(temperature, "BCLLoss")
        self.validate_labels = bool(validate_labels)

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
        if b == 0:
            raise ValueError(f"{owner}: empty batch (features has 0 rows)")
        check_labels(labels, b, owner, num_classes=self.num_classes, check_range=self.validate_labels)
        dtype = compute_dtype(features, prototypes)
        z = features.reshape(b * v, d).to(dtype)  # row b*V + v: image b, view v
        y = labels.to(device=features.device, dtype=torch.long).repeat_interleave(v)  # [N]
        with torch.autocast(features.device.type, enabled=False):
            return _BCLFunction.apply(z, prototypes.to(dtype), y, self.temperature)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, temperature={self.temperature}, "
                f"validate_labels={self.validate_labels}")
