#!/usr/bin/env python
"""Quality table on digits-LT IF100: CE, LA, KCL + cRT and BCL, same epochs, several seeds.

Each run is ``train.py`` followed by ``eval.py --probe linear`` on the exported model, so every
figure comes from a results JSON. The seed changes both the digits-LT draw (test hold-out and
long-tailed selection) and training. Prints a markdown table (mean +- std over seeds) and writes
``digits_table.json`` and ``digits_table.png`` into ``--out``.

    python bench/digits_table.py --seeds 0 1 2 --parallel 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("top1", "many", "medium", "few", "balancedness")


def run_one(method: str, seed: int, out: Path, epochs: int | None, extra: list[str]) -> dict:
    run_dir = out / f"{method}_s{seed}"
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / f"configs/digits_{method}.yaml"),
           "--seed", str(seed), "--output_dir", str(run_dir), "--log_with", "none", "--eval_every", "0"]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    tic = time.perf_counter()
    subprocess.run(cmd + extra, check=True, capture_output=True, text=True, env={"TQDM_DISABLE": "1",
                   **__import__("os").environ})
    subprocess.run([sys.executable, str(ROOT / "eval.py"), "--model", f"local-dir:{run_dir / 'model'}",
                    "--output", str(run_dir / "eval"), "--probe", "linear", "--no-progress"],
                   check=True, capture_output=True, text=True)
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    row = {k: results["metrics"][k] for k in METRICS}
    row["probe_balancedness"] = results["probes"]["linear_probe"]["balancedness"]
    row["probe_few"] = results["probes"]["linear_probe"]["few"]
    row["seconds"] = time.perf_counter() - tic
    print(f"done {method} seed {seed}: {row}", flush=True)
    return {"method": method, "seed": seed, **row}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["ce", "la", "kcl", "bcl"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="override every config's epochs")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "digits_table")
    p.add_argument("--from-json", type=Path, default=None, help="re-render the table and plot of earlier runs")
    args, extra = p.parse_known_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        rows = json.loads(args.from_json.read_text())
        order = ("ce", "la", "supcon", "kcl", "bcl", "paco", "gpaco", "proco")
        args.methods = [m for m in order if any(r["method"] == m for r in rows)]
        args.seeds = sorted({r["seed"] for r in rows})
    else:
        jobs = [(m, s) for m in args.methods for s in args.seeds]
        with ThreadPoolExecutor(args.parallel) as pool:
            rows = list(pool.map(lambda job: run_one(*job, args.out, args.epochs, extra), jobs))
        (args.out / "digits_table.json").write_text(json.dumps(rows, indent=2))

    cols = METRICS + ("probe_few", "probe_balancedness")
    print(f"\ndigits-LT IF100, mean +- std over seeds {args.seeds} (accuracies in %; balancedness in [0, 1])")
    print("| method | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    summary = {}
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        cells = []
        for c in cols:
            vals = [r[c] for r in mine if r[c] is not None]
            mean = statistics.mean(vals)
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            summary.setdefault(method, {})[c] = (mean, std)
            cells.append(f"{mean:.3f} +- {std:.3f}" if "balancedness" in c else f"{mean:.1f} +- {std:.1f}")
        print(f"| {method} | " + " | ".join(cells) + " |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, keys, title in ((axes[0], ("many", "medium", "few", "top1"), "accuracy by shot group (%)"),
                            (axes[1], ("balancedness", "probe_balancedness"), "balancedness beta")):
        width = 0.8 / len(args.methods)
        for i, method in enumerate(args.methods):
            means = [summary[method][k][0] for k in keys]
            stds = [summary[method][k][1] for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], means, width, yerr=stds, label=method, capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))], keys)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"digits-LT IF100, {len(args.seeds)} seeds")
    fig.tight_layout()
    fig.savefig(args.out / "digits_table.png", dpi=120)


if __name__ == "__main__":
    main()
