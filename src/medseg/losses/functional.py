"""The maths of the segmentation losses as pure functions (no modules, no state).

Soft dice per class (segmentation_models_pytorch's ``soft_dice_score``, MONAI's ``smooth_nr = smooth_dr``)::

    dice_c = (2 Σ p·g + smooth) / (Σ p + Σ g + smooth)

summed over the spatial axes, and over the batch too when ``batch_dice`` (nnU-Net's choice for 3D
full-resolution training: rare classes are scored on the whole batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError

__all__ = ["check_weights", "class_indices", "deep_supervision_weights", "resize_target", "soft_dice_per_class"]


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
        raise ValueError(
            f"soft dice needs probs and target of one shape (B, C, *spatial), got {tuple(probs.shape)} "
            f"and {tuple(onehot.shape)} (one-hot encode the target to the number of output channels)"
        )
    dims = (0, *range(2, probs.ndim)) if batch_dice else tuple(range(2, probs.ndim))
    onehot = onehot.to(probs.dtype)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    return (2.0 * intersection + smooth) / (cardinality + smooth)


def check_weights(**weights: float) -> None:
    for name, value in weights.items():
        if not value >= 0:
            raise ConfigError(f"loss option {name}={value} is negative (use a weight >= 0)")


def class_indices(target: Tensor, logits: Tensor) -> Tensor:
    """Target as ``(B, 1, *spatial)`` int64 class indices."""
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape[0] != logits.shape[0] or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)} "
            "(give class indices as (B, 1, *spatial) or (B, *spatial))"
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target dtype {target.dtype} is not an integer type (give int64 class indices)")
    return target.long()


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """Loss weight per output, highest resolution first: ``1/2^i`` normalised to sum 1.

    As nnU-Net, the lowest resolution gets weight 0 — but only with more than 2 outputs, so a
    two-output network still trains both heads.

    Example:
        >>> deep_supervision_weights(4)
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285, 0.0]
    """
    if n_outputs < 1:
        raise ValueError(f"deep supervision needs n_outputs >= 1, got {n_outputs}")
    raw = [0.5**i for i in range(n_outputs)]
    if n_outputs > 2:
        raw[-1] = 0.0
    total = sum(raw)
    return [w / total for w in raw]


def resize_target(target: Tensor, logits: Tensor) -> Tensor:
    """Nearest-neighbour resize of a class-index or binary-mask target to the spatial size of ``logits``."""
    size = tuple(logits.shape[2:])
    if tuple(target.shape[-len(size) :]) == size:
        return target
    squeeze = target.ndim == logits.ndim - 1
    resized = target.unsqueeze(1) if squeeze else target
    resized = F.interpolate(resized.float(), size=size, mode="nearest-exact").to(target.dtype)
    return resized.squeeze(1) if squeeze else resized
