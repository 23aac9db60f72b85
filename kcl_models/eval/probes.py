"""Representation probes on frozen features: linear probe (cRT protocol), weighted kNN, open-set.

All probes take features already in memory (``extract_features`` in ``kcl_models.eval.evaluate``)
and return the same metric dict as ``compute_metrics`` (top-1/top-5, many/medium/few,
balancedness, ECE, per-class lists), plus ``"params"`` recording the probe's settings.

- **Linear probe** (Kang et al. 2020, cRT: "classifier re-training"): a new linear classifier on the
  frozen features, trained with **class-balanced sampling** (every class equally likely in every
  batch) by SGD with momentum and a cosine schedule. The KCL paper measures the balancedness of a
  feature space (Eq. 3) on the class accuracies of such a linear classifier, so
  ``linear_probe(...)["balancedness"]`` *is* the feature-space balancedness.
- **kNN** (Wu et al. 2018, the weighted kNN of instance discrimination / DINO): cosine similarity to
  the training features, the ``k`` nearest vote with weight ``exp(sim / T)``.
- **Open set** (KCL Table 4): the representation was learned without the *target* classes; a linear
  classifier is learned on the target classes only (and, for comparison, on the source classes and
  on all classes).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .metrics import DEFAULT_SIGMA, compute_metrics

__all__ = [
    "LinearProbe", "fit_linear_classifier", "linear_probe", "knn_logits", "knn_classify",
    "read_class_split", "open_set_probe",
]


def _check_feats(feats: torch.Tensor, labels: torch.Tensor, what: str, num_classes: int) -> None:
    if feats.dim() != 2:
        raise ValueError(f"{what} features must be [N, D], got shape {tuple(feats.shape)}")
    if labels.dim() != 1 or labels.shape[0] != feats.shape[0]:
        raise ValueError(f"{what} labels must be [N] with N = {feats.shape[0]}, got shape "
                         f"{tuple(labels.shape)}")
    if feats.shape[0] == 0:
        raise ValueError(f"{what} split has no samples")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{what} labels must lie in [0, {num_classes - 1}], found {lo if lo < 0 else hi}")


def _counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels.long().cpu(), minlength=num_classes).tolist()


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class LinearProbe(nn.Module):
    """Feature normalisation (fitted on the training features) followed by ``nn.Linear``.

    ``normalize``: ``'standardize'`` (per-dimension z-score, then scaled by ``1/sqrt(D)`` so a
    feature vector has unit RMS norm and one learning rate suits any width), ``'l2'`` (unit
    norm) or ``'none'``.

    Shape:
        - input: ``[N, D]``
        - output: ``[N, num_classes]``
    """

    def __init__(self, dim: int, num_classes: int, normalize: str = "standardize") -> None:
        super().__init__()
        if normalize not in ("standardize", "l2", "none"):
            raise ValueError(f"LinearProbe normalize must be 'standardize', 'l2' or 'none', got {normalize!r}")
        self.normalize = normalize
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.fc = nn.Linear(dim, num_classes)
        nn.init.zeros_(self.fc.weight)  # convex problem: zero start is deterministic and fine
        nn.init.zeros_(self.fc.bias)

    @torch.no_grad()
    def fit_normalization(self, feats: torch.Tensor) -> None:
        if self.normalize == "standardize":
            self.mean.copy_(feats.mean(0))
            std = feats.std(0, unbiased=False).clamp_min(1e-6)
            self.scale.copy_(1.0 / (std * math.sqrt(feats.shape[1])))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize == "standardize":
            return (x - self.mean) * self.scale
        if self.normalize == "l2":
            return F.normalize(x, dim=1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.transform(x))


def _balanced_batches(labels: torch.Tensor, num_classes: int, batch_size: int, steps: int,
                      generator: torch.Generator) -> torch.Tensor:
    """``[steps, batch_size]`` indices: a uniformly drawn class present in ``labels``, then a
    uniformly drawn sample of that class (sampling with replacement, as cRT's class-aware sampler
    in expectation)."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    present = torch.nonzero(counts > 0).flatten()
    cls = present[torch.randint(len(present), (steps, batch_size), generator=generator)]
    offset = (torch.rand((steps, batch_size), generator=generator) * counts[cls]).long()
    offset = torch.minimum(offset, counts[cls] - 1)
    return order[starts[cls] + offset]


def fit_linear_classifier(feats: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                          epochs: int = 30, batch_size: int = 256, lr: float = 1.0, momentum: float = 0.9,
                          weight_decay: float = 5e-4, optimizer: str = "sgd", balanced: bool = True,
                          normalize: str = "standardize", seed: int = 0,
                          device: str | torch.device | None = None, progress: bool = False) -> LinearProbe:
    """Train a linear classifier on frozen features (cRT protocol; deterministic for a seed).

    An epoch is ``ceil(N / batch_size)`` steps. ``balanced=True`` draws every batch class-uniformly
    (classes without training samples are skipped); ``False`` shuffles instances. ``optimizer``:
    ``'sgd'`` (momentum, cosine decay to 0) or ``'adam'`` (same schedule; use a smaller ``lr``,
    e.g. 1e-2). Defaults suit the ``'standardize'`` normalisation.

    Shape:
        - feats: ``[N, D]``
        - labels: ``[N]``
    """
    _check_feats(feats, labels, "linear probe training", num_classes)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"linear probe needs epochs >= 1 and batch_size >= 1, got {epochs}, {batch_size}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"linear probe optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    dev = _resolve_device(device)
    feats = feats.detach().float().to(dev)
    labels = labels.detach().long().to(dev)
    n, dim = feats.shape
    gen = torch.Generator().manual_seed(int(seed))
    probe = LinearProbe(dim, num_classes, normalize).to(dev)
    probe.fit_normalization(feats)
    x_all = probe.transform(feats)  # normalise once: the buffers are fixed during training
    params = probe.fc.parameters()
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * s / total)))
    labels_cpu = labels.cpu()
    for _ in tqdm(range(epochs), desc="linear probe", disable=not progress, leave=False):
        if balanced:
            idx = _balanced_batches(labels_cpu, num_classes, batch_size, steps_per_epoch, gen)
        else:
            perm = torch.randperm(n, generator=gen)
            idx = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
        for batch_idx in idx:
            batch_idx = batch_idx.to(dev)
            loss = F.cross_entropy(probe.fc(x_all[batch_idx]), labels[batch_idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return probe.eval()


def _shot_kwargs(many: int, few: int, relative: bool, sigma: float) -> dict:
    return dict(many=many, few=few, relative=relative, sigma=sigma)


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, *, train_class_counts: Sequence[int] | None = None,
                 many: int = 100, few: int = 20, relative: bool = False, sigma: float = DEFAULT_SIGMA,
                 epochs: int = 30, batch_size: int = 256, lr: float = 1.0, momentum: float = 0.9,
                 weight_decay: float = 5e-4, optimizer: str = "sgd", balanced: bool = True,
                 normalize: str = "standardize", seed: int = 0, device: str | torch.device | None = None,
                 progress: bool = False) -> dict:
    """Linear probe (cRT protocol) on frozen features, scored on the test features.

    ``train_class_counts`` (default: the label counts of ``train_feats``) define the shot groups.
    The result's ``balancedness`` is the feature-space balancedness of KCL Eq. 3.

    Returns:
        ``compute_metrics`` dict plus ``"params"``.

    Shape:
        - train_feats: ``[N, D]``, train_labels: ``[N]``
        - test_feats: ``[M, D]``, test_labels: ``[M]``
    """
    _check_feats(test_feats, test_labels, "linear probe test", num_classes)
    probe = fit_linear_classifier(train_feats, train_labels, num_classes, epochs=epochs,
                                  batch_size=batch_size, lr=lr, momentum=momentum,
                                  weight_decay=weight_decay, optimizer=optimizer, balanced=balanced,
                                  normalize=normalize, seed=seed, device=device, progress=progress)
    dev = next(probe.parameters()).device
    with torch.no_grad():
        logits = torch.cat([probe(chunk.float().to(dev)).cpu() for chunk in test_feats.split(8192)])
    counts = list(train_class_counts) if train_class_counts is not None else _counts(train_labels, num_classes)
    out = compute_metrics(logits, test_labels, counts, **_shot_kwargs(many, few, relative, sigma))
    out["params"] = dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, optimizer=optimizer, balanced=balanced,
                         normalize=normalize, seed=seed)
    return out


def knn_logits(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
               num_classes: int, k: int = 20, temperature: float = 0.07, chunk_size: int = 1024,
               device: str | torch.device | None = None) -> torch.Tensor:
    """Weighted kNN class scores: ``log sum_{j in top-k} [y_j = c] exp(cos(x, x_j) / T)``.

    Returned as logits (log of the vote mass; a class without a neighbour gets a very small value),
    so ``softmax`` gives the normalised vote and top-k / ECE apply unchanged. ``k`` is clipped to the
    number of training samples.

    Shape:
        - train_feats: ``[N, D]``, train_labels: ``[N]``, test_feats: ``[M, D]``
        - output: ``[M, num_classes]``
    """
    if k < 1:
        raise ValueError(f"knn k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"knn temperature must be > 0, got {temperature}")
    dev = _resolve_device(device)
    bank = F.normalize(train_feats.detach().float().to(dev), dim=1)  # [N, D]
    bank_labels = train_labels.detach().long().to(dev)
    kk = min(int(k), bank.shape[0])
    out = []
    for chunk in test_feats.split(chunk_size):
        q = F.normalize(chunk.detach().float().to(dev), dim=1)  # [m, D]
        sim, idx = (q @ bank.T).topk(kk, dim=1)  # [m, k]
        # exp((s - 1)/T) <= 1 avoids overflow; the constant shift cancels in the softmax.
        w = torch.exp((sim - 1.0) / temperature)
        votes = torch.zeros(q.shape[0], num_classes, device=dev).scatter_add_(1, bank_labels[idx], w)
        out.append(votes.clamp_min(1e-30).log().cpu())
    return torch.cat(out)


def knn_classify(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, *, k: int = 20, temperature: float = 0.07,
                 train_class_counts: Sequence[int] | None = None, many: int = 100, few: int = 20,
                 relative: bool = False, sigma: float = DEFAULT_SIGMA, chunk_size: int = 1024,
                 device: str | torch.device | None = None) -> dict:
    """Weighted kNN classifier (cosine similarity, ``exp(sim / T)`` votes of the ``k`` nearest
    training features), scored with the same shot-group metrics as the linear probe.

    Returns:
        ``compute_metrics`` dict plus ``"params"``.

    Shape:
        - train_feats: ``[N, D]``, train_labels: ``[N]``
        - test_feats: ``[M, D]``, test_labels: ``[M]``
    """
    _check_feats(train_feats, train_labels, "kNN training", num_classes)
    _check_feats(test_feats, test_labels, "kNN test", num_classes)
    logits = knn_logits(train_feats, train_labels, test_feats, num_classes, k=k, temperature=temperature,
                        chunk_size=chunk_size, device=device)
    counts = list(train_class_counts) if train_class_counts is not None else _counts(train_labels, num_classes)
    out = compute_metrics(logits, test_labels, counts, **_shot_kwargs(many, few, relative, sigma))
    out["params"] = dict(k=k, temperature=temperature)
    return out


def read_class_split(path: str | Path, class_names: Sequence[str] | None = None,
                     num_classes: int | None = None) -> list[int]:
    """Read an open-set class split: one target class a line, as an integer id or a class name.

    Names are matched against ``class_names`` (a leading ``/`` is ignored, so the KCL authors'
    ``/n01440764`` WordNet-id lists work when the dataset's classes are WordNet ids). Blank lines and
    ``#`` comments are skipped. Duplicates are an error, as are ids outside ``[0, num_classes)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class split file not found: {path}")
    name_to_id = {str(n).lstrip("/"): i for i, n in enumerate(class_names or [])}
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    out: list[int] = []
    seen: dict[int, int] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split()[0].lstrip("/")
        if token.lstrip("-").isdigit():
            cid = int(token)
        elif token in name_to_id:
            cid = name_to_id[token]
        else:
            hint = f" (known names start: {list(name_to_id)[:5]})" if name_to_id else " (no class names known)"
            raise ValueError(f"{path}:{lineno}: {token!r} is neither a class id nor a class name{hint}")
        if cid < 0 or (num_classes is not None and cid >= num_classes):
            raise ValueError(f"{path}:{lineno}: class id {cid} outside [0, {num_classes})")
        if cid in seen:
            raise ValueError(f"{path}:{lineno}: class {token!r} already listed on line {seen[cid]}")
        seen[cid] = lineno
        out.append(cid)
    if not out:
        raise ValueError(f"{path}: no class listed")
    return out


def _subset(feats: torch.Tensor, labels: torch.Tensor, classes: Sequence[int],
            num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    remap = torch.full((num_classes,), -1, dtype=torch.long)
    remap[torch.as_tensor(list(classes), dtype=torch.long)] = torch.arange(len(classes))
    new = remap[labels.long().cpu()]
    keep = new >= 0
    return feats[keep], new[keep]


def open_set_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                   test_labels: torch.Tensor, target_classes: Sequence[int], num_classes: int, *,
                   include_source: bool = True, include_all: bool = True, **probe_kwargs) -> dict:
    """Open-set / OOD generalisation protocol of KCL Table 4.

    The backbone was pre-trained without ``target_classes``; a linear probe (``linear_probe``,
    class-balanced) is learned on the training samples of the target classes only and tested on
    their test samples (labels re-indexed ``0..T-1`` in ``target_classes`` order). For Table 4's
    other columns, ``include_source`` adds a probe on the remaining (source) classes and
    ``include_all`` one on all classes. Shot groups use each subset's own training counts.

    Returns:
        ``{"target_classes": [...], "target": metrics, "source": metrics, "all": metrics}``
        (``source``/``all`` only when asked and non-empty); every metrics dict is a
        ``linear_probe`` result whose per-class lists follow its ``"classes"`` (original ids).
    """
    targets = [int(c) for c in target_classes]
    if not targets:
        raise ValueError("open_set_probe: no target class given")
    bad = [c for c in targets if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"open_set_probe: target class ids {bad[:5]} outside [0, {num_classes})")
    if len(set(targets)) != len(targets):
        raise ValueError("open_set_probe: target_classes has duplicates")
    source = [c for c in range(num_classes) if c not in set(targets)]
    out: dict = {"target_classes": targets}
    subsets = [("target", targets)]
    if include_source and source:
        subsets.append(("source", source))
    if include_all:
        subsets.append(("all", list(range(num_classes))))
    for name, classes in subsets:
        tr_x, tr_y = _subset(train_feats, train_labels, classes, num_classes)
        te_x, te_y = _subset(test_feats, test_labels, classes, num_classes)
        if tr_x.shape[0] == 0 or te_x.shape[0] == 0:
            raise ValueError(f"open_set_probe: the {name} classes have no "
                             f"{'training' if tr_x.shape[0] == 0 else 'test'} sample")
        probe_kwargs.pop("train_class_counts", None)
        res = linear_probe(tr_x, tr_y, te_x, te_y, len(classes), **probe_kwargs)
        res["classes"] = list(classes)
        out[name] = res
    return out
