"""Inference loops that return exactly one row per dataset sample, in one or many processes.

``predict`` (classifier logits) and ``extract_features`` (frozen pre-logit features for probes)
share one loop: ``torch.inference_mode``, the model in eval mode (its previous mode is restored
afterwards, so a trainer can call these between epochs), a tqdm bar on the main process, and, with
an ``accelerate.Accelerator``, ``gather_for_metrics`` after every batch so that the padding
Accelerate adds to make the last batch even across processes is dropped: every sample is counted
exactly once. Every process receives the full gathered result.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["predict", "extract_features", "forward_pre_logits"]


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _is_prepared(loader: Any) -> bool:
    """True for a loader that ``Accelerator.prepare`` already sharded (it tracks the remainder)."""
    try:
        from accelerate.data_loader import DataLoaderStateMixin
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return False
    return isinstance(loader, DataLoaderStateMixin)


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        images, targets = batch[0], batch[1]
    elif isinstance(batch, dict) and {"image", "label"} <= set(batch):
        images, targets = batch["image"], batch["label"]
    else:
        raise ValueError(f"evaluation loader must yield (images, labels) batches, got {type(batch).__name__}")
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"evaluation batches must hold one image tensor, got {type(images).__name__} "
                         f"(a multi-view training transform on an evaluation dataset?)")
    return images, torch.as_tensor(targets)


def _run(fn: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, loader: Iterable,
         accelerator: Any | None, progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    if accelerator is not None:
        device = accelerator.device
        if not _is_prepared(loader):
            # A plain DataLoader would give every process the whole dataset and the gather would
            # count each sample num_processes times; sharding it makes the gather exact.
            loader = accelerator.prepare_data_loader(loader)
        is_main = accelerator.is_main_process
    else:
        device = _model_device(model)
        is_main = True
    model.to(device)
    was_training = model.training
    model.eval()
    outs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(loader, total=total, desc=desc, disable=not (progress and is_main), leave=False,
               dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for batch in bar:
                images, targets = _split_batch(batch)
                images = images.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True)
                if accelerator is not None:
                    with accelerator.autocast():
                        out = fn(images)
                    out, targets = accelerator.gather_for_metrics((out.contiguous(), targets.contiguous()))
                else:
                    out = fn(images)
                outs.append(out.float().cpu())
                labels.append(targets.long().cpu())
    finally:
        model.train(was_training)
        bar.close()
    if not outs:
        raise ValueError("evaluation loader yielded no batch (empty dataset or split)")
    return torch.cat(outs), torch.cat(labels)


def _unwrap(model: nn.Module, accelerator: Any | None) -> nn.Module:
    if accelerator is not None:
        return accelerator.unwrap_model(model)
    return getattr(model, "module", model)


def forward_pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled backbone features before the classifier (timm's ``pre_logits``).

    Shape:
        - x: ``[B, 3, H, W]``
        - output: ``[B, num_features]``
    """
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ValueError(f"{type(model).__name__} has no forward_features/forward_head: feature probes "
                         f"need a timm-style model")
    return model.forward_head(model.forward_features(x), pre_logits=True)


def predict(model: nn.Module, loader: Iterable, accelerator: Any | None = None,
            progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier logits and labels of every sample of ``loader``'s dataset.

    Args:
        model: the classifier (plain, or prepared by ``accelerator``); put in eval mode for the
            loop and restored to its previous mode afterwards; moved to ``accelerator.device``
            (or kept on the device of its parameters without an accelerator).
        loader: yields ``(images, labels)``; with an accelerator, an unprepared loader is sharded
            with ``accelerator.prepare_data_loader`` first (a trainer evaluating every epoch should
            ``prepare`` its test loader once and pass that). Do not use ``drop_last=True``.
        accelerator: an ``accelerate.Accelerator`` for multi-process evaluation; results are
            gathered with ``gather_for_metrics`` (exactly ``len(dataset)`` rows on every process).
        progress: show a tqdm bar (main process only).

    Returns:
        ``(logits [N, C] float32 on CPU, targets [N] int64 on CPU)``. With several processes the
        row order interleaves the ranks' shards; rows and labels stay paired.
    """
    return _run(model, model, loader, accelerator, progress, desc="eval")


def extract_features(model: nn.Module, loader: Iterable, accelerator: Any | None = None,
                     progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen pre-logit features ``forward_head(forward_features(x), pre_logits=True)`` and labels.

    Same contract as :func:`predict` (eval mode, exact gather, CPU outputs).

    Returns:
        ``(features [N, D] float32 on CPU, labels [N] int64 on CPU)``.
    """
    core = _unwrap(model, accelerator)
    return _run(lambda x: forward_pre_logits(core, x), model, loader, accelerator, progress,
                desc="features")
