"""Cross-entropy alone, with optional class weights: the ``ce`` (softmax) and ``bce`` (sigmoid) loss terms.

* :class:`CELoss` — exclusive classes: softmax cross-entropy against class indices. With ``weight`` (one per
  class) the mean is PyTorch's weighted mean, ``Σ w_y·l / Σ w_y`` over voxels of true class ``y``.
* :class:`BCELoss` — overlapping structures: binary cross-entropy per sigmoid channel. With ``weight`` (one per
  channel) each channel's loss is scaled by its weight and the mean runs over every element, as PyTorch's
  ``binary_cross_entropy_with_logits(weight=...)``.

Both run in float32 with autocast disabled (see :mod:`medseg.losses.dice`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.losses.functional import binary_masks, check_weights, class_indices

__all__ = ["BCELoss", "CELoss"]


def _weights(weight: Sequence[float] | None) -> tuple[float, ...] | None:
    if weight is None:
        return None
    check_weights(**{f"weight[{i}]": w for i, w in enumerate(weight)})
    return tuple(float(w) for w in weight)


def _weight_tensor(weight: tuple[float, ...], logits: Tensor) -> Tensor:
    if len(weight) != logits.shape[1]:
        raise ValueError(f"{len(weight)} class weights for {logits.shape[1]} output channels (give one per channel)")
    return torch.tensor(weight, dtype=torch.float32, device=logits.device)


class CELoss(nn.Module):
    """Softmax cross-entropy for exclusive classes, optionally class-weighted.

    ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` or ``(B, *spatial)``
    integer class indices. Returns a scalar.

    Example:
        >>> CELoss(weight=[0.2, 1.0])(torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.long)).item()
        0.6931...
    """

    def __init__(self, *, weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.weight = _weights(weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = class_indices(target, logits)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            weight = None if self.weight is None else _weight_tensor(self.weight, logits)
            return F.cross_entropy(logits, target[:, 0], weight=weight)


class BCELoss(nn.Module):
    """Binary cross-entropy per sigmoid channel for overlapping structures, optionally channel-weighted.

    ``forward(logits, target)``: logits and target ``(B, C, *spatial)``, one binary mask per channel.

    Example:
        >>> BCELoss()(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)).item()
        0.6931...
    """

    def __init__(self, *, weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.weight = _weights(weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = binary_masks(target, logits)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target = logits.float(), target.float()
            weight = None
            if self.weight is not None:
                weight = _weight_tensor(self.weight, logits).view(1, -1, *([1] * (logits.ndim - 2)))
            return F.binary_cross_entropy_with_logits(logits, target, weight=weight)
