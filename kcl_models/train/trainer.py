"""The generic Accelerate training loop; every method plugs in through :mod:`kcl_models.methods`.

``train(cfg)`` reads top to bottom: data -> method -> optimisation -> resume -> stages -> export.
Stage 1 trains the method's module with its loss; methods that ask for it get a second, generic
stage (cRT: frozen backbone, class-balanced linear classifier). It runs unchanged on a CPU, one
GPU, many GPUs and many nodes under ``accelerate launch``.
"""
from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from tqdm.auto import tqdm

import kcl_models  # noqa: F401  (registers the architectures)
from kcl_models.eval.evaluate import predict
from kcl_models.eval.metrics import compute_metrics
from kcl_models.methods import LossOutput, MethodContext
from kcl_models.methods.base import build_options
from kcl_models.methods.modules import LinearOnFrozen, pooled_features
from kcl_models.models import PretrainedWeightsUnavailable
from kcl_models.utils.io import atomic_write_text, save_timm_folder
from kcl_models.utils.tensors import NonFiniteWeightsError, first_nonfinite

from .checkpoints import Checkpoints, check_resume_config, describe, resume_path
from .config import TrainConfig
from .data import (
    begin_epoch,
    build_run_data,
    crt_loader,
    epoch_batches,
    make_loader,
    needs_prepare,
    steps_per_epoch,
    train_loader,
)
from .distributed import all_gather_with_grad, concat_all_gather


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stops and keeps its last good checkpoint."""




@dataclass
class TrainState:
    """Loop position, saved with every checkpoint (Accelerate ``register_for_checkpointing``)."""

    stage: int = 1
    epoch: int = 0
    batch_in_epoch: int = 0      # batches of the current epoch already consumed
    global_step: int = 0         # optimizer updates, all stages
    stage_step: int = 0          # optimizer updates of the current stage (drives its scheduler)
    best_top1: float = -1.0      # on the validation split
    last_checkpoint: str | None = None
    loss_history: list = None    # every optimizer step's loss, all stages, across resumes
    timing: dict = None          # stage-1 seconds and images

    def __post_init__(self) -> None:
        self.loss_history = [] if self.loss_history is None else self.loss_history
        self.timing = {"seconds": 0.0, "images": 0} if self.timing is None else self.timing

    def state_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class SchedulerState:
    """timm schedulers are not torch LR schedulers: checkpoint them by hand."""

    def __init__(self, **schedulers: Any) -> None:
        self.schedulers = schedulers

    def state_dict(self) -> dict[str, Any]:
        return {k: s.state_dict() for k, s in self.schedulers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, s in self.schedulers.items():
            s.load_state_dict(state[k])


@dataclass
class Stage:
    """One training stage: what it trains, with what, and what it evaluates."""

    index: int
    name: str
    epochs: int
    loader: Any
    optimizer: Any
    scheduler: Any
    step: Any                    # (batch, generator) -> LossOutput
    modules: list[nn.Module]
    eval_model: nn.Module | None
    after_step: Any = None
    start_epoch: Any = None


def _schedule(optimizer, sched: str, epochs: int, updates: int, **kw: Any):
    return create_scheduler_v2(optimizer, sched=sched, num_epochs=epochs, step_on_epochs=False,
                               updates_per_epoch=updates, **kw)[0]


def as_timm_model(m: nn.Module, num_classes: int) -> nn.Module:
    """The publishable model: backbone + classifier in one timm module, on the CPU."""
    if isinstance(m, LinearOnFrozen):
        merged = copy.deepcopy(m.backbone)
        merged.reset_classifier(num_classes)
        merged.get_classifier().load_state_dict(m.classifier.state_dict())
        return merged.cpu().float().to(memory_format=torch.contiguous_format)
    # channels_last weights are non-contiguous, which safetensors refuses
    return copy.deepcopy(m).cpu().float().to(memory_format=torch.contiguous_format)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the configured recipe; returns the final test metrics (and writes everything to disk)."""
    out = Path(cfg.output_dir)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        log_with=cfg.log_with,
        project_config=ProjectConfiguration(project_dir=str(out)),  # checkpoints: see .checkpoints
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(cfg.seed)
    main, log = accelerator.is_main_process, accelerator.print
    global_batch = cfg.batch_size * accelerator.num_processes
    method_cls = cfg.method_class

    # ---- data --------------------------------------------------------------------------------
    data = build_run_data(cfg, method_cls.views, global_batch, accelerator.device)
    if cfg.skip_corrupt and accelerator.num_processes > 1 and method_cls.equal_batches:
        raise ValueError(f"skip_corrupt shortens batches, but method '{cfg.method}' gathers features in "
                         f"equal-size batches across processes: use one process, or remove the unreadable "
                         f"files (the error names them)")
    loader = train_loader(data, cfg, accelerator)
    eval_loaders = {"test": make_loader(data.test, cfg.batch_size, cfg, train=False)}
    if data.val is not None:
        eval_loaders["val"] = make_loader(data.val, cfg.batch_size, cfg, train=False)

    # ---- method ------------------------------------------------------------------------------
    checks: dict[str, Any] | None = {"world_size": accelerator.num_processes} if cfg.debug_checks else None
    ctx = MethodContext(accelerator, data.num_classes, data.counts, all_gather_with_grad, concat_all_gather,
                        cfg.compile_losses, checks, log)
    method = method_cls(build_options(method_cls, cfg.options), ctx)
    method.check_data(global_batch)
    backbone = timm.create_model(cfg.model, pretrained=cfg.pretrained, num_classes=data.num_classes)
    if cfg.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    crt_head = copy.deepcopy(backbone.get_classifier()) if method.crt else None  # same type as the arch's
    model = method.build(backbone)
    if cfg.compile_model != "no":  # in place: parameter names, state_dict and export stay the same
        model.compile(backend=cfg.compile_model)

    # ---- optimisation ------------------------------------------------------------------------
    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum)
    crt_opt = crt_batches = None
    if method.crt:
        crt_batches = crt_loader(data, cfg, accelerator)
        crt_opt = create_optimizer_v2(crt_head, opt="sgd", lr=cfg.crt_lr, weight_decay=0.0, momentum=0.9)
    updates = steps_per_epoch(loader, accelerator.num_processes) // cfg.grad_accum_steps \
        + bool(steps_per_epoch(loader, accelerator.num_processes) % cfg.grad_accum_steps)

    def make_schedulers() -> dict[str, Any]:
        made = {"stage1": _schedule(optimizer, cfg.sched, cfg.epochs, updates, warmup_epochs=cfg.warmup_epochs,
                                    min_lr=cfg.min_lr)}
        if method.crt:
            made["stage2"] = _schedule(crt_opt, cfg.crt_sched, cfg.crt_epochs, crt_updates,
                                       decay_milestones=cfg.crt_decay_milestones, decay_rate=0.1)
        return made

    crt_updates = steps_per_epoch(crt_batches, accelerator.num_processes) if method.crt else 0
    schedulers = make_schedulers()
    # Accelerate wraps the model (DDP), optimizers and DataLoaders; the tensor loader shards itself
    loaders = {"train": loader, **{f"eval_{k}": v for k, v in eval_loaders.items()}}
    if method.crt:
        loaders["crt"] = crt_batches
    to_prepare = [k for k, v in loaders.items() if needs_prepare(v)]
    objects = [model, optimizer] + ([crt_head, crt_opt] if method.crt else []) + [loaders[k] for k in to_prepare]
    prepared = accelerator.prepare(*objects)
    model, optimizer = prepared[:2]
    if method.crt:
        crt_head, crt_opt = prepared[2:4]
    loaders.update(zip(to_prepare, prepared[len(objects) - len(to_prepare):]))
    loader, crt_batches = loaders["train"], loaders.get("crt")
    eval_loaders = {k: loaders[f"eval_{k}"] for k in eval_loaders}

    state = TrainState()
    scheduler_state = SchedulerState(**schedulers)
    accelerator.register_for_checkpointing(state, scheduler_state, *method.checkpoint_state())

    # ---- resume ------------------------------------------------------------------------------
    ckpts = Checkpoints(out, cfg.keep_checkpoints, accelerator)
    path = resume_path(cfg, ckpts, out, log)
    accelerator.wait_for_everyone()  # every rank has looked at output_dir before any writes to it
    if path is not None:
        applied = check_resume_config(cfg, path)
        accelerator.load_state(str(path))
        state.last_checkpoint = str(path)
        if applied:  # new lr / min_lr: the optimizers restart their schedules from the new values
            for opt_, key in ((optimizer, "lr"), (crt_opt if method.crt else None, "crt_lr")):
                for group in opt_.param_groups if opt_ is not None else []:
                    group["lr"] = group["initial_lr"] = getattr(cfg, key)
            schedulers = make_schedulers()
            scheduler_state.schedulers.update(schedulers)
            log(f"resume: applied {describe(applied)}")
        log(f"resumed from {path}: stage {state.stage}, epoch {state.epoch}, "
            f"batch {state.batch_in_epoch}, step {state.global_step}")
    if main:
        cfg.save(out / "config.yaml")
    accelerator.init_trackers("train", config={k: v for k, v in cfg.to_dict().items()
                                                if isinstance(v, (int, float, str, bool))})
    guarded = {"model": model, **{f"{method.name}.{i}": m for i, m in enumerate(method.checkpoint_state())
                                   if isinstance(m, nn.Module)}}
    if method.crt:
        guarded["crt_head"] = crt_head
    loop = _Loop(cfg, accelerator, state, data, eval_loaders, out, checks, ckpts, guarded)

    # ---- stages ------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(model)
    stages = [Stage(1, method.name, cfg.epochs, loader, optimizer, schedulers["stage1"],
                    lambda batch, gen: method.loss(model, batch, gen), [model], method.eval_module(unwrapped),
                    after_step=lambda: method.after_step(model), start_epoch=method.start_epoch)]
    if method.crt:
        features = method.feature_backbone(unwrapped)
        ce = nn.CrossEntropyLoss()

        def crt_step(batch: Any, gen: torch.Generator) -> LossOutput:
            images, labels = batch
            with torch.no_grad():
                h = pooled_features(features, images)                      # [B, D]
            loss = ce(crt_head(h.float()), labels)
            return LossOutput(loss, {"crt_ce": loss}, labels.shape[0])

        export = LinearOnFrozen(features, accelerator.unwrap_model(crt_head))
        stages.append(Stage(2, "crt", cfg.crt_epochs, crt_batches, crt_opt, schedulers["stage2"], crt_step,
                            [crt_head], export))
    else:
        export = method.export_module(unwrapped)
    log(" then ".join(f"stage {s.index} ({s.name}): {s.epochs} epochs" for s in stages)
        + (" (set with epochs and crt_epochs)" if method.crt else ""))
    metrics: dict[str, Any] = {}
    for stage in stages:
        if state.stage > stage.index:
            continue
        if stage.index == 1:
            method.before_training(model, loader)
        else:  # cRT: the backbone is frozen, BN in eval mode
            features.eval().requires_grad_(False)
        metrics = loop.run_stage(stage)
        if loop.stopped:
            break
        state.stage, state.epoch, state.batch_in_epoch, state.stage_step = stage.index + 1, 0, 0, 0
    if method.crt:
        features.requires_grad_(True)

    # ---- export: timm folder (backbone + classifier) + final metrics -----------------------------
    accelerator.wait_for_everyone()
    if not metrics and not cfg.max_steps:
        metrics = loop.evaluate(export, "final")
    base = getattr(data.train, "dataset", data.train)
    if hasattr(base, "report_skipped"):
        base.report_skipped()
    loop.check_weights("export", {"export": export})
    if main:
        loop.save_timm_folder(export, out / "model")
        skipped = data.skipped()
        atomic_write_text(out / "train_metrics.json", json.dumps(
            {"metrics": metrics, "config": cfg.to_dict(), "class_counts": data.counts,
             "loss_history": state.loss_history, "timing": state.timing, "skipped_images": skipped},
            indent=2, default=str))
        if checks is not None:
            checks["eval_samples"] = loop.eval_samples
            checks = {k: sorted(v) if isinstance(v, set) else v for k, v in checks.items()}
            atomic_write_text(out / "debug_checks.json", json.dumps(checks, indent=2))
        logs = f" | logs: {out / 'train'} (TensorBoard)" if cfg.log_with not in (None, "none") else ""
        best = f" | best (validation): {out / 'best'}" if (out / "best").is_dir() else ""
        log(f"done. model: {out / 'model'}{best} | metrics: {out / 'train_metrics.json'}{logs} | "
            f"checkpoints: {ckpts.root}")
    accelerator.end_training()
    return metrics


class _Loop:
    """Epochs, steps, checkpoints and evaluation of one run; knows stages, never methods."""

    def __init__(self, cfg: TrainConfig, accelerator: Accelerator, state: TrainState, data: Any,
                 eval_loaders: dict[str, Any], out: Path, checks: dict[str, Any] | None, ckpts: Checkpoints,
                 guarded: dict[str, nn.Module]) -> None:
        self.cfg, self.acc, self.state, self.data, self.out = cfg, accelerator, state, data, out
        self.eval_loaders, self.checks, self.ckpts, self.guarded = eval_loaders, checks, ckpts, guarded
        self.eval_samples = 0
        self.stopped = False

    # ---- outputs ------------------------------------------------------------------------------
    def check_weights(self, where: str, modules: dict[str, nn.Module] | None = None) -> None:
        """Stop the run at the first non-finite parameter or buffer (a diverged BN variance too)."""
        for prefix, module in (modules or self.guarded).items():
            bad = first_nonfinite(self.acc.unwrap_model(module))
            if bad is not None:
                name, count, numel = bad
                self.acc.end_training()
                raise NonFiniteWeightsError(
                    f"non-finite weights at {where} (step {self.state.global_step}): tensor '{prefix}.{name}' holds "
                    f"{count} NaN/inf value(s) of {numel}; the run stopped without saving them. Last good "
                    f"checkpoint: {self.state.last_checkpoint or 'none saved yet'}. Try a lower lr or clip_grad, "
                    f"then --resume auto --resume_apply true (or --resume <an earlier checkpoint> if it diverges "
                    f"again).", name, count, numel)

    def save_checkpoint(self) -> None:
        self.check_weights("checkpoint")  # only checkpoints whose tensors are all finite are written
        path = self.ckpts.save(before_rename=lambda staging: self.cfg.save(staging / "config.yaml"))
        self.state.last_checkpoint = str(path)

    def save_timm_folder(self, m: nn.Module, folder: Path) -> None:
        save_timm_folder(as_timm_model(m, self.data.num_classes), folder,
                         model_config={"label_names": self.data.classes})

    def evaluate(self, eval_model: nn.Module, tag: str) -> dict[str, Any]:
        """Test metrics (returned, logged); with a validation split, best/ follows its top-1."""
        cfg, state = self.cfg, self.state
        eval_model.eval()
        results = {}
        for split, loader in self.eval_loaders.items():
            logits, targets = predict(eval_model, loader, accelerator=self.acc, progress=False)
            if split == "test":
                self.eval_samples = int(targets.numel())
            results[split] = compute_metrics(logits.float().cpu(), targets.cpu(), self.data.counts,
                                             many=cfg.shot_many, few=cfg.shot_few, relative=cfg.relative_shots)
            self.acc.log({f"{split}/{k}": v for k, v in results[split].items() if isinstance(v, (int, float))},
                         step=state.global_step)
        m = results["test"]
        val = f" | val top1 {results['val']['top1']:.2f}" if "val" in results else ""
        def fmt(key: str, digits: int = 2) -> str:  # a shot group without classes has no accuracy
            return "-" if m.get(key) is None else f"{m[key]:.{digits}f}"

        self.acc.print(f"[{tag}] top1 {fmt('top1')} | many {fmt('many')} | medium {fmt('medium')} "
                       f"| few {fmt('few')} | beta {fmt('balancedness', 4)}{val}")
        if "val" in results and results["val"]["top1"] > state.best_top1:  # never chosen on the test split
            state.best_top1 = results["val"]["top1"]
            if self.acc.is_main_process:
                self.save_timm_folder(eval_model, self.out / "best")
        return m

    def check_finite(self, loss: torch.Tensor, where: str) -> None:
        ok = self.acc.gather(torch.isfinite(loss.detach()).reshape(1).float())
        if not bool(ok.all()):
            self.acc.end_training()
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at {where}; the run stopped. Last good checkpoint: "
                f"{self.state.last_checkpoint or 'none saved yet'}. Try a lower lr, clip_grad, or "
                f"mixed_precision=no, then --resume auto --resume_apply true.")

    # ---- one stage ------------------------------------------------------------------------------
    def run_stage(self, stage: Stage) -> dict[str, Any]:
        cfg, acc, state = self.cfg, self.acc, self.state
        metrics: dict[str, Any] = {}
        loader = stage.loader
        for epoch in range(state.epoch if state.stage == stage.index else 0, stage.epochs):
            state.stage, state.epoch = stage.index, epoch
            if stage.start_epoch is not None:
                stage.start_epoch(epoch)
            begin_epoch(loader, epoch)
            skip = state.batch_in_epoch
            epoch_loader = epoch_batches(loader, skip, acc)
            for m in stage.modules:
                m.train()
            bar = tqdm(total=len(loader), initial=skip, disable=not acc.is_main_process, dynamic_ncols=True,
                       desc=f"stage {stage.index} ({stage.name}) epoch {epoch + 1}/{stage.epochs}")
            tic, seen, cut_short = time.perf_counter(), 0, False
            for batch in epoch_loader:
                if batch is None:  # every image of this batch was unreadable (skip policy)
                    state.batch_in_epoch += 1
                    continue
                gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + state.global_step)
                with acc.accumulate(*stage.modules):
                    out = stage.step(batch, gen)
                    self.check_finite(out.loss, f"stage {stage.index} epoch {epoch} batch {state.batch_in_epoch}")
                    acc.backward(out.loss)
                    if acc.sync_gradients and cfg.clip_grad:
                        acc.clip_grad_norm_([p for m in stage.modules for p in m.parameters()], cfg.clip_grad)
                    stage.optimizer.step()
                    stage.optimizer.zero_grad(set_to_none=True)
                state.batch_in_epoch += 1
                seen += out.num_images * acc.num_processes
                bar.update(1)
                if acc.sync_gradients:
                    self._after_update(stage, out, seen / (time.perf_counter() - tic), bar)
                    if cfg.max_steps and state.global_step >= cfg.max_steps:
                        cut_short = state.batch_in_epoch < len(loader)
                        break
            bar.close()
            if stage.index == 1:
                state.timing["seconds"] += time.perf_counter() - tic
                state.timing["images"] += seen
            self.stopped = bool(cfg.max_steps and state.global_step >= cfg.max_steps)
            if not self.stopped:
                state.epoch, state.batch_in_epoch = epoch + 1, 0
                if not cfg.checkpoint_every:
                    self.save_checkpoint()
            last = epoch + 1 == stage.epochs
            due = last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)
            if stage.eval_model is not None and due and not cut_short:  # a part-epoch is not evaluated
                metrics = self.evaluate(stage.eval_model, f"stage {stage.index} epoch {epoch + 1}")
            if self.stopped:
                break
        return metrics

    def _after_update(self, stage: Stage, out: LossOutput, rate: float, bar: tqdm) -> None:
        cfg, acc, state = self.cfg, self.acc, self.state
        state.global_step += 1
        state.stage_step += 1
        state.loss_history.append(float(acc.reduce(out.loss.detach(), "mean")))
        stage.scheduler.step_update(num_updates=state.stage_step)
        if stage.after_step is not None:
            stage.after_step()
        if state.global_step % cfg.log_every == 0:
            lr = stage.optimizer.param_groups[0]["lr"]
            parts = {k: float(v.detach()) for k, v in out.parts.items()}
            shown = {"loss": float(out.loss.detach())} | (parts if len(parts) > 1 else {})
            bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()} | {"lr": f"{lr:.4g}", "img_s": f"{rate:.0f}"})
            acc.log({f"train/{stage.name}/loss": shown["loss"], "train/lr": lr, "train/img_per_s": rate}
                    | {f"train/{stage.name}/{k}": v for k, v in parts.items()}, step=state.global_step)
        if cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
            self.save_checkpoint()


def main_cli(argv: list[str] | None = None) -> int:
    import sys

    from .config import help_text, load_config, parse_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TypedStorage.*")
        try:
            config, overrides, debug, want_help = parse_cli(argv)
            if want_help:
                print(help_text(overrides.get("method")))
                return 0
            train(load_config(config, overrides))
        except (NonFiniteLossError, ValueError, OSError, PretrainedWeightsUnavailable) as err:
            if debug:
                raise
            print(f"train.py: error: {err}".replace("\n", " "))
            return 1
    return 0
