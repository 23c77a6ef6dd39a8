"""Random data augmentation of a training patch: the image and its label move together.

TorchIO's split: :func:`draw_params` draws every random choice from the ``numpy.random.Generator`` passed in
and records it in an :class:`AugmentParams`; :func:`apply_params` is deterministic and calls the transforms
of :mod:`medseg.transforms`. :func:`augment` is the two in a row. The order and probabilities follow
nnU-Net v2: rotation, scaling (each with ``p_spatial``) and elastic deformation (``p_elastic``, off by
default) in one resampling, mirroring, Gaussian noise, Gaussian blur, brightness, contrast, simulated low
resolution (``p_low_res``), gamma. Spatial transforms resample the image linearly and the label with nearest
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

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medseg.config.augment import AugmentConfig
from medseg.errors import ConfigError
from medseg.transforms import intensity, spatial

__all__ = ["AugmentParams", "apply_params", "augment", "draw_params", "rotation_context"]

logger = logging.getLogger(__name__)


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
    elastic_alpha: float = 0.0  # 0: no elastic deformation; the field is regenerated from elastic_seed
    elastic_sigma: float = 0.0
    elastic_seed: int = 0
    low_res: tuple[float, ...] | None = None  # zoom per channel (1: unchanged)


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
    # drawn only when enabled, so that configurations without them keep the random stream of earlier versions
    elastic = config.p_elastic > 0 and rng.random() < config.p_elastic
    low_res = config.p_low_res > 0 and rng.random() < config.p_low_res
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
        elastic_alpha=float(rng.uniform(*config.elastic_alpha)) if elastic else 0.0,
        elastic_sigma=float(rng.uniform(*config.elastic_sigma)) if elastic else 0.0,
        elastic_seed=int(rng.integers(2**63)) if elastic else 0,
        low_res=_channels(rng, *config.low_res_zoom, n_channels) if low_res else None,
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
    if params.rotation or params.scale != 1.0 or params.elastic_alpha > 0:
        matrix = spatial.affine_matrix(params.rotation, params.scale, image.ndim - 1)
        shape = tuple(out_shape) if out_shape is not None else image.shape[1:]
        field = None
        if params.elastic_alpha > 0:
            rng = np.random.default_rng(params.elastic_seed)
            field = spatial.elastic_field(shape, params.elastic_alpha, params.elastic_sigma, rng)
        image, label = spatial.affine(image, label, matrix, out_shape, displacement=field)
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
    if params.low_res is not None:
        image = intensity.simulate_low_resolution(image, params.low_res)
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
