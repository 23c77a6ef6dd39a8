"""The size of each segmented structure and the model's confidence in it, for one case.

A 3D structure's size is its volume in ml (voxels × voxel volume in mm³ / 1000), a 2D structure's its area
in mm²; a file without physical spacing (PNG, TIFF, ``.npy``; see :func:`medseg.has_physical_spacing`) gives
voxel (pixel) counts and says so in ``unit``. The confidence of a structure is the mean of the model's
probability for that class over the voxels labelled with it (for a softmax model before correction: the
mean max-probability inside the predicted structure); ``None`` without probabilities or for an empty one.

Example:
    >>> labels = np.zeros((4, 10, 10), np.uint8); labels[:2, :5, :5] = 1
    >>> row = structure_sizes(labels, (2.0, 1.0, 1.0), {0: "background", 1: "liver"})[0]
    >>> row.name, row.voxels, row.size, row.unit
    ('liver', 50, 0.1, 'ml')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["StructureSize", "structure_sizes"]


@dataclass(frozen=True)
class StructureSize:
    """One row of a case's structure table: class index, name, voxel count, size in ``unit``, confidence."""

    index: int
    name: str
    voxels: int
    size: float
    unit: str  # "ml" (3D), "mm²" (2D) or "voxels" (no physical spacing)
    confidence: float | None = None


def structure_sizes(
    labels: np.ndarray,
    spacing: Sequence[float],
    names: Mapping[int, str],
    *,
    physical: bool = True,
    probabilities: np.ndarray | None = None,
    overlapping: bool = False,
) -> list[StructureSize]:
    """One :class:`StructureSize` per foreground class of ``names``.

    ``labels``: class indices ``(*spatial)``, or ``(K, *spatial)`` binary masks when ``overlapping``;
    ``spacing``: mm per spatial axis (array order); ``probabilities``: ``(K, *spatial)`` in the same grid.
    """
    ndim = len(spacing)
    if labels.ndim != ndim + int(overlapping):
        raise ValueError(f"labels of shape {labels.shape} do not match {ndim} spacing values")
    voxel = math.prod(float(s) for s in spacing)
    unit = ("ml" if ndim == 3 else "mm²") if physical else "voxels"
    rows = []
    for k, name in sorted(names.items()):
        if not overlapping and k == 0:
            continue
        mask = labels[k] > 0 if overlapping else labels == k
        count = int(np.count_nonzero(mask))
        size = count * voxel / (1000.0 if ndim == 3 else 1.0) if physical else float(count)
        confidence = None
        if probabilities is not None and count:
            confidence = float(probabilities[k][mask].mean())
        rows.append(StructureSize(k, name, count, size, unit, confidence))
    return rows
