"""The U-Net's topology as data: :class:`UNetConfig` and the two presets that fill it.

This module is pure Python (no torch), so planning code and ``plans.json`` readers can use it without the
deep-learning stack. The network itself is :class:`medseg.models.unet.UNet`.

A config lists, per resolution level (level 0 is full resolution, the last level is the bottleneck), the
number of feature maps, the convolution kernel size per axis and the stride per axis that brings the
previous level down to this one (``strides[0]`` is all ones). Anisotropic data get e.g. kernel ``(1, 3, 3)``
and stride ``(1, 2, 2)``.

Example:
    >>> config = classic_config(2, in_channels=1, out_channels=2)
    >>> config.features, config.divisor
    ((64, 128, 256, 512, 1024), (16, 16))
    >>> UNetConfig.from_dict(config.to_dict()) == config
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from medseg.errors import ConfigError

if TYPE_CHECKING:
    from medseg.models.configs import ModelInputs

__all__ = [
    "ACTIVATIONS",
    "DOWNSAMPLES",
    "MODEL_PRESETS",
    "NORMS",
    "UPSAMPLES",
    "UNetConfig",
    "classic_config",
    "nnunet_config",
    "plan_classic_unet",
    "plan_unet",
]

NORMS: tuple[str, ...] = ("instance", "batch")
ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "relu")
DOWNSAMPLES: tuple[str, ...] = ("conv", "maxpool")
UPSAMPLES: tuple[str, ...] = ("transpose", "interpolate")
MODEL_PRESETS: tuple[str, ...] = ("classic", "nnunet")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"UNetConfig.{name} = {value!r} must be a positive integer")
    return value


def _per_level(name: str, value: Any, ndim: int, levels: int) -> tuple[tuple[int, ...], ...]:
    """Check a per-level, per-axis table and return it as nested tuples."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != levels:
        raise ConfigError(
            f"UNetConfig.{name} = {value!r} must have one entry per level ({levels}, as many as features)"
        )
    rows = []
    for level, row in enumerate(value):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != ndim:
            raise ConfigError(
                f"UNetConfig.{name}[{level}] = {row!r} must have one entry per spatial axis ({ndim}, ndim)"
            )
        rows.append(tuple(_positive_int(f"{name}[{level}]", v) for v in row))
    return tuple(rows)


def _known(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"UNetConfig.{name} = {value!r} is unknown; choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class UNetConfig:
    """Topology of a 2D or 3D U-Net, one entry per resolution level (level 0 = full resolution).

    Sequences are stored as tuples (lists are accepted and converted), so configs compare and hash by value.
    ``downsample='conv'`` makes the first convolution of each level strided; ``'maxpool'`` max-pools with
    kernel = stride before the level's convolutions. ``upsample='transpose'`` uses a transposed convolution
    with kernel = stride; ``'interpolate'`` uses (bi/tri)linear interpolation followed by a 1x1 convolution.
    """

    ndim: int
    in_channels: int
    out_channels: int
    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    norm: str = "instance"
    activation: str = "leaky_relu"
    downsample: str = "conv"
    upsample: str = "transpose"
    convs_per_level: int = 2
    deep_supervision: bool = True
    name: str = "unet"

    # the registry names this config class serves (see medseg.models.registry and medseg.serial)
    NAMES: ClassVar[tuple[str, ...]] = ("unet", "classic-unet")

    def __post_init__(self) -> None:
        if self.name not in self.NAMES:
            raise ConfigError(f"UNetConfig.name = {self.name!r} is not one of {', '.join(self.NAMES)}")
        if self.ndim not in (2, 3) or isinstance(self.ndim, bool):
            raise ConfigError(f"UNetConfig.ndim = {self.ndim!r} must be 2 or 3 (spatial dimensions)")
        for name in ("in_channels", "out_channels", "convs_per_level"):
            _positive_int(name, getattr(self, name))
        features = self.features
        if isinstance(features, (str, bytes)) or not isinstance(features, Sequence) or len(features) < 2:
            raise ConfigError(f"UNetConfig.features = {features!r} must list at least 2 levels, e.g. (32, 64)")
        features = tuple(_positive_int(f"features[{i}]", f) for i, f in enumerate(features))
        kernels = _per_level("kernel_sizes", self.kernel_sizes, self.ndim, len(features))
        strides = _per_level("strides", self.strides, self.ndim, len(features))
        if any(k % 2 == 0 for row in kernels for k in row):
            raise ConfigError(f"UNetConfig.kernel_sizes = {kernels} must be odd (1, 3, 5, ...) to keep sizes")
        if any(s != 1 for s in strides[0]):
            raise ConfigError(f"UNetConfig.strides[0] = {strides[0]} must be all ones (level 0 is full size)")
        _known("norm", self.norm, NORMS)
        _known("activation", self.activation, ACTIVATIONS)
        _known("downsample", self.downsample, DOWNSAMPLES)
        _known("upsample", self.upsample, UPSAMPLES)
        if not isinstance(self.deep_supervision, bool):
            raise ConfigError(f"UNetConfig.deep_supervision = {self.deep_supervision!r} must be true or false")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "kernel_sizes", kernels)
        object.__setattr__(self, "strides", strides)

    @property
    def n_outputs(self) -> int:
        """How many outputs the network returns in training: full resolution plus each deep-supervision
        level above the two coarsest (nnU-Net's choice), or 1 without deep supervision."""
        return max(len(self.features) - 2, 1) if self.deep_supervision else 1

    @property
    def divisor(self) -> tuple[int, ...]:
        """Product of the strides per axis: spatial sizes that are multiples of it need no padding."""
        return tuple(math.prod(row[axis] for row in self.strides) for axis in range(self.ndim))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {field.name: _to_lists(getattr(self, field.name)) for field in dataclasses.fields(UNetConfig)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be a JSON object (dict), got {type(d).__name__}")
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"unknown model config key(s) {unknown}; known keys are {sorted(fields)}")
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise ConfigError(f"model config lacks key(s) {missing}; add them (see UNetConfig)")
        return cls(**d)


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def classic_config(
    ndim: int,
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 5,
    base_features: int = 64,
    upsample: str = "interpolate",
    deep_supervision: bool = False,
) -> UNetConfig:
    """The original U-Net (Ronneberger et al. 2015) with 'same' padding.

    ``depth`` levels with features doubling from ``base_features`` (64 -> 1024 for depth 5), 3x3(x3) kernels,
    batch norm, ReLU, 2x max-pooling. With ``upsample='transpose'`` and 2D, in=1, out=2 it has 31,036,546
    parameters, as the common PyTorch re-implementations.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise ConfigError(f"classic_config depth = {depth!r} must be an integer >= 2 (5 in the paper)")
    return UNetConfig(
        ndim=ndim,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(base_features * 2**level for level in range(depth)),
        kernel_sizes=((3,) * ndim,) * depth,
        strides=((1,) * ndim,) + ((2,) * ndim,) * (depth - 1),
        norm="batch",
        activation="relu",
        downsample="maxpool",
        upsample=upsample,
        deep_supervision=deep_supervision,
        name="classic-unet",
    )


def _pool_and_kernel_sizes(
    patch_size: Sequence[int], spacing: Sequence[float], min_size: int
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Strides and kernel sizes per level, following nnU-Net's ``get_pool_and_conv_props``."""
    ndim = len(patch_size)
    size, current_spacing = [float(s) for s in patch_size], [float(s) for s in spacing]
    kernel = [1] * ndim
    strides: list[tuple[int, ...]] = [(1,) * ndim]
    kernels: list[tuple[int, ...]] = []
    while True:
        big_enough = [a for a in range(ndim) if size[a] >= 2 * min_size]
        if not big_enough:
            break
        finest = min(current_spacing[a] for a in big_enough)
        axes = [a for a in big_enough if current_spacing[a] / finest < 2]
        if len(axes) == 1 and size[axes[0]] < 3 * min_size:
            break  # pooling a single axis only pays off while it stays clearly above min_size
        finest_all = min(current_spacing)
        kernel = [3 if k == 3 or current_spacing[a] / finest_all < 2 else 1 for a, k in enumerate(kernel)]
        kernels.append(tuple(kernel))
        strides.append(tuple(2 if a in axes else 1 for a in range(ndim)))
        for a in axes:
            current_spacing[a] *= 2
            size[a] = math.ceil(size[a] / 2)
    kernels.append((3,) * ndim)  # the bottleneck always uses 3x3(x3)
    return strides, kernels


def nnunet_config(
    ndim: int,
    in_channels: int,
    out_channels: int,
    patch_size: Sequence[int],
    spacing: Sequence[float],
    *,
    base_features: int = 32,
    max_features: int | None = None,
    min_size: int = 4,
) -> UNetConfig:
    """nnU-Net's topology heuristic (``get_pool_and_conv_props``): pools and kernels from patch and spacing.

    Level by level, starting from ``patch_size`` and ``spacing`` (mm per voxel, one per axis):

    1. An axis may be pooled (stride 2) while its feature map is ``>= 2 * min_size`` and its current spacing
       is less than twice the finest current spacing among those axes (anisotropy rule: a thick-slice axis
       waits until in-plane pooling has made the other axes as coarse). Pooling an axis doubles its spacing
       and halves its size (rounded up). If only one axis can be pooled, it must be ``>= 3 * min_size``.
       Pooling stops when no axis can be pooled.
    2. The kernel of an axis is 1 while its spacing is still at least twice the finest current spacing,
       and 3 from the first level where it is not (it then stays 3); the bottleneck uses 3 on all axes.
    3. Features double per level from ``base_features``, capped at ``max_features`` (320 in 3D, 512 in 2D).

    The result uses instance norm, leaky ReLU, strided-convolution downsampling, transposed-convolution
    upsampling and deep supervision. Raises :class:`ConfigError` if ``patch_size`` is too small to pool.
    """
    if len(patch_size) != ndim or len(spacing) != ndim:
        raise ConfigError(
            f"patch_size {tuple(patch_size)} and spacing {tuple(spacing)} must have {ndim} entries (ndim)"
        )
    if any(p < 1 for p in patch_size) or any(not s > 0 for s in spacing):
        raise ConfigError(f"patch_size {tuple(patch_size)} and spacing {tuple(spacing)} must be positive")
    if max_features is None:
        max_features = 320 if ndim == 3 else 512
    strides, kernels = _pool_and_kernel_sizes(patch_size, spacing, min_size)
    if len(strides) < 2:
        raise ConfigError(
            f"patch_size {tuple(patch_size)} is too small to downsample even once with min_size {min_size}; "
            f"use a patch of at least {2 * min_size} per axis"
        )
    return UNetConfig(
        ndim=ndim,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(min(base_features * 2**level, max_features) for level in range(len(strides))),
        kernel_sizes=tuple(kernels),
        strides=tuple(strides),
    )


def plan_unet(inputs: ModelInputs) -> UNetConfig:
    """The planned nnU-Net-style U-Net: :func:`nnunet_config` with 32 base features on a GPU (capped at 320
    in 3D, 512 in 2D, as nnU-Net) and 16 capped at 256 on a CPU, where a step must stay under a second."""
    return nnunet_config(
        inputs.ndim,
        inputs.in_channels,
        inputs.out_channels,
        inputs.patch_size,
        inputs.spacing,
        base_features=32 if inputs.gpu else 16,
        max_features=(320 if inputs.ndim == 3 else 512) if inputs.gpu else 256,
    )


def plan_classic_unet(inputs: ModelInputs) -> UNetConfig:
    """The 2015 U-Net (:func:`classic_config`, 64 -> 1024 features) with as many levels as the planned
    U-Net has for this patch and spacing."""
    depth = len(plan_unet(inputs).features)
    return classic_config(inputs.ndim, inputs.in_channels, inputs.out_channels, depth=depth)
