"""Post-processing of predicted segmentations: connected components and holes.

Two layers, both pure (inputs are never modified):

* mask functions on one boolean mask of shape ``(*spatial)``: :func:`largest_component_mask`,
  :func:`remove_small_components_mask`, :func:`fill_holes_mask`. Use them per channel for
  overlapping structures stored as a binary stack ``(C, *spatial)``, or via :func:`apply_postprocessing_mask`.
* label-map functions on an integer label map ``(*spatial)`` (0 = background) that apply the mask
  functions per class; ``classes=None`` means every non-zero label present. Removed voxels become 0.

Connectivity: foreground components use full connectivity (8 neighbours in 2D, 26 in 3D; nnU-Net's
choice), so voxels touching only at a corner belong to one component. Holes use the complementary face
connectivity (4 in 2D, 6 in 3D) for the background: a hole is a background region that does not reach
the image border through face-adjacent background voxels, so a diagonal gap in an 8-connected ring
does not let the inside leak out.

Holes in a label map: a background region is filled with class ``c`` only if it does not reach the image
border and every voxel face-adjacent to it is class ``c``. Regions bordered by two or more classes (say
background between an organ and its tumour) are left alone, so the result does not depend on the order
of the classes. On a single-class label map this equals ``scipy.ndimage.binary_fill_holes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy import ndimage

from medseg.config.postprocessing import PostProcessing
from medseg.errors import ConfigError

__all__ = [
    "apply_postprocessing",
    "apply_postprocessing_mask",
    "apply_steps",
    "apply_steps_masks",
    "fill_holes",
    "fill_holes_mask",
    "keep_largest_component",
    "largest_component_mask",
    "remove_small_components",
    "remove_small_components_mask",
]


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full-connectivity component ids of ``mask`` and the size of each id (index 0 = background)."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    ids, _ = ndimage.label(mask, structure=structure)
    return ids, np.bincount(ids.ravel())


def largest_component_mask(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest connected component of a mask ``(*spatial)``; ties keep the first in C order."""
    mask = np.asarray(mask, dtype=bool)
    ids, sizes = _components(mask)
    if sizes.size <= 1:
        return mask.copy()
    return ids == int(np.argmax(sizes[1:])) + 1


def remove_small_components_mask(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Remove connected components of fewer than ``min_voxels`` voxels from a mask ``(*spatial)``."""
    _check_min_voxels(min_voxels)
    mask = np.asarray(mask, dtype=bool)
    ids, sizes = _components(mask)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[ids]


def fill_holes_mask(mask: np.ndarray) -> np.ndarray:
    """Fill background regions of a mask ``(*spatial)`` that do not reach the border (face connectivity)."""
    return ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))


def _check_min_voxels(min_voxels: int) -> None:
    if min_voxels < 0:
        raise ConfigError(f"min_voxels={min_voxels} is negative (use 0 to keep every component)")


def _classes(labels: np.ndarray, classes: Sequence[int] | None) -> list[int]:
    if classes is None:
        return [int(c) for c in np.unique(labels) if c != 0]
    if 0 in classes:
        raise ConfigError(f"classes {list(classes)} include 0, the background (list foreground labels only)")
    return [int(c) for c in classes]


def keep_largest_component(labels: np.ndarray, classes: Sequence[int] | None = None) -> np.ndarray:
    """Per class of a label map ``(*spatial)``, keep its largest component; the others become 0."""
    out = np.array(labels, copy=True)
    for c in _classes(out, classes):
        mask = out == c
        out[mask & ~largest_component_mask(mask)] = 0
    return out


def remove_small_components(labels: np.ndarray, min_voxels: int, classes: Sequence[int] | None = None) -> np.ndarray:
    """Per class of a label map ``(*spatial)``, set components smaller than ``min_voxels`` to 0."""
    _check_min_voxels(min_voxels)
    out = np.array(labels, copy=True)
    for c in _classes(out, classes):
        mask = out == c
        out[mask & ~remove_small_components_mask(mask, min_voxels)] = 0
    return out


def _touches_border(regions: np.ndarray, n_regions: int) -> np.ndarray:
    """Boolean per region id: does the region reach the image border?"""
    on_border = np.zeros(n_regions + 1, dtype=bool)
    for axis in range(regions.ndim):
        on_border[np.take(regions, [0, -1], axis=axis)] = True
    return on_border


def fill_holes(labels: np.ndarray, classes: Sequence[int] | None = None) -> np.ndarray:
    """Fill background holes enclosed by a single class of a label map ``(*spatial)``.

    A hole (face-connected background region not reaching the border) is filled with class ``c`` when
    every voxel face-adjacent to it has class ``c`` and ``c`` is in ``classes``; see the module docstring.
    """
    out = np.array(labels, copy=True)
    wanted = _classes(out, classes)
    face = ndimage.generate_binary_structure(out.ndim, 1)
    background = out == 0
    regions, n_regions = ndimage.label(background, structure=face)
    if n_regions == 0 or not wanted:
        return out
    n_neighbours = np.zeros(n_regions + 1, dtype=np.int64)
    owner = np.zeros(n_regions + 1, dtype=out.dtype)
    for c in _classes(out, None):  # every class present counts as a neighbour, not only `wanted`
        near = ndimage.binary_dilation(out == c, structure=face) & background
        ids = np.unique(regions[near])
        n_neighbours[ids] += 1
        owner[ids] = c
    fill = (n_neighbours == 1) & ~_touches_border(regions, n_regions) & np.isin(owner, wanted)
    fill[0] = False
    selected = fill[regions]
    out[selected] = owner[regions[selected]]
    return out


def apply_postprocessing(labels: np.ndarray, config: PostProcessing) -> np.ndarray:
    """Apply ``config`` to a label map ``(*spatial)``; returns a new array of the same dtype."""
    out = np.array(labels, copy=True)
    if config.foreground_component:
        out[~largest_component_mask(out != 0)] = 0
    if config.min_voxels > 0:
        out = remove_small_components(out, config.min_voxels, config.classes)
    if config.largest_component:
        out = keep_largest_component(out, config.classes)
    if config.fill_holes:
        out = fill_holes(out, config.classes)
    return out


def apply_postprocessing_mask(mask: np.ndarray, config: PostProcessing) -> np.ndarray:
    """Apply ``config`` to one boolean mask ``(*spatial)`` (``config.classes`` is ignored; so is
    ``foreground_component``, which on one mask is ``largest_component``)."""
    out = np.asarray(mask, dtype=bool)
    if config.min_voxels > 0:
        out = remove_small_components_mask(out, config.min_voxels)
    if config.largest_component:
        out = largest_component_mask(out)
    if config.fill_holes:
        out = fill_holes_mask(out)
    return out.copy() if out is mask else out


def apply_steps(labels: np.ndarray, steps: Sequence[PostProcessing]) -> np.ndarray:
    """Apply each step of ``steps`` in order to a label map ``(*spatial)`` (a new array)."""
    out = np.array(labels, copy=True)
    for step in steps:
        out = apply_postprocessing(out, step)
    return out


def apply_steps_masks(masks: np.ndarray, steps: Sequence[PostProcessing]) -> np.ndarray:
    """Apply ``steps`` in order to overlapping structures ``(K, *spatial)`` (uint8 or bool, a new uint8 array):
    a step's ``classes`` are structure indices (``None``: every structure); ``foreground_component`` keeps
    the largest component of the union of the structures."""
    out = np.asarray(masks).astype(bool)
    for step in steps:
        if step.foreground_component:
            out = out & largest_component_mask(np.any(out, axis=0))[None]
        per_structure = replace(step, foreground_component=False)
        for k in range(out.shape[0]) if step.classes is None else step.classes:
            out[k] = apply_postprocessing_mask(out[k], per_structure)
    return out.astype(np.uint8)
