"""End-to-end trainer tests on digits-LT (CPU, in-process single rank)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import kcl_models  # noqa: F401
from kcl_models.methods import ce as ce_method
from kcl_models.train.config import load_config
from kcl_models.train.trainer import NonFiniteLossError, train

CONFIGS = Path(__file__).parents[2] / "configs"
# 8x8 inputs (the digits' native size) keep every CPU run short; the model is size-agnostic
FAST = dict(log_with=None, eval_every=0, warmup_epochs=0, workers=0, input_size=8, data_kwargs={"img_size": 8},
            checkpoint_every=1000)


def _cfg(method: str, tmp_path: Path, **kw):
    values = dict(FAST, output_dir=str(tmp_path / method))
    if method not in ("kcl", "paco", "gpaco"):
        kw.pop("queue_size", None)  # a queue option: the other methods refuse it
    values.update(kw)
    return load_config(CONFIGS / f"digits_{method}.yaml", values)


@pytest.mark.parametrize("method", ["ce", "la", "supcon", "kcl", "bcl", "paco", "gpaco", "proco"])
def test_loss_decreases_on_a_fixed_batch(method, tmp_path):
    # one batch repeated (overfit_batches=1, no sampler noise); lr kept small so SGD descends
    cfg = _cfg(method, tmp_path, overfit_batches=1, batch_size=32, epochs=24, crt_epochs=1, lr=0.05,
               queue_size=64, randaug=None)
    train(cfg)
    history = json.loads((Path(cfg.output_dir) / "train_metrics.json").read_text())["loss_history"]
    stage1 = history[:24]
    assert len(stage1) == 24 and all(map(torch.isfinite, torch.tensor(stage1)))
    first, last = sum(stage1[:4]) / 4, sum(stage1[-4:]) / 4
    assert last < first, f"{method}: loss did not decrease ({first:.4f} -> {last:.4f})"


@pytest.mark.parametrize("method", ["kcl", "bcl"])
def test_compiled_losses_train_like_eager(method, tmp_path):
    # compile_losses wraps every loss in torch.compile; aot_eager traces as inductor does (no codegen)
    common = dict(overfit_batches=1, batch_size=32, epochs=3, crt_epochs=1, queue_size=64, randaug=None)
    histories = []
    for backend in ("no", "aot_eager"):
        cfg = _cfg(method, tmp_path / backend, compile_losses=backend, **common)
        train(cfg)
        histories.append(json.loads((Path(cfg.output_dir) / "train_metrics.json").read_text())["loss_history"])
    compiled, eager = torch.tensor(histories[1]), torch.tensor(histories[0])
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-6, atol=1e-6)  # same weights, same loss
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)  # float32 rounding, then SGD


def test_exported_folder_loads_with_timm_and_matches(tmp_path):
    cfg = _cfg("kcl", tmp_path, epochs=1, crt_epochs=1, queue_size=64, batch_size=32)
    metrics = train(cfg)
    assert {"top1", "many", "medium", "few", "balancedness"} <= set(metrics)
    folder = Path(cfg.output_dir) / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet32_kcl" and config["num_classes"] == 10
    weights = load_file(str(folder / "model.safetensors"))
    assert "fc.weight" in weights and not any(k.startswith(("head", "key", "queue")) for k in weights)
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(3, 3, 8, 8)
    ref = timm.create_model("resnet32_kcl", num_classes=10).eval()
    ref.load_state_dict(weights)
    assert torch.equal(model(x), ref(x))


@pytest.mark.parametrize("pipeline", ["pil", "tensor"])
def test_accumulation_clipping_and_no_best_without_validation_split(pipeline, tmp_path):
    cfg = _cfg("ce", tmp_path, epochs=2, batch_size=16, grad_accum_steps=2, clip_grad=0.5, eval_every=1,
               data_pipeline=pipeline)
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    history = json.loads((out / "train_metrics.json").read_text())["loss_history"]
    assert len(history) == 2 * -(-(304 // 16) // 2)   # an update per two batches, and at each epoch end
    assert (out / "model" / "model.safetensors").is_file()
    assert not (out / "best").exists()                # best/ is never chosen on the test split
    assert metrics["top1"] >= 0


@pytest.mark.parametrize("method", ["bcl", "paco", "proco"])
def test_resume_mid_epoch_matches_uninterrupted_run(method, tmp_path):
    common = dict(epochs=2, batch_size=32, checkpoint_every=2, keep_checkpoints=5, lr=0.05, randaug=None)
    if method == "paco":
        common["queue_size"] = 64   # the momentum encoder and queue are restored with the checkpoint
    full = _cfg(method, tmp_path / "full", **common)
    train(full)
    # "killed" after step 3 of epoch 0: only the step-2 checkpoint survives
    part = _cfg(method, tmp_path / "part", max_steps=3, **common)
    train(part)
    ckpts = sorted((Path(part.output_dir) / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["checkpoint_0"]
    from accelerate.state import AcceleratorState, GradientState, PartialState
    AcceleratorState._reset_state(True), GradientState._reset_state(), PartialState._reset_state()
    resumed = _cfg(method, tmp_path / "part", resume="auto", **common)  # ProCo: its vMF statistics too
    train(resumed)
    a = load_file(str(Path(full.output_dir) / "model" / "model.safetensors"))
    b = load_file(str(Path(resumed.output_dir) / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, monkeypatch):
    real = ce_method.LogitAdjustedLoss

    class PoisonedLoss(real):
        calls = 0

        def forward(self, logits, labels):
            PoisonedLoss.calls += 1
            loss = super().forward(logits, labels)
            return loss * float("nan") if PoisonedLoss.calls == 4 else loss

    monkeypatch.setattr(ce_method, "LogitAdjustedLoss", PoisonedLoss)
    cfg = _cfg("ce", tmp_path, epochs=2, batch_size=32, checkpoint_every=1, keep_checkpoints=10)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at stage 1 epoch 0 batch 3"):
        train(cfg)
    ckpts = sorted(p.name for p in (Path(cfg.output_dir) / "checkpoints").iterdir())
    assert ckpts == ["checkpoint_0", "checkpoint_1", "checkpoint_2"]
    assert (Path(cfg.output_dir) / "checkpoints" / "checkpoint_2" / "config.yaml").is_file()
    # the advice works: a lower lr, applied on resume, trains the run to its end
    from accelerate.state import AcceleratorState, GradientState, PartialState
    AcceleratorState._reset_state(True), GradientState._reset_state(), PartialState._reset_state()
    train(_cfg("ce", tmp_path, epochs=2, batch_size=32, checkpoint_every=1, keep_checkpoints=10, lr=0.01,
               resume="auto", resume_apply=True))
    history = json.loads((Path(cfg.output_dir) / "train_metrics.json").read_text())["loss_history"]
    assert len(history) == 18 and all(map(torch.isfinite, torch.tensor(history)))


def test_bad_configs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'digits-lt' has 10 classes, but num_classes=7 was given"):
        train(_cfg("ce", tmp_path, num_classes=7))
    with pytest.raises(ValueError, match=r"queue_size=100 must be divisible by the global batch 32"):
        train(_cfg("kcl", tmp_path, queue_size=100, batch_size=32))
    (tmp_path / "old" / "checkpoints" / "checkpoint_3").mkdir(parents=True)
    with pytest.raises(ValueError, match="already holds checkpoints of an earlier run: pass --resume auto"):
        train(_cfg("ce", tmp_path, output_dir=str(tmp_path / "old")))
    with pytest.raises(ValueError, match="unknown model"):
        train(_cfg("ce", tmp_path, model="resnet33_nope"))


def test_best_is_chosen_on_the_validation_split(tmp_path, capsys):
    cfg = _cfg("ce", tmp_path, epochs=3, batch_size=32, eval_every=1, val_split="heldout")
    train(cfg)
    out = Path(cfg.output_dir)
    said = capsys.readouterr().out
    val = [float(line.split("val top1 ")[1].split()[0]) for line in said.splitlines() if "val top1" in line]
    assert len(val) == 3 and (out / "best" / "model.safetensors").is_file()
    # best/ holds the epoch with the highest validation top-1: evaluate it on the val split again
    from kcl_models.data import build_dataset
    from kcl_models.data.transforms import build_eval_transform
    best = timm.create_model(f"local-dir:{out / 'best'}", pretrained=True).eval()
    tf = build_eval_transform(dict(input_size=(3, 8, 8), mean=best.pretrained_cfg["mean"],
                                   std=best.pretrained_cfg["std"], crop_pct=1.0, interpolation="nearest"))
    ds = build_dataset("digits-lt", "val", transform=tf, img_size=8)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor(ds.targets)
    with torch.no_grad():
        top1 = (best(x).argmax(1) == y).float().mean().item() * 100
    assert top1 == pytest.approx(max(val), abs=0.01)
