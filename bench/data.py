"""Data-loading throughput: SplitFileDataset vs torchvision ImageFolder, decode + two-view augmentation.

Generates a folder of 224x224 JPEGs (class sub-folders plus a split file listing them), then
times full passes of a DataLoader over

* ``kcl_models.data.SplitFileDataset`` (with its skip-aware ``collate_fn``), and
* ``torchvision.datasets.ImageFolder``,

both with the same transform (two SimCLR-style contrastive views from ``build_views('supcon')``),
batch size and number of workers. Passes alternate between the two loaders and the median
images/s is reported with the ratio ours / ImageFolder (goal >= 0.95), beside the best pass of
each (contention from other processes only slows passes down, so the best pass is the less noisy
estimate on a shared machine). To name the bottleneck
it also times JPEG decode alone (open + RGB convert) and the two-view transform alone, on one
process.

The main process runs torch with ``--threads`` intra-op threads (default 1, as in DataLoader
workers), so ``workers=0`` does not oversubscribe the CPU.

Usage: ``python bench/data.py [--num-images 512] [--workers 0 2] [--device cpu]
[--output bench/RESULTS_data.md]``. Prints a markdown table and writes it to ``--output``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kcl_models.data import SplitFileDataset, build_views  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_images(root: Path, num_images: int, num_classes: int, size: int, seed: int = 0) -> Path:
    """Write ``num_images`` JPEGs (smooth random content, quality 90) and a split file; return it."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(num_images):
        c = i % num_classes
        d = root / f"class{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        # low-resolution noise up-sampled: photo-like smoothness (pure noise would be far larger
        # and slower to decode than real photos)
        small = Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8))
        img = small.resize((size, size), Image.BICUBIC)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-8, 9, (size, size, 3))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(d / f"img_{i:05d}.jpg", quality=90)
        lines.append(f"class{c:02d}/img_{i:05d}.jpg {c}")
    split = root.parent / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    return split


def time_pass(loader: DataLoader, device: torch.device) -> float:
    """Seconds for one full pass (worker start-up included), batches moved to ``device``."""
    t0 = time.perf_counter()
    n = 0
    for views, labels in loader:
        views = [v.to(device, non_blocking=True) for v in views]
        labels = labels.to(device, non_blocking=True)
        n += labels.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    assert n == len(loader.dataset), (n, len(loader.dataset))
    return dt


def time_components(ds: SplitFileDataset, transform, limit: int) -> dict[str, float]:
    """Milliseconds per image: file read + JPEG decode + RGB convert alone, and the two-view transform alone."""
    idx = list(range(min(limit, len(ds))))
    t0 = time.perf_counter()
    imgs = [ds._load_image(i) for i in idx]
    decode = (time.perf_counter() - t0) / len(idx) * 1e3
    t0 = time.perf_counter()
    for img in imgs:
        transform(img)
    aug = (time.perf_counter() - t0) / len(idx) * 1e3
    return {"decode_ms": decode, "augment_ms": aug}


def time_ops(view, imgs: list) -> list[tuple[str, float]]:
    """Milliseconds per image spent in each op of one view (a torchvision Compose)."""
    spent = [0.0] * len(view.transforms)
    for img in imgs:
        x = img
        for k, op in enumerate(view.transforms):
            t0 = time.perf_counter()
            x = op(x)
            spent[k] += time.perf_counter() - t0
    def name(op) -> str:
        if hasattr(op, "transforms") and hasattr(op, "p"):  # RandomApply
            return f"{type(op).__name__}({', '.join(type(t).__name__ for t in op.transforms)}, p={op.p})"
        return type(op).__name__

    return [(name(op), t / len(imgs) * 1e3) for op, t in zip(view.transforms, spent)]


def time_getitem_interleaved(ours: SplitFileDataset, theirs: ImageFolder, rounds: int = 3) -> tuple[float, float]:
    """Microseconds per ``__getitem__`` without transform (decode only), calls alternated image by
    image so both datasets see the same machine load; returns (ours, ImageFolder)."""
    saved = ours.transform, theirs.transform
    ours.transform = theirs.transform = None
    t_ours = t_theirs = 0.0
    try:
        for r in range(rounds):
            for i in range(len(ours)):
                first, second = (ours, theirs) if (i + r) % 2 == 0 else (theirs, ours)
                t0 = time.perf_counter()
                first[i]
                t1 = time.perf_counter()
                second[i]
                t2 = time.perf_counter()
                if first is ours:
                    t_ours += t1 - t0
                    t_theirs += t2 - t1
                else:
                    t_theirs += t1 - t0
                    t_ours += t2 - t1
    finally:
        ours.transform, theirs.transform = saved
    n = rounds * len(ours)
    return t_ours / n * 1e6, t_theirs / n * 1e6


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=512)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--repeats", type=int, default=5, help="timed passes per loader and worker count")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the main process")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--root", default=None, help="reuse/keep the generated images here (default: temp dir)")
    p.add_argument("--output", default=str(Path(__file__).with_name("RESULTS_data.md")))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.root) if args.root else Path(tmp)
        root = base / "images"
        t0 = time.perf_counter()
        if root.is_dir() and (base / "split.txt").is_file():
            split = base / "split.txt"
        else:
            split = make_images(root, args.num_images, args.num_classes, args.size)
        print(f"images ready in {time.perf_counter() - t0:.1f}s under {root}", file=sys.stderr)

        transform = build_views("supcon", args.size, IMAGENET_MEAN, IMAGENET_STD)
        ours = SplitFileDataset(root, split, transform=transform)
        theirs = ImageFolder(str(root), transform=transform)
        assert len(ours) == len(theirs)

        rows = []
        for workers in args.workers:
            loaders = {
                "SplitFileDataset": DataLoader(ours, batch_size=args.batch_size, num_workers=workers,
                                               collate_fn=ours.collate_fn, pin_memory=device.type == "cuda"),
                "ImageFolder": DataLoader(theirs, batch_size=args.batch_size, num_workers=workers,
                                          pin_memory=device.type == "cuda"),
            }
            times: dict[str, list[float]] = {k: [] for k in loaders}
            time_pass(loaders["SplitFileDataset"], device)  # warm the page cache and imports
            for r in range(args.repeats):
                order = list(loaders) if r % 2 == 0 else list(loaders)[::-1]  # alternate who goes first
                for name in order:
                    times[name].append(time_pass(loaders[name], device))
                    print(f"workers={workers} {name} pass {r}: {len(ours) / times[name][-1]:.1f} img/s",
                          file=sys.stderr)
            med = {k: len(ours) / statistics.median(v) for k, v in times.items()}
            best = {k: len(ours) / min(v) for k, v in times.items()}
            rows.append((workers, med["SplitFileDataset"], med["ImageFolder"],
                         med["SplitFileDataset"] / med["ImageFolder"], best["SplitFileDataset"],
                         best["ImageFolder"], best["SplitFileDataset"] / best["ImageFolder"]))
        comp = time_components(ours, transform, limit=min(300, len(ours)))
        get_ours, get_theirs = time_getitem_interleaved(ours, theirs)
        sample = [ours._load_image(i) for i in range(min(100, len(ours)))]
        per_op = time_ops(transform.transforms[0], sample)

    total = comp["decode_ms"] + comp["augment_ms"]
    bottleneck = "two-view augmentation" if comp["augment_ms"] > comp["decode_ms"] else "JPEG decode"
    lines = [
        f"### Data loading: decode + two-view augmentation ({args.num_images} JPEGs {args.size}x{args.size}, "
        f"batch {args.batch_size})",
        "",
        f"Device for batches: {device}; CPU cores: {os.cpu_count()}; torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Python {platform.python_version()}; main-process torch "
        f"threads {args.threads}. Median and best of {args.repeats} full passes each (worker start-up "
        f"included), passes alternated between the loaders. 1-minute load average {load_start:.2f} at the "
        f"start, {os.getloadavg()[0]:.2f} at the end"
        + (" (above the core count: other processes shared the CPU)." if max(load_start, os.getloadavg()[0])
           > (os.cpu_count() or 1) else "."),
        "",
        "| workers | SplitFileDataset img/s (median) | ImageFolder img/s (median) | ratio (median) "
        "| SplitFileDataset img/s (best) | ImageFolder img/s (best) | ratio (best) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, a, b, ratio, a_best, b_best, ratio_best in rows:
        lines.append(f"| {workers} | {a:.1f} | {b:.1f} | {ratio:.3f} | {a_best:.1f} | {b_best:.1f} | "
                     f"{ratio_best:.3f} |")
    lines += [
        "",
        "Goal: ratio >= 0.95.",
        "",
        "| `__getitem__` without transform, calls alternated image by image | us / image |",
        "|---|---:|",
        f"| SplitFileDataset | {get_ours:.0f} |",
        f"| torchvision ImageFolder | {get_theirs:.0f} |",
        f"| ratio ImageFolder / SplitFileDataset (speed ratio) | {get_theirs / get_ours:.3f} |",
    ]
    lines += [
        "",
        "| stage (one process) | ms / image | share |",
        "|---|---:|---:|",
        f"| file read + JPEG decode + RGB convert | {comp['decode_ms']:.2f} | {comp['decode_ms'] / total:.0%} |",
        f"| two contrastive views (crop, flip, jitter, grey, to-tensor, normalise) | {comp['augment_ms']:.2f} | "
        f"{comp['augment_ms'] / total:.0%} |",
        "",
        "| one contrastive view, op by op | ms / image |",
        "|---|---:|",
        *[f"| {name} | {ms:.2f} |" for name, ms in per_op],
        "",
        f"Bottleneck: **{bottleneck}** ({max(comp.values()):.2f} of {total:.2f} ms per image); within a view "
        f"the slowest op is {max(per_op, key=lambda t: t[1])[0]}. Both loaders "
        "run the same PIL decode and transform, so the ratio measures only the dataset overhead "
        "(split-file lookup, skip-policy bookkeeping, collate).",
    ]
    table = "\n".join(lines)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
