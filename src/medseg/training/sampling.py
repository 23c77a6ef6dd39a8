"""Training patches cut from a preprocessed case, a set fraction of them centred on foreground.

A case is ``image`` ``(C, *spatial)`` float32 and ``label`` either ``(*spatial)`` class indices (0 =
background) or ``(K, *spatial)`` binary masks of possibly overlapping structures; 2D and 3D alike.
:func:`class_locations` lists (a subsample of) the voxels of each foreground class once per case so that
:meth:`PatchSampler.sample` need not scan the volume for every patch (nnU-Net's ``class_locations``).

Padding: where a patch reaches past the case, the image is padded with 0, which after z-score or
range normalisation is a plain intensity near the data mean or minimum, and the same value the spatial
augmentation fills with; the label is padded with 0 (background).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.errors import ConfigError

__all__ = ["PatchSampler", "class_locations"]

logger = logging.getLogger(__name__)


def class_locations(
    label: np.ndarray, spatial_ndim: int, rng: np.random.Generator, max_per_class: int = 10000
) -> dict[int, np.ndarray]:
    """Voxel coordinates of each foreground class, at most ``max_per_class`` per class.

    Classes with more voxels keep a subsample drawn uniformly without replacement (in raster order).

    Args:
        label: ``(*spatial)`` class indices or ``(K, *spatial)`` binary masks.
        spatial_ndim: number of spatial axes (2 or 3); tells the two label layouts apart.
        rng: draws the subsample.
        max_per_class: cap per class, to bound memory and time.

    Returns:
        ``{class: coords}`` with ``coords`` ``(N, spatial_ndim)`` int64, ``N >= 1``. Keys are the label values
        other than 0 for index maps, and ``k + 1`` for mask channel ``k``. Absent classes have no key.
    """
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
    if label.ndim == spatial_ndim:
        values = [int(v) for v in np.unique(label) if v != 0]
        masks = ((value, label == value) for value in values)
    elif label.ndim == spatial_ndim + 1:
        masks = ((k + 1, label[k] != 0) for k in range(label.shape[0]))
    else:
        raise ValueError(f"label {label.shape} has neither {spatial_ndim} nor {spatial_ndim + 1} axes")
    locations = {}
    for key, mask in masks:
        flat = np.flatnonzero(mask)
        if flat.size == 0:
            continue
        if flat.size > max_per_class:
            flat = np.sort(rng.choice(flat, size=max_per_class, replace=False))
        locations[key] = np.stack(np.unravel_index(flat, mask.shape), axis=1).astype(np.int64)
    return locations


@dataclass(frozen=True)
class PatchSampler:
    """Cut ``patch_size`` patches, a ``foreground_fraction`` of them centred on a foreground voxel.

    For a foreground patch a class present in the case is picked uniformly (so small structures are seen
    as often as large ones), then one of its voxels uniformly; the patch is centred on it and shifted to
    stay inside the case, which keeps the voxel inside the patch. Other patches are uniform random crops.
    A case smaller than the patch along an axis is placed at a random offset inside the patch and padded.

    ``context`` (default none) adds voxels around the patch for the spatial augmentation to rotate in
    (see :func:`medseg.transforms.augment.rotation_context`): the returned arrays are ``patch_size + context``
    large, the patch itself is their centred crop (start ``context // 2``), and the foreground voxel lies in
    that crop. Context beyond the case is padded.

    Example:
        >>> sampler = PatchSampler((32, 32))
        >>> rng = np.random.default_rng(0)
        >>> image, label = np.zeros((1, 50, 20), np.float32), np.zeros((50, 20), np.uint8)
        >>> patch_image, patch_label = sampler.sample(image, label, rng)
        >>> patch_image.shape, patch_label.shape
        ((1, 32, 32), (32, 32))
    """

    patch_size: tuple[int, ...]
    foreground_fraction: float = 1 / 3
    context: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.patch_size or any(int(p) != p or p < 1 for p in self.patch_size):
            raise ConfigError(f"patch_size = {self.patch_size!r} is invalid (give positive whole numbers)")
        if not 0 <= self.foreground_fraction <= 1:
            raise ConfigError(f"foreground_fraction = {self.foreground_fraction!r} must be in [0, 1]")
        if self.context and (len(self.context) != len(self.patch_size) or min(self.context) < 0):
            raise ConfigError(
                f"context = {self.context!r} is invalid (give one size >= 0 per axis of {self.patch_size})"
            )

    def sample(
        self,
        image: np.ndarray,
        label: np.ndarray,
        rng: np.random.Generator,
        class_locations: dict[int, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cut one patch from ``image`` ``(C, *spatial)`` and ``label`` ``(*spatial)`` or ``(K, *spatial)``.

        ``class_locations`` is the case's :func:`class_locations`; when ``None`` it is computed for the
        foreground patches (a full scan of the label, slow on big volumes).

        Returns:
            New arrays, image ``(C, *shape)`` and label ``(*shape)`` or ``(K, *shape)`` with the input dtypes,
            where ``shape = patch_size + context``.
        """
        spatial = self._check(image, label)
        low = [min(0, n - p) for n, p in zip(spatial, self.patch_size, strict=True)]
        high = [max(0, n - p) for n, p in zip(spatial, self.patch_size, strict=True)]
        foreground = rng.random() < self.foreground_fraction
        voxel = _foreground_voxel(label, len(spatial), class_locations, rng) if foreground else None
        if voxel is None:
            start = [int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high, strict=True)]
        else:  # centred on the voxel, shifted into [low, high], which keeps the voxel inside
            centred = [int(v) - p // 2 for v, p in zip(voxel, self.patch_size, strict=True)]
            start = [min(max(c, lo), hi) for c, lo, hi in zip(centred, low, high, strict=True)]
        context = self.context or (0,) * len(spatial)
        start = [s - c // 2 for s, c in zip(start, context, strict=True)]
        shape = [p + c for p, c in zip(self.patch_size, context, strict=True)]
        return _cut(image, start, shape), _cut(label, start, shape)

    def _check(self, image: np.ndarray, label: np.ndarray) -> tuple[int, ...]:
        spatial = tuple(image.shape[1:])
        if len(spatial) != len(self.patch_size):
            raise ConfigError(
                f"patch_size {self.patch_size} has {len(self.patch_size)} axes but the image {image.shape} "
                f"has {len(spatial)} spatial axes (use a {len(spatial)}D patch size for this dataset)"
            )
        if label.shape[label.ndim - len(spatial) :] != spatial or label.ndim not in (
            len(spatial),
            image.ndim,
        ):
            raise ValueError(f"label {label.shape} must be (*spatial) or (K, *spatial) for image {image.shape}")
        return spatial


def _foreground_voxel(
    label: np.ndarray,
    spatial_ndim: int,
    locations: dict[int, np.ndarray] | None,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A uniform voxel of a uniformly chosen present class; ``None`` when the case has no foreground."""
    if locations is None:
        locations = class_locations(label, spatial_ndim, rng)
    present = sorted(k for k, coords in locations.items() if len(coords))
    if not present:
        logger.debug("foreground patch requested but the case has no foreground: random crop")
        return None
    coords = locations[present[int(rng.integers(len(present)))]]
    return coords[int(rng.integers(len(coords)))]


def _cut(array: np.ndarray, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Window ``start .. start + shape`` over the last ``len(shape)`` axes, zero-padded outside the array."""
    ndim = len(shape)
    spatial = array.shape[array.ndim - ndim :]
    window: list[Any] = [...]
    pad = [(0, 0)] * (array.ndim - ndim)
    for s, size, n in zip(start, shape, spatial, strict=True):
        window.append(slice(max(s, 0), min(s + size, n)))
        pad.append((max(-s, 0), max(s + size - n, 0)))
    return np.pad(array[tuple(window)], pad, mode="constant", constant_values=0)
