"""The loss terms of a loss name (ce, bce, dice, focal, tversky, focal-tversky, boundary, hausdorff), for both
labellings: hand-computed values on a 2x2 image, and MONAI where its conventions can be matched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import BoundaryLoss as MonaiBoundaryLoss
from monai.losses import DiceFocalLoss as MonaiDiceFocalLoss
from monai.losses import DiceLoss as MonaiDiceLoss
from monai.losses import FocalLoss as MonaiFocalLoss
from monai.losses import HausdorffDTLoss as MonaiHausdorffDTLoss
from monai.losses import TverskyLoss as MonaiTverskyLoss
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.losses.boundary import BoundaryLoss
from medseg.losses.combination import LossSum
from medseg.losses.cross_entropy import BCELoss, CELoss
from medseg.losses.dice import DiceBCELoss, DiceCELoss, DiceLoss
from medseg.losses.focal import FocalLoss
from medseg.losses.functional import boundary_ramp, hausdorff_dt_term
from medseg.losses.hausdorff import HausdorffDTLoss, boundary_distance
from medseg.losses.tversky import TverskyLoss
from medseg.training.targets import signed_distance_maps

LN3 = math.log(3.0)


def _case(overlapping: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """p(structure) = [[3/4, 1/4], [1/2, 1/2]], target [[1, 1], [1, 0]], distance map phi = [[-1, 0], [0, 1]].

    Exclusive: two softmax channels with logits (0, x), i.e. p_1 = sigmoid(x); target class indices (B, 1, *).
    Overlapping: the one sigmoid channel x; target the binary mask (B, 1, *). Each term's value is then the same
    for both labellings (exclusive without background scores channel 1 only)."""
    x = torch.tensor([[LN3, -LN3], [0.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    phi = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])
    if overlapping:
        return x[None, None], mask[None, None].float(), phi[None, None]
    logits = torch.stack([torch.zeros(2, 2), x])[None]
    return logits, mask[None, None], torch.stack([torch.full((2, 2), 7.0), phi])[None]  # channel 0 is left out


# By hand, p = [.75, .25, .5, .5] against g = [1, 1, 1, 0]:
# (B)CE = mean(-ln p_t) = (ln 4/3 + ln 4 + ln 2 + ln 2) / 4.
CE = math.log(64 / 3) / 4
# dice = 2 * 1.5 / (2 + 3) = 0.6.
DICE = 1 - 0.6
# focal, gamma 2, alpha 0.75 on the structure, 0.25 on the background voxel (p_t = 0.5):
FOCAL = (
    0.75 * 0.25**2 * math.log(4 / 3) + 0.75 * 0.75**2 * math.log(4) + 0.75 * 0.5**2 * math.log(2)
) / 4 + 0.25 * 0.5**2 * math.log(2) / 4
# Tversky: tp = 1.5, fp = Σ p(1-g) = 0.5, fn = Σ (1-p)g = 1.5: TI = 1.5 / (1.5 + 0.3 * 0.5 + 0.7 * 1.5) = 5/9.
TVERSKY = 4 / 9
FOCAL_TVERSKY = (4 / 9) ** 0.75
# boundary: mean(p * phi) = (0.75 * -1 + 0.5 * 1) / 4.
BOUNDARY = -0.0625
# Hausdorff (one-sided): (p - g)^2 = [1/16, 9/16, 1/4, 1/4], d_g^2 = |phi|^2 = [1, 0, 0, 1].
HAUSDORFF = (1 / 16 + 1 / 4) / 4
# two-sided: prediction p > 0.5 is the top-left voxel alone: d_p = [0, 1, 1, sqrt 2], d_p^2 = [0, 1, 1, 2].
HAUSDORFF_TWO_SIDED = (1 / 16 * (1 + 0) + 9 / 16 * (0 + 1) + 1 / 4 * (0 + 1) + 1 / 4 * (1 + 2)) / 4


def _terms(overlapping: bool) -> list[tuple[torch.nn.Module, float]]:
    o = overlapping
    return [
        (BCELoss() if o else CELoss(), CE),
        (DiceLoss(overlapping=o, smooth=0.0), DICE),
        (FocalLoss(overlapping=o), FOCAL),
        (TverskyLoss(overlapping=o, smooth=0.0), TVERSKY),
        (TverskyLoss(overlapping=o, gamma=4 / 3, smooth=0.0), FOCAL_TVERSKY),
        (BoundaryLoss(overlapping=o, schedule=False), BOUNDARY),
        (HausdorffDTLoss(overlapping=o), HAUSDORFF),
        (HausdorffDTLoss(overlapping=o, two_sided=True), HAUSDORFF_TWO_SIDED),
    ]


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("index", range(8))
def test_each_term_by_hand(overlapping: bool, index: int) -> None:
    loss, expected = _terms(overlapping)[index]
    logits, target, phi = _case(overlapping)
    extras = {"distance_map": phi} if isinstance(loss, BoundaryLoss | HausdorffDTLoss) else {}
    assert loss(logits, target, **extras).item() == pytest.approx(expected, rel=1e-6)


def test_class_weights_by_hand() -> None:
    logits, target, _ = _case(False)
    # weighted mean over voxels, weight 2 for the background voxel: (ln 4/3 + ln 4 + ln 2 + 2 ln 2) / (3 + 2)
    assert CELoss(weight=[2.0, 1.0])(logits, target).item() == pytest.approx(math.log(128 / 3) / 5, rel=1e-6)
    torch.testing.assert_close(CELoss(weight=[1.0, 1.0])(logits, target), F.cross_entropy(logits, target[:, 0]))
    x, mask, _ = _case(True)
    two = torch.cat([x, x], dim=1), torch.cat([mask, mask], dim=1)
    # channel weights 1 and 3 over a mean of every element: (1 + 3) / 2 * CE
    assert BCELoss(weight=[1.0, 3.0])(*two).item() == pytest.approx(2 * CE, rel=1e-6)
    with pytest.raises(ValueError, match="3 class weights for 2 output channels"):
        CELoss(weight=[1.0, 1.0, 1.0])(logits, target)
    with pytest.raises(ConfigError, match=r"weight\[1\]=-1.0"):
        BCELoss(weight=[1.0, -1.0])


def test_tversky_with_background_by_hand() -> None:
    # class 0: p = [.25, .75, .5, .5], g = [0, 0, 0, 1]: tp = .5, fp = 1.5, fn = .5: TI = .5 / (.5 + .45 + .35) = 5/13
    logits, target, _ = _case(False)
    loss = TverskyLoss(overlapping=False, include_background=True, smooth=0.0)
    assert loss(logits, target).item() == pytest.approx(1 - (5 / 9 + 5 / 13) / 2, rel=1e-6)


def test_tversky_at_one_half_is_dice_and_focal_tversky_of_a_perfect_class_is_finite() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=gen, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 5, 5), generator=gen)
    half = TverskyLoss(overlapping=False, alpha=0.5, beta=0.5, smooth=0.0)(logits, target)
    torch.testing.assert_close(half, DiceLoss(overlapping=False, smooth=0.0)(logits, target))
    perfect = 60.0 * F.one_hot(target[:, 0], 3).movedim(-1, 1).float() - 30.0
    perfect.requires_grad_(True)
    value = TverskyLoss(overlapping=False, gamma=4 / 3)(perfect, target)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-4)
    assert perfect.grad is not None and torch.isfinite(perfect.grad).all()


def test_focal_reduces_to_cross_entropy_and_softmax_matches_sigmoid_for_two_classes() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 5, generator=gen)
    target = torch.randint(0, 4, (2, 1, 6, 5), generator=gen)
    plain = FocalLoss(overlapping=False, gamma=0.0, alpha=None)(logits, target)
    torch.testing.assert_close(plain, F.cross_entropy(logits, target[:, 0]))
    masks = (torch.rand(2, 3, 6, 5, generator=gen) > 0.5).float()
    plain = FocalLoss(overlapping=True, gamma=0.0, alpha=None)(logits[:, :3], masks)
    torch.testing.assert_close(plain, F.binary_cross_entropy_with_logits(logits[:, :3], masks))
    # softmax over logits (0, x) is sigmoid(x), and alpha weighs class 1 / the structure alike
    x = logits[:, :1]
    two = torch.cat([torch.zeros_like(x), x], dim=1)
    torch.testing.assert_close(
        FocalLoss(overlapping=False)(two, target.clamp(max=1)),
        FocalLoss(overlapping=True)(x, target.clamp(max=1).float()),
    )


def test_boundary_ramp_and_progress() -> None:
    assert [boundary_ramp(p) for p in (0.0, 0.005, 0.3, 1.0, 2.0)] == [0.01, 0.01, 0.3, 1.0, 1.0]
    logits, target, phi = _case(True)
    loss = BoundaryLoss(overlapping=True)
    assert loss(logits, target, distance_map=phi).item() == pytest.approx(0.01 * BOUNDARY, rel=1e-6)  # epoch 0
    loss.set_progress(0.3)
    assert loss(logits, target, distance_map=phi).item() == pytest.approx(0.3 * BOUNDARY, rel=1e-6)
    total = LossSum({"dice": DiceLoss(overlapping=True, smooth=0.0), "boundary": loss}, {"boundary": ("distance_map",)})
    total.set_progress(0.5)  # reaches the boundary term; Dice has no schedule
    assert total(logits, target, distance_map=phi).item() == pytest.approx(DICE + 0.5 * BOUNDARY, rel=1e-6)
    with pytest.raises(ValueError, match=r"extra targets \['distance_map'\]"):
        total(logits, target)


def test_sum_of_dice_and_ce_terms_equals_the_fused_losses() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, 6, generator=gen)
    target = torch.randint(0, 3, (2, 1, 6, 6), generator=gen)
    summed = LossSum({"dice": DiceLoss(overlapping=False, batch_dice=True), "ce": CELoss()})(logits, target)
    torch.testing.assert_close(summed, DiceCELoss(batch_dice=True)(logits, target))
    masks = (torch.rand(2, 3, 6, 6, generator=gen) > 0.5).float()
    summed = LossSum({"dice": DiceLoss(overlapping=True), "bce": BCELoss()})(logits, masks)
    torch.testing.assert_close(summed, DiceBCELoss()(logits, masks))


def _random(overlapping: bool, seed: int, spatial: tuple[int, ...] = (6, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(3, 4, *spatial, generator=gen)
    if overlapping:
        return logits, (torch.rand(3, 4, *spatial, generator=gen) > 0.6).float()
    target = torch.randint(0, 4, (3, 1, *spatial), generator=gen)
    target[1] = 0  # one sample without foreground
    return logits, target


def _monai_act(overlapping: bool) -> dict[str, bool]:
    return {"sigmoid": True} if overlapping else {"softmax": True, "to_onehot_y": True}


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("alpha", [0.75, 0.25, None])
@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_focal_matches_monai(overlapping: bool, alpha: float | None, gamma: float) -> None:
    """Sigmoid: MONAI's FocalLoss exactly. Softmax: MONAI averages over channels too, so ours is C times it."""
    logits, target = _random(overlapping, 3)
    ours = FocalLoss(overlapping=overlapping, gamma=gamma, alpha=alpha)(logits, target)
    monai = MonaiFocalLoss(
        include_background=True, to_onehot_y=not overlapping, gamma=gamma, alpha=alpha, use_softmax=not overlapping
    )(logits, target)
    torch.testing.assert_close(ours, monai * (1 if overlapping else logits.shape[1]))


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize(("alpha", "beta"), [(0.3, 0.7), (0.5, 0.5), (0.9, 0.2)])
def test_tversky_and_dice_match_monai(
    overlapping: bool, include_background: bool, batch_dice: bool, alpha: float, beta: float
) -> None:
    logits, target = _random(overlapping, 4, spatial=(4, 5, 3))
    kw = {"include_background": include_background or overlapping, "batch": batch_dice}
    smooth = {"smooth_nr": 1e-3, "smooth_dr": 1e-3}
    ours = TverskyLoss(
        overlapping=overlapping,
        alpha=alpha,
        beta=beta,
        include_background=include_background,
        batch_dice=batch_dice,
        smooth=1e-3,
    )(logits, target)
    monai = MonaiTverskyLoss(**_monai_act(overlapping), **kw, **smooth, alpha=alpha, beta=beta)(logits, target)
    torch.testing.assert_close(ours, monai)
    dice = DiceLoss(overlapping=overlapping, include_background=include_background, batch_dice=batch_dice, smooth=1e-3)
    torch.testing.assert_close(
        dice(logits, target), MonaiDiceLoss(**_monai_act(overlapping), **kw, **smooth)(logits, target)
    )


@pytest.mark.parametrize("batch_dice", [False, True])
def test_dice_focal_matches_monai_for_overlapping_structures(batch_dice: bool) -> None:
    """MONAI's DiceFocalLoss always takes a sigmoid focal term, so only the overlapping labelling compares."""
    logits, target = _random(True, 5)
    ours = LossSum({"dice": DiceLoss(overlapping=True, batch_dice=batch_dice), "focal": FocalLoss(overlapping=True)})
    monai = MonaiDiceFocalLoss(sigmoid=True, batch=batch_dice, gamma=2.0, alpha=0.75, smooth_nr=1e-5, smooth_dr=1e-5)
    torch.testing.assert_close(ours(logits, target), monai(logits, target))


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("spatial", [(9, 8), (6, 5, 7)])
def test_boundary_with_the_loaders_distance_map_matches_monai(
    overlapping: bool, include_background: bool, spatial: tuple[int, ...]
) -> None:
    logits, target = _random(overlapping, 6, spatial)
    labels = target.numpy() if overlapping else target[:, 0].numpy()
    phi = torch.from_numpy(np.stack([signed_distance_maps(label, 4, overlapping) for label in labels]))
    ours = BoundaryLoss(overlapping=overlapping, include_background=include_background, schedule=False)
    monai = MonaiBoundaryLoss(**_monai_act(overlapping), include_background=include_background or overlapping)
    torch.testing.assert_close(ours(logits, target, distance_map=phi), monai(logits, target))


def _monai_distance_field(masks: np.ndarray) -> torch.Tensor:
    """MONAI's HausdorffDTLoss field per (sample, channel): distance to the background inside (from 1), to the
    structure outside; 0 for an empty or full mask."""
    out = np.zeros(masks.shape, dtype=np.float32)
    for index in np.ndindex(masks.shape[:2]):
        mask = masks[index] > 0.5
        if mask.any() and not mask.all():
            out[index] = ndimage.distance_transform_edt(mask) + ndimage.distance_transform_edt(~mask)
    return torch.from_numpy(out)


@pytest.mark.parametrize("alpha", [2.0, 1.0])
def test_hausdorff_formula_matches_monai_given_its_distance_fields(alpha: float) -> None:
    """MONAI counts the distance inside from 1 (ours from 0, see hausdorff.py), so the formula is compared with
    MONAI's own distance fields."""
    logits, target = _random(True, 7)
    probs = torch.sigmoid(logits)
    d_g, d_p = _monai_distance_field(target.numpy()), _monai_distance_field(probs.numpy())
    ours = hausdorff_dt_term(probs, target, d_g, d_p, alpha=alpha)
    monai = MonaiHausdorffDTLoss(alpha=alpha, sigmoid=True, include_background=True)(logits, target)
    torch.testing.assert_close(ours, monai)


def test_prediction_distance_is_the_loaders_map_in_absolute_value() -> None:
    gen = np.random.default_rng(8)
    label = gen.integers(0, 3, (12, 10))
    maps = signed_distance_maps(label, 3, False)
    for k in range(3):
        np.testing.assert_array_equal(boundary_distance(label == k), np.abs(maps[k]))
    np.testing.assert_array_equal(boundary_distance(np.zeros((4, 4), bool)), np.zeros((4, 4)))


@pytest.mark.parametrize("overlapping", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_term_is_computed_in_float32(overlapping: bool, dtype: torch.dtype) -> None:
    logits, target = _random(overlapping, 9)
    logits = 60.0 * logits
    labels = target.numpy() if overlapping else target[:, 0].numpy()
    phi = torch.from_numpy(np.stack([signed_distance_maps(label, 4, overlapping) for label in labels]))
    for loss, _ in _terms(overlapping):
        extras = {"distance_map": phi} if isinstance(loss, BoundaryLoss | HausdorffDTLoss) else {}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = loss(logits.to(dtype), target, **extras)
        assert low.dtype == torch.float32 and torch.isfinite(low)
        torch.testing.assert_close(low, loss(logits.to(dtype).float(), target, **extras))


@pytest.mark.parametrize(
    "make",
    [
        lambda: FocalLoss(overlapping=True, alpha=1.5),
        lambda: FocalLoss(overlapping=True, gamma=-1.0),
        lambda: TverskyLoss(overlapping=True, gamma=0.0),
        lambda: TverskyLoss(overlapping=True, beta=-0.1),
        lambda: HausdorffDTLoss(overlapping=True, alpha=0.0),
    ],
)
def test_invalid_options_are_config_errors(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        make()


@pytest.mark.parametrize(
    "call",
    [
        lambda: FocalLoss(overlapping=True)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)),
        lambda: FocalLoss(overlapping=False)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)),
        lambda: DiceLoss(overlapping=False)(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4).long()),
        lambda: BoundaryLoss(overlapping=True)(
            torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)
        ),
    ],
)
def test_tensors_that_do_not_fit_are_value_errors(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        call()
    assert not isinstance(info.value, ConfigError)
