"""The Accelerate training loop for CE, LA, SupCon, KCL (+cRT) and BCL.

One function, ``train(cfg)``, reads top to bottom: data -> models -> losses -> optimisation ->
(resume) -> stage 1 -> (stage 2: cRT) -> export. It runs unchanged on a CPU, one GPU, many GPUs
and many nodes under ``accelerate launch``.
"""
from __future__ import annotations

import copy
import json
import math
import random
import re
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
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import kcl_models  # noqa: F401  (registers the architectures)
from kcl_models.data import build_dataset, build_sampler
from kcl_models.data.transforms import build_eval_transform, build_train_transform, build_views
from kcl_models.eval.evaluate import predict
from kcl_models.eval.metrics import compute_metrics
from kcl_models.losses import BCLLoss, KCLLoss, LogitAdjustedLoss, SupConLoss
from kcl_models.losses.moco import LabelQueue, momentum_update

from .config import TrainConfig
from .distributed import all_gather_with_grad, concat_all_gather
from .wrappers import BCLModel, LinearOnFrozen, ProjectedEncoder, pooled_features


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
    queue_filled: bool = False
    best_top1: float = -1.0
    last_checkpoint: str | None = None

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


def _loader(ds, batch_size: int, cfg: TrainConfig, sampler=None, train: bool = True) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      drop_last=train, num_workers=cfg.workers, pin_memory=torch.cuda.is_available(),
                      collate_fn=getattr(ds, "collate_fn", None))  # workers re-created per epoch: they
    # must see the dataset's new epoch (EpochSeededDataset), so no persistent_workers


class EpochSeededDataset(torch.utils.data.Dataset):
    """Augmentation randomness as a pure function of ``(seed, epoch, index)``.

    Each item's transforms run under RNGs seeded from its index and the epoch (the global RNG
    states are restored afterwards). A resumed run therefore re-creates exactly the views of the
    uninterrupted one, whatever the loader prefetched before the checkpoint and however many
    workers there are. Also keeps the dataset interface the trainer relies on.
    """

    def __init__(self, dataset, seed: int, indices: list[int] | None = None) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0
        self.indices = indices
        targets = dataset.targets
        self.targets = [targets[i] for i in indices] if indices is not None else list(targets)
        self.num_classes, self.classes = dataset.num_classes, dataset.classes
        self.class_counts = dataset.class_counts
        self.collate_fn = getattr(dataset, "collate_fn", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def __getitem__(self, index: int):
        item_seed = (self.seed * 0x9E3779B1 + self.epoch * 0x85EBCA77 + index * 0xC2B2AE3D) % (2**63)
        torch_state, py_state = torch.get_rng_state(), random.getstate()
        torch.default_generator.manual_seed(item_seed)  # CPU only: torch.manual_seed would also queue a
        random.seed(item_seed)                          # lazy CUDA seed that records a stack trace per call
        try:
            return self.dataset[self.indices[index] if self.indices is not None else index]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)


def average_buffers(module: nn.Module, world_size: int) -> None:
    """Average floating-point buffers (BN running statistics) across processes in one collective.

    The key encoder sits outside DDP, so its BN statistics would drift apart rank by rank; the
    average is what SyncBN's running statistics would hold, and keeps every rank's copy identical.
    """
    if world_size < 2:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = _flatten_dense_tensors(buffers)
    torch.distributed.all_reduce(flat)
    for buf, avg in zip(buffers, _unflatten_dense_tensors(flat.div_(world_size), buffers)):
        buf.copy_(avg)


def _latest_checkpoint(output_dir: Path) -> Path | None:
    ckpts = sorted((output_dir / "checkpoints").glob("checkpoint_*"),
                   key=lambda p: int(re.sub(r"\D", "", p.name) or -1))
    return ckpts[-1] if ckpts else None


def _checksum(*tensors: torch.Tensor) -> torch.Tensor:
    return torch.stack([t.detach().double().sum() + t.detach().double().abs().sum() for t in tensors]).sum()


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the configured recipe; returns the final metrics (and writes everything to disk)."""
    out = Path(cfg.output_dir)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        log_with=cfg.log_with,
        project_config=ProjectConfiguration(project_dir=str(out), automatic_checkpoint_naming=True,
                                            total_limit=cfg.keep_checkpoints),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(cfg.seed)
    main = accelerator.is_main_process
    log = accelerator.print

    # ---- data --------------------------------------------------------------------------------
    pcfg = timm.models.get_pretrained_cfg(cfg.model)
    if pcfg is None:
        raise ValueError(f"unknown model {cfg.model!r}; see timm.list_models('*_kcl') / ('*_bcl')")
    size = cfg.input_size or pcfg.input_size[-1]
    mean, std = pcfg.mean, pcfg.std
    data_kw = dict(root=cfg.data_root, imbalance_factor=cfg.imbalance_factor, seed=cfg.seed,
                   on_error="skip" if cfg.skip_corrupt else "raise", **cfg.data_kwargs)
    train_tf = build_views(cfg.method, size, mean, std, randaug=cfg.randaug, hflip=cfg.hflip)
    train_ds = build_dataset(cfg.data, "train", transform=train_tf, split_file=cfg.train_split, **data_kw)
    eval_cfg = dict(input_size=(3, size, size), mean=mean, std=std, crop_pct=pcfg.crop_pct,
                    interpolation=pcfg.interpolation)
    test_ds = build_dataset(cfg.data, "test", transform=build_eval_transform(eval_cfg),
                            split_file=cfg.test_split, **data_kw)
    num_classes = train_ds.num_classes
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise ValueError(f"config num_classes={cfg.num_classes} does not match the data "
                         f"'{cfg.data}', which has {num_classes} classes")
    counts = train_ds.class_counts()
    if min(counts) == 0:
        missing = [c for c, n in enumerate(counts) if n == 0]
        raise ValueError(f"classes {missing[:10]} have no training images in '{cfg.data}'")
    if cfg.method == "kcl" and cfg.kcl_k is not None:
        few = [c for c, n in enumerate(counts) if n < cfg.kcl_k]
        if few:
            log(f"note: {len(few)} classes have fewer than k={cfg.kcl_k} training images "
                f"(e.g. class {few[0]}: {counts[few[0]]}); their anchors use the positives available")

    global_batch = cfg.batch_size * accelerator.num_processes
    if cfg.skip_corrupt and accelerator.num_processes > 1 and cfg.method not in ("ce", "la"):
        raise ValueError("skip_corrupt shortens batches, but contrastive features are gathered in equal-size "
                         "batches across processes: use skip_corrupt with ce/la only, or one process, or "
                         "remove the unreadable files (the error names them)")
    if cfg.method == "kcl" and cfg.queue_size % global_batch:
        raise ValueError(f"queue_size={cfg.queue_size} must be divisible by the global batch "
                         f"{global_batch} (batch_size {cfg.batch_size} x {accelerator.num_processes} processes)")
    if len(train_ds) < global_batch:
        raise ValueError(f"the training set has {len(train_ds)} images, fewer than one global batch "
                         f"({global_batch}); lower batch_size")
    keep = list(range(min(len(train_ds), cfg.overfit_batches * global_batch))) if cfg.overfit_batches else None
    train_ds = EpochSeededDataset(train_ds, cfg.seed, keep)
    train_loader = _loader(train_ds, cfg.batch_size, cfg, build_sampler(cfg.sampler, train_ds.targets, cfg.seed))
    test_loader = _loader(test_ds, cfg.batch_size, cfg, train=False)

    # ---- models and losses ------------------------------------------------------------------
    backbone = timm.create_model(cfg.model, pretrained=cfg.pretrained, num_classes=num_classes)
    if cfg.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    key_encoder = queue = classifier = None
    if cfg.method in ("ce", "la"):
        model = backbone
    elif cfg.method == "bcl":
        model = BCLModel(backbone, cfg.feat_dim, cfg.proj_hidden)
    else:
        classifier = copy.deepcopy(backbone.get_classifier())  # stage-2 head, same type as the arch's
        model = ProjectedEncoder(backbone, cfg.feat_dim, "linear" if cfg.method == "kcl" else "mlp",
                                 cfg.proj_hidden)
        if cfg.method == "kcl":
            key_encoder = copy.deepcopy(model).requires_grad_(False).to(accelerator.device)
            queue = LabelQueue(cfg.feat_dim, cfg.queue_size).to(accelerator.device)

    # Labels were range-checked on the host when class_counts() ran above, so the losses skip their
    # per-call check (a host-device sync each) and the step never waits for the GPU.
    la_loss = LogitAdjustedLoss(counts, tau=cfg.la_tau if cfg.method in ("la", "bcl") else 0.0,
                                validate_labels=False).to(accelerator.device)
    bcl_loss = BCLLoss(num_classes, cfg.temperature, validate_labels=False)
    supcon_loss = SupConLoss(cfg.temperature)
    kcl_loss = KCLLoss(cfg.kcl_k, cfg.temperature, validate_labels=False)
    if cfg.compile_losses != "no":  # fuses each loss's many small kernels (GPU: see BENCHMARKS.md)
        la_loss, bcl_loss, supcon_loss, kcl_loss = (torch.compile(m, backend=cfg.compile_losses)
                                                    for m in (la_loss, bcl_loss, supcon_loss, kcl_loss))

    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum)
    steps_per_epoch = math.ceil(len(train_loader) / accelerator.num_processes / cfg.grad_accum_steps)
    scheduler, _ = create_scheduler_v2(optimizer, sched=cfg.sched, num_epochs=cfg.epochs,
                                       warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr,
                                       step_on_epochs=False, updates_per_epoch=steps_per_epoch)
    schedulers = {"stage1": scheduler}
    objects = [model, optimizer, train_loader, test_loader]
    if classifier is not None:
        crt_tf = build_train_transform("plain", size, mean, std, randaug=None, hflip=cfg.hflip)
        crt_ds = EpochSeededDataset(build_dataset(cfg.data, "train", transform=crt_tf, split_file=cfg.train_split,
                                                  **data_kw), cfg.seed + 1)
        crt_bs = cfg.crt_batch_size or cfg.batch_size
        crt_loader = _loader(crt_ds, crt_bs, cfg, build_sampler(cfg.crt_sampler, crt_ds.targets, cfg.seed + 1))
        crt_opt = create_optimizer_v2(classifier, opt="sgd", lr=cfg.crt_lr, weight_decay=0.0, momentum=0.9)
        crt_steps = math.ceil(len(crt_loader) / accelerator.num_processes)
        schedulers["stage2"], _ = create_scheduler_v2(
            crt_opt, sched=cfg.crt_sched, num_epochs=cfg.crt_epochs, decay_milestones=cfg.crt_decay_milestones,
            decay_rate=0.1, step_on_epochs=False, updates_per_epoch=crt_steps)
        objects += [classifier, crt_opt, crt_loader]
    prepared = accelerator.prepare(*objects)
    model, optimizer, train_loader, test_loader = prepared[:4]
    if classifier is not None:
        classifier, crt_opt, crt_loader = prepared[4:]

    state = TrainState()
    accelerator.register_for_checkpointing(state, SchedulerState(**schedulers))
    if key_encoder is not None:
        accelerator.register_for_checkpointing(key_encoder, queue)

    # ---- resume ----------------------------------------------------------------------------
    if not cfg.resume and _latest_checkpoint(out) is not None:
        raise ValueError(f"output_dir '{out}' already holds checkpoints of an earlier run: pass --resume auto "
                         f"to continue it, or choose another output_dir")
    if cfg.resume:
        path = _latest_checkpoint(out) if cfg.resume == "auto" else Path(cfg.resume)
        if path is None or not path.exists():
            if cfg.resume != "auto":
                raise FileNotFoundError(f"resume checkpoint not found: {cfg.resume}")
        else:
            accelerator.load_state(str(path))
            accelerator.project_configuration.iteration = int(re.sub(r"\D", "", path.name) or 0) + 1
            log(f"resumed from {path}: stage {state.stage}, epoch {state.epoch}, "
                f"batch {state.batch_in_epoch}, step {state.global_step}")
    if main:
        cfg.save(out / "config.yaml")
    accelerator.init_trackers("train", config={k: v for k, v in cfg.to_dict().items()
                                                if isinstance(v, (int, float, str, bool))})

    def save_checkpoint() -> None:
        accelerator.wait_for_everyone()
        accelerator.save_state()
        if main:
            state.last_checkpoint = str(_latest_checkpoint(out))
            cfg.save(Path(state.last_checkpoint) / "config.yaml")

    loss_history: list[float] = []
    timing = {"seconds": 0.0, "images": 0}
    checks: dict[str, Any] = {"world_size": accelerator.num_processes, "gathered_batch": set(),
                              "key_encoder_in_sync": True, "queue_in_sync": True}

    def check_finite(loss: torch.Tensor, where: str) -> None:
        ok = accelerator.gather(torch.isfinite(loss.detach()).reshape(1).float())
        if not bool(ok.all()):
            accelerator.end_training()
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at {where}; the run stopped. Last good checkpoint: "
                f"{state.last_checkpoint or 'none saved yet'}. Try a lower lr, clip_grad, or "
                f"mixed_precision=no, then --resume auto.")

    # ---- one optimisation step per method ----------------------------------------------------
    def compute_loss(batch: Any, step_gen: torch.Generator) -> tuple[torch.Tensor, int]:
        images, labels = batch
        if cfg.method in ("ce", "la"):
            return la_loss(model(images).float(), labels), labels.shape[0]
        if cfg.method == "bcl":
            b = labels.shape[0]
            logits, z, prototypes = model(torch.cat(images))               # [3B, C], [3B, F], [C, F]
            logits, z, prototypes = logits.float(), z.float(), prototypes.float()
            feats = z[b:].view(len(images) - 1, b, -1).transpose(0, 1)      # [B, V, F]
            feats, all_labels = all_gather_with_grad(feats), concat_all_gather(labels)
            checks["gathered_batch"].add(feats.shape[0])
            loss = cfg.alpha * la_loss(logits[:b], labels) + cfg.beta * bcl_loss(feats, all_labels, prototypes)
            return loss, b * len(images)
        if cfg.method == "supcon":
            b = labels.shape[0]
            z = model(torch.cat(images))                                   # [VB, F]
            feats = z.view(len(images), b, -1).transpose(0, 1)             # [B, V, F]
            feats, all_labels = all_gather_with_grad(feats), concat_all_gather(labels)
            checks["gathered_batch"].add(feats.shape[0])
            return supcon_loss(feats.float(), all_labels), b * len(images)
        # kcl: query from view 0, key (momentum encoder, no grad) from view 1
        q = model(images[0])                                               # [B, F]
        with torch.no_grad(), accelerator.autocast():
            k = key_encoder(images[1]).float()                             # [B, F]
        loss = kcl_loss(q.float(), k, labels, queue.features.clone(), queue.labels.clone(), generator=step_gen)
        queue.enqueue(concat_all_gather(k), concat_all_gather(labels))     # after the loss
        return loss, labels.shape[0] * 2

    @torch.no_grad()
    def fill_queue() -> None:
        """Pre-fill the KCL queue before epoch 0, as the authors do, so no slot starts empty."""
        it = iter(train_loader)
        for _ in range(cfg.queue_size // global_batch):
            try:
                images, labels = next(it)
            except StopIteration:
                it = iter(train_loader)
                images, labels = next(it)
            with accelerator.autocast():
                queue.enqueue(concat_all_gather(key_encoder(images[1]).float()), concat_all_gather(labels))
        state.queue_filled = True

    def as_timm_model(m: nn.Module) -> nn.Module:
        """The publishable model: backbone + classifier in one timm module, on the CPU."""
        if isinstance(m, LinearOnFrozen):
            merged = copy.deepcopy(m.backbone)
            merged.reset_classifier(num_classes)
            merged.get_classifier().load_state_dict(m.classifier.state_dict())
            return merged.cpu().float()
        return copy.deepcopy(m).cpu().float()

    def save_timm_folder(m: nn.Module, folder: Path) -> None:
        timm.models.save_for_hf(as_timm_model(m), str(folder), model_config={"label_names": list(train_ds.classes)},
                                safe_serialization=True)

    def evaluate(eval_model: nn.Module, tag: str) -> dict[str, Any]:
        eval_model.eval()
        logits, targets = predict(eval_model, test_loader, accelerator=accelerator, progress=False)
        checks["eval_samples"] = int(targets.numel())
        metrics = compute_metrics(logits.float().cpu(), targets.cpu(), counts, many=cfg.shot_many,
                                  few=cfg.shot_few, relative=cfg.relative_shots)
        accelerator.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                        step=state.global_step)
        log(f"[{tag}] top1 {metrics['top1']:.2f} | many {metrics['many']} | medium {metrics['medium']} "
            f"| few {metrics['few']} | beta {metrics['balancedness']:.4f}")
        if metrics["top1"] > state.best_top1:  # best by the evaluation split's top-1 (best/), last in model/
            state.best_top1 = metrics["top1"]
            if main:
                save_timm_folder(eval_model, out / "best")
        return metrics

    def run_stage(stage: int, epochs: int, loader, opt, sched, step_fn, train_modules, eval_model) -> dict:
        metrics: dict[str, Any] = {}
        for epoch in range(state.epoch if state.stage == stage else 0, epochs):
            state.stage, state.epoch = stage, epoch
            loader.set_epoch(epoch)
            loader.dataset.set_epoch(epoch)
            if hasattr(loader.batch_sampler, "sampler") and hasattr(loader.batch_sampler.sampler, "set_epoch"):
                loader.batch_sampler.sampler.set_epoch(epoch)
            skip = state.batch_in_epoch
            epoch_loader = loader
            if skip:
                # resuming mid-epoch: the DataLoader iterator draws its base seed from the global
                # RNG, which the uninterrupted run did at the epoch start; undo that draw so the
                # restored global RNG stream (e.g. dropout) continues where it was saved
                rng = torch.get_rng_state()
                epoch_loader = iter(accelerator.skip_first_batches(loader, skip))
                torch.set_rng_state(rng)
            for m in train_modules:
                m.train()
            bar = tqdm(total=len(loader), initial=skip, disable=not main, dynamic_ncols=True,
                       desc=f"stage {stage} epoch {epoch + 1}/{epochs}")
            tic, seen = time.perf_counter(), 0
            for batch in epoch_loader:
                if batch is None:  # every image of this batch was unreadable (skip policy)
                    state.batch_in_epoch += 1
                    continue
                step_gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + state.global_step)
                with accelerator.accumulate(*train_modules):
                    loss, n_images = step_fn(batch, step_gen)
                    check_finite(loss, f"stage {stage} epoch {epoch} batch {state.batch_in_epoch}")
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.clip_grad:
                        accelerator.clip_grad_norm_([p for m in train_modules for p in m.parameters()],
                                                    cfg.clip_grad)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                state.batch_in_epoch += 1
                seen += n_images * accelerator.num_processes
                bar.update(1)
                if accelerator.sync_gradients:
                    state.global_step += 1
                    state.stage_step += 1
                    loss_history.append(float(accelerator.reduce(loss.detach(), "mean")))
                    sched.step_update(num_updates=state.stage_step)
                    if key_encoder is not None and stage == 1:
                        momentum_update(accelerator.unwrap_model(model), key_encoder, cfg.moco_m)
                        average_buffers(key_encoder, accelerator.num_processes)
                        if cfg.debug_checks:
                            sums = accelerator.gather(torch.stack([
                                _checksum(*key_encoder.state_dict().values()),
                                _checksum(queue.features, queue.labels.double())]).reshape(1, 2))
                            checks["key_encoder_in_sync"] &= bool(torch.allclose(sums[:, 0], sums[0, 0]))
                            checks["queue_in_sync"] &= bool(torch.allclose(sums[:, 1], sums[0, 1]))
                    if state.global_step % cfg.log_every == 0:
                        rate = seen / (time.perf_counter() - tic)
                        lr = opt.param_groups[0]["lr"]
                        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
                        accelerator.log({f"train/loss_stage{stage}": loss.item(), "train/lr": lr,
                                         "train/img_per_s": rate}, step=state.global_step)
                    if cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
                        save_checkpoint()
                    if cfg.max_steps and state.global_step >= cfg.max_steps:
                        break
            bar.close()
            if stage == 1:
                timing["seconds"] += time.perf_counter() - tic
                timing["images"] += seen
            done = cfg.max_steps and state.global_step >= cfg.max_steps
            if not done:
                state.epoch, state.batch_in_epoch = epoch + 1, 0
            if not cfg.checkpoint_every and not done:
                save_checkpoint()
            last = epoch + 1 == epochs
            if eval_model is not None and (last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)):
                metrics = evaluate(eval_model, f"stage {stage} epoch {epoch + 1}")
            if done:
                break
        return metrics

    # ---- stage 1 -------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(model)
    metrics: dict[str, Any] = {}
    if cfg.method == "kcl" and not state.queue_filled:
        fill_queue()
    if state.stage == 1:
        eval_model = None if cfg.two_stage else (unwrapped.backbone if cfg.method == "bcl" else unwrapped)
        metrics = run_stage(1, cfg.epochs, train_loader, optimizer, scheduler, compute_loss, [model],
                            eval_model)
        if cfg.two_stage and not (cfg.max_steps and state.global_step >= cfg.max_steps):
            state.stage, state.epoch, state.batch_in_epoch, state.stage_step = 2, 0, 0, 0

    # ---- stage 2 (cRT): frozen backbone, class-balanced linear classifier --------------------
    if cfg.two_stage:
        backbone = accelerator.unwrap_model(model).backbone
        backbone.eval().requires_grad_(False)
        ce = nn.CrossEntropyLoss()

        def crt_loss(batch: Any, step_gen: torch.Generator) -> tuple[torch.Tensor, int]:
            images, labels = batch
            with torch.no_grad():
                h = pooled_features(backbone, images)                      # [B, D]
            return ce(classifier(h.float()), labels), labels.shape[0]

        eval_model = LinearOnFrozen(backbone, accelerator.unwrap_model(classifier))
        if state.stage == 2:
            metrics = run_stage(2, cfg.crt_epochs, crt_loader, crt_opt, schedulers["stage2"], crt_loss,
                                [classifier], eval_model)
            backbone.requires_grad_(True)
        export = eval_model
    else:
        export = unwrapped.backbone if cfg.method == "bcl" else unwrapped

    # ---- export: timm folder (backbone + classifier) + final metrics -----------------------------
    accelerator.wait_for_everyone()
    if not metrics and not cfg.max_steps:
        metrics = evaluate(export, "final")
    if hasattr(train_ds.dataset, "report_skipped"):
        train_ds.dataset.report_skipped()
    if main:
        save_timm_folder(export, out / "model")
        (out / "train_metrics.json").write_text(json.dumps(
            {"metrics": metrics, "config": cfg.to_dict(), "class_counts": counts, "loss_history": loss_history,
             "timing": timing},
            indent=2, default=str))
        if cfg.debug_checks:
            checks["gathered_batch"] = sorted(checks["gathered_batch"])
            (out / "debug_checks.json").write_text(json.dumps(checks, indent=2))
    accelerator.end_training()
    return metrics


def main_cli(argv: list[str] | None = None) -> int:
    from .config import parse_args
    cfg = parse_args(argv)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TypedStorage.*")
        try:
            train(cfg)
        except (NonFiniteLossError, ValueError, FileNotFoundError) as err:
            print(f"train.py: error: {err}")
            return 1
    return 0
