"""Self-supervised pre-training: masked-volume reconstruction with the planned network, resumable.

The network is the one the plans describe (same encoder, same decoder), with one output per input channel
and no deep supervision: it gets a patch whose random blocks are zeroed (:mod:`medseg.pretraining.masking`)
and regresses the hidden voxels, an L2 loss on them only. Only the encoder is kept (``encoder.pth``); the
decoder learns again from labels in ``medseg train --encoder-weights``. Patches come from unlabelled scans
preprocessed exactly as training data (:mod:`medseg.pretraining.patches`).

Every epoch ends with ``checkpoint_last.pt`` (network, optimiser, AMP scaler, epoch, elapsed time, the loss
curve) and a ``log.jsonl`` line; ``resume=True`` continues from the checkpoint. The patches and masks of
step ``i`` of epoch ``e`` are drawn from ``numpy.random.default_rng([seed, e, i])``, so a resumed run
draws what an uninterrupted one would. Training stops after ``epochs`` epochs or, with a time budget,
after the epoch that spends it; the encoder weights are then written (:mod:`medseg.pretraining.folder`).

Example:
    >>> weights = pretrain([Path("imagesTr")], Path("runs/plan"), Path("runs/pre"),
    ...                    PretrainOptions(time_budget_s=600))             # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.config.plans import Plans, load_plans, save_plans
from medseg.device import resolve_device
from medseg.errors import ConfigError, DataError
from medseg.fileutil import atomic_write_text, make_dirs
from medseg.models.registry import build_model
from medseg.models.slices import SliceWise
from medseg.preprocessing.cache import load_preprocessed, preprocess_dataset
from medseg.pretraining.folder import PretrainDir, plans_fingerprint, save_encoder
from medseg.pretraining.masking import block_mask, block_shape, hide, masked_mse
from medseg.pretraining.patches import find_unlabelled, sample_patches
from medseg.run import load_checkpoint, save_checkpoint
from medseg.training.amp import amp_dtype

__all__ = ["METHOD", "PretrainCallbacks", "PretrainEpoch", "PretrainOptions", "pretrain", "pretraining_network"]

logger = logging.getLogger(__name__)

METHOD = "masked-reconstruction"
FORMAT = 1  # of encoder.pth's metadata and encoder.json


@dataclass(frozen=True)
class PretrainOptions:
    """How to pre-train (the CLI's ``medseg pretrain`` flags).

    ``epochs`` of ``iterations_per_epoch`` steps of ``batch_size`` patches (0: the plans' batch size); with
    ``time_budget_s`` > 0 training also stops after the epoch that spends it. ``mask_ratio`` of the blocks of
    each patch are hidden; ``block_size`` voxels per pooled axis (0: the network's total stride, at most 16).
    AdamW with ``learning_rate`` and ``weight_decay``, cosine decay over the epochs (or the time budget).
    """

    epochs: int = 100
    iterations_per_epoch: int = 50
    batch_size: int = 0
    time_budget_s: float = 0.0
    mask_ratio: float = 0.6
    block_size: int = 0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 12.0
    seed: int = 0
    device: str = "auto"
    resume: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "iterations_per_epoch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"pre-training {name} = {getattr(self, name)} must be at least 1")
        if self.batch_size < 0 or self.block_size < 0 or self.time_budget_s < 0:
            raise ConfigError("pre-training batch_size, block_size and time_budget_s must not be negative")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"--mask-ratio {self.mask_ratio} must lie strictly between 0 and 1 (e.g. 0.6)")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate {self.learning_rate} must be positive")


@dataclass(frozen=True)
class PretrainEpoch:
    """One finished epoch: mean masked L2 loss, learning rate, seconds."""

    epoch: int
    train_loss: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class PretrainCallbacks:
    """Optional hooks: ``on_step(name, total)`` announces a step ('preprocess') and returns a per-item
    function; ``on_iteration(done, total, mean loss)``; ``on_epoch(PretrainEpoch)``; ``should_stop()``, asked
    after each step, ends pre-training cleanly (checkpoint and weights written)."""

    on_step: Callable[[str, int], Callable[[], None] | None] | None = None
    on_iteration: Callable[[int, int, float], None] | None = None
    on_epoch: Callable[[PretrainEpoch], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclass
class _Session:
    plans: Plans
    options: PretrainOptions
    folder: PretrainDir
    device: torch.device
    model: nn.Module  # what runs: the network, or SliceWise around it (the 2d configuration)
    encoder: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None
    patch: tuple[int, ...]
    block: tuple[int, ...]
    batch_size: int
    state: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "elapsed_s": 0.0, "losses": []})


def pretraining_network(plans: Plans, generator: torch.Generator | None = None) -> tuple[nn.Module, nn.Module]:
    """(the network to run, its encoder): the plans' network with one output per input channel, no deep
    supervision and no pretrained file of its own, wrapped slice-wise in the ``2d`` configuration. Its
    ``encoder`` has the very keys and shapes of the encoder ``medseg train`` builds from the same plans."""
    config: Any = plans.model
    if plans.fusion != "early":
        raise ConfigError(f"pre-training needs --fusion early (one encoder), the plans have {plans.fusion!r}")
    names = {f.name for f in fields(config)}
    changes: dict[str, Any] = {"out_channels": config.in_channels}
    changes |= {"deep_supervision": False} if "deep_supervision" in names else {}
    changes |= {"encoder_weights": "", "encoder_weights_sha256": ""} if "encoder_weights" in names else {}
    changes |= {"frozen_stages": 0} if "frozen_stages" in names else {}
    net = build_model(replace(config, **changes), generator=generator)
    encoder = getattr(net, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(
            f"model {config.name!r} has no encoder module to pre-train; plan a U-Net (unet, classic-unet, "
            "attention-unet, unet++, residual-unet) or a resnet18/34/50-unet"
        )
    return (SliceWise(net) if plans.configuration == "2d" else net), encoder


def _read_plans(path: Path) -> Plans:
    path = Path(path)
    file = path / "plans.json" if path.is_dir() else path
    if not file.is_file():
        raise DataError(
            path,
            "no plans.json there",
            "plan the labelled dataset first (`medseg plan DATASET --out RUN`) and pass RUN",
        )
    return load_plans(file)


def _prepare_folder(folder: PretrainDir, plans: Plans, resume: bool) -> None:
    """Refuse to overwrite another pre-training; keep the plans beside the checkpoint."""
    if folder.checkpoint.exists() and not resume:
        raise DataError(
            folder.path, "holds a pre-training already", "continue it with --resume or choose a new --out folder"
        )
    if folder.plans_path.is_file() and plans_fingerprint(load_plans(folder.plans_path)) != plans_fingerprint(plans):
        raise ConfigError(
            f"{folder.plans_path}: this pre-training was for other plans; pass those with --plans or choose a new --out"
        )
    make_dirs(folder.path)
    if not folder.plans_path.is_file():
        save_plans(plans, folder.plans_path)


def _load_images(folders: Sequence[Path], plans: Plans, folder: PretrainDir, cb: PretrainCallbacks) -> list[np.ndarray]:
    cases = find_unlabelled(folders, plans.data)
    advance = cb.on_step("preprocess", len(cases)) if cb.on_step is not None else None
    paths = preprocess_dataset(cases, plans.data, folder.preprocessed, advance)
    return [load_preprocessed(p).image for p in paths]


def _session(plans: Plans, options: PretrainOptions, folder: PretrainDir) -> _Session:
    device = resolve_device(options.device)
    model, encoder = pretraining_network(plans, torch.Generator().manual_seed(options.seed))
    model = model.to(device)
    dtype = amp_dtype(plans.train.amp, device)  # CPU 'auto': float32 (no timing pass for a side job)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    divisor = tuple(getattr(model, "divisor", (1,) * len(plans.patch_size)))
    block = block_shape(divisor, options.block_size)
    batch = options.batch_size or plans.train.batch_size
    session = _Session(
        plans, options, folder, device, model, encoder, optimizer, scaler, dtype, plans.patch_size, block, batch
    )
    if options.resume and folder.checkpoint.exists():
        ckpt = load_checkpoint(folder.checkpoint, map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        session.state = {
            "epoch": int(ckpt["epoch"]),
            "elapsed_s": float(ckpt["elapsed_s"]),
            "losses": list(ckpt["losses"]),
        }
        logger.info(
            "resuming pre-training at epoch %d (%.0f s so far)", session.state["epoch"], session.state["elapsed_s"]
        )
    _truncate_log(folder.log, session.state["epoch"])
    return session


def pretrain(
    scans: Sequence[Path],
    plans_path: Path,
    out: Path,
    options: PretrainOptions | None = None,
    callbacks: PretrainCallbacks | None = None,
) -> Path:
    """Pre-train the encoder of the network ``plans_path`` describes (a plans.json, or a run folder holding
    one) on the unlabelled scans in ``scans`` (folders or files) into the folder ``out``; return the encoder
    weights' path (``out/encoder.pth``), which ``medseg train --encoder-weights`` loads."""
    options, cb = options or PretrainOptions(), callbacks or PretrainCallbacks()
    plans = _read_plans(plans_path)
    pretraining_network(plans)  # a network without an encoder fails here, before any scan is read
    folder = PretrainDir(Path(out))
    _prepare_folder(folder, plans, options.resume)
    images = _load_images(scans, plans, folder, cb)
    session = _session(plans, options, folder)
    logger.info(
        "pre-training the encoder of %s on %d scans: patch %s, batch %d, %.0f%% of %s-voxel blocks masked",
        plans.model.name,
        len(images),
        session.patch,
        session.batch_size,
        100 * options.mask_ratio,
        "x".join(map(str, session.block)),
    )
    stopped = False
    while not stopped and not _finished(session.state, options):
        stopped = _epoch(session, images, cb)
    return _write_weights(
        session, [Path(s) for s in scans], Path(plans_path), "request" if stopped else _why(session.state, options)
    )


def _finished(state: dict[str, Any], options: PretrainOptions) -> bool:
    over_time = options.time_budget_s > 0 and state["elapsed_s"] >= options.time_budget_s
    return over_time or state["epoch"] >= options.epochs


def _why(state: dict[str, Any], options: PretrainOptions) -> str:
    return "epochs" if state["epoch"] >= options.epochs else "time budget"


def _epoch(session: _Session, images: Sequence[np.ndarray], cb: PretrainCallbacks) -> bool:
    """One epoch, its log line and checkpoint; True when stopped on request."""
    options, state = session.options, session.state
    started = time.perf_counter()
    lr = options.learning_rate * cosine(_progress(state, options))
    for group in session.optimizer.param_groups:
        group["lr"] = lr
    session.model.train()
    losses: list[float] = []
    stopped = False
    for it in range(options.iterations_per_epoch):
        rng = np.random.default_rng([options.seed, state["epoch"], it])  # a pure function of (seed, epoch, step)
        losses.append(_step(session, images, rng))
        if cb.on_iteration is not None:
            cb.on_iteration(it + 1, options.iterations_per_epoch, float(np.mean(losses)))
        if cb.should_stop is not None and cb.should_stop():
            stopped = True
            break
    seconds = time.perf_counter() - started
    result = PretrainEpoch(state["epoch"] + 1, float(np.mean(losses)), lr, seconds)
    state.update(
        epoch=result.epoch, elapsed_s=state["elapsed_s"] + seconds, losses=[*state["losses"], result.train_loss]
    )
    with open(session.folder.log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(result.__dict__) + "\n")
    save_checkpoint(_snapshot(session), session.folder.checkpoint)  # after the log line: see _truncate_log
    if cb.on_epoch is not None:
        cb.on_epoch(result)
    return stopped


def cosine(progress: float) -> float:
    """The learning rate's factor at ``progress`` in [0, 1]: ``(1 + cos(pi p)) / 2``."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _progress(state: dict[str, Any], options: PretrainOptions) -> float:
    by_epoch = state["epoch"] / options.epochs
    return max(by_epoch, state["elapsed_s"] / options.time_budget_s) if options.time_budget_s > 0 else by_epoch


def _step(session: _Session, images: Sequence[np.ndarray], rng: np.random.Generator) -> float:
    """Draw a batch and its masks from ``rng``, reconstruct the hidden voxels, take one optimiser step."""
    options, device = session.options, session.device
    image = torch.from_numpy(sample_patches(images, session.patch, session.batch_size, rng)).to(device)
    masks = np.stack(
        [block_mask(session.patch, session.block, options.mask_ratio, rng) for _ in range(session.batch_size)]
    )
    mask = torch.from_numpy(masks[:, None]).to(device)
    session.optimizer.zero_grad(set_to_none=True)
    autocast = torch.autocast(device.type, dtype=session.dtype) if session.dtype is not None else nullcontext()
    with autocast:
        prediction = session.model(hide(image, mask))
    loss = masked_mse(prediction, image, mask)
    session.scaler.scale(loss).backward()
    session.scaler.unscale_(session.optimizer)
    torch.nn.utils.clip_grad_norm_(session.model.parameters(), options.grad_clip)
    session.scaler.step(session.optimizer)
    session.scaler.update()
    return float(loss.detach())


def _snapshot(session: _Session) -> dict[str, Any]:
    state = session.state
    return {
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scaler": session.scaler.state_dict(),
        "epoch": int(state["epoch"]),
        "elapsed_s": float(state["elapsed_s"]),
        "losses": [float(v) for v in state["losses"]],
    }


def _write_weights(session: _Session, scans: list[Path], plans_path: Path, stopped_by: str) -> Path:
    plans, options, state = session.plans, session.options, session.state
    fingerprint = plans_fingerprint(plans)
    metadata = {"format": FORMAT, "method": METHOD, "model": plans.model.name, "plans_sha256": fingerprint}
    sidecar = {
        **metadata,
        "loss": "mean squared error on the masked voxels",
        "epochs": state["epoch"],
        "seconds": round(state["elapsed_s"], 3),
        "stopped_by": stopped_by,
        "loss_curve": state["losses"],
        "scans": [str(s.resolve()) for s in scans],
        "plans": str(plans_path.resolve()),
        "configuration": plans.configuration,
        "patch_size": list(session.patch),
        "mask_ratio": options.mask_ratio,
        "block": list(session.block),
        "batch_size": session.batch_size,
        "iterations_per_epoch": options.iterations_per_epoch,
        "learning_rate": options.learning_rate,
        "weight_decay": options.weight_decay,
        "seed": options.seed,
    }
    path = save_encoder(session.folder, session.encoder.state_dict(), metadata, sidecar)
    logger.info(
        "encoder weights: %s (%d epochs, loss %s)",
        path,
        state["epoch"],
        f"{state['losses'][-1]:.4f}" if state["losses"] else "-",
    )
    return path


def _truncate_log(path: Path, epoch: int) -> None:
    """Drop log lines of epochs after ``epoch`` (written just before a kill that lost their checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["epoch"] <= epoch:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill
    atomic_write_text(path, "".join(k + "\n" for k in kept))
