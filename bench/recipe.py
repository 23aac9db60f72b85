#!/usr/bin/env python
"""Recipe time: N epochs of a recipe's training step on synthetic data of the recipe's shape.

The data is ``synthetic`` (:mod:`kcl_models.data.synthetic`) with the recipe's classes, image size
and long tail (CIFAR-100-LT IF100: 10,847 images of 32x32 in 100 classes). For each data path
(``pil``: per-image PIL views in DataLoader workers; ``tensor``: uint8 images on the training
device, batched views) and each mode (eager; ``--compile``: the training module and losses under
torch.compile) it times the method's real step (views -> loss -> backward -> optimizer ->
after-step) and prints views/s and the projected wall time of the full recipe. The loader-bound
fraction is the step throughput with the real loader divided by the throughput on one pre-made
batch reused (1.0: the loader costs nothing). bf16 and channels_last follow the recipe on a GPU;
on a CPU the run is fp32 (CPU bf16 autocast would measure something no one runs).

    python bench/recipe.py --recipe configs/cifar100_lt_bcl.yaml --epochs 1

ends with ``views/s pil <n> tensor <n> | projected minutes pil <n> tensor <n>``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import timm
import torch

import kcl_models  # noqa: F401
from kcl_models.methods import MethodContext
from kcl_models.methods.base import build_options
from kcl_models.train.config import load_config
from kcl_models.train.data import begin_epoch, build_run_data, needs_prepare, train_loader
from kcl_models.train.distributed import all_gather_with_grad, concat_all_gather


def _config(recipe: Path, pipeline: str, workers: int, compiled: bool, on_gpu: bool, overrides: dict):
    raw = load_config(recipe)
    pcfg = timm.models.get_pretrained_cfg(raw.model)
    size = raw.input_size or pcfg.input_size[-1]
    values = dict(data="synthetic", train_split=None, test_split=None, val_split=None, data_root=None,
                  data_kwargs={"img_size": size, "n_max": 500, "test_per_class": 1}, num_classes=pcfg.num_classes,
                  data_pipeline=pipeline, workers=workers, log_with=None,
                  compile_losses=raw.compile_losses if compiled else "no",
                  compile_model="inductor" if compiled else "no")
    if not on_gpu:
        values.update(mixed_precision="no", channels_last=False)
    values.update(overrides)
    return load_config(recipe, values)


def _setup(cfg, accelerator):
    """The trainer's own pieces: data, method, module, optimizer (no checkpoints, no evaluation)."""
    from timm.optim import create_optimizer_v2

    method_cls = cfg.method_class
    global_batch = cfg.batch_size * accelerator.num_processes
    data = build_run_data(cfg, method_cls.views, global_batch, accelerator.device)
    loader = train_loader(data, cfg, accelerator)
    ctx = MethodContext(accelerator, data.num_classes, data.counts, all_gather_with_grad, concat_all_gather,
                        cfg.compile_losses, None, lambda *_: None)
    method = method_cls(build_options(method_cls, cfg.options), ctx)
    method.check_data(global_batch)
    backbone = timm.create_model(cfg.model, num_classes=data.num_classes)
    if cfg.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    model = method.build(backbone)
    if cfg.compile_model != "no":
        model.compile(backend=cfg.compile_model)
    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr * 0.01, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum)
    if needs_prepare(loader):
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    return data, loader, method, model, optimizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _steps(batches, method, model, optimizer, accelerator, limit: int | None) -> tuple[int, int, float]:
    """(steps, views, seconds) of real training steps over ``batches``."""
    model.train()
    n = views = 0
    gen = torch.Generator().manual_seed(0)
    _sync(accelerator.device)
    tic = time.perf_counter()
    for batch in batches:
        out = method.loss(model, batch, gen)
        accelerator.backward(out.loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.after_step(model)
        n += 1
        views += out.num_images
        if limit and n >= limit:
            break
    _sync(accelerator.device)
    return n, views, time.perf_counter() - tic


def run_path(recipe: Path, pipeline: str, compiled: bool, args, accelerator) -> dict:
    on_gpu = accelerator.device.type == "cuda"
    cfg = _config(recipe, pipeline, args.workers if pipeline == "pil" else 0, compiled, on_gpu, args.overrides)
    data, loader, method, model, optimizer = _setup(cfg, accelerator)
    method.before_training(model, loader)
    begin_epoch(loader, 0)
    # warm-up (compilation, allocator, workers' first batches), then timed epochs
    _steps(loader, method, model, optimizer, accelerator, args.warmup)
    steps = views = 0
    seconds = 0.0
    for epoch in range(args.epochs):
        begin_epoch(loader, epoch + 1)
        n, v, s = _steps(loader, method, model, optimizer, accelerator, args.max_steps)
        steps, views, seconds = steps + n, views + v, seconds + s
    premade = next(iter(loader))
    n_pre, v_pre, s_pre = _steps([premade] * min(steps, args.premade_steps), method, model, optimizer,
                                 accelerator, None)
    rate, pre_rate = views / seconds, v_pre / s_pre
    views_per_epoch = views / steps * len(loader)
    minutes = cfg.epochs * views_per_epoch / rate / 60
    return {"pipeline": pipeline, "compiled": compiled, "mixed_precision": cfg.mixed_precision,
            "channels_last": cfg.channels_last, "steps": steps, "views_per_s": round(rate, 1),
            "premade_views_per_s": round(pre_rate, 1), "loader_bound_fraction": round(rate / pre_rate, 3),
            "projected_minutes": round(minutes, 2), "recipe_epochs": cfg.epochs, "train_images": len(data.train)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--recipe", type=Path, default=Path("configs/cifar100_lt_bcl.yaml"))
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per path")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap each timed epoch (default: none on a GPU, 8 steps on a CPU; 0: no cap)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, workers)")
    p.add_argument("--premade-steps", type=int, default=10, help="steps on one pre-made batch")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="PIL path workers")
    p.add_argument("--paths", nargs="+", default=["pil", "tensor"], choices=["pil", "tensor"])
    p.add_argument("--compile", action="store_true", help="also time the torch.compile mode")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides (e.g. batch_size=128)")
    p.add_argument("--json", type=Path, default=None, help="write every row here")
    args = p.parse_args()
    args.overrides = dict(kv.split("=", 1) for kv in args.set)
    if args.max_steps is None and not torch.cuda.is_available():
        args.max_steps = 8  # a CPU epoch of a CIFAR recipe takes minutes: time 8 steps, project from them
    args.max_steps = args.max_steps or None
    from accelerate import Accelerator

    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    raw = load_config(args.recipe)
    accelerator = Accelerator(mixed_precision=raw.mixed_precision if torch.cuda.is_available() else "no")
    cap = f", timed epochs capped at {args.max_steps} steps" if args.max_steps else ""
    print(f"recipe {args.recipe} on {accelerator.device} ({torch.get_num_threads()} threads): "
          f"{raw.method}, {raw.model}, batch {raw.batch_size}, {raw.epochs} epochs{cap}")
    rows = []
    for compiled in ([False, True] if args.compile else [False]):
        for pipeline in args.paths:
            row = run_path(args.recipe, pipeline, compiled, args, accelerator)
            rows.append(row)
            print(json.dumps(row))
    print("\n| path | mode | precision | views/s | pre-made views/s | loader-bound fraction | projected min |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mode = "compiled" if r["compiled"] else "eager"
        prec = r["mixed_precision"] + (" + channels_last" if r["channels_last"] else "")
        print(f"| {r['pipeline']} | {mode} | {prec} | {r['views_per_s']:.0f} | {r['premade_views_per_s']:.0f} | "
              f"{r['loader_bound_fraction']:.2f} | {r['projected_minutes']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    eager = {r["pipeline"]: r for r in rows if not r["compiled"]}
    if {"pil", "tensor"} <= set(eager):
        print(f"views/s pil {eager['pil']['views_per_s']:.0f} tensor {eager['tensor']['views_per_s']:.0f} | "
              f"projected minutes pil {eager['pil']['projected_minutes']:.1f} "
              f"tensor {eager['tensor']['projected_minutes']:.1f}")


if __name__ == "__main__":
    main()
