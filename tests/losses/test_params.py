"""The loss parameters of plans.json (``train.loss_params``) reach the terms the registry builds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.config.loss import LossParams
from medseg.errors import ConfigError
from medseg.losses.boundary import BoundaryLoss
from medseg.losses.combination import LossSum
from medseg.losses.dice import DiceCELoss
from medseg.losses.registry import LossSettings, build_loss


def _exclusive() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 1, 6, 5), generator=g)


def test_class_weights_weight_the_cross_entropy_term_exactly() -> None:
    logits, target = _exclusive()
    settings = LossSettings(params=LossParams(class_weights=(0.2, 1.0, 3.0)))
    loss = build_loss("ce", settings, overlapping=False, n_outputs=1)
    want = F.cross_entropy(logits, target[:, 0], weight=torch.tensor([0.2, 1.0, 3.0]))
    torch.testing.assert_close(loss([logits], target), want)
    unweighted = build_loss("ce", LossSettings(), overlapping=False, n_outputs=1)([logits], target)
    assert not torch.isclose(unweighted, want)


def test_weighted_dice_ce_is_the_sum_of_weighted_ce_and_dice_not_the_fused_module() -> None:
    logits, target = _exclusive()
    weighted = build_loss(
        "dice+ce", LossSettings(params=LossParams(class_weights=(1, 2, 3))), overlapping=False, n_outputs=1
    )
    assert isinstance(weighted.loss, LossSum)
    assert isinstance(build_loss("dice+ce", LossSettings(), overlapping=False, n_outputs=1).loss, DiceCELoss)
    ce = F.cross_entropy(logits, target[:, 0], weight=torch.tensor([1.0, 2.0, 3.0]))
    dice_only = build_loss("dice", LossSettings(), overlapping=False, n_outputs=1)([logits], target)
    torch.testing.assert_close(weighted([logits], target), ce + dice_only)


def test_bce_channel_weights() -> None:
    g = torch.Generator().manual_seed(1)
    logits, target = torch.randn(2, 2, 4, 4, generator=g), (torch.rand(2, 2, 4, 4, generator=g) > 0.5).float()
    loss = build_loss("bce", LossSettings(params=LossParams(class_weights=(1.0, 4.0))), overlapping=True, n_outputs=1)
    per_voxel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    want = (per_voxel * torch.tensor([1.0, 4.0]).view(1, 2, 1, 1)).mean()
    torch.testing.assert_close(loss([logits], target), want)


def test_focal_and_tversky_parameters_change_the_value_as_their_formulas() -> None:
    logits, target = _exclusive()
    # a larger gamma down-weights every voxel by (1 - p_t)^gamma < 1 more: the loss falls
    default = build_loss("focal", LossSettings(), overlapping=False, n_outputs=1)([logits], target)
    sharper = LossSettings(params=LossParams(focal_gamma=4.0))
    assert build_loss("focal", sharper, overlapping=False, n_outputs=1)([logits], target) < default
    probs = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float()[:, 1:]
    tp, fp, fn = (probs * onehot).sum((2, 3)), (probs * (1 - onehot)).sum((2, 3)), ((1 - probs) * onehot).sum((2, 3))
    for a, b in ((0.3, 0.7), (0.5, 0.5), (0.9, 0.1)):
        ti = (tp + 1e-5) / (tp + a * fp + b * fn + 1e-5)
        settings = LossSettings(params=LossParams(tversky_alpha=a, tversky_beta=b))
        got = build_loss("tversky", settings, overlapping=False, n_outputs=1)([logits], target)
        torch.testing.assert_close(got, (1 - ti).mean(), rtol=1e-4, atol=1e-5)


def test_boundary_ramp_can_be_switched_off() -> None:
    ramped = build_loss("boundary", LossSettings(), overlapping=False, n_outputs=1).loss
    flat = build_loss("boundary", LossSettings(params=LossParams(boundary_ramp=False)), overlapping=False, n_outputs=1)
    assert isinstance(ramped, BoundaryLoss) and ramped.schedule
    assert isinstance(flat.loss, BoundaryLoss) and not flat.loss.schedule


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"class_weights": (1.0, -1.0)}, r"class_weights\[1\] = -1.0 must be a number >= 0"),
        ({"class_weights": (0.0, 0.0)}, "are all 0"),
        ({"focal_alpha": 1.5}, r"focal_alpha = 1.5 must be in \[0, 1\]"),
        ({"tversky_beta": -0.1}, "tversky_beta"),
        ({"hausdorff_alpha": 0}, "hausdorff_alpha = 0 must be a positive number"),
        ({"focal_gamma": -1}, "focal_gamma = -1 must be >= 0"),
    ],
)
def test_bad_parameters_are_one_line_config_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LossParams(**fields)  # type: ignore[arg-type]


def test_class_weight_count_must_match_the_outputs() -> None:
    LossParams(class_weights=(1, 2, 3)).check_classes(3)
    LossParams().check_classes(7)
    with pytest.raises(ConfigError, match=r"^2 class weights for 3 output channels; give one weight per class"):
        LossParams(class_weights=(1, 2)).check_classes(3)
