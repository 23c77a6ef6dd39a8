"""Dice losses for segmentation: soft dice (+ cross-entropy), thin modules around :mod:`medseg.losses.functional`.

* :class:`DiceLoss` — soft dice alone, for either labelling (the ``dice`` term of a loss name).
* :class:`DiceCELoss` — exclusive classes (one label per voxel): softmax over ``C`` channels,
  target of class indices.
* :class:`DiceBCELoss` — overlapping structures (e.g. BraTS regions): one sigmoid channel per binary mask.

The loss is ``ce_weight * CE + dice_weight * (1 - mean_c dice_c)`` (soft dice as defined in
:func:`~medseg.losses.functional.soft_dice_per_class`). Wrap either in
:class:`~medseg.losses.deep_supervision.DeepSupervisionLoss` for a network with several outputs.

Mixed precision: every loss casts its inputs to float32 and runs with autocast disabled, so fp16/bf16
logits cannot overflow in ``exp`` or lose the small dice sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.losses.functional import check_weights, class_indices, probabilities, scored_channels, soft_dice_per_class

__all__ = ["DiceBCELoss", "DiceCELoss", "DiceLoss"]


class DiceLoss(nn.Module):
    """Soft dice loss ``1 - mean_c dice_c``, softmax (exclusive classes) or sigmoid (overlapping structures).

    ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` / ``(B, *spatial)``
    class indices (exclusive) or ``(B, C, *spatial)`` binary masks (overlapping). ``include_background=False``
    leaves channel 0 out for exclusive classes; every structure counts for overlapping ones. Equal to
    :class:`DiceCELoss` / :class:`DiceBCELoss` with the cross-entropy weight 0.

    Example:
        >>> loss = DiceLoss(overlapping=False, batch_dice=True)
        >>> loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long)).shape
        torch.Size([])
    """

    def __init__(
        self, *, overlapping: bool, include_background: bool = False, batch_dice: bool = False, smooth: float = 1e-5
    ) -> None:
        super().__init__()
        check_weights(smooth=smooth)
        self.overlapping = overlapping
        self.include_background = include_background
        self.batch_dice = batch_dice
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs, masks = probabilities(logits.float(), target, overlapping=self.overlapping)
            probs, masks = scored_channels(
                probs, masks, overlapping=self.overlapping, include_background=self.include_background, loss="DiceLoss"
            )
            dice = soft_dice_per_class(probs, masks, batch_dice=self.batch_dice, smooth=self.smooth)
            return 1.0 - dice.mean()


class DiceCELoss(nn.Module):
    """Cross-entropy plus soft dice for exclusive classes (softmax over channels).

    ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` or
    ``(B, *spatial)`` integer class indices in ``[0, C)``. Returns a scalar. Cross-entropy always uses
    every class; ``include_background=False`` leaves channel 0 out of the dice mean only (as MONAI).

    Example:
        >>> loss = DiceCELoss(batch_dice=True)
        >>> logits = torch.zeros(2, 3, 8, 8, requires_grad=True)
        >>> loss(logits, torch.zeros(2, 1, 8, 8, dtype=torch.long)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        include_background: bool = False,
        batch_dice: bool = False,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        check_weights(dice_weight=dice_weight, ce_weight=ce_weight, smooth=smooth)
        self.include_background = include_background
        self.batch_dice = batch_dice
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if not self.include_background and logits.shape[1] < 2:
            raise ValueError(
                f"DiceCELoss without background needs >= 2 channels, got {logits.shape[1]} "
                "(use DiceBCELoss for a single binary channel)"
            )
        target = class_indices(target, logits)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            ce = F.cross_entropy(logits, target[:, 0])
            probs = logits.softmax(dim=1)
            onehot = torch.zeros_like(probs).scatter_(1, target, 1.0)
            if not self.include_background:
                probs, onehot = probs[:, 1:], onehot[:, 1:]
            dice = soft_dice_per_class(probs, onehot, batch_dice=self.batch_dice, smooth=self.smooth)
            return self.ce_weight * ce + self.dice_weight * (1.0 - dice.mean())


class DiceBCELoss(nn.Module):
    """Binary cross-entropy plus soft dice for overlapping structures, one sigmoid channel each.

    ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, C, *spatial)`` float or bool
    in {0, 1}, one binary mask per channel. Returns a scalar; dice is averaged over all channels.

    Example:
        >>> loss = DiceBCELoss()
        >>> loss(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)).item() > 0
        True
    """

    def __init__(
        self,
        *,
        batch_dice: bool = False,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        check_weights(dice_weight=dice_weight, bce_weight=bce_weight, smooth=smooth)
        self.batch_dice = batch_dice
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.shape != logits.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} differs from logits {tuple(logits.shape)} "
                "(give one binary mask per output channel, (B, C, *spatial))"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target = logits.float(), target.float()
            bce = F.binary_cross_entropy_with_logits(logits, target)
            dice = soft_dice_per_class(torch.sigmoid(logits), target, batch_dice=self.batch_dice, smooth=self.smooth)
            return self.bce_weight * bce + self.dice_weight * (1.0 - dice.mean())
