"""The training loop: a readable epoch skeleton (nnU-Net style) around model, loss, optimiser and batches.

A run folder (:class:`~medseg.run.RunDir`) receives ``checkpoint_last.pt`` (every epoch),
``checkpoint_best.pt`` (best validation Dice) and ``log.jsonl`` (one line per epoch). ``resume=True``
continues from ``checkpoint_last`` exactly: weights, optimiser, AMP scaler, epoch and elapsed time are
restored, and the data stream is a pure function of (seed, patch index), so an interrupted run ends where
an uninterrupted one would.

The network comes from :data:`medseg.models.registry.MODELS` (``plans.model.name``), built for the planned
multi-modal fusion (``plans.fusion``, :func:`medseg.models.fusion.build_network`), the loss from
:data:`medseg.losses.registry.LOSSES` (``plans.train.loss``); a loss that needs extra targets gets them from
the loader in each :class:`~medseg.training.batches.Batch`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config.plans import Plans, TrainConfig
from medseg.distributed import Dist
from medseg.evaluation.metrics import dice
from medseg.fileutil import atomic_write_text
from medseg.inference.network import network_for
from medseg.inference.sliding_window import SlidingWindowConfig, sliding_window_logits
from medseg.losses.registry import LossSettings, build_loss, loss_entry
from medseg.models.encoder_weights import load_encoder_weights
from medseg.preprocessing.forward import PreprocessedCase
from medseg.run import RunDir
from medseg.training.amp import amp_dtype, measure_cpu_amp
from medseg.training.batches import Batch, PatchDataset, make_loader
from medseg.training.optim import build_optimizer, lr_factor, set_lr
from medseg.training.speed import example_batch

__all__ = ["EpochResult", "TrainCallbacks", "fit", "validation_dice"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    lr: float
    seconds: float
    val_dice: float | None = None
    val_dice_per_class: dict[str, float] | None = None
    data_seconds: float = 0.0  # waiting for batches (sampling + augmentation)
    step_seconds: float = 0.0  # forward, backward, optimiser step


@dataclass(frozen=True)
class TrainCallbacks:
    """Optional hooks: ``on_iteration(done, total, mean loss)`` after each step, ``on_epoch(result)`` after
    each epoch, and ``should_stop()``, asked after each step: True ends training cleanly after a checkpoint
    of the epoch reached (a user pressing Cancel in a GUI or a server)."""

    on_iteration: Callable[[int, int, float], None] | None = None
    on_epoch: Callable[[EpochResult], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclass
class _Session:
    """Everything an epoch needs: the model, its optimiser and scaler, the loss and the resumable state."""

    plans: Plans
    run: RunDir
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: torch.nn.Module
    extras: tuple[str, ...]
    dtype: torch.dtype | None
    dist: Dist = field(default_factory=Dist.single)
    trained: torch.nn.Module | None = None  # what the step runs: the model, or its DistributedDataParallel
    state: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "elapsed_s": 0.0, "best_dice": -1.0})


def _session(plans: Plans, run: RunDir, device: torch.device, resume: bool, dist: Dist) -> _Session:
    cfg = plans.train
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = network_for(plans, generator=generator).to(device)
    if not (resume and run.checkpoint("last").exists()):  # a resumed run's checkpoint holds them
        load_encoder_weights(model, plans.model)  # pretrained encoder weights, if the plans name a file
    overlapping = plans.data.labels.overlapping
    extras = loss_entry(cfg.loss, overlapping=overlapping).requires
    settings = LossSettings(cfg.include_background, cfg.batch_dice, cfg.loss_params)
    loss_fn = build_loss(cfg.loss, settings, overlapping=overlapping, n_outputs=plans.model.n_outputs)
    if cfg.amp == "auto" and device.type == "cpu" and not cfg.deterministic:
        image, target, extra = example_batch(plans, extras)
        measure = functools.partial(measure_cpu_amp, model, functools.partial(loss_fn, **extra), image, target)
        dtype = dist.broadcast(measure() if dist.is_main else None)  # one choice for every process
    else:
        dtype = amp_dtype(cfg.amp, device)
    optimizer = build_optimizer(list(model.parameters()), cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    session = _Session(plans, run, device, model, optimizer, scaler, loss_fn, extras, dtype, dist, model)
    if resume and run.checkpoint("last").exists():
        session.state = _restore(session)
        logger.info("resuming at epoch %d (%.0f s trained so far)", session.state["epoch"], session.state["elapsed_s"])
    if dist.is_main:
        _truncate_log(run.log, session.state["epoch"])
        run.remove_partial_checkpoints()
    if dist.active:
        session.trained = _wrap(model, device)
    return session


def _wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model for distributed steps: BatchNorm synchronised across processes on CUDA (SyncBatchNorm has
    no CPU kernel; the planned networks normalise per instance, which needs no synchronisation), gradients
    averaged by DistributedDataParallel. ``find_unused_parameters``: deep supervision drops its coarsest
    output from the loss (weight 0, as nnU-Net), so that head gets no gradient, which DDP must be told."""
    ddp = torch.nn.parallel.DistributedDataParallel
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return ddp(model, device_ids=[device.index], find_unused_parameters=True)
    return ddp(model, find_unused_parameters=True)


def fit(
    plans: Plans,
    train_cases: Sequence[PreprocessedCase],
    val_cases: Sequence[PreprocessedCase],
    run_dir: Path,
    *,
    device: torch.device,
    resume: bool = False,
    callbacks: TrainCallbacks | None = None,
    dist: Dist | None = None,
) -> Path:
    """Train ``plans.model`` on ``train_cases`` into ``run_dir``; return the path of the best checkpoint.

    With ``dist`` (several processes, :mod:`medseg.distributed`) each process steps on its share of every
    global batch (the same patches a single process would draw), gradients are averaged, and rank 0 alone
    validates, logs, calls ``on_epoch``/``on_iteration`` and writes checkpoints; the time budget is rank 0's
    clock, so every process stops after the same epoch."""
    dist = dist or Dist.single()
    cb, cfg, run = callbacks or TrainCallbacks(), plans.train, RunDir(Path(run_dir))
    if not dist.is_main:
        cb = TrainCallbacks(should_stop=cb.should_stop)
    session = _session(plans, run, device, resume, dist)
    dataset = PatchDataset(train_cases, plans, session.extras)
    loader = make_loader(dataset, session.state["epoch"], cfg, rank=dist.rank, world=dist.world)
    batches = (Batch.from_dict(b) for b in loader)
    epoch = session.state["epoch"]
    while not _finished(epoch, session.state["elapsed_s"], cfg):
        started = time.perf_counter()
        progress = session.state["elapsed_s"] / cfg.time_budget_s if cfg.time_budget_s > 0 else epoch / cfg.epochs
        lr = cfg.learning_rate * lr_factor(progress, epoch, cfg)
        set_lr(session.optimizer, lr)
        getattr(session.loss_fn, "set_progress", lambda _: None)(progress)  # a loss's schedule (boundary ramp)
        losses, data_s, step_s, stopped = _train_epoch(session, batches, cb)
        epoch += 1
        last = stopped or _finished(epoch, session.state["elapsed_s"] + time.perf_counter() - started, cfg)
        validate = val_cases and (epoch % cfg.val_every == 0 or last) and dist.is_main
        val = validation_dice(session.model, val_cases, plans, device) if validate else None
        seconds = dist.broadcast(time.perf_counter() - started)  # rank 0's clock decides when to stop
        session.state["elapsed_s"] += seconds
        mean_val = None if val is None else float(np.nanmean(list(val.values())))
        loss = dist.mean(float(np.mean(losses)))
        result = EpochResult(epoch, loss, lr, seconds, mean_val, val, data_s, step_s)
        _end_epoch(session, result)
        if cb.on_epoch is not None:
            cb.on_epoch(result)
        if stopped:
            logger.info("training stopped on request after epoch %d", epoch)
            break
    if dist.is_main and not run.checkpoint("best").exists():
        run.save_checkpoint(_snapshot(session, {**session.state, "epoch": epoch}), "best")
    dist.barrier()  # every process returns once the checkpoints are complete
    return run.checkpoint("best")


def _train_epoch(
    session: _Session, batches: Iterator[Batch], cb: TrainCallbacks
) -> tuple[list[float], float, float, bool]:
    """One epoch of steps: (losses, seconds waiting for data, seconds stepping, stopped on request)."""
    cfg = session.plans.train
    session.model.train()
    asked = cb.should_stop is not None
    losses: list[float] = []
    data_s = step_s = 0.0
    for it in range(cfg.iterations_per_epoch):
        t0 = time.perf_counter()
        batch = next(batches).to(session.device)
        t1 = time.perf_counter()
        losses.append(_step(session, batch, cfg.grad_clip))
        data_s += t1 - t0
        step_s += time.perf_counter() - t1
        if cb.on_iteration is not None:
            cb.on_iteration(it + 1, cfg.iterations_per_epoch, float(np.mean(losses)))
        if asked and session.dist.any(bool(cb.should_stop())):  # type: ignore[misc]
            return losses, data_s, step_s, True
    return losses, data_s, step_s, False


def _finished(epoch: int, elapsed_s: float, cfg: TrainConfig) -> bool:
    if cfg.time_budget_s > 0:
        return elapsed_s >= cfg.time_budget_s or epoch >= cfg.epochs
    return epoch >= cfg.epochs


def _step(session: _Session, batch: Batch, clip: float) -> float:
    model, optimizer, scaler = session.trained or session.model, session.optimizer, session.scaler
    optimizer.zero_grad(set_to_none=True)
    dtype = session.dtype
    autocast = torch.autocast(batch.image.device.type, dtype=dtype) if dtype is not None else nullcontext()
    with autocast:
        loss = session.loss_fn(model(batch.image), batch.target, **batch.extras)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def _end_epoch(session: _Session, result: EpochResult) -> None:
    """Log the epoch, then write ``best`` (if improved) and ``last``; ``last`` goes last so that a resumed
    run never repeats an epoch whose ``best`` was already written."""
    state = session.state
    state["epoch"] = result.epoch
    if not session.dist.is_main:
        return
    if result.val_dice is not None and result.val_dice > state["best_dice"]:
        state["best_dice"] = result.val_dice
        session.run.save_checkpoint(_snapshot(session, state), "best")
    record = {k: v for k, v in result.__dict__.items() if v is not None}
    with open(session.run.log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    session.run.save_checkpoint(_snapshot(session, state), "last")


def _snapshot(session: _Session, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scaler": session.scaler.state_dict(),
        "epoch": int(state["epoch"]),
        "elapsed_s": float(state["elapsed_s"]),
        "best_dice": float(state["best_dice"]),
    }


def _restore(session: _Session) -> dict[str, Any]:
    ckpt = session.run.load_checkpoint("last", map_location=session.device)
    session.model.load_state_dict(ckpt["model"])
    session.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        session.scaler.load_state_dict(ckpt["scaler"])
    return {"epoch": int(ckpt["epoch"]), "elapsed_s": float(ckpt["elapsed_s"]), "best_dice": float(ckpt["best_dice"])}


def _truncate_log(path: Path, epoch: int) -> None:
    """Drop log lines of epochs after ``epoch`` (written before a crash that lost their checkpoint)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = []
    for line in lines:
        try:
            if json.loads(line)["epoch"] <= epoch:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut short by a crash
    atomic_write_text(path, "".join(k + "\n" for k in kept))  # atomic: a kill here must not lose the log


@torch.inference_mode()
def validation_dice(
    model: torch.nn.Module, cases: Sequence[PreprocessedCase], plans: Plans, device: torch.device
) -> dict[str, float]:
    """Mean per-case Dice per class on the network grid (a fast proxy; the final evaluation is in the
    original geometry). A class absent from both prediction and reference counts as NaN for that case."""
    model.eval()
    config = SlidingWindowConfig(
        patch_size=plans.patch_size, overlap=plans.infer.overlap, batch_size=plans.infer.batch_size
    )
    labels = plans.data.labels
    scores: dict[str, list[float]] = {labels.names[k]: [] for k in labels.foreground}
    for case in cases:
        logits = sliding_window_logits(model, torch.from_numpy(case.image).to(device), config)
        if labels.overlapping:
            pred, ref = (logits > 0).cpu().numpy(), case.label.astype(bool)  # type: ignore[union-attr]
            pairs = [(pred[i], ref[i]) for i in range(pred.shape[0])]
        else:
            argmax = logits.argmax(0).cpu().numpy()
            pairs = [(argmax == k, case.label == k) for k in labels.foreground]
        for k, (p, r) in zip(labels.foreground, pairs, strict=True):
            scores[labels.names[k]].append(dice(p, r) if (p.any() or r.any()) else float("nan"))
    return {name: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan") for name, v in scores.items()}
