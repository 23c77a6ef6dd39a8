"""The training loop: a readable epoch skeleton (nnU-Net style) around model, loss, optimiser and batches.

A run folder holds ``plans.json``, ``checkpoint_last.pt`` (every epoch), ``checkpoint_best.pt`` (best
validation Dice) and ``log.jsonl`` (one line per epoch). ``resume=True`` continues from ``checkpoint_last``
exactly: weights, optimiser, AMP scaler, epoch and elapsed time are restored, and the data stream is a pure
function of (seed, patch index), so an interrupted run ends where an uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config.plans import Plans
from medseg.fileutil import atomic_write_text
from medseg.inference.sliding_window import SlidingWindowConfig, sliding_window_logits
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceBCELoss, DiceCELoss
from medseg.models.registry import build_model
from medseg.preprocessing.forward import PreprocessedCase
from medseg.run import load_checkpoint, save_checkpoint
from medseg.training.amp import amp_dtype, measure_cpu_amp
from medseg.training.batches import PatchDataset, make_loader
from medseg.training.optim import build_optimizer, lr_factor, set_lr

__all__ = ["EpochResult", "fit", "validation_dice"]

logger = logging.getLogger(__name__)

LAST, BEST, LOG = "checkpoint_last.pt", "checkpoint_best.pt", "log.jsonl"


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


def _example_batch(plans: Plans) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch of the planned shape, for measuring a training step before training."""
    cfg = plans.train
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(cfg.batch_size, plans.model.in_channels, *cfg.patch_size, generator=generator)
    shape = (cfg.batch_size, plans.model.out_channels if plans.data.labels.overlapping else 1, *cfg.patch_size)
    if plans.data.labels.overlapping:
        return image, (torch.rand(shape, generator=generator) > 0.5).float()
    return image, torch.zeros(shape, dtype=torch.long)


def fit(
    plans: Plans,
    train_cases: Sequence[PreprocessedCase],
    val_cases: Sequence[PreprocessedCase],
    run_dir: Path,
    *,
    device: torch.device,
    resume: bool = False,
    on_iteration: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> Path:
    """Train ``plans.model`` on ``train_cases``; return the path of the best checkpoint."""
    cfg = plans.train
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    model = build_model(plans.model, plans.model_name, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    optimizer = build_optimizer(list(model.parameters()), cfg)
    base = (
        DiceBCELoss(batch_dice=cfg.batch_dice)
        if plans.data.labels.overlapping
        else DiceCELoss(include_background=cfg.include_background, batch_dice=cfg.batch_dice)
    )
    n_outputs = len(plans.model.features) - 2 if plans.model.deep_supervision else 1
    loss_fn = DeepSupervisionLoss(base, max(n_outputs, 1))
    auto_cpu = cfg.amp == "auto" and device.type == "cpu" and not cfg.deterministic
    dtype = measure_cpu_amp(model, loss_fn, *_example_batch(plans)) if auto_cpu else amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    state: dict[str, Any] = {"epoch": 0, "elapsed_s": 0.0, "best_dice": -1.0}
    if resume and (run_dir / LAST).exists():
        state = _restore(run_dir / LAST, model, optimizer, scaler, device)
        logger.info("resuming at epoch %d (%.0f s trained so far)", state["epoch"], state["elapsed_s"])
    _truncate_log(run_dir / LOG, state["epoch"])
    dataset = PatchDataset(train_cases, cfg, plans.data.labels.overlapping)
    batches = iter(make_loader(dataset, state["epoch"], cfg))
    epoch = state["epoch"]
    while not _finished(epoch, state["elapsed_s"], cfg):
        started = time.perf_counter()
        progress = state["elapsed_s"] / cfg.time_budget_s if cfg.time_budget_s > 0 else epoch / cfg.epochs
        lr = cfg.learning_rate * lr_factor(progress, epoch, cfg)
        set_lr(optimizer, lr)
        model.train()
        losses = []
        data_s = step_s = 0.0
        for it in range(cfg.iterations_per_epoch):
            t0 = time.perf_counter()
            image, target = next(batches)
            t1 = time.perf_counter()
            losses.append(
                _step(model, loss_fn, optimizer, scaler, image.to(device), target.to(device), dtype, cfg.grad_clip)
            )
            data_s += t1 - t0
            step_s += time.perf_counter() - t1
            if on_iteration is not None:
                on_iteration(it + 1, cfg.iterations_per_epoch, float(np.mean(losses)))
        epoch += 1
        last = _finished(epoch, state["elapsed_s"] + time.perf_counter() - started, cfg)
        val = (
            validation_dice(model, val_cases, plans, device)
            if val_cases and (epoch % cfg.val_every == 0 or last)
            else None
        )
        seconds = time.perf_counter() - started
        state["elapsed_s"] += seconds
        mean_val = None if val is None else float(np.nanmean(list(val.values())))
        result = EpochResult(epoch, float(np.mean(losses)), lr, seconds, mean_val, val, data_s, step_s)
        _end_epoch(run_dir, model, optimizer, scaler, state, result)
        if on_epoch is not None:
            on_epoch(result)
    if not (run_dir / BEST).exists():
        save_checkpoint(_snapshot(model, optimizer, scaler, {**state, "epoch": epoch}), run_dir / BEST)
    return run_dir / BEST


def _finished(epoch: int, elapsed_s: float, cfg: Any) -> bool:
    if cfg.time_budget_s > 0:
        return elapsed_s >= cfg.time_budget_s or epoch >= cfg.epochs
    return epoch >= cfg.epochs


def _step(model, loss_fn, optimizer, scaler, image, target, dtype, clip) -> float:  # type: ignore[no-untyped-def]
    optimizer.zero_grad(set_to_none=True)
    autocast = torch.autocast(image.device.type, dtype=dtype) if dtype is not None else nullcontext()
    with autocast:
        loss = loss_fn(model(image), target)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def _end_epoch(run_dir: Path, model, optimizer, scaler, state: dict, result: EpochResult) -> None:  # type: ignore[no-untyped-def]
    """Log the epoch, then write ``best`` (if improved) and ``last``; ``last`` goes last so that a resumed
    run never repeats an epoch whose ``best`` was already written."""
    state["epoch"] = result.epoch
    if result.val_dice is not None and result.val_dice > state["best_dice"]:
        state["best_dice"] = result.val_dice
        save_checkpoint(_snapshot(model, optimizer, scaler, state), run_dir / BEST)
    record = {k: v for k, v in result.__dict__.items() if v is not None}
    with open(run_dir / LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    save_checkpoint(_snapshot(model, optimizer, scaler, state), run_dir / LAST)


def _snapshot(model, optimizer, scaler, state: dict) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": int(state["epoch"]),
        "elapsed_s": float(state["elapsed_s"]),
        "best_dice": float(state["best_dice"]),
    }


def _restore(path: Path, model, optimizer, scaler, device: torch.device) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ckpt = load_checkpoint(path, map_location=device)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
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
    original geometry). Classes absent from both prediction and reference count as NaN."""
    model.eval()
    config = SlidingWindowConfig(
        patch_size=plans.infer.patch_size, overlap=plans.infer.overlap, batch_size=plans.infer.batch_size
    )
    scores: dict[str, list[float]] = {}
    names = plans.data.labels.names
    for case in cases:
        logits = sliding_window_logits(model, torch.from_numpy(case.image).to(device), config)
        if plans.data.labels.overlapping:
            pred = (logits > 0).cpu().numpy()
            ref = case.label.astype(bool)  # type: ignore[union-attr]
            pairs = {names[k + 1]: (pred[k], ref[k]) for k in range(pred.shape[0])}
        else:
            labels = logits.argmax(0).cpu().numpy()
            pairs = {names[k]: (labels == k, case.label == k) for k in names if k != 0}
        for name, (p, r) in pairs.items():
            denom = p.sum() + r.sum()
            scores.setdefault(name, []).append(float(2 * (p & r).sum() / denom) if denom else float("nan"))
    return {name: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan") for name, v in scores.items()}
