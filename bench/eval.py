"""Evaluation throughput: kcl_models' predict path versus a timm-validate-style loop.

Both loops run the same model on the same in-memory synthetic images (already normalised float
tensors, so data loading is identical and cheap), with the same batch size and workers:

- ``timm validate``: ``model.eval()``, ``torch.no_grad()``, per batch ``timm.utils.accuracy``
  (top-1/top-5) and ``AverageMeter`` updates, as in timm's ``validate.py``;
- ``kcl predict``: ``kcl_models.eval.evaluate.predict`` (``inference_mode``, logits gathered to
  CPU) followed by ``compute_metrics`` (top-1/5, per-class, shot groups, balancedness, ECE);
- ``kcl predict + Accelerator``: the same through a single-process ``Accelerator``
  (``gather_for_metrics`` per batch, as under ``accelerate launch``).

Passes are interleaved and repeated; the table reports the median images/s and the ratio to the
timm loop (goal >= 0.95). Example::

    python bench/eval.py                      # cuda if available, else cpu
    python bench/eval.py --device cpu --model resnet32_kcl --num-images 2048
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
from timm.utils import AverageMeter, accuracy
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kcl_models  # noqa: E402,F401  (registers the architectures)
from kcl_models.eval.evaluate import predict  # noqa: E402
from kcl_models.eval.metrics import compute_metrics  # noqa: E402


def timm_validate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> float:
    """timm validate.py's loop (without logging); returns top-1 so nothing is optimised away."""
    batch_time, top1, top5 = AverageMeter(), AverageMeter(), AverageMeter()
    model.eval()
    end = time.perf_counter()
    with torch.no_grad():
        for images, target in loader:
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            output = model(images)
            acc1, acc5 = accuracy(output, target, topk=(1, 5))
            top1.update(acc1.item(), images.size(0))
            top5.update(acc5.item(), images.size(0))
            batch_time.update(time.perf_counter() - end)
            end = time.perf_counter()
    return top1.avg


def kcl_eval(model: torch.nn.Module, loader: DataLoader, counts: list[int], accelerator=None) -> float:
    logits, targets = predict(model, loader, accelerator=accelerator, progress=False)
    return compute_metrics(logits, targets, counts)["top1"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="resnet32_kcl")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--num-images", type=int, default=2048)
    p.add_argument("--img-size", type=int, default=None, help="default: the model's input size")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--accelerator", action=argparse.BooleanOptionalAction, default=True,
                   help="also time predict through a single-process Accelerator")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # comparable with Accelerator's
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=args.num_classes).to(device).eval()
    size = args.img_size or timm.data.resolve_model_data_config(model)["input_size"][-1]
    images = torch.randn(args.num_images, 3, size, size)
    labels = torch.randint(0, args.num_classes, (args.num_images,))
    counts = [max(1, int(500 * 0.01 ** (i / max(1, args.num_classes - 1)))) for i in range(args.num_classes)]
    loader = DataLoader(TensorDataset(images, labels), batch_size=args.batch_size, shuffle=False,
                        num_workers=args.workers, pin_memory=device.type == "cuda")

    runs = {"timm validate": lambda: timm_validate(model, loader, device),
            "kcl predict + compute_metrics": lambda: kcl_eval(model, loader, counts)}
    if args.accelerator:
        from accelerate import Accelerator
        acc = Accelerator(cpu=device.type == "cpu")
        if acc.device != device:
            print(f"note: Accelerator device {acc.device} differs from --device {device}; skipping it",
                  file=sys.stderr)
        else:
            runs["kcl predict + Accelerator"] = lambda: kcl_eval(model, loader, counts, acc)

    for fn in runs.values():  # warm-up (allocator, cudnn autotune, thread pools)
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():  # interleaved so machine-load drift hits every loop alike
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)

    base = args.num_images / statistics.median(times["timm validate"])
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    lines = [f"eval throughput: {args.model}, {args.num_images} images {size}x{size}, batch {args.batch_size}, "
             f"workers {args.workers}, {dev_name}, median of {args.repeats}",
             "", "| loop | images/s | ratio vs timm validate |", "|---|---:|---:|"]
    for name, ts in times.items():
        ips = args.num_images / statistics.median(ts)
        lines.append(f"| {name} | {ips:,.0f} | {ips / base:.3f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    return table


if __name__ == "__main__":
    main()
