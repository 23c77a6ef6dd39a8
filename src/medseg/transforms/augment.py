"""Random data augmentation of a training patch: the image and its label move together.

TorchIO's split: :func:`draw_params` draws every random choice from the ``numpy.random.Generator`` passed in
and records it in an :class:`AugmentParams`; :func:`apply_params` is deterministic and calls the transforms
of :mod:`medseg.transforms`. :func:`augment` is the two in a row. The order and probabilities follow
nnU-Net v2: rotation and scaling (each with ``p_spatial``), mirroring, Gaussian noise, Gaussian blur,
brightness, contrast, gamma. Spatial transforms resample the image linearly and the label with nearest
neighbour (``torch.nn.functional.grid_sample`` on the CPU, the faster of it and scipy; see
:mod:`medseg.transforms.spatial`); intensity transforms change only the image.

Rotating a patch brings in corners from outside it. As in nnU-Net, the sampler can cut a larger patch
(:func:`rotation_context` gives the extra size) and ``augment(..., out_shape=patch_size)`` crops the centre
after the spatial transform, so the corners hold real image instead of zero padding::

    sampler = PatchSampler(patch_size, context=rotation_context(patch_size, config))
    image, label = sampler.sample(case_image, case_label, rng, locations)
    image, label = augment(image, label, config, rng, out_shape=patch_size)
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.transforms import intensity, spatial

__all__ = ["AugmentConfig", "AugmentParams", "apply_params", "augment", "draw_params", "rotation_context"]

logger = logging.getLogger(__name__)

_TUPLE_FIELDS = ("flip_axes", "scale_range", "gamma_range", "blur_sigma")
_PROBABILITIES = ("p_spatial", "p_brightness", "p_contrast", "p_gamma", "p_noise", "p_blur")


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


@dataclass(frozen=True)
class AugmentParams:
    """What one call of :func:`draw_params` decided; ``None`` / empty / 1.0 means "not applied".

    Per-channel tuples have one value per image channel. ``rotation`` holds radians (one angle in 2D, one
    per axis in 3D). The noise itself is regenerated from ``noise_seed``.
    """

    flip_axes: tuple[int, ...] = ()
    rotation: tuple[float, ...] = ()
    scale: float = 1.0
    noise_std: float = 0.0
    noise_seed: int = 0
    blur_sigma: tuple[float, ...] | None = None
    brightness: tuple[float, ...] | None = None
    contrast: tuple[float, ...] | None = None
    gamma: tuple[float, ...] | None = None


def _draw_rotation(config: AugmentConfig, rng: np.random.Generator, ndim: int) -> tuple[float, ...]:
    limit = np.deg2rad(config.rotation_degrees)
    if ndim == 2:
        return (float(rng.uniform(-limit, limit)),)
    if config.rotate_in_plane_only:
        angles = [0.0, 0.0, 0.0]
        angles[config.through_plane_axis] = float(rng.uniform(-limit, limit))
        return tuple(angles)
    return tuple(float(a) for a in rng.uniform(-limit, limit, size=3))


def _draw_gamma(config: AugmentConfig, rng: np.random.Generator, n_channels: int) -> tuple[float, ...]:
    """nnU-Net: half the draws below 1, half above, so darkening and brightening are equally likely."""
    low, high = config.gamma_range
    below = rng.random(n_channels) < 0.5
    if low < 1 < high:
        draws = np.where(below, rng.uniform(low, 1.0, n_channels), rng.uniform(1.0, high, n_channels))
    else:
        draws = rng.uniform(low, high, n_channels)
    return tuple(float(g) for g in draws)


def _channels(rng: np.random.Generator, low: float, high: float, n: int) -> tuple[float, ...]:
    return tuple(float(v) for v in rng.uniform(low, high, n))


def draw_params(config: AugmentConfig, rng: np.random.Generator, n_channels: int, ndim: int) -> AugmentParams:
    """Draw every random decision for one patch with ``n_channels`` channels and ``ndim`` (2, 3) axes."""
    if ndim not in (2, 3):
        raise ValueError(f"augmentation supports 2D and 3D patches, got {ndim} spatial axes")
    if any(a >= ndim for a in config.flip_axes):
        raise ConfigError(f"augment.flip_axes = {config.flip_axes} names an axis the {ndim}D data lacks (drop it)")
    flips = tuple(a for a in config.flip_axes if rng.random() < 0.5)
    rotate = rng.random() < config.p_spatial and config.rotation_degrees > 0
    rotation = _draw_rotation(config, rng, ndim) if rotate else ()
    scale = float(rng.uniform(*config.scale_range)) if rng.random() < config.p_spatial else 1.0
    noise = rng.random() < config.p_noise
    blur = rng.random() < config.p_blur
    brightness, contrast = rng.random() < config.p_brightness, rng.random() < config.p_contrast
    gamma = rng.random() < config.p_gamma
    return AugmentParams(
        flip_axes=flips,
        rotation=rotation,
        scale=scale,
        noise_std=float(rng.uniform(0, config.noise_std)) if noise else 0.0,
        noise_seed=int(rng.integers(2**63)) if noise else 0,
        blur_sigma=_channels(rng, *config.blur_sigma, n_channels) if blur else None,
        brightness=_channels(rng, 1 - config.brightness, 1 + config.brightness, n_channels) if brightness else None,
        contrast=_channels(rng, 1 - config.contrast, 1 + config.contrast, n_channels) if contrast else None,
        gamma=_draw_gamma(config, rng, n_channels) if gamma else None,
    )


def _check_pair(image: np.ndarray, label: np.ndarray) -> None:
    ndim = image.ndim - 1
    if label.ndim not in (ndim, ndim + 1) or label.shape[label.ndim - ndim :] != image.shape[1:]:
        raise ValueError(
            f"label {label.shape} must be (*spatial) or (K, *spatial) for image (C, *spatial) = {image.shape}"
        )


def apply_params(
    image: np.ndarray,
    label: np.ndarray,
    params: AugmentParams,
    out_shape: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply recorded parameters: spatial transform (and centre crop to ``out_shape``), flips, intensity.

    Args:
        image: ``(C, *spatial)``, any float dtype.
        label: ``(*spatial)`` class indices or ``(K, *spatial)`` binary masks.
        params: from :func:`draw_params`.
        out_shape: spatial output size, at most ``spatial`` (default: unchanged).

    Returns:
        New arrays: image ``(C, *out_shape)`` float32, label ``(..., *out_shape)`` of the label's dtype.
        The inputs are not modified.
    """
    _check_pair(image, label)
    source_image, source_label = image, label
    image = np.asarray(image, dtype=np.float32)
    if params.rotation or params.scale != 1.0:
        matrix = spatial.affine_matrix(params.rotation, params.scale, image.ndim - 1)
        image, label = spatial.affine(image, label, matrix, out_shape)
    elif out_shape is not None:
        image, label = spatial.centre_crop(image, label, out_shape)
    if params.flip_axes:
        image, label = spatial.flip(image, label, params.flip_axes)
    if params.noise_std > 0:
        image = intensity.add_gaussian_noise(image, params.noise_std, np.random.default_rng(params.noise_seed))
    if params.blur_sigma is not None:
        image = intensity.gaussian_blur(image, params.blur_sigma)
    if params.brightness is not None:
        image = intensity.scale_brightness(image, params.brightness)
    if params.contrast is not None:
        image = intensity.adjust_contrast(image, params.contrast)
    if params.gamma is not None:
        image = intensity.adjust_gamma(image, params.gamma)
    if np.shares_memory(image, source_image):
        image = image.copy()
    if np.shares_memory(label, source_label):
        label = label.copy()
    return image, label


def augment(
    image: np.ndarray,
    label: np.ndarray,
    config: AugmentConfig,
    rng: np.random.Generator,
    out_shape: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one patch: ``apply_params(image, label, draw_params(config, rng, C, ndim), out_shape)``.

    Shapes: image ``(C, *spatial) -> (C, *out_shape)`` float32; label ``(*spatial)`` or ``(K, *spatial)``
    likewise, dtype and value set kept. ``out_shape`` defaults to ``spatial``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> image, label = np.zeros((1, 8, 8), np.float32), np.zeros((8, 8), np.uint8)
        >>> image, label = augment(image, label, AugmentConfig(), rng)
        >>> image.shape, label.dtype
        ((1, 8, 8), dtype('uint8'))
    """
    params = draw_params(config, rng, n_channels=image.shape[0], ndim=image.ndim - 1)
    logger.debug("augment: %s", params)
    return apply_params(image, label, params, out_shape)


def rotation_context(patch_size: Sequence[int], config: AugmentConfig) -> tuple[int, ...]:
    """Extra voxels per axis to sample around a patch so that rotating and zooming out fill it with image.

    The extent of the patch's box is maximised over a grid of angles within ``±rotation_degrees`` (7 per
    rotated axis) at the smallest scale; at intermediate angles it can be exceeded by a voxel or so.
    Zero when ``p_spatial`` is 0.
    """
    ndim = len(patch_size)
    if config.p_spatial == 0 or ndim not in (2, 3):
        return (0,) * ndim
    limit = np.deg2rad(config.rotation_degrees)
    steps = np.linspace(-limit, limit, 7)
    if ndim == 2:
        angle_sets: Sequence[Sequence[float]] = [(a,) for a in steps]
    elif config.rotate_in_plane_only:
        angle_sets = [tuple(a if i == config.through_plane_axis % 3 else 0.0 for i in range(3)) for a in steps]
    else:
        angle_sets = list(itertools.product(steps, repeat=3))
    half = np.array(patch_size, dtype=np.float64) / 2
    corners = np.array(list(itertools.product(*[(-h, h) for h in half]))).T  # (ndim, 2**ndim)
    min_scale = min(config.scale_range[0], 1.0)
    extent = np.zeros(ndim)
    for angles in angle_sets:
        moved = spatial.affine_matrix(angles, min_scale, ndim) @ corners
        extent = np.maximum(extent, 2 * np.abs(moved).max(axis=1))
    return tuple(max(0, int(np.ceil(e - 1e-6)) - p) for e, p in zip(extent, patch_size, strict=True))
