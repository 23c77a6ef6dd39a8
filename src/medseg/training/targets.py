"""Extra training targets a loss may ask for (``LossEntry.requires``), computed from a patch's label.

Each maker takes the augmented label patch — ``(*spatial)`` class indices, or ``(K, *spatial)`` binary
masks for overlapping structures — the number of output channels and whether the structures overlap, and
returns a float32 array ``(K, *spatial)`` aligned with the network's output channels. The training loader
computes only what the configured loss requires and puts it in the :class:`~medseg.training.batches.Batch`
under the same name.

``distance_map``: per channel, the signed Euclidean distance (voxels) to the structure's boundary,
negative inside (0 on the structure's border voxels) and positive outside: the map of Kervadec et al.'s
boundary loss, from ``scipy.ndimage``'s exact transform; 0 everywhere for a channel absent from the patch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

__all__ = ["EXTRA_TARGETS", "signed_distance_maps"]


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Kervadec et al.'s map: outside, the distance to the nearest structure voxel; inside, minus the
    distance to the nearest background voxel, plus one (so the structure's own border voxels are 0)."""
    if not mask.any() or mask.all():
        return np.zeros(mask.shape, dtype=np.float32)
    outside = ndimage.distance_transform_edt(~mask)
    inside = ndimage.distance_transform_edt(mask)
    return np.where(mask, 1.0 - inside, outside).astype(np.float32)


def signed_distance_maps(label: np.ndarray, n_channels: int, overlapping: bool) -> np.ndarray:
    """``(n_channels, *spatial)`` signed distance maps of each class (or structure) of ``label``."""
    masks = label.astype(bool) if overlapping else np.stack([label == k for k in range(n_channels)])
    return np.stack([_signed_distance(m) for m in masks])


EXTRA_TARGETS: dict[str, Callable[[np.ndarray, int, bool], np.ndarray]] = {
    "distance_map": signed_distance_maps,
}
