#!/usr/bin/env python
"""Trainer throughput.

cpu (default): img/s of ``train()`` on the digits-LT CE recipe versus a bare PyTorch loop doing the
same forward/backward/step on the same data, transforms and batch size (goal: ratio >= 0.95).

gpu (``--gpu``): training-step throughput of ResNet-50 BCL (BCLModel + LA-CE + BCL loss, 3 views
per image, prototypes) at bf16 autocast and channels_last on synthetic data held in GPU memory,
beside a timm-style CE step (timm model + timm SGD + CE, bf16, channels_last: what timm's
train.py / benchmark.py do per step), optionally with torch.compile.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import kcl_models  # noqa: F401


def bench_cpu(epochs: int, batch_size: int) -> None:
    from kcl_models.data import build_dataset
    from kcl_models.data.transforms import build_views
    from kcl_models.train.config import load_config
    from kcl_models.train.trainer import train

    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(Path(__file__).parents[1] / "configs/digits_ce.yaml",
                          dict(output_dir=tmp, epochs=epochs, batch_size=batch_size, log_with=None, eval_every=0,
                               warmup_epochs=0, checkpoint_every=10_000))
        train(cfg)
        stats = json.loads((Path(tmp) / "train_metrics.json").read_text())["timing"]
    trainer_rate = stats["images"] / stats["seconds"]

    # bare loop: same data, transform, model, optimizer, loss
    pcfg = timm.models.get_pretrained_cfg(cfg.model)
    size = cfg.input_size or pcfg.input_size[-1]
    views = build_views("ce", size, pcfg.mean, pcfg.std, randaug=cfg.randaug, hflip=cfg.hflip)
    ds = build_dataset("digits-lt", "train", transform=views, **cfg.data_kwargs)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True)
    model = timm.create_model(cfg.model, num_classes=10).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    images, tic = 0, time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            images += y.shape[0]
    bare_rate = images / (time.perf_counter() - tic)
    print("| loop | img/s |\n|---|---|")
    print(f"| bare PyTorch loop | {bare_rate:.1f} |")
    print(f"| train.py (Accelerate, digits CE) | {trainer_rate:.1f} |")
    print(f"| ratio trainer / bare | {trainer_rate / bare_rate:.3f} |")


def bench_gpu(batch_size: int, steps: int, warmup: int, compile_model: bool, arch: str) -> None:
    from kcl_models.losses import BCLLoss, LogitAdjustedLoss
    from kcl_models.methods.modules import BCLModel

    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    C = 1000
    counts = [round(1280 * (5 / 1280) ** (i / (C - 1))) for i in range(C)]  # ImageNet-LT-like profile

    def run(step, params, n_images):
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        for i in range(warmup + steps):
            if i == warmup:
                torch.cuda.synchronize()
                tic = time.perf_counter()
            loss = step()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return n_images * steps / (time.perf_counter() - tic)

    rows = []
    for compiled in ([True] if compile_model else [False]):
        # timm-style CE step
        model = timm.create_model(arch.replace("_bcl", ""), num_classes=C).to(dev, memory_format=torch.channels_last)
        fwd = torch.compile(model) if compiled else model
        x = torch.randn(batch_size, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, C, (batch_size,), device=dev)

        def ce_step(fwd=fwd, x=x, y=y):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return F.cross_entropy(fwd(x), y)
        ce_rate = run(ce_step, model.parameters(), batch_size)
        del model, fwd
        torch.cuda.empty_cache()

        # BCL step: 3 views per image through one backbone, LA-CE on view 0, BCL on views 1-2
        backbone = timm.create_model(arch, num_classes=C)
        bcl_model = BCLModel(backbone, feat_dim=1024, hidden=2048).to(dev, memory_format=torch.channels_last)
        fwd = torch.compile(bcl_model) if compiled else bcl_model
        la, bcl = LogitAdjustedLoss(counts).to(dev), BCLLoss(C, 0.07)
        views = torch.randn(3 * batch_size, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)

        def bcl_step(fwd=fwd, views=views, y=y, la=la, bcl=bcl):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits, z, protos = fwd(views)
            feats = z.float()[batch_size:].view(2, batch_size, -1).transpose(0, 1)
            return la(logits.float()[:batch_size], y) + 0.35 * bcl(feats, y, protos.float())
        torch.cuda.reset_peak_memory_stats()
        bcl_rate = run(bcl_step, bcl_model.parameters(), batch_size)
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append((compiled, ce_rate, bcl_rate, peak))
        del bcl_model, fwd
        torch.cuda.empty_cache()

    print(f"GPU: {torch.cuda.get_device_name()}, {arch}, batch {batch_size} images/step, bf16 autocast, "
          f"channels_last, {steps} timed steps")
    print("| torch.compile | timm-style CE img/s | BCL img/s (3 views/img) | BCL views/s | BCL/CE views ratio "
          "| BCL peak mem GiB |\n|---|---|---|---|---|---|")
    for compiled, ce_rate, bcl_rate, peak in rows:
        print(f"| {compiled} | {ce_rate:.0f} | {bcl_rate:.0f} | {3 * bcl_rate:.0f} | {3 * bcl_rate / ce_rate:.3f} "
              f"| {peak:.1f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--arch", default="resnet50_bcl")
    a = p.parse_args()
    if a.gpu:
        bench_gpu(a.batch_size or 128, a.steps, a.warmup, a.compile, a.arch)
    else:
        bench_cpu(a.epochs, a.batch_size or 64)
