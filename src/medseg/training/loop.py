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

With ``plans.train.semi_supervised`` (Mean Teacher, :mod:`medseg.training.mean_teacher`) each step also
takes a batch of unlabelled patch pairs (:mod:`medseg.training.unlabeled`): the student's labelled and
unlabelled patches go through the network in one forward pass, the loss adds the weighted consistency with
the EMA teacher, and the teacher is updated after every optimiser step. The teacher is validated and is
``model`` in the checkpoints (so prediction and export use it unchanged); ``checkpoint_last`` also holds the
student (``student``) and the EMA step count (``ema_step``), so a resumed run continues exactly.
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
from medseg.errors import DataError
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
from medseg.training.mean_teacher import (
    consistency_weight,
    ema_decay,
    make_teacher,
    mean_teacher_losses,
    update_teacher,
)
from medseg.training.optim import build_optimizer, lr_factor, set_lr
from medseg.training.speed import example_batch
from medseg.training.unlabeled import unlabeled_pairs

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
    # semi-supervised runs: the mean unweighted consistency term, and its weight this epoch
    consistency_loss: float | None = None
    consistency_weight: float | None = None


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
    teacher: torch.nn.Module | None = None  # the Mean Teacher (semi-supervised runs), an EMA of ``model``
    state: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "elapsed_s": 0.0, "best_dice": -1.0})

    @property
    def evaluated(self) -> torch.nn.Module:
        """The network validated and saved as ``model``: the teacher when there is one, else the model."""
        return self.teacher if self.teacher is not None else self.model


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
    if cfg.semi_supervised is not None:
        session.teacher = make_teacher(model)  # Tarvainen & Valpola: the teacher starts as the student
        session.state["ema_step"] = 0
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
    unlabeled: Sequence[PreprocessedCase] = (),
) -> Path:
    """Train ``plans.model`` on ``train_cases`` into ``run_dir``; return the path of the best checkpoint.

    With ``plans.train.semi_supervised`` the ``unlabeled`` cases (preprocessed like ``train_cases``, no
    label) give the Mean Teacher's consistency term (module docstring); otherwise they must be empty.

    With ``dist`` (several processes, :mod:`medseg.distributed`) each process steps on its share of every
    global batch (the same patches a single process would draw), gradients are averaged, and rank 0 alone
    validates, logs, calls ``on_epoch``/``on_iteration`` and writes checkpoints; the time budget is rank 0's
    clock, so every process stops at the same step (within an epoch when the budget runs out there)."""
    dist = dist or Dist.single()
    cb, cfg, run = callbacks or TrainCallbacks(), plans.train, RunDir(Path(run_dir))
    if not dist.is_main:
        cb = TrainCallbacks(should_stop=cb.should_stop)
    session = _session(plans, run, device, resume, dist)
    dataset = PatchDataset(train_cases, plans, session.extras)
    loader = make_loader(dataset, session.state["epoch"], cfg, rank=dist.rank, world=dist.world)
    batches = (Batch.from_dict(b) for b in loader)
    pairs = unlabeled_pairs(plans, unlabeled, session.state["epoch"], rank=dist.rank, world=dist.world)
    epoch = session.state["epoch"]
    while not _finished(epoch, session.state["elapsed_s"], cfg):
        started = time.perf_counter()
        progress = session.state["elapsed_s"] / cfg.time_budget_s if cfg.time_budget_s > 0 else epoch / cfg.epochs
        lr = cfg.learning_rate * lr_factor(progress, epoch, cfg)
        set_lr(session.optimizer, lr)
        getattr(session.loss_fn, "set_progress", lambda _: None)(progress)  # a loss's schedule (boundary ramp)
        weight = consistency_weight(progress, cfg.semi_supervised) if cfg.semi_supervised is not None else None
        deadline = started + cfg.time_budget_s - session.state["elapsed_s"] if cfg.time_budget_s > 0 else None
        steps = _train_epoch(session, batches, cb, pairs, weight or 0.0, deadline)
        epoch += 1
        last = steps.stopped or steps.out_of_time
        last = last or _finished(epoch, session.state["elapsed_s"] + time.perf_counter() - started, cfg)
        validate = val_cases and (epoch % cfg.val_every == 0 or last) and dist.is_main
        val = validation_dice(session.evaluated, val_cases, plans, device) if validate else None
        seconds = dist.broadcast(time.perf_counter() - started)  # rank 0's clock decides when to stop
        session.state["elapsed_s"] += seconds
        mean_val = None if val is None else float(np.nanmean(list(val.values())))
        loss = dist.mean(float(np.mean(steps.losses)))
        consistency = dist.mean(float(np.mean(steps.consistency))) if steps.consistency else None
        result = EpochResult(epoch, loss, lr, seconds, mean_val, val, steps.data_s, steps.step_s, consistency, weight)
        _end_epoch(session, result)
        if cb.on_epoch is not None:
            cb.on_epoch(result)
        if steps.stopped:
            logger.info("training stopped on request after epoch %d", epoch)
            break
    if dist.is_main and not run.checkpoint("best").exists():
        run.save_checkpoint(_snapshot(session, {**session.state, "epoch": epoch}), "best")
    dist.barrier()  # every process returns once the checkpoints are complete
    return run.checkpoint("best")


@dataclass
class _Steps:
    """What one epoch's steps gave: losses, consistency terms, seconds waiting for data and stepping."""

    losses: list[float] = field(default_factory=list)
    consistency: list[float] = field(default_factory=list)
    data_s: float = 0.0
    step_s: float = 0.0
    stopped: bool = False  # on request (should_stop)
    out_of_time: bool = False  # the time budget ran out within the epoch


def _train_epoch(
    session: _Session,
    batches: Iterator[Batch],
    cb: TrainCallbacks,
    pairs: Iterator[dict[str, torch.Tensor]] | None = None,
    weight: float = 0.0,
    deadline: float | None = None,
) -> _Steps:
    """One epoch of steps (with ``pairs``, each also on a batch of unlabelled pairs, at consistency ``weight``);
    it ends early when ``time.perf_counter()`` passes ``deadline`` (the time budget: rank 0's clock decides)."""
    cfg = session.plans.train
    session.model.train()
    asked = cb.should_stop is not None
    steps = _Steps()
    for it in range(cfg.iterations_per_epoch):
        t0 = time.perf_counter()
        batch = next(batches).to(session.device)
        pair = {k: v.to(session.device) for k, v in next(pairs).items()} if pairs is not None else None
        t1 = time.perf_counter()
        loss, consistency = _step(session, batch, cfg.grad_clip, pair, weight)
        steps.losses.append(loss)
        if consistency is not None:
            steps.consistency.append(consistency)
        steps.data_s += t1 - t0
        steps.step_s += time.perf_counter() - t1
        if cb.on_iteration is not None:
            cb.on_iteration(it + 1, cfg.iterations_per_epoch, float(np.mean(steps.losses)))
        if asked and session.dist.any(bool(cb.should_stop())):  # type: ignore[misc]
            steps.stopped = True
            break
        if deadline is not None and session.dist.any(session.dist.is_main and time.perf_counter() >= deadline):
            steps.out_of_time = it + 1 < cfg.iterations_per_epoch  # a full epoch is just the end of the budget
            break
    return steps


def _finished(epoch: int, elapsed_s: float, cfg: TrainConfig) -> bool:
    if cfg.time_budget_s > 0:
        return elapsed_s >= cfg.time_budget_s or epoch >= cfg.epochs
    return epoch >= cfg.epochs


def _step(
    session: _Session, batch: Batch, clip: float, pair: dict[str, torch.Tensor] | None = None, weight: float = 0.0
) -> tuple[float, float | None]:
    """One optimiser step: (supervised loss, unweighted consistency term or None). With ``pair`` (unlabelled
    ``student`` / ``teacher`` patches) the student sees the labelled and unlabelled patches in one forward
    pass, the loss adds ``weight`` times the consistency with the teacher, and the teacher is then updated."""
    model, optimizer, scaler = session.trained or session.model, session.optimizer, session.scaler
    optimizer.zero_grad(set_to_none=True)
    dtype = session.dtype
    autocast = torch.autocast(batch.image.device.type, dtype=dtype) if dtype is not None else nullcontext()
    consistency = None
    with autocast:
        if pair is None or session.teacher is None:
            loss = total = session.loss_fn(model(batch.image), batch.target, **batch.extras)
        else:
            overlapping = session.plans.data.labels.overlapping
            loss, consistency = mean_teacher_losses(model, session.teacher, session.loss_fn, batch, pair, overlapping)
            total = loss + weight * consistency
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    if session.teacher is not None:
        step = session.state["ema_step"]
        semi = session.plans.train.semi_supervised
        assert semi is not None  # a teacher exists only for semi-supervised plans (internal invariant)
        update_teacher(session.teacher, session.model, ema_decay(step, semi.ema_decay))
        session.state["ema_step"] = step + 1
    return float(loss.detach()), None if consistency is None else float(consistency.detach())


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
    """The checkpoint: ``model`` is what prediction loads (the teacher of a semi-supervised run)."""
    snapshot = {
        "model": session.evaluated.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scaler": session.scaler.state_dict(),
        "epoch": int(state["epoch"]),
        "elapsed_s": float(state["elapsed_s"]),
        "best_dice": float(state["best_dice"]),
    }
    if session.teacher is not None:
        snapshot["student"] = session.model.state_dict()
        snapshot["ema_step"] = int(state["ema_step"])
    return snapshot


def _restore(session: _Session) -> dict[str, Any]:
    path = session.run.checkpoint("last")
    ckpt = session.run.load_checkpoint("last", map_location=session.device)
    state = {"epoch": int(ckpt["epoch"]), "elapsed_s": float(ckpt["elapsed_s"]), "best_dice": float(ckpt["best_dice"])}
    if session.teacher is not None:
        if "student" not in ckpt:
            raise DataError(
                path,
                "was written by a supervised run, the plans ask for a Mean Teacher (train.semi_supervised)",
                "resume without train.semi_supervised in plans.json, or train a new run folder",
            )
        session.teacher.load_state_dict(ckpt["model"])
        session.model.load_state_dict(ckpt["student"])
        state["ema_step"] = int(ckpt["ema_step"])
    elif "student" in ckpt:
        raise DataError(
            path,
            "was written by a semi-supervised run (Mean Teacher), the plans have no train.semi_supervised",
            "restore train.semi_supervised in plans.json, or train a new run folder",
        )
    else:
        session.model.load_state_dict(ckpt["model"])
    session.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        session.scaler.load_state_dict(ckpt["scaler"])
    return state


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
