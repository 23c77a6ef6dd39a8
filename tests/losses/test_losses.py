from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss as MonaiDiceCELoss
from monai.losses import DiceLoss as MonaiDiceLoss

from medseg.errors import ConfigError
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceBCELoss, DiceCELoss
from medseg.losses.functional import deep_supervision_weights, soft_dice_per_class


def _hand_case() -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 2, 2, 2) logits with softmax p(class 1) = [[3/4, 1/4], [1/2, 1/2]]; target [[1, 1], [1, 0]]."""
    ln3 = math.log(3.0)
    logits = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[ln3, -ln3], [0.0, 0.0]]]])
    target = torch.tensor([[[[1, 1], [1, 0]]]])
    return logits, target


# By hand: CE = mean(-ln p_true) = (ln 4/3 + ln 4 + ln 2 + ln 2) / 4 = ln(64/3) / 4.
# Class 1: p=[.75,.25,.5,.5], g=[1,1,1,0]: dice = 2*1.5 / (2 + 3) = 0.6.
# Class 0: p=[.25,.75,.5,.5], g=[0,0,0,1]: dice = 2*0.5 / (2 + 1) = 1/3.
HAND_CE = math.log(64 / 3) / 4


@pytest.mark.parametrize(
    ("include_background", "expected_dice_loss"), [(False, 1 - 0.6), (True, 1 - (0.6 + 1 / 3) / 2)]
)
def test_dice_ce_by_hand(include_background: bool, expected_dice_loss: float) -> None:
    logits, target = _hand_case()
    loss = DiceCELoss(include_background=include_background, smooth=0.0)
    assert loss(logits, target).item() == pytest.approx(HAND_CE + expected_dice_loss, rel=1e-6)
    dice_only = DiceCELoss(include_background=include_background, smooth=0.0, ce_weight=0.0)
    assert dice_only(logits, target[:, 0]).item() == pytest.approx(expected_dice_loss, rel=1e-6)


def test_soft_dice_batch_vs_per_sample_by_hand() -> None:
    # sample 0: p=[1, 0], g=[1, 0] -> dice 1; sample 1: p=[.5, .5], g=[0, 0] -> dice 0.
    # batch: 2*1 / (2 + 1) = 2/3.
    probs = torch.tensor([[[1.0, 0.0]], [[0.5, 0.5]]])
    onehot = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])
    per_sample = soft_dice_per_class(probs, onehot, batch_dice=False, smooth=0.0)
    batch = soft_dice_per_class(probs, onehot, batch_dice=True, smooth=0.0)
    assert per_sample.shape == (2, 1)
    assert batch.shape == (1,)
    torch.testing.assert_close(per_sample, torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(batch, torch.tensor([2 / 3]))


def test_smooth_keeps_empty_class_finite() -> None:
    zeros = torch.zeros(1, 1, 3, 3)
    assert soft_dice_per_class(zeros, zeros, batch_dice=False).item() == pytest.approx(1.0)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_perfect_prediction_gives_zero_loss(n_classes: int) -> None:
    target = torch.randint(0, n_classes, (2, 1, 5, 6, 3), generator=torch.Generator().manual_seed(0))
    logits = 40.0 * F.one_hot(target[:, 0], n_classes).movedim(-1, 1).float()
    assert DiceCELoss(include_background=True)(logits, target).item() == pytest.approx(0.0, abs=1e-5)
    masks = F.one_hot(target[:, 0], n_classes).movedim(-1, 1).float()
    assert DiceBCELoss()(80.0 * masks - 40.0, masks).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("spatial", [(6, 7), (4, 5, 3)])
def test_dice_ce_matches_monai(include_background: bool, batch_dice: bool, spatial: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, *spatial, generator=gen)
    target = torch.randint(0, 4, (3, 1, *spatial), generator=gen)
    target[1] = 0  # one sample without foreground, where the smooth term matters
    kw = {"include_background": include_background, "batch_dice": batch_dice, "smooth": 1e-3}
    ours = DiceCELoss(**kw, dice_weight=0.7, ce_weight=1.3)(logits, target)
    monai = MonaiDiceCELoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        batch=batch_dice,
        smooth_nr=1e-3,
        smooth_dr=1e-3,
        lambda_dice=0.7,
        lambda_ce=1.3,
    )(logits, target)
    torch.testing.assert_close(ours, monai)


@pytest.mark.parametrize("batch_dice", [False, True])
def test_dice_bce_single_channel_matches_monai(batch_dice: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 1, 6, 5, generator=gen)
    target = (torch.rand(2, 1, 6, 5, generator=gen) > 0.6).float()
    ours = DiceBCELoss(batch_dice=batch_dice)(logits, target)
    monai = MonaiDiceCELoss(sigmoid=True, batch=batch_dice, smooth_nr=1e-5, smooth_dr=1e-5)(logits, target)
    torch.testing.assert_close(ours, monai)


@pytest.mark.parametrize("batch_dice", [False, True])
def test_dice_bce_multichannel_matches_monai_dice_plus_torch_bce(batch_dice: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 4, 3, generator=gen)
    target = torch.rand(2, 3, 4, 4, 3, generator=gen) > 0.5  # overlapping masks, bool
    ours = DiceBCELoss(batch_dice=batch_dice, dice_weight=2.0, bce_weight=0.5)(logits, target)
    dice = MonaiDiceLoss(sigmoid=True, batch=batch_dice, smooth_nr=1e-5, smooth_dr=1e-5)(logits, target.float())
    bce = F.binary_cross_entropy(torch.sigmoid(logits), target.float())
    torch.testing.assert_close(ours, 2.0 * dice + 0.5 * bce)


@pytest.mark.parametrize("loss", [DiceCELoss(), DiceBCELoss()])
def test_gradient_flows(loss: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 5, 5, generator=gen, requires_grad=True)
    if isinstance(loss, DiceCELoss):
        target = torch.randint(0, 3, (2, 1, 5, 5), generator=gen)
    else:
        target = torch.rand(2, 3, 5, 5, generator=gen) > 0.5
    loss(logits, target).backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(5)
    logits = (200.0 * torch.randn(2, 3, 6, 6, generator=gen)).to(dtype)  # exp() would overflow in fp16
    target = torch.randint(0, 3, (2, 1, 6, 6), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = DiceCELoss()(logits, target)
    reference = DiceCELoss()(logits.float(), target)
    assert low.dtype == torch.float32
    assert torch.isfinite(low)
    torch.testing.assert_close(low, reference)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, [1.0]), (2, [2 / 3, 1 / 3]), (3, [2 / 3, 1 / 3, 0.0]), (4, [4 / 7, 2 / 7, 1 / 7, 0.0])],
)
def test_deep_supervision_weights(n: int, expected: list[float]) -> None:
    assert deep_supervision_weights(n) == pytest.approx(expected)


@pytest.mark.parametrize("channel_dim", [True, False])
def test_deep_supervision_loss_downsamples_target(channel_dim: bool) -> None:
    gen = torch.Generator().manual_seed(6)
    target = torch.randint(0, 3, (2, 1, 16, 16), generator=gen)
    outs = [torch.randn(2, 3, s, s, generator=gen, requires_grad=True) for s in (16, 8, 4, 2)]
    base = DiceCELoss()
    # nearest-exact picks voxel centres: 16 -> 8 keeps index 2i+1, 16 -> 4 keeps 4i+2
    expected = (
        4 / 7 * base(outs[0], target)
        + 2 / 7 * base(outs[1], target[..., 1::2, 1::2])
        + 1 / 7 * base(outs[2], target[..., 2::4, 2::4])
    )
    given = target if channel_dim else target[:, 0]
    total = DeepSupervisionLoss(base, n_outputs=4)(outs, given)
    torch.testing.assert_close(total, expected)
    total.backward()
    assert all(o.grad is not None for o in outs[:3])
    assert outs[3].grad is None  # weight 0: the lowest resolution is not evaluated


def test_deep_supervision_binary_masks_and_plain_tensor() -> None:
    gen = torch.Generator().manual_seed(7)
    masks = (torch.rand(1, 2, 8, 8, generator=gen) > 0.5).float()
    outs = [torch.randn(1, 2, 8, 8, generator=gen), torch.randn(1, 2, 4, 4, generator=gen)]
    loss = DeepSupervisionLoss(DiceBCELoss(), n_outputs=2)
    expected = 2 / 3 * DiceBCELoss()(outs[0], masks) + 1 / 3 * DiceBCELoss()(outs[1], masks[..., 1::2, 1::2])
    torch.testing.assert_close(loss(outs, masks), expected)
    torch.testing.assert_close(loss(outs[0], masks), DiceBCELoss()(outs[0], masks))


@pytest.mark.parametrize(
    "call",
    [
        lambda: DeepSupervisionLoss(DiceCELoss(), 3)([torch.zeros(1, 2, 4, 4)], torch.zeros(1, 1, 4, 4).long()),
        lambda: DiceCELoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 5).long()),
        lambda: DiceCELoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)),
        lambda: DiceCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4).long()),
        lambda: DiceBCELoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)),
        lambda: deep_supervision_weights(0),
    ],
)
def test_tensors_that_do_not_fit_are_a_bug_not_a_user_error(call) -> None:  # type: ignore[no-untyped-def]
    """Shapes and dtypes are the code's responsibility: a ValueError (traceback), never a ConfigError,
    which the CLI would print as the user's mistake."""
    with pytest.raises(ValueError) as info:
        call()
    assert not isinstance(info.value, ConfigError)


def test_invalid_loss_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ce_weight"):
        DiceCELoss(ce_weight=-1.0)
