"""Segmentation losses: soft dice + cross-entropy, as pure functions wrapped by thin modules.

* :class:`DiceCELoss` — exclusive classes (one label per voxel): softmax over ``C`` channels,
  target of class indices.
* :class:`DiceBCELoss` — overlapping structures (e.g. BraTS regions): one sigmoid channel per binary mask.
* :class:`DeepSupervisionLoss` — wraps either for a network that returns ``[full, 1/2, 1/4, ...]`` outputs.

Soft dice per class (segmentation_models_pytorch's ``soft_dice_score``, MONAI's ``smooth_nr = smooth_dr``)::

    dice_c = (2 Σ p·g + smooth) / (Σ p + Σ g + smooth)

summed over the spatial axes, and over the batch too when ``batch_dice`` (nnU-Net's choice for 3D
full-resolution training: rare classes are scored on the whole batch). The loss is
``ce_weight * CE + dice_weight * (1 - mean_c dice_c)``.

Mixed precision: every loss casts its inputs to float32 and runs with autocast disabled, so fp16/bf16
logits cannot overflow in ``exp`` or lose the small dice sums.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import ConfigError

__all__ = [
    "DeepSupervisionLoss",
    "DiceBCELoss",
    "DiceCELoss",
    "deep_supervision_weights",
    "soft_dice_per_class",
]


def soft_dice_per_class(probs: Tensor, onehot: Tensor, *, batch_dice: bool, smooth: float = 1e-5) -> Tensor:
    """Soft dice of probabilities against a one-hot (or binary) target.

    Args:
        probs: ``(B, C, *spatial)`` probabilities in [0, 1].
        onehot: ``(B, C, *spatial)`` target in {0, 1}, same shape as ``probs``.
        batch_dice: sum over the batch as well, giving one dice per class.
        smooth: added to numerator and denominator; keeps an empty class finite.

    Returns:
        ``(C,)`` if ``batch_dice`` else ``(B, C)``.
    """
    if probs.shape != onehot.shape or probs.ndim < 3:
        raise ConfigError(
            f"soft dice needs probs and target of one shape (B, C, *spatial), got {tuple(probs.shape)} "
            f"and {tuple(onehot.shape)} (one-hot encode the target to the number of output channels)"
        )
    dims = (0, *range(2, probs.ndim)) if batch_dice else tuple(range(2, probs.ndim))
    onehot = onehot.to(probs.dtype)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    return (2.0 * intersection + smooth) / (cardinality + smooth)


def _check_weights(**weights: float) -> None:
    for name, value in weights.items():
        if not value >= 0:
            raise ConfigError(f"loss option {name}={value} is negative (use a weight >= 0)")


def _class_indices(target: Tensor, logits: Tensor) -> Tensor:
    """Target as ``(B, 1, *spatial)`` int64 class indices."""
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape[0] != logits.shape[0] or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise ConfigError(
            f"target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)} "
            "(give class indices as (B, 1, *spatial) or (B, *spatial))"
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ConfigError(f"target dtype {target.dtype} is not an integer type (give int64 class indices)")
    return target.long()


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
        _check_weights(dice_weight=dice_weight, ce_weight=ce_weight, smooth=smooth)
        self.include_background = include_background
        self.batch_dice = batch_dice
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if not self.include_background and logits.shape[1] < 2:
            raise ConfigError(
                f"DiceCELoss without background needs >= 2 channels, got {logits.shape[1]} "
                "(use DiceBCELoss for a single binary channel)"
            )
        target = _class_indices(target, logits)
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
        _check_weights(dice_weight=dice_weight, bce_weight=bce_weight, smooth=smooth)
        self.batch_dice = batch_dice
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.shape != logits.shape:
            raise ConfigError(
                f"target shape {tuple(target.shape)} differs from logits {tuple(logits.shape)} "
                "(give one binary mask per output channel, (B, C, *spatial))"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target = logits.float(), target.float()
            bce = F.binary_cross_entropy_with_logits(logits, target)
            dice = soft_dice_per_class(torch.sigmoid(logits), target, batch_dice=self.batch_dice, smooth=self.smooth)
            return self.bce_weight * bce + self.dice_weight * (1.0 - dice.mean())


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """Loss weight per output, highest resolution first: ``1/2^i`` normalised to sum 1.

    As nnU-Net, the lowest resolution gets weight 0 — but only with more than 2 outputs, so a
    two-output network still trains both heads.

    Example:
        >>> deep_supervision_weights(4)
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285, 0.0]
    """
    if n_outputs < 1:
        raise ConfigError(f"deep supervision needs n_outputs >= 1, got {n_outputs}")
    raw = [0.5**i for i in range(n_outputs)]
    if n_outputs > 2:
        raw[-1] = 0.0
    total = sum(raw)
    return [w / total for w in raw]


def _resize_target(target: Tensor, logits: Tensor) -> Tensor:
    """Nearest-neighbour resize of a class-index or binary-mask target to the spatial size of ``logits``."""
    size = tuple(logits.shape[2:])
    if tuple(target.shape[-len(size) :]) == size:
        return target
    squeeze = target.ndim == logits.ndim - 1
    resized = target.unsqueeze(1) if squeeze else target
    resized = F.interpolate(resized.float(), size=size, mode="nearest-exact").to(target.dtype)
    return resized.squeeze(1) if squeeze else resized


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over deep-supervision outputs ``[full, 1/2, 1/4, ...]``.

    ``forward(outputs, target)``: ``outputs`` is a list of logits ``(B, C, *spatial_i)`` or one tensor,
    which goes straight to the wrapped loss; ``target`` is at full resolution in whatever layout the
    wrapped loss takes. The target is resized to each output by nearest-neighbour interpolation
    (``mode="nearest-exact"``, i.e. voxel centres; class indices and binary masks stay exact values).
    Outputs with weight 0 (the lowest resolution, see :func:`deep_supervision_weights`) are not
    evaluated, so their head receives no gradient; with DistributedDataParallel set
    ``find_unused_parameters=True``.

    Example:
        >>> loss = DeepSupervisionLoss(DiceCELoss(), n_outputs=3)
        >>> outs = [torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
        >>> loss(outs, torch.zeros(1, 1, 8, 8, dtype=torch.long)).shape
        torch.Size([])
    """

    def __init__(self, loss: nn.Module, n_outputs: int) -> None:
        super().__init__()
        self.loss = loss
        self.n_outputs = n_outputs
        self.weights = deep_supervision_weights(n_outputs)

    def forward(self, outputs: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            return self.loss(outputs, target)
        if len(outputs) != self.n_outputs:
            raise ConfigError(
                f"network returned {len(outputs)} deep-supervision outputs, the loss expects "
                f"{self.n_outputs} (set n_outputs to the number of decoder outputs)"
            )
        terms = [
            weight * self.loss(out, _resize_target(target, out))
            for weight, out in zip(self.weights, outputs, strict=True)
            if weight > 0
        ]
        return torch.stack(terms).sum()
