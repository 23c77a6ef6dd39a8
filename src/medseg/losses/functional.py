"""The maths of the segmentation losses as pure functions (no modules, no state).

``p`` is a probability (softmax over channels for exclusive classes, sigmoid per channel for overlapping
structures), ``g`` the target's binary mask of the same channel, sums run over the spatial axes (and the batch
too when ``batch_dice``: nnU-Net's choice for 3D full-resolution training, rare classes are scored on the
whole batch).

Soft dice per class (segmentation_models_pytorch's ``soft_dice_score``, MONAI's ``smooth_nr = smooth_dr``)::

    dice_c = (2 Σ p·g + smooth) / (Σ p + Σ g + smooth)

Tversky index per class (Salehi et al. 2017; MONAI's ``TverskyLoss``: ``alpha`` weights false positives,
``beta`` false negatives; ``alpha = beta = 0.5`` with ``smooth = 0`` is dice)::

    TI_c = (Σ p·g + smooth) / (Σ p·g + alpha Σ p·(1-g) + beta Σ (1-p)·g + smooth)

Focal loss (Lin et al. 2017), per voxel, ``p_t`` the probability of the true label::

    FL = -alpha_t (1 - p_t)^gamma log p_t

Boundary loss (Kervadec et al. 2019), ``phi`` the target's signed distance map (negative inside)::

    BL = mean(p · phi)

Distance-transform Hausdorff loss (Karimi & Salcudean 2019), ``d_g`` / ``d_p`` the distances of each voxel to
the target's / the prediction's boundary::

    HD = mean((p - g)^2 · (d_g^alpha + d_p^alpha))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError

__all__ = [
    "binary_masks",
    "boundary_ramp",
    "boundary_term",
    "check_weights",
    "class_indices",
    "deep_supervision_weights",
    "focal_sigmoid",
    "focal_softmax",
    "hausdorff_dt_term",
    "probabilities",
    "resize_target",
    "scored_channels",
    "soft_dice_per_class",
    "soft_tversky_per_class",
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
        raise ValueError(
            f"soft dice needs probs and target of one shape (B, C, *spatial), got {tuple(probs.shape)} "
            f"and {tuple(onehot.shape)} (one-hot encode the target to the number of output channels)"
        )
    dims = (0, *range(2, probs.ndim)) if batch_dice else tuple(range(2, probs.ndim))
    onehot = onehot.to(probs.dtype)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    return (2.0 * intersection + smooth) / (cardinality + smooth)


def soft_tversky_per_class(
    probs: Tensor, onehot: Tensor, *, alpha: float, beta: float, batch_dice: bool, smooth: float = 1e-5
) -> Tensor:
    """Soft Tversky index of probabilities against a one-hot (or binary) target.

    Args:
        probs: ``(B, C, *spatial)`` probabilities in [0, 1].
        onehot: ``(B, C, *spatial)`` target in {0, 1}, same shape as ``probs``.
        alpha: weight of the false positives ``Σ p·(1-g)``.
        beta: weight of the false negatives ``Σ (1-p)·g``.
        batch_dice: sum over the batch as well, giving one index per class.
        smooth: added to numerator and denominator; keeps an empty class finite.

    Returns:
        ``(C,)`` if ``batch_dice`` else ``(B, C)``.
    """
    _check_same_shape(probs, onehot, "soft Tversky")
    dims = (0, *range(2, probs.ndim)) if batch_dice else tuple(range(2, probs.ndim))
    onehot = onehot.to(probs.dtype)
    tp = (probs * onehot).sum(dims)
    fp = (probs * (1.0 - onehot)).sum(dims)
    fn = ((1.0 - probs) * onehot).sum(dims)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def focal_softmax(logits: Tensor, onehot: Tensor, *, gamma: float, alpha: float | None) -> Tensor:
    """Focal loss per voxel for exclusive classes: ``-alpha_t (1 - p_t)^gamma log p_t``, softmax ``p``.

    ``alpha_t`` is ``1 - alpha`` for the background (class 0) and ``alpha`` for every other class (MONAI's
    scalar ``alpha`` with ``use_softmax``); ``alpha=None`` weights all classes 1, and then ``gamma=0`` is
    cross-entropy.

    Args:
        logits: ``(B, C, *spatial)``.
        onehot: ``(B, C, *spatial)`` one-hot target.

    Returns:
        ``(B, *spatial)``: the loss of each voxel (MONAI's elementwise loss summed over channels).
    """
    _check_same_shape(logits, onehot, "focal loss")
    log_p = logits.log_softmax(dim=1)
    loss = -((1.0 - log_p.exp()) ** gamma) * log_p * onehot
    if alpha is not None:
        weights = torch.full((logits.shape[1],), alpha, dtype=loss.dtype, device=loss.device)
        weights[0] = 1.0 - alpha
        loss = loss * weights.view(1, -1, *([1] * (logits.ndim - 2)))
    return loss.sum(dim=1)


def focal_sigmoid(logits: Tensor, target: Tensor, *, gamma: float, alpha: float | None) -> Tensor:
    """Focal loss per voxel and channel for binary masks: ``-alpha_t (1 - p_t)^gamma log p_t``, sigmoid ``p``.

    ``alpha_t`` is ``alpha`` where the mask is 1 (the structure) and ``1 - alpha`` where it is 0 (the focal-loss
    paper's and MONAI's convention); ``alpha=None`` weights both 1, and then ``gamma=0`` is binary cross-entropy.

    Args:
        logits: ``(B, C, *spatial)``.
        target: ``(B, C, *spatial)`` binary masks.

    Returns:
        ``(B, C, *spatial)``.
    """
    _check_same_shape(logits, target, "focal loss")
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    log_one_minus_pt = F.logsigmoid(-logits * (2.0 * target - 1.0))  # log(1 - p_t), without overflow
    loss = (gamma * log_one_minus_pt).exp() * bce
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss


def boundary_term(probs: Tensor, distance_map: Tensor) -> Tensor:
    """Kervadec et al.'s boundary loss ``mean(p · phi)`` over batch, channels and voxels (a scalar).

    ``distance_map`` ``phi`` is the target's signed distance, ``(B, C, *spatial)`` like ``probs``: negative
    inside the structure, positive outside, so the loss falls as probability moves inside (it can be negative).
    """
    _check_same_shape(probs, distance_map, "boundary loss")
    return (probs * distance_map.to(probs.dtype)).mean()


def hausdorff_dt_term(
    probs: Tensor, masks: Tensor, target_distance: Tensor, pred_distance: Tensor | None = None, *, alpha: float = 2.0
) -> Tensor:
    """Karimi & Salcudean's HD-DT loss ``mean((p - g)^2 · (d_g^alpha + d_p^alpha))`` (a scalar).

    ``target_distance`` ``d_g`` and ``pred_distance`` ``d_p`` are unsigned distances ``>= 0`` of each voxel to
    the boundary of the target and of the thresholded prediction, ``(B, C, *spatial)`` like ``probs``;
    ``pred_distance=None`` leaves the ``d_p`` term out (the one-sided loss).
    """
    _check_same_shape(probs, masks, "Hausdorff loss")
    _check_same_shape(probs, target_distance, "Hausdorff loss")
    distance = target_distance.to(probs.dtype) ** alpha
    if pred_distance is not None:
        _check_same_shape(probs, pred_distance, "Hausdorff loss")
        distance = distance + pred_distance.to(probs.dtype) ** alpha
    return ((probs - masks.to(probs.dtype)) ** 2 * distance).mean()


def boundary_ramp(progress: float, *, floor: float = 0.01) -> float:
    """Weight of the boundary loss at training ``progress`` in [0, 1]: ``clip(progress, floor, 1)``.

    Kervadec et al. start from the region loss alone and move 0.01 of the weight to the boundary loss each
    epoch; with medseg's default 100 epochs ``progress`` grows by exactly 0.01 per epoch. The ``floor`` keeps
    the first epoch's boundary term alive.

    Example:
        >>> boundary_ramp(0.0), boundary_ramp(0.25), boundary_ramp(1.5)
        (0.01, 0.25, 1.0)
    """
    return min(1.0, max(floor, progress))


def probabilities(logits: Tensor, target: Tensor, *, overlapping: bool) -> tuple[Tensor, Tensor]:
    """Probabilities and the target's binary masks, both ``(B, C, *spatial)`` in the dtype of ``logits``.

    Overlapping structures: sigmoid per channel, target ``(B, C, *spatial)`` masks. Exclusive classes: softmax
    over channels, target ``(B, 1, *spatial)`` or ``(B, *spatial)`` class indices, one-hot encoded.
    """
    if overlapping:
        return torch.sigmoid(logits), binary_masks(target, logits).to(logits.dtype)
    indices = class_indices(target, logits)
    probs = logits.softmax(dim=1)
    return probs, torch.zeros_like(probs).scatter_(1, indices, 1.0)


def scored_channels(*tensors: Tensor, overlapping: bool, include_background: bool, loss: str) -> list[Tensor]:
    """``tensors`` (each ``(B, C, *spatial)``) without channel 0 for exclusive classes unless
    ``include_background``; every structure channel is kept for overlapping structures."""
    if overlapping or include_background:
        return list(tensors)
    if tensors[0].shape[1] < 2:
        raise ValueError(
            f"{loss} without background needs >= 2 channels, got {tensors[0].shape[1]} "
            "(a single binary channel is an overlapping-structures output: use overlapping=True)"
        )
    return [t[:, 1:] for t in tensors]


def _check_same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(
            f"{what} needs tensors of one shape (B, C, *spatial), got {tuple(a.shape)} and {tuple(b.shape)} "
            "(one-hot encode the target, one channel per output)"
        )


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


def binary_masks(target: Tensor, logits: Tensor) -> Tensor:
    """Target of overlapping structures: ``(B, C, *spatial)`` binary masks, one per output channel."""
    if target.shape != logits.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} differs from logits {tuple(logits.shape)} "
            "(give one binary mask per output channel, (B, C, *spatial))"
        )
    return target


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
