"""Augmented views per second per core: batched tensor views vs the per-image PIL pipeline, 32x32.

For each view kind of ``kcl_models.data.transforms`` (the recipes' settings):

* ``classifier``: crop(pad 4) + flip + ColorJitter(0.4, 0.4, 0.4) + RandAugment rand-n2-m10-mstd0.5;
* ``contrastive``: crop + flip + ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8 + RandomGrayscale(0.2)
  (``build_views`` stacks no RandAugment on it by default);
* ``contrastive+ra``: the same with RandAugment (BCL's optional stacked views);
* ``plain``: crop + flip (cRT, probes);
* ``bcl``: BCL's 3-view set ``[classifier, contrastive, contrastive]``;

it times the PIL path (``build_train_transform`` / ``build_views`` called per PIL image, as a
DataLoader worker does, ToTensor + Normalize included) and the batched path
(``build_batched_train_view`` / ``build_batched_views`` on a uint8 batch, normalised float output),
on the same synthetic CIFAR-shaped images (smooth random colour fields plus noise).

"Per core": torch runs one intra-op thread and the figure is views per CPU-second of this process
(``time.process_time``), so other load on a shared machine does not count against either path;
the best of ``--repeats`` passes is reported (wall-clock views/s are printed beside it). Both
paths run after ``tune_cpu_allocator()`` (the batched loader's CPU setting; the PIL path's small
images do not depend on it). ``--device cuda`` times the batched path on the GPU instead (wall
clock with synchronisation; the PIL column stays on the CPU).

Usage: ``python bench/augment.py [--images 1024] [--batch-size 256] [--repeats 3] [--device cpu]
[--kinds classifier,plain] [--no-tune-allocator]``
Prints a markdown table and a last line ``views/s per core pil ... batched ... | speed-up ...``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kcl_models.data import (  # noqa: E402
    SampleKeys,
    build_batched_train_view,
    build_batched_views,
    build_train_transform,
    build_views,
    tune_cpu_allocator,
)

CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
RA = "rand-n2-m10-mstd0.5"


def make_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3]: smooth colour fields (4x4 noise up-sampled) plus pixel noise."""
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((n, 3, 4, 4), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)
    arr = smooth.permute(0, 2, 3, 1).numpy() * 255 + rng.normal(0, 12, (n, size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def kinds(size: int) -> dict[str, tuple]:
    m, s = CIFAR_MEAN, CIFAR_STD
    return {
        "classifier": (build_train_transform("classifier", size, m, s, RA),
                       build_batched_train_view("classifier", size, m, s, RA), 1),
        "contrastive": (build_train_transform("contrastive", size, m, s, None),
                        build_batched_train_view("contrastive", size, m, s, None), 1),
        "contrastive+ra": (build_train_transform("contrastive", size, m, s, RA),
                           build_batched_train_view("contrastive", size, m, s, RA), 1),
        "plain": (build_train_transform("plain", size, m, s), build_batched_train_view("plain", size, m, s), 1),
        "bcl": (build_views("bcl", size, m, s, randaug=RA), build_batched_views("bcl", size, m, s, randaug=RA), 3),
    }


def _timed(fn, repeats: int, sync=None) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        if sync is not None:
            sync()
        best_cpu, best_wall = min(best_cpu, time.process_time() - c0), min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kinds", default="classifier,contrastive,contrastive+ra,plain,bcl")
    ap.add_argument("--no-tune-allocator", action="store_true", help="leave glibc's malloc thresholds alone")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not args.no_tune_allocator:
        tune_cpu_allocator()
    device = torch.device(args.device)
    arr = make_images(args.images, args.size)
    pil_images = [Image.fromarray(a) for a in arr]
    batch = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    table = kinds(args.size)
    rows, totals = [], {"pil": [0.0, 0], "batched": [0.0, 0]}
    for name in args.kinds.split(","):
        pil_tf, batched_tf, n_views = table[name]
        views = args.images * n_views

        def run_pil(pil_tf=pil_tf):
            for img in pil_images:
                pil_tf(img)

        def run_batched(batched_tf=batched_tf):
            for start in range(0, args.images, args.batch_size):
                x = batch[start:start + args.batch_size]
                batched_tf(x, SampleKeys(0, 0, torch.arange(start, start + x.shape[0], device=device)))

        torch.manual_seed(0)
        pil_cpu, pil_wall = _timed(run_pil, args.repeats)
        b_cpu, b_wall = _timed(run_batched, args.repeats, sync)
        b_time = b_wall if device.type == "cuda" else b_cpu
        rows.append((name, views / pil_cpu, views / pil_wall, views / b_time, views / b_wall, pil_cpu / b_time))
        for key, t in (("pil", pil_cpu), ("batched", b_time)):
            totals[key][0] += t
            totals[key][1] += views
    where = "GPU, wall" if device.type == "cuda" else "per core"
    print(f"\n{args.size}x{args.size}, {args.images} images, batch {args.batch_size}, torch {torch.__version__}, "
          f"batched on {device}\n")
    print(f"| view | PIL views/s per core | (wall) | batched views/s {where} | (wall) | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, pc, pw, bc, bw, ratio in rows:
        print(f"| {name} | {pc:,.0f} | {pw:,.0f} | {bc:,.0f} | {bw:,.0f} | {ratio:.1f}x |")
    pil_rate = totals["pil"][1] / totals["pil"][0]
    b_rate = totals["batched"][1] / totals["batched"][0]
    print(f"\nviews/s per core pil {pil_rate:.0f} batched {b_rate:.0f} | speed-up {b_rate / pil_rate:.1f}x "
          f"(all kinds above, {'batched on ' + str(device) if device.type == 'cuda' else 'CPU'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
