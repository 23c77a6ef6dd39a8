"""What a slice looks like on screen, as pure numpy (no Qt): intensity window/level, auto-contrast, class
colours and the label overlay.

CT is shown through a Hounsfield window (the presets ``medseg.HU_WINDOWS`` names for ``--normalization
window:NAME``); MR, X-ray and microscopy through auto-contrast (the 0.5/99.5 percentiles of the whole scan);
RGB images as they are.

Example:
    >>> window = Window.preset("lung")
    >>> window.low, window.high
    (-1350.0, 150.0)
    >>> to_uint8(np.array([[-2000.0, -600.0, 500.0]]), window).tolist()
    [[0, 128, 255]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import medseg

__all__ = ["CT_PRESETS", "Window", "blend_overlay", "class_colours", "to_rgb", "to_uint8"]

# the window presets the GUI offers for CT, by the names medseg.HU_WINDOWS uses
CT_PRESETS = ("lung", "soft-tissue", "bone", "brain")

# distinct colours for classes 1, 2, ... (index 0, the background, is never drawn)
_PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class Window:
    """Intensities ``[low, high]`` mapped to black..white."""

    low: float
    high: float

    @classmethod
    def preset(cls, name: str) -> Window:
        """A CT window by name (``medseg.HU_WINDOWS``: level and width in HU)."""
        level, width = medseg.HU_WINDOWS[name]
        return cls(level - width / 2, level + width / 2)

    @classmethod
    def auto(cls, image: np.ndarray, low: float = 0.5, high: float = 99.5) -> Window:
        """Auto-contrast: the ``low``/``high`` percentiles of ``image`` (a subsample of at most 2 M voxels)."""
        flat = np.asarray(image, dtype=np.float32).ravel()
        if flat.size > 2_000_000:
            flat = flat[:: flat.size // 2_000_000 + 1]
        finite = flat[np.isfinite(flat)]
        if finite.size == 0:
            return cls(0.0, 1.0)
        lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
        return cls(lo, hi if hi > lo else lo + 1.0)


def to_uint8(image: np.ndarray, window: Window) -> np.ndarray:
    """``image`` windowed to uint8: ``low`` -> 0, ``high`` -> 255, clipped, rounded."""
    scaled = (np.asarray(image, dtype=np.float32) - window.low) * (255.0 / (window.high - window.low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(image: np.ndarray, window: Window | None) -> np.ndarray:
    """An (H, W, 3) uint8 picture of a slice: grey ``(H, W)`` windowed, or RGB ``(3, H, W)`` as it is
    (uint8 values kept; other types windowed with ``window``)."""
    if image.ndim == 3:
        rgb = np.moveaxis(image, 0, -1)
        if rgb.dtype != np.uint8:
            rgb = to_uint8(rgb, window or Window.auto(rgb))
        return np.ascontiguousarray(rgb)
    grey = to_uint8(image, window or Window.auto(image))
    return np.repeat(grey[:, :, None], 3, axis=2)


def class_colours(n_classes: int) -> np.ndarray:
    """(n_classes, 3) uint8 RGB colours; row k is class k's (row 0, the background, is black)."""
    colours = np.zeros((n_classes, 3), np.uint8)
    for k in range(1, n_classes):
        colours[k] = _PALETTE[(k - 1) % len(_PALETTE)]
    return colours


def blend_overlay(
    rgb: np.ndarray, labels: np.ndarray, colours: np.ndarray, opacity: float, *, overlapping: bool = False
) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with each class painted in its colour at ``opacity`` (0..1).

    ``labels`` is (H, W) class indices (0 is left alone), or (K, H, W) masks for overlapping structures
    (drawn in order, so a later structure lies over an earlier one; structure k takes ``colours[k + 1]``,
    as row 0 is the background's). A pixel of class k becomes
    ``round((1 - opacity) * rgb + opacity * colours[k])``.
    """
    out = rgb.astype(np.float32)
    masks = [(k + 1, labels[k] > 0) for k in range(len(labels))] if overlapping else []
    if not overlapping:
        masks = [(int(k), labels == k) for k in np.unique(labels) if k != 0]
    for k, mask in masks:
        out[mask] = (1.0 - opacity) * out[mask] + opacity * colours[k].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
