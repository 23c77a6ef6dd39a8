"""The loss registry: terms and their combinations by name, the labelling each term fits, deep-supervision
wrapping, extra targets, the progress hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses.boundary import BoundaryLoss
from medseg.losses.combination import LossSum
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceBCELoss, DiceCELoss
from medseg.losses.focal import FocalLoss
from medseg.losses.registry import LOSSES, LossSettings, build_loss, default_loss, loss_entry
from medseg.training.targets import EXTRA_TARGETS

COMBINATIONS = [
    "dice+ce",
    "dice+bce",
    "dice+focal",
    "dice+boundary",
    "tversky+ce",
    "focal-tversky+bce",
    "dice+ce+boundary",
    "dice+hausdorff",
    "focal+tversky+hausdorff+boundary",
]
CASES = sorted(
    {
        (name, o)
        for name in (*LOSSES, *COMBINATIONS)
        for o in (False, True)
        if all(LOSSES[t].fits(o) for t in name.split("+"))
    }
)


def _batch(overlapping: bool, requires: tuple[str, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A (2, *, 8, 8) target and the extra targets the loader would compute from it."""
    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 3, 8, 8, generator=gen) > 0.5).float() if overlapping else torch.randint(0, 3, (2, 1, 8, 8))
    labels = target.numpy() if overlapping else target[:, 0].numpy()
    extras = {e: torch.from_numpy(np.stack([EXTRA_TARGETS[e](x, 3, overlapping) for x in labels])) for e in requires}
    return target, extras


@pytest.mark.parametrize(("name", "overlapping"), CASES)
def test_every_loss_and_combination_builds_runs_and_has_gradients(name: str, overlapping: bool) -> None:
    entry = loss_entry(name, overlapping=overlapping)
    assert all(extra in EXTRA_TARGETS for extra in entry.requires)
    loss = build_loss(name, LossSettings(), overlapping=overlapping, n_outputs=2)
    loss.set_progress(0.5)  # type: ignore[operator]
    logits = [torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 3, 4, 4, requires_grad=True)]
    target, extras = _batch(overlapping, entry.requires)
    value = loss(logits, target, **extras)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert logits[0].grad is not None and torch.isfinite(logits[0].grad).all() and logits[0].grad.abs().sum() > 0


def test_every_term_fits_a_labelling_and_builds_with_the_settings() -> None:
    assert sorted(LOSSES) == ["bce", "boundary", "ce", "dice", "focal", "focal-tversky", "hausdorff", "tversky"]
    assert [t for t in LOSSES if not LOSSES[t].fits(True)] == ["ce"]
    assert [t for t in LOSSES if not LOSSES[t].fits(False)] == ["bce"]
    settings = LossSettings(include_background=True, batch_dice=True)
    for name in ("dice", "tversky", "focal-tversky"):
        module = LOSSES[name].build(settings, False)
        assert module.include_background and module.batch_dice, name
    assert LOSSES["focal-tversky"].build(settings, True).gamma == pytest.approx(4 / 3)
    assert LOSSES["tversky"].build(settings, True).gamma == 1.0


def test_registry_builds_what_training_used_before() -> None:
    """dice+ce / dice+bce are the fused losses fit() hard-coded before the registry, with the same options."""
    ce = build_loss("dice+ce", LossSettings(include_background=True, batch_dice=True), overlapping=False, n_outputs=3)
    assert isinstance(ce, DeepSupervisionLoss) and isinstance(ce.loss, DiceCELoss)
    assert ce.loss.include_background and ce.loss.batch_dice and ce.n_outputs == 3
    bce = build_loss("dice+bce", LossSettings(), overlapping=True, n_outputs=1)
    assert isinstance(bce.loss, DiceBCELoss)
    assert isinstance(build_loss("ce+dice", LossSettings(), overlapping=False, n_outputs=1).loss, DiceCELoss)
    assert default_loss(False) == "dice+ce" and default_loss(True) == "dice+bce"


def test_dice_ce_values_are_bit_identical_to_the_fused_loss() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = torch.randint(0, 3, (2, 1, 8, 8), generator=gen)
    built = build_loss("dice+ce", LossSettings(batch_dice=True), overlapping=False, n_outputs=1)
    assert torch.equal(built(logits, target), DiceCELoss(batch_dice=True)(logits, target))
    masks = (torch.rand(2, 3, 8, 8, generator=gen) > 0.5).float()
    built = build_loss("dice+bce", LossSettings(), overlapping=True, n_outputs=1)
    assert torch.equal(built(logits, masks), DiceBCELoss()(logits, masks))


def test_a_combination_is_a_sum_of_its_terms_requiring_the_union_of_their_extras() -> None:
    entry = loss_entry("dice+boundary+hausdorff", overlapping=False)
    assert entry.terms == ("dice", "boundary", "hausdorff") and entry.requires == ("distance_map",)
    assert loss_entry("dice+focal", overlapping=True).requires == ()
    loss = build_loss("dice+focal+boundary", LossSettings(), overlapping=True, n_outputs=1)
    assert isinstance(loss.loss, LossSum) and list(loss.loss.terms) == ["dice", "focal", "boundary"]
    assert isinstance(loss.loss.terms["focal"], FocalLoss) and loss.loss.terms["focal"].overlapping
    loss.set_progress(0.4)  # type: ignore[operator]  # deep supervision -> sum -> the boundary term
    boundary = loss.loss.terms["boundary"]
    assert isinstance(boundary, BoundaryLoss) and boundary.weight == pytest.approx(0.4)
    single = build_loss("focal", LossSettings(), overlapping=False, n_outputs=1)
    assert isinstance(single.loss, FocalLoss) and not single.loss.overlapping


EXCLUSIVE_TERMS = "boundary, ce, dice, focal, focal-tversky, hausdorff, tversky"
OVERLAPPING_TERMS = "bce, boundary, dice, focal, focal-tversky, hausdorff, tversky"


@pytest.mark.parametrize(
    ("name", "overlapping", "message"),
    [
        (
            "nonsense",
            False,
            f"unknown loss term 'nonsense' in loss 'nonsense'; join with '+' any of {EXCLUSIVE_TERMS} "
            "(the terms for exclusive classes; e.g. dice+ce)",
        ),
        (
            "dice+lovasz",
            True,
            f"unknown loss term 'lovasz' in loss 'dice+lovasz'; join with '+' any of {OVERLAPPING_TERMS}",
        ),
        ("dice++ce", False, "unknown loss term '' in loss 'dice++ce'"),
        (
            "dice+ce",
            True,
            "loss 'dice+ce' does not fit a dataset of overlapping structures ('ce' is for exclusive classes); "
            f"join with '+' any of {OVERLAPPING_TERMS} (the terms for overlapping structures; e.g. dice+bce)",
        ),
        ("bce", False, "loss 'bce' does not fit a dataset of exclusive classes ('bce' is for overlapping structures)"),
        ("dice+ce+dice", False, "loss 'dice+ce+dice' names 'dice' twice; name each term once (weight 1 each)"),
    ],
)
def test_unknown_or_unfitting_loss_is_a_clear_config_error(name: str, overlapping: bool, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        loss_entry(name, overlapping=overlapping)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
