"""Forward preprocessing, as medseg's ``preprocessing/forward.py`` does it: crop to the non-zero region,
normalise each channel, resample to the planned spacing. :class:`Grid` records what the inverse needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg_runtime.errors import BundleError
from medseg_runtime.manifest import Configuration, Normalization
from medseg_runtime.resample import resample

__all__ = ["Grid", "nonzero_bbox", "normalize", "preprocess"]


@dataclass(frozen=True)
class Grid:
    """The scan's shape, the crop (start, stop) inside it and the network-grid shape of the crop."""

    original_shape: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    resampled_shape: tuple[int, ...]

    @property
    def crop(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    @property
    def cropped_shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))


def nonzero_bbox(image: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bounding box (start, stop) of voxels non-zero in any channel of ``image`` (C, *spatial)."""
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return tuple(0 for _ in mask.shape), tuple(mask.shape)
    lo, hi = [], []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        lo.append(int(hits[0]))
        hi.append(int(hits[-1]) + 1)
    return tuple(lo), tuple(hi)


def _unit(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """``[low, high]`` mapped to [0, 1], clipped; in place."""
    np.clip(channel, low, high, out=channel)
    channel -= low
    channel /= max(high - low, 1e-8)
    return channel


def _normalize_channel(channel: np.ndarray, norm: Normalization) -> None:
    """Normalise one float32 channel in place (the same float32 operations as medseg's, without temporaries)."""
    if norm.scheme == "ct":
        np.clip(channel, norm.clip_low, norm.clip_high, out=channel)
        channel -= norm.mean
        channel /= norm.std
    elif norm.scheme in ("imagenet", "rescale"):
        low, high = norm.clip_low, norm.clip_high
        if norm.scheme == "rescale" or low == high:
            low, high = (float(v) for v in np.percentile(channel, (0.5, 99.5)))
        _unit(channel, low, high)
        if norm.scheme == "imagenet":
            channel -= norm.mean
            channel /= norm.std
    elif norm.scheme == "window":
        _unit(channel, norm.clip_low, norm.clip_high)
    elif norm.scheme == "zscore":
        mean, std = channel.mean(), max(float(channel.std()), 1e-8)
        channel -= mean
        channel /= std
    else:
        raise BundleError(f"normalisation scheme {norm.scheme!r} is unknown to this runtime; update medseg-runtime")


def normalize(image: np.ndarray, norms: tuple[Normalization, ...]) -> np.ndarray:
    """Normalise each channel of ``image`` (C, *spatial) as planned; float32."""
    out = np.empty(image.shape, dtype=np.float32)
    for c, norm in enumerate(norms):
        out[c] = image[c]
        _normalize_channel(out[c], norm)
    return out


def preprocess(image: np.ndarray, spacing: tuple[float, ...], config: Configuration) -> tuple[np.ndarray, Grid]:
    """Crop, normalise and resample ``image`` (C, *spatial) with ``spacing`` (mm, array order) for ``config``."""
    shape = tuple(image.shape[1:])
    start, stop = nonzero_bbox(image) if config.crop_to_nonzero else ((0,) * len(shape), shape)
    cropped = image[(slice(None), *(slice(a, b) for a, b in zip(start, stop, strict=True)))]
    new_shape = tuple(
        max(1, round(n * s / t)) for n, s, t in zip(cropped.shape[1:], spacing, config.target_spacing, strict=True)
    )
    array = resample(normalize(cropped, config.normalization), new_shape)
    return np.ascontiguousarray(array, dtype=np.float32), Grid(shape, tuple(start), tuple(stop), new_shape)
