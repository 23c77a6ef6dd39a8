"""Post-processing of predicted labels (connected components, holes): medseg's
``inference/postprocessing.py`` in the few functions prediction needs, numpy and scipy only.

Foreground components use full connectivity (8 in 2D, 26 in 3D); holes face connectivity. A background hole
of a label map is filled with class ``c`` only if every face-adjacent voxel is ``c``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg_runtime.manifest import PostStep

__all__ = ["apply_steps", "apply_steps_masks"]


def _largest(mask: np.ndarray) -> np.ndarray:
    ids, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    sizes = np.bincount(ids.ravel())
    return mask.copy() if sizes.size <= 1 else ids == int(np.argmax(sizes[1:])) + 1


def _remove_small(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    ids, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    keep = np.bincount(ids.ravel()) >= min_voxels
    keep[0] = False
    return keep[ids]


def _classes(labels: np.ndarray, classes: Sequence[int] | None) -> list[int]:
    return [int(c) for c in np.unique(labels) if c != 0] if classes is None else [int(c) for c in classes]


def _fill_holes(labels: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    out = labels.copy()
    wanted, face = _classes(out, classes), ndimage.generate_binary_structure(out.ndim, 1)
    background = out == 0
    regions, n = ndimage.label(background, structure=face)
    if n == 0 or not wanted:
        return out
    neighbours, owner = np.zeros(n + 1, dtype=np.int64), np.zeros(n + 1, dtype=out.dtype)
    for c in _classes(out, None):
        ids = np.unique(regions[ndimage.binary_dilation(out == c, structure=face) & background])
        neighbours[ids] += 1
        owner[ids] = c
    border = np.zeros(n + 1, dtype=bool)
    for axis in range(regions.ndim):
        border[np.take(regions, [0, -1], axis=axis)] = True
    fill = (neighbours == 1) & ~border & np.isin(owner, wanted)
    fill[0] = False
    selected = fill[regions]
    out[selected] = owner[regions[selected]]
    return out


def _per_class(labels: np.ndarray, step: PostStep, keep: object) -> np.ndarray:
    out = labels.copy()
    for c in _classes(out, step.classes):
        mask = out == c
        out[mask & ~keep(mask)] = 0  # type: ignore[operator]
    return out


def apply_steps(labels: np.ndarray, steps: Sequence[PostStep]) -> np.ndarray:
    """Each step in order on a label map ``(*spatial)``: foreground component, small components, largest
    component, holes."""
    out = labels.copy()
    for step in steps:
        if step.foreground_component:
            out[~_largest(out != 0)] = 0
        if step.min_voxels > 0:
            out = _per_class(out, step, lambda m, k=step.min_voxels: _remove_small(m, k))
        if step.largest_component:
            out = _per_class(out, step, _largest)
        if step.fill_holes:
            out = _fill_holes(out, step.classes)
    return out


def apply_steps_masks(masks: np.ndarray, steps: Sequence[PostStep]) -> np.ndarray:
    """``steps`` on overlapping structures ``(K, *spatial)`` (``classes``: structure positions); uint8."""
    out = masks.astype(bool)
    for step in steps:
        if step.foreground_component:
            out = out & _largest(np.any(out, axis=0))[None]
        for k in range(out.shape[0]) if step.classes is None else step.classes:
            if step.min_voxels > 0:
                out[k] = _remove_small(out[k], step.min_voxels)
            if step.largest_component:
                out[k] = _largest(out[k])
            if step.fill_holes:
                out[k] = ndimage.binary_fill_holes(out[k])
    return out.astype(np.uint8)
