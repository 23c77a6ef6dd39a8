"""Distance-transform Hausdorff loss (Karimi & Salcudean 2019, "Reducing the Hausdorff distance in medical
image segmentation with convolutional neural networks", HD-DT), for either labelling.

``HD = mean((p - g)^2 · (d_g^alpha + d_p^alpha))`` (:func:`~medseg.losses.functional.hausdorff_dt_term`),
``alpha = 2``: squared errors weighted by how far they lie from the target's boundary (``d_g``) and from the
prediction's boundary (``d_p``).

* ``d_g`` is ``|distance_map|``, the absolute value of the signed distance map the training loader computes per
  patch (``requires=("distance_map",)``, :mod:`medseg.training.targets`): 0 on the structure's border voxels,
  ``k`` for a voxel ``k`` voxels outside, ``k - 1`` for a voxel ``k`` voxels inside (MONAI's
  ``HausdorffDTLoss`` counts the inside from 1, i.e. ``k``). A channel absent from the patch has ``d_g = 0``.
* ``d_p`` would have to be recomputed from the prediction at every step. By default (``two_sided=False``,
  the registered ``hausdorff`` term) it is left out: the **one-sided** loss ``mean((p - g)^2 · d_g^alpha)``,
  which punishes false positives far outside and misses deep inside the target, costs nothing beyond the
  loader's map and does not synchronise with the CPU. ``two_sided=True`` adds Karimi & Salcudean's ``d_p``: the
  distance map of the detached, thresholded (``p > 0.5``) prediction, computed with ``scipy.ndimage`` on the
  CPU each step (slow for 3D patches: a device-to-host copy and one exact transform per sample and channel).

Scale: distances are in voxels and squared, so at the start of training this term can be 10-1000 times a
Dice term; Karimi & Salcudean balance it against Dice by hand.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.losses.functional import hausdorff_dt_term, probabilities, scored_channels

__all__ = ["HausdorffDTLoss", "boundary_distance"]


def boundary_distance(mask: np.ndarray) -> np.ndarray:
    """Unsigned distance (voxels) of each voxel to the boundary of ``mask``: ``|phi|`` for the signed map of
    :mod:`medseg.training.targets` (outside: distance to the structure; inside: distance to the background
    minus one). All zeros for an empty or full mask."""
    mask = mask.astype(bool)
    if not mask.any() or mask.all():
        return np.zeros(mask.shape, dtype=np.float32)
    outside = ndimage.distance_transform_edt(~mask)
    inside = ndimage.distance_transform_edt(mask)
    return np.where(mask, inside - 1.0, outside).astype(np.float32)


def _prediction_distance(probs: Tensor) -> Tensor:
    """``d_p``: :func:`boundary_distance` of each sample and channel of ``probs > 0.5`` (detached, on the CPU)."""
    masks = (probs.detach() > 0.5).cpu().numpy()
    maps = np.stack([np.stack([boundary_distance(channel) for channel in sample]) for sample in masks])
    return torch.from_numpy(maps).to(probs.device)


class HausdorffDTLoss(nn.Module):
    """HD-DT loss, softmax (exclusive classes) or sigmoid (overlapping structures); a scalar.

    ``forward(logits, target, distance_map)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` /
    ``(B, *spatial)`` class indices (exclusive) or ``(B, C, *spatial)`` binary masks (overlapping);
    ``distance_map`` ``(B, C, *spatial)`` the target's signed distance maps (only ``|distance_map|`` is used).
    ``include_background=False`` leaves channel 0 out for exclusive classes.

    Example:
        >>> loss = HausdorffDTLoss(overlapping=True)  # one-sided
        >>> d = torch.tensor([[[[0.0, 1.0, 2.0]]]])
        >>> loss(torch.zeros(1, 1, 1, 3), torch.tensor([[[[1.0, 0.0, 0.0]]]]), distance_map=d).item()
        0.4166...
    """

    def __init__(
        self, *, overlapping: bool, include_background: bool = False, alpha: float = 2.0, two_sided: bool = False
    ) -> None:
        super().__init__()
        if not alpha > 0:
            raise ConfigError(f"Hausdorff loss alpha={alpha} is not positive (Karimi & Salcudean use 2)")
        self.overlapping = overlapping
        self.include_background = include_background
        self.alpha = alpha
        self.two_sided = two_sided

    def forward(self, logits: Tensor, target: Tensor, distance_map: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs, masks = probabilities(logits.float(), target, overlapping=self.overlapping)
            probs, masks, d_g = scored_channels(
                probs,
                masks,
                distance_map.float().abs(),
                overlapping=self.overlapping,
                include_background=self.include_background,
                loss="Hausdorff loss",
            )
            d_p = _prediction_distance(probs) if self.two_sided else None
            return hausdorff_dt_term(probs, masks, d_g, d_p, alpha=self.alpha)
