"""Every training loss medseg can build, by name: one literal dict, ``{name: LossEntry}``.

An entry names its factory, the labelling it is for (exclusive classes or overlapping structures) and the
extra targets it needs beside the label (``requires``: names in
:data:`medseg.training.targets.EXTRA_TARGETS`, e.g. a distance map); the training loader then puts them in
each :class:`~medseg.training.batches.Batch` and the loss receives them as keyword arguments:
``loss(outputs, target, **extras)``. ``plans.json`` records the name in ``train.loss``; ``medseg train
--loss NAME`` picks it.

Example:
    >>> loss = build_loss("dice+ce", LossSettings(), overlapping=False, n_outputs=1)
    >>> type(loss.loss).__name__
    'DiceCELoss'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from medseg.errors import ConfigError
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceBCELoss, DiceCELoss

__all__ = ["LOSSES", "LossEntry", "LossSettings", "build_loss", "default_loss", "loss_entry"]


@dataclass(frozen=True)
class LossSettings:
    """The loss options of the training config (``TrainConfig.include_background``, ``batch_dice``)."""

    include_background: bool = False
    batch_dice: bool = False


@dataclass(frozen=True)
class LossEntry:
    build: Callable[[LossSettings], nn.Module]
    overlapping: bool  # True: for overlapping structures (sigmoid channels); False: exclusive classes
    description: str
    requires: tuple[str, ...] = ()  # extra targets the batch must carry


def _dice_ce(settings: LossSettings) -> nn.Module:
    return DiceCELoss(include_background=settings.include_background, batch_dice=settings.batch_dice)


def _dice_bce(settings: LossSettings) -> nn.Module:
    return DiceBCELoss(batch_dice=settings.batch_dice)


LOSSES: dict[str, LossEntry] = {
    "dice+ce": LossEntry(_dice_ce, overlapping=False, description="soft Dice + cross-entropy (softmax)"),
    "dice+bce": LossEntry(_dice_bce, overlapping=True, description="soft Dice + binary cross-entropy (sigmoid)"),
}


def default_loss(overlapping: bool) -> str:
    """The planned loss: Dice + CE for exclusive classes, Dice + BCE for overlapping structures (nnU-Net)."""
    return "dice+bce" if overlapping else "dice+ce"


def loss_entry(name: str, *, overlapping: bool) -> LossEntry:
    """The entry of loss ``name``, checked against the dataset's labelling."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}")
    entry = LOSSES[name]
    if entry.overlapping != overlapping:
        kind = "overlapping structures" if overlapping else "exclusive classes"
        fits = [n for n, e in sorted(LOSSES.items()) if e.overlapping == overlapping]
        raise ConfigError(f"loss {name!r} does not fit a dataset of {kind}; use one of {', '.join(fits)}")
    return entry


def build_loss(name: str, settings: LossSettings, *, overlapping: bool, n_outputs: int) -> nn.Module:
    """Build loss ``name`` wrapped for a network with ``n_outputs`` outputs (deep supervision; a single
    tensor output goes straight to the loss)."""
    return DeepSupervisionLoss(loss_entry(name, overlapping=overlapping).build(settings), n_outputs)
