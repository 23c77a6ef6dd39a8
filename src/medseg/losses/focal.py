"""Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"), for either labelling.

``FL = -alpha_t (1 - p_t)^gamma log p_t`` per voxel (:func:`~medseg.losses.functional.focal_softmax`,
:func:`~medseg.losses.functional.focal_sigmoid`): ``(1 - p_t)^gamma`` down-weights voxels already classified
well, so training concentrates on the hard ones. **What alpha weights**: ``alpha`` is the weight of the
foreground — voxels of a structure (mask 1) for overlapping structures, every class but the background for
exclusive classes — and ``1 - alpha`` the weight of the background, as in the paper (``alpha`` for the
positive class) and MONAI's ``FocalLoss``. Defaults ``gamma = 2``, ``alpha = 0.75`` (foreground counts three
times as much as background; the paper's 0.25 was tuned for detection, where ``gamma`` already silences the
many easy negatives). ``alpha=None`` drops the weighting; ``gamma = 0, alpha=None`` is plain (B)CE.

Reduction. Overlapping structures: the mean over every element ``(B, C, *spatial)``, exactly MONAI's
``FocalLoss(use_softmax=False)``. Exclusive classes: the mean over voxels of the per-voxel loss, so that
``gamma = 0, alpha=None`` is cross-entropy; MONAI's ``FocalLoss(use_softmax=True)`` averages over channels
too, i.e. ours is ``C`` times MONAI's. Unlike MONAI with ``include_background=False``, the softmax focal loss
always scores every class (as cross-entropy does); the background's weight is ``1 - alpha``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.losses.functional import check_weights, focal_sigmoid, focal_softmax, probabilities

__all__ = ["FocalLoss"]


class FocalLoss(nn.Module):
    """Focal loss, softmax (exclusive classes) or sigmoid (overlapping structures); a scalar.

    ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` / ``(B, *spatial)``
    class indices (exclusive) or ``(B, C, *spatial)`` binary masks (overlapping).

    Example:
        >>> loss = FocalLoss(overlapping=True)  # gamma 2, alpha 0.75 on the structures
        >>> loss(torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4)).item()  # 0.75 * 0.5^2 * ln 2
        0.1299...
    """

    def __init__(self, *, overlapping: bool, gamma: float = 2.0, alpha: float | None = 0.75) -> None:
        super().__init__()
        check_weights(gamma=gamma)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"focal loss alpha={alpha} is outside [0, 1] (give the foreground weight in [0, 1])")
        self.overlapping = overlapping
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            _, masks = probabilities(logits, target, overlapping=self.overlapping)  # checks and one-hot encodes
            focal = focal_sigmoid if self.overlapping else focal_softmax
            return focal(logits, masks, gamma=self.gamma, alpha=self.alpha).mean()
