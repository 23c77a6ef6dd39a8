"""Deterministic transforms: spatial ones move image and label together, intensity ones touch the image only.

The random pipeline that draws their parameters is :func:`medseg.transforms.augment.augment`.
"""

from __future__ import annotations

from medseg.transforms.intensity import (
    add_gaussian_noise,
    adjust_contrast,
    adjust_gamma,
    gaussian_blur,
    scale_brightness,
    simulate_low_resolution,
)
from medseg.transforms.spatial import affine, affine_matrix, centre_crop, elastic_field, flip, rotation_matrix

__all__ = [
    "add_gaussian_noise",
    "adjust_contrast",
    "adjust_gamma",
    "affine",
    "affine_matrix",
    "centre_crop",
    "elastic_field",
    "flip",
    "gaussian_blur",
    "rotation_matrix",
    "scale_brightness",
    "simulate_low_resolution",
]
