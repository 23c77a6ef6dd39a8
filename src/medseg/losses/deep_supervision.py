"""Deep supervision: one loss summed over a network's outputs at decreasing resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.losses.functional import deep_supervision_weights, resize_target

__all__ = ["DeepSupervisionLoss"]


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over deep-supervision outputs ``[full, 1/2, 1/4, ...]``.

    ``forward(outputs, target, **extras)``: ``outputs`` is a list of logits ``(B, C, *spatial_i)`` or one
    tensor, which goes straight to the wrapped loss; ``target`` (and each extra target the wrapped loss
    asks for, e.g. a distance map) is at full resolution in whatever layout the wrapped loss takes. Targets
    are resized to each output by nearest-neighbour interpolation
    (``mode="nearest-exact"``, i.e. voxel centres; class indices and binary masks stay exact values).
    Outputs with weight 0 (the lowest resolution, see :func:`deep_supervision_weights`) are not
    evaluated, so their head receives no gradient; with DistributedDataParallel set
    ``find_unused_parameters=True``. :meth:`set_progress` reaches the wrapped loss (training calls it each epoch).

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

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1], passed on to the wrapped loss if it has a schedule (the boundary ramp)."""
        set_progress = getattr(self.loss, "set_progress", None)
        if set_progress is not None:
            set_progress(progress)

    def forward(self, outputs: Tensor | Sequence[Tensor], target: Tensor, **extras: Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            return self.loss(outputs, target, **extras)
        if len(outputs) != self.n_outputs:
            raise ValueError(
                f"network returned {len(outputs)} deep-supervision outputs, the loss expects "
                f"{self.n_outputs} (set n_outputs to the number of decoder outputs)"
            )
        terms = [
            weight * self.loss(out, resize_target(target, out), **{k: resize_target(v, out) for k, v in extras.items()})
            for weight, out in zip(self.weights, outputs, strict=True)
            if weight > 0
        ]
        return torch.stack(terms).sum()
