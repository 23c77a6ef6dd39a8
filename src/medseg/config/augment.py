"""Ranges and probabilities of the training augmentation (:class:`AugmentConfig`), as data for ``plans.json``.

The pipeline that draws and applies them is :mod:`medseg.transforms.augment`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medseg.errors import ConfigError

__all__ = ["AugmentConfig"]


_TUPLE_FIELDS = (
    "flip_axes",
    "scale_range",
    "gamma_range",
    "blur_sigma",
    "elastic_alpha",
    "elastic_sigma",
    "low_res_zoom",
)


_PROBABILITIES = ("p_spatial", "p_brightness", "p_contrast", "p_gamma", "p_noise", "p_blur", "p_elastic", "p_low_res")


def _is_range(minimum: float) -> Callable[[tuple[float, ...]], bool]:
    return lambda pair: len(pair) == 2 and minimum <= pair[0] <= pair[1]


def _is_axis(value: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_probability(value: float) -> bool:
    return 0 <= value <= 1


# (field, check, what the check requires) for AugmentConfig.__post_init__
_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("flip_axes", lambda v: len(set(v)) == len(v) and all(_is_axis(a) for a in v), "distinct axes >= 0"),
    ("rotation_degrees", lambda v: 0 <= v <= 180, "in [0, 180]"),
    ("rotate_in_plane_only", lambda v: isinstance(v, bool), "true or false"),
    ("through_plane_axis", lambda v: isinstance(v, int) and -3 <= v <= 2, "an axis in -3..2"),
    ("scale_range", _is_range(1e-6), "(low, high) with 0 < low <= high"),
    ("gamma_range", _is_range(1e-6), "(low, high) with 0 < low <= high"),
    ("blur_sigma", _is_range(0.0), "(low, high) with 0 <= low <= high"),
    ("brightness", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("contrast", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("noise_std", lambda v: v >= 0, ">= 0"),
    ("elastic_alpha", _is_range(0.0), "(low, high) with 0 <= low <= high"),
    ("elastic_sigma", _is_range(1e-6), "(low, high) with 0 < low <= high"),
    ("low_res_zoom", lambda v: _is_range(1e-6)(v) and v[1] <= 1, "(low, high) with 0 < low <= high <= 1"),
    *((name, _is_probability, "a probability in [0, 1]") for name in _PROBABILITIES),
)


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of the augmentation pipeline (defaults: nnU-Net v2).

    Example:
        >>> config = AugmentConfig.from_dict({"rotation_degrees": 30, "flip_axes": [0, 1, 2]})
        >>> config.flip_axes
        (0, 1, 2)
    """

    flip_axes: tuple[int, ...] = (0, 1)  # spatial axes, each mirrored with probability 0.5
    rotation_degrees: float = 15.0  # uniform in ±degrees; 2D: in-plane; 3D: around each axis
    rotate_in_plane_only: bool = False  # 3D anisotropic data: rotate around through_plane_axis only
    through_plane_axis: int = 0  # the low-resolution axis: z, axis 0 of medseg's (z, y, x) arrays
    scale_range: tuple[float, float] = (0.85, 1.25)  # zoom factor, > 1 enlarges structures
    p_spatial: float = 0.2  # probability of a rotation, and independently of a scaling, per patch
    brightness: float = 0.25  # multiplier uniform in 1 ± brightness, per channel
    p_brightness: float = 0.15
    contrast: float = 0.25  # contrast factor uniform in 1 ± contrast, per channel
    p_contrast: float = 0.15
    gamma_range: tuple[float, float] = (0.7, 1.5)  # half the draws below 1, half above, per channel
    p_gamma: float = 0.3
    noise_std: float = 0.1  # noise standard deviation uniform in (0, noise_std)
    p_noise: float = 0.1
    blur_sigma: tuple[float, float] = (0.5, 1.0)  # voxels, per channel
    p_blur: float = 0.2
    # elastic deformation (batchgenerators' rule): a displacement field of uniform noise in [-1, 1] smoothed
    # by a Gaussian of sigma voxels, times alpha; off by default, as in nnU-Net v2
    elastic_alpha: tuple[float, float] = (0.0, 200.0)
    elastic_sigma: tuple[float, float] = (9.0, 13.0)
    p_elastic: float = 0.0
    # simulated low resolution: each channel down-sampled by a zoom in the range (nearest), then back up
    # (linear); plans written by medseg turn it on with nnU-Net's p = 0.25, older plans keep it off
    low_res_zoom: tuple[float, float] = (0.5, 1.0)
    p_low_res: float = 0.0

    def __post_init__(self) -> None:
        for name, check, requirement in _RULES:
            value = getattr(self, name)
            try:
                ok = check(value)
            except TypeError:  # e.g. a string where a number belongs
                ok = False
            if not ok:
                raise ConfigError(f"augment.{name} = {value!r} is invalid (must be {requirement})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentConfig:
        """Build from a dict like ``to_dict()`` writes; missing keys take defaults, unknown keys fail."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"augment: unknown key(s) {unknown} (valid keys: {', '.join(names)})")
        values: dict[str, Any] = {
            k: tuple(v) if k in _TUPLE_FIELDS and isinstance(v, Sequence) else v for k, v in data.items()
        }
        return cls(**values)
