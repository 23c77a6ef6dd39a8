"""Deterministic intensity transforms: they change the image only, never the label.

Each function takes ``image`` ``(C, *spatial)`` and per-channel parameters ``(C,)`` (a scalar is broadcast
to all channels), returns a new float32 array of the same shape and leaves its input unchanged.
The random pipeline in :mod:`medseg.transforms.augment` draws the parameters (nnU-Net's ranges).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = [
    "add_gaussian_noise",
    "adjust_contrast",
    "adjust_gamma",
    "gaussian_blur",
    "scale_brightness",
    "simulate_low_resolution",
]

_EPS = 1e-7


def _per_channel(values: float | Sequence[float], image: np.ndarray) -> np.ndarray:
    """Broadcast shape ``(C, 1, ..., 1)`` for per-channel parameters."""
    array = np.broadcast_to(np.asarray(values, dtype=np.float32), (image.shape[0],))
    return array.reshape((-1,) + (1,) * (image.ndim - 1))


def _spatial_axes(image: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, image.ndim))


def scale_brightness(image: np.ndarray, factors: float | Sequence[float]) -> np.ndarray:
    """Multiply each channel by its factor: ``x * f``."""
    return (image * _per_channel(factors, image)).astype(np.float32, copy=False)


def adjust_contrast(image: np.ndarray, factors: float | Sequence[float]) -> np.ndarray:
    """Stretch each channel about its mean, ``(x - mean) * f + mean``, clipped to the channel's old range.

    The clipping (nnU-Net's ``preserve_range``) keeps a contrast increase from inventing intensities the
    scanner never produced.
    """
    axes = _spatial_axes(image)
    mean = image.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    low, high = image.min(axis=axes, keepdims=True), image.max(axis=axes, keepdims=True)
    stretched = (image - mean) * _per_channel(factors, image) + mean
    return np.clip(stretched, low, high).astype(np.float32, copy=False)


def adjust_gamma(image: np.ndarray, gammas: float | Sequence[float]) -> np.ndarray:
    """Gamma on the range-normalised channel, range restored: ``((x - lo) / span) ** g * span + lo``.

    ``span = hi - lo``. Minimum and maximum of each channel are kept; ``g < 1`` brightens mid-tones,
    ``g > 1`` darkens them. Same formula as ``monai.transforms.AdjustContrast``.
    """
    axes = _spatial_axes(image)
    low = image.min(axis=axes, keepdims=True)
    span = image.max(axis=axes, keepdims=True) - low
    unit = (image - low) / (span + _EPS)
    return (np.power(unit, _per_channel(gammas, image)) * span + low).astype(np.float32, copy=False)


def add_gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``std`` drawn from ``rng``."""
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    return (image + noise * np.float32(std)).astype(np.float32, copy=False)


def gaussian_blur(image: np.ndarray, sigmas: float | Sequence[float]) -> np.ndarray:
    """Blur each channel with an isotropic Gaussian of its sigma (voxels); channels are not mixed."""
    sigma = np.broadcast_to(np.asarray(sigmas, dtype=np.float64), (image.shape[0],))
    out = np.empty(image.shape, dtype=np.float32)
    for channel, s in enumerate(sigma):
        ndimage.gaussian_filter(image[channel], sigma=float(s), output=out[channel], mode="nearest")
    return out


def simulate_low_resolution(image: np.ndarray, zooms: float | Sequence[float]) -> np.ndarray:
    """Per channel, down-sample ``(C, *spatial)`` by ``zoom`` (nearest neighbour, at least 1 voxel per axis)
    and interpolate back to the original size (linear), as a scan acquired at a coarser resolution would look
    (nnU-Net's SimulateLowResolutionTransform). A zoom of 1 leaves the channel unchanged."""
    out = np.array(image, dtype=np.float32, copy=True)
    spatial = out.shape[1:]
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
    for c, zoom in enumerate(np.broadcast_to(np.asarray(zooms, dtype=np.float64), (out.shape[0],))):
        if zoom >= 1:
            continue
        small = tuple(max(1, round(s * float(zoom))) for s in spatial)
        channel = torch.from_numpy(out[c])[None, None]
        down = F.interpolate(channel, size=small, mode="nearest")
        out[c] = F.interpolate(down, size=spatial, mode=mode, align_corners=False)[0, 0].numpy()
    return out
