"""Optimisers and learning-rate schedules.

Schedules are pure functions of the training progress ``p`` in [0, 1] (epochs done / planned epochs, or
time spent / time budget when training against a budget), so a resumed run continues on the same curve.
"""

from __future__ import annotations

import math

import torch

from medseg.config.plans import TrainConfig

__all__ = ["build_optimizer", "lr_factor", "set_lr"]


def build_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (nnU-Net's default) or AdamW."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.learning_rate, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def lr_factor(progress: float, epoch: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``progress`` in [0, 1]; linear warm-up over the first
    ``warmup_epochs`` epochs, then poly (``(1 - p) ** 0.9``) or cosine decay."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    p = min(max(progress, 0.0), 1.0)
    if config.schedule == "poly":
        return (1.0 - p) ** 0.9
    return 0.5 * (1.0 + math.cos(math.pi * p))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
