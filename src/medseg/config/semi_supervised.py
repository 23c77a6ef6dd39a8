"""Semi-supervised training with a Mean Teacher (``train.semi_supervised`` in ``plans.json``), as data.

Tarvainen & Valpola (2017): the network being trained (the *student*) learns from the labelled patches with
the planned loss and, on patches of unlabelled scans, to agree with a *teacher* whose weights are the
exponential moving average (EMA) of the student's. The consistency term's weight rises with Laine & Aila's
sigmoid ramp-up. ``medseg train DATASET --unlabeled DIR`` (or ``medseg plan``) fills this; every other field
has the literature's default and can be edited in ``plans.json``. The method is :mod:`medseg.training.mean_teacher`.

Example:
    >>> config = SemiSupervisedConfig(unlabeled="/data/unlabelled", batch_size=2)
    >>> config.ema_decay, config.consistency_weight, config.rampup
    (0.99, 0.1, 0.25)
    >>> SemiSupervisedConfig(unlabeled="/data/u", batch_size=2, ema_decay=1.0)
    Traceback (most recent call last):
    ...
    medseg.errors.ConfigError: train.semi_supervised.ema_decay = 1.0 must be in [0, 1) (0.99-0.999 is usual)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from medseg.errors import ConfigError

__all__ = ["SemiSupervisedConfig"]

_WHERE = "train.semi_supervised"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SemiSupervisedConfig:
    """Mean Teacher settings.

    ``unlabeled``: the folder of unlabelled scans (absolute; read and preprocessed as the labelled ones).
    ``batch_size``: unlabelled patches per step (planned as ``train.batch_size``).
    ``ema_decay``: the teacher's EMA decay alpha; the first steps use ``min(1 - 1/(step + 1), alpha)``.
    ``consistency_weight``: the weight of the consistency term once ramped up.
    ``rampup``: the fraction of training (the learning-rate schedule's progress: epochs done / planned, or
    time spent / budget) over which the weight rises as ``exp(-5 (1 - t)^2)``; 0: full weight at once.
    ``consistency``: ``mse``, the mean squared difference of the softmax (sigmoid for overlapping
    structures) probabilities on the full-resolution output.
    ``noise_std``: Gaussian noise (clipped to +-2 std) added to the student's unlabelled input on top of the
    planned intensity augmentation, so student and teacher always see different inputs.
    """

    unlabeled: str
    batch_size: int
    ema_decay: float = 0.99
    consistency_weight: float = 0.1
    rampup: float = 0.25
    consistency: Literal["mse"] = "mse"
    noise_std: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.unlabeled, str) or not self.unlabeled.strip():
            raise ConfigError(f"{_WHERE}.unlabeled = {self.unlabeled!r} must name a folder of unlabelled scans")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"{_WHERE}.batch_size = {self.batch_size!r} must be a whole number >= 1")
        checks = (
            ("ema_decay", lambda v: 0 <= v < 1, "in [0, 1) (0.99-0.999 is usual)"),
            ("consistency_weight", lambda v: v >= 0, ">= 0"),
            ("rampup", lambda v: 0 <= v <= 1, "in [0, 1] (a fraction of training)"),
            ("noise_std", lambda v: v >= 0, ">= 0"),
        )
        for name, check, requirement in checks:
            value = getattr(self, name)
            if not (_number(value) and check(value)):
                raise ConfigError(f"{_WHERE}.{name} = {value!r} must be {requirement}")
