"""Record the first optimizer steps' losses of every built-in method on digits (fixed seed).

Run once before a refactor of the trainer; ``test_golden.py`` then keeps the losses equal to 1e-6.
``python tests/train/record_golden.py`` rewrites ``golden_losses.json`` (only do that when a
change of behaviour is intended, and say so in the commit).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
CONFIGS = HERE.parents[1] / "configs"
# 8x8 inputs, 20 stage-1 steps; kcl_crt runs one short epoch of each stage to pin the cRT stage too
RUNS = {
    "ce": dict(method_cfg="ce", max_steps=20),
    "la": dict(method_cfg="la", max_steps=20),
    "supcon": dict(method_cfg="supcon", max_steps=20),
    "kcl": dict(method_cfg="kcl", max_steps=20, queue_size=64),
    "fcl": dict(method_cfg="kcl", max_steps=20, queue_size=64, k=None),
    "bcl": dict(method_cfg="bcl", max_steps=20),
    "kcl_crt": dict(method_cfg="kcl", epochs=1, crt_epochs=1, queue_size=64),
    "supcon_crt": dict(method_cfg="supcon", epochs=1, crt_epochs=1),
}
# recorded through the PIL path (the digits recipes' default then); the tensor path draws other views
COMMON = dict(log_with=None, eval_every=0, warmup_epochs=1, workers=0, input_size=8, data_kwargs={"img_size": 8},
              checkpoint_every=1000, batch_size=32, epochs=3, lr=0.05, data_pipeline="pil")


def overrides(name: str, out: Path) -> tuple[str, dict]:
    spec = dict(RUNS[name])
    method = spec.pop("method_cfg")
    return method, {**COMMON, **spec, "output_dir": str(out / name)}


def record() -> dict[str, list[float]]:
    from kcl_models.train.config import load_config
    from kcl_models.train.trainer import train

    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            method, values = overrides(name, Path(tmp))
            cfg = load_config(CONFIGS / f"digits_{method}.yaml", values)
            train(cfg)
            history = json.loads((Path(cfg.output_dir) / "train_metrics.json").read_text())["loss_history"]
            result[name] = history
            from accelerate.state import AcceleratorState, GradientState, PartialState
            AcceleratorState._reset_state(True), GradientState._reset_state(), PartialState._reset_state()
    return result


if __name__ == "__main__":
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {"recorded_at_commit": commit, "overrides": COMMON, "runs": RUNS, "losses": record()}
    (HERE / "golden_losses.json").write_text(json.dumps(data, indent=1) + "\n")
    print({k: len(v) for k, v in data["losses"].items()}, file=sys.stderr)
