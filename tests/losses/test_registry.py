"""The loss registry: names, the labelling each loss fits, deep-supervision wrapping, extra targets."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceBCELoss, DiceCELoss
from medseg.losses.registry import LOSSES, LossSettings, build_loss, default_loss, loss_entry
from medseg.training.targets import EXTRA_TARGETS


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_builds_runs_and_has_gradients(name: str) -> None:
    entry = LOSSES[name]
    assert all(extra in EXTRA_TARGETS for extra in entry.requires)
    loss = build_loss(name, LossSettings(), overlapping=entry.overlapping, n_outputs=2)
    logits = [torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 3, 4, 4, requires_grad=True)]
    target = (torch.rand(2, 3, 8, 8) > 0.5).float() if entry.overlapping else torch.randint(0, 3, (2, 1, 8, 8))
    extras = {extra: torch.rand(2, 3, 8, 8) for extra in entry.requires}
    value = loss(logits, target, **extras)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert logits[0].grad is not None and torch.isfinite(logits[0].grad).all()


def test_registry_builds_what_training_used_before() -> None:
    """dice+ce / dice+bce are the losses fit() hard-coded before the registry, with the same options."""
    ce = build_loss("dice+ce", LossSettings(include_background=True, batch_dice=True), overlapping=False, n_outputs=3)
    assert isinstance(ce, DeepSupervisionLoss) and isinstance(ce.loss, DiceCELoss)
    assert ce.loss.include_background and ce.loss.batch_dice and ce.n_outputs == 3
    bce = build_loss("dice+bce", LossSettings(), overlapping=True, n_outputs=1)
    assert isinstance(bce.loss, DiceBCELoss)
    assert default_loss(False) == "dice+ce" and default_loss(True) == "dice+bce"


def test_unknown_or_unfitting_loss_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown loss 'focal'; choose one of dice\+bce, dice\+ce"):
        loss_entry("focal", overlapping=False)
    with pytest.raises(
        ConfigError, match=r"'dice\+ce' does not fit a dataset of overlapping structures; use one of dice\+bce"
    ):
        loss_entry("dice+ce", overlapping=True)
