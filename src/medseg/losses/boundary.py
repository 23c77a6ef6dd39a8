"""Boundary loss (Kervadec et al. 2019, "Boundary loss for highly unbalanced segmentation"), either labelling.

``BL = mean(p · phi)`` (:func:`~medseg.losses.functional.boundary_term`): ``p`` the softmax or sigmoid
probabilities, ``phi`` the target's signed distance map per output channel (negative inside, 0 on the
structure's border voxels, positive outside), which the training loader computes per patch
(``requires=("distance_map",)``, :mod:`medseg.training.targets`; the same map as MONAI's ``BoundaryLoss``).

The weight ramp. The boundary loss alone does not train from scratch; Kervadec et al. start from the region
loss and shift 0.01 of the weight to the boundary term each epoch. Here the loss is multiplied by
:func:`~medseg.losses.functional.boundary_ramp` of the training progress, ``clip(progress, 0.01, 1)``, which
the training loop sets each epoch through :meth:`BoundaryLoss.set_progress`; region terms of a combined name
keep weight 1 (Kervadec et al. also scale the region loss down to ``1 - weight``; we do not, so at the end
the two weigh 1 : 1 rather than 0.01 : 0.99). ``schedule=False`` gives the plain, unweighted loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medseg.losses.functional import boundary_ramp, boundary_term, probabilities, scored_channels

__all__ = ["BoundaryLoss"]


class BoundaryLoss(nn.Module):
    """Boundary loss ``weight · mean(p · phi)``, softmax (exclusive classes) or sigmoid (overlapping structures).

    ``forward(logits, target, distance_map)``: logits ``(B, C, *spatial)``; target as the labelling's other
    losses take it (class indices or binary masks; checked, not otherwise used); ``distance_map``
    ``(B, C, *spatial)`` signed distances, one channel per output. ``include_background=False`` leaves
    channel 0 out for exclusive classes. ``weight`` is ``boundary_ramp(progress)`` (0.01 until
    :meth:`set_progress` is called) with ``schedule``, else 1.

    Example:
        >>> loss = BoundaryLoss(overlapping=True, schedule=False)
        >>> phi = torch.tensor([[[[-1.0, 0.0, 1.0, 2.0]]]])
        >>> loss(torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4), distance_map=phi).item()  # 0.5 * mean(phi)
        0.25
    """

    def __init__(self, *, overlapping: bool, include_background: bool = False, schedule: bool = True) -> None:
        super().__init__()
        self.overlapping = overlapping
        self.include_background = include_background
        self.schedule = schedule
        self.progress = 0.0

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1] (the loop calls this at the start of each epoch)."""
        self.progress = float(progress)

    @property
    def weight(self) -> float:
        return boundary_ramp(self.progress) if self.schedule else 1.0

    def forward(self, logits: Tensor, target: Tensor, distance_map: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs, _ = probabilities(logits.float(), target, overlapping=self.overlapping)
            probs, phi = scored_channels(
                probs,
                distance_map.float(),
                overlapping=self.overlapping,
                include_background=self.include_background,
                loss="boundary loss",
            )
            return self.weight * boundary_term(probs, phi)
