"""The U-Net's topology as data: :class:`UNetConfig` and the two presets that fill it.

This module is pure Python (no torch), so planning code and ``plans.json`` readers can use it without the
deep-learning stack. The networks are :class:`medseg.models.unet.UNet` (names ``unet`` and ``classic-unet``)
and :class:`medseg.models.attention_unet.AttentionUNet` (``attention-unet``: the same topology, gated skips)
and :class:`medseg.models.unetpp.UNetPlusPlus` (``unet++``: the same topology, nested dense skip pathways);
the checks shared with the other configs of the family (:mod:`medseg.models.residual_unet_config`) are
:func:`check_unet_fields`, :func:`count_outputs` and :func:`total_stride`.

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
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from medseg.errors import ConfigError

if TYPE_CHECKING:
    from medseg.models.configs import ModelInputs

__all__ = [
    "ACTIVATIONS",
    "DOWNSAMPLES",
    "NORMS",
    "UPSAMPLES",
    "UNetConfig",
    "UNetTopology",
    "check_dropout",
    "check_encoder_weights_fields",
    "check_unet_fields",
    "classic_config",
    "config_from_dict",
    "config_to_dict",
    "count_outputs",
    "nnunet_config",
    "per_level_ints",
    "plan_attention_unet",
    "plan_classic_unet",
    "plan_unet",
    "plan_unetpp",
    "total_stride",
]

NORMS: tuple[str, ...] = ("instance", "batch")
ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "relu")
DOWNSAMPLES: tuple[str, ...] = ("conv", "maxpool")
UPSAMPLES: tuple[str, ...] = ("transpose", "interpolate")
CLASSIC_DEPTH = 5  # levels of the 2015 U-Net: 64, 128, 256, 512, 1024 features


def _positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} = {value!r} must be a positive integer")
    return value


def _per_level(where: str, value: Any, ndim: int, levels: int) -> tuple[tuple[int, ...], ...]:
    """Check a per-level, per-axis table and return it as nested tuples."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != levels:
        raise ConfigError(f"{where} = {value!r} must have one entry per level ({levels}, as many as features)")
    rows = []
    for level, row in enumerate(value):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != ndim:
            raise ConfigError(f"{where}[{level}] = {row!r} must have one entry per spatial axis ({ndim}, ndim)")
        rows.append(tuple(_positive_int(f"{where}[{level}]", v) for v in row))
    return tuple(rows)


def _known(where: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where} = {value!r} is unknown; choose one of {', '.join(choices)}")


def per_level_ints(config: Any, field: str) -> tuple[int, ...]:
    """Check that ``config.<field>`` has one positive integer per level (as many as ``features``)."""
    where, value, levels = f"{type(config).__name__}.{field}", getattr(config, field), len(config.features)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != levels:
        raise ConfigError(f"{where} = {value!r} must have one entry per level ({levels}, as many as features)")
    return tuple(_positive_int(f"{where}[{i}]", v) for i, v in enumerate(value))


def check_unet_fields(config: Any) -> None:
    """Check the fields every config of the U-Net family shares and store its sequences as tuples.

    Called from ``__post_init__`` of a frozen config; error messages name ``type(config).__name__``.
    """
    cls = type(config).__name__
    if config.name not in config.NAMES:
        raise ConfigError(f"{cls}.name = {config.name!r} is not one of {', '.join(config.NAMES)}")
    if config.ndim not in (2, 3) or isinstance(config.ndim, bool):
        raise ConfigError(f"{cls}.ndim = {config.ndim!r} must be 2 or 3 (spatial dimensions)")
    for name in ("in_channels", "out_channels", "convs_per_level"):
        _positive_int(f"{cls}.{name}", getattr(config, name))
    features = config.features
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence) or len(features) < 2:
        raise ConfigError(f"{cls}.features = {features!r} must list at least 2 levels, e.g. (32, 64)")
    features = tuple(_positive_int(f"{cls}.features[{i}]", f) for i, f in enumerate(features))
    kernels = _per_level(f"{cls}.kernel_sizes", config.kernel_sizes, config.ndim, len(features))
    strides = _per_level(f"{cls}.strides", config.strides, config.ndim, len(features))
    if any(k % 2 == 0 for row in kernels for k in row):
        raise ConfigError(f"{cls}.kernel_sizes = {kernels} must be odd (1, 3, 5, ...) to keep sizes")
    if any(s != 1 for s in strides[0]):
        raise ConfigError(f"{cls}.strides[0] = {strides[0]} must be all ones (level 0 is full size)")
    _known(f"{cls}.norm", config.norm, NORMS)
    _known(f"{cls}.activation", config.activation, ACTIVATIONS)
    _known(f"{cls}.downsample", config.downsample, DOWNSAMPLES)
    _known(f"{cls}.upsample", config.upsample, UPSAMPLES)
    if not isinstance(config.deep_supervision, bool):
        raise ConfigError(f"{cls}.deep_supervision = {config.deep_supervision!r} must be true or false")
    object.__setattr__(config, "features", features)
    object.__setattr__(config, "kernel_sizes", kernels)
    object.__setattr__(config, "strides", strides)


def check_dropout(config: Any) -> None:
    """Check ``config.dropout``, the bottleneck's dropout probability: a number with 0 <= p < 1."""
    p = config.dropout
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"{type(config).__name__}.dropout = {p!r} must be a probability with 0 <= p < 1")
    object.__setattr__(config, "dropout", float(p))


_SHA256_HEX = "0123456789abcdef"


def check_encoder_weights_fields(config: Any) -> None:
    """Check ``config.encoder_weights`` (a weights file for the encoder, e.g. from ``medseg pretrain``; ""
    none) and ``config.encoder_weights_sha256`` (its SHA-256 as 64 lower-case hex digits, recorded by
    ``medseg plan --encoder-weights``)."""
    cls = type(config).__name__
    name, digest = config.encoder_weights, config.encoder_weights_sha256
    if not isinstance(name, str) or not isinstance(digest, str):
        raise ConfigError(f"{cls}.encoder_weights and encoder_weights_sha256 must be strings")
    if name and (len(digest) != 64 or any(c not in _SHA256_HEX for c in digest)):
        raise ConfigError(
            f"{cls}.encoder_weights_sha256 = {digest!r} must be the 64 lower-case hex digits of {name}'s SHA-256 "
            "(`medseg plan --encoder-weights` records it)"
        )


def count_outputs(levels: int, deep_supervision: bool) -> int:
    """Outputs in training of a ``levels``-level U-Net: full resolution plus each deep-supervision level
    above the two coarsest (nnU-Net's choice), or 1 without deep supervision."""
    return max(levels - 2, 1) if deep_supervision else 1


def total_stride(strides: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Product of the strides per axis: spatial sizes that are multiples of it need no padding."""
    return tuple(math.prod(row[axis] for row in strides) for axis in range(len(strides[0])))


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return {field.name: _to_lists(getattr(config, field.name)) for field in dataclasses.fields(config)}


def config_from_dict(cls: type[Any], d: dict[str, Any]) -> Any:
    """Inverse of :func:`config_to_dict`; unknown or missing keys raise :class:`ConfigError`."""
    if not isinstance(d, dict):
        raise ConfigError(f"model config must be a JSON object (dict), got {type(d).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown model config key(s) {unknown}; known keys are {sorted(fields)}")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
    missing = [n for n in required if n not in d]
    if missing:
        raise ConfigError(f"model config lacks key(s) {missing}; add them (see {cls.__name__})")
    return cls(**d)


class UNetTopology(Protocol):
    """What the shared blocks (:mod:`medseg.models.blocks`) read from a config of the U-Net family."""

    @property
    def ndim(self) -> int: ...
    @property
    def in_channels(self) -> int: ...
    @property
    def out_channels(self) -> int: ...
    @property
    def features(self) -> tuple[int, ...]: ...
    @property
    def kernel_sizes(self) -> tuple[tuple[int, ...], ...]: ...
    @property
    def strides(self) -> tuple[tuple[int, ...], ...]: ...
    @property
    def norm(self) -> str: ...
    @property
    def activation(self) -> str: ...
    @property
    def downsample(self) -> str: ...
    @property
    def upsample(self) -> str: ...
    @property
    def convs_per_level(self) -> int: ...
    @property
    def deep_supervision(self) -> bool: ...
    @property
    def n_outputs(self) -> int: ...
    @property
    def divisor(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class UNetConfig:
    """Topology of a 2D or 3D U-Net, one entry per resolution level (level 0 = full resolution).

    Sequences are stored as tuples (lists are accepted and converted), so configs compare and hash by value.
    ``downsample='conv'`` makes the first convolution of each level strided; ``'maxpool'`` max-pools with
    kernel = stride before the level's convolutions. ``upsample='transpose'`` uses a transposed convolution
    with kernel = stride; ``'interpolate'`` uses (bi/tri)linear interpolation followed by a 1x1 convolution.
    It serves the plain U-Net (``unet``, ``classic-unet``) and the attention U-Net (``attention-unet``), whose
    gates add no setting of their own (intermediate channels = half the skip's, as Oktay et al.).
    ``dropout`` is the probability of channel-wise dropout on the bottleneck features (the encoder's last
    level, as the 2015 U-Net), active in training only; 0 adds no layer. ``encoder_weights`` is a file of
    pretrained encoder weights (``medseg pretrain``) loaded at the start of training, ``encoder_weights_sha256``
    its SHA-256, checked before loading ("": none).
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
    dropout: float = 0.0
    encoder_weights: str = ""
    encoder_weights_sha256: str = ""
    name: str = "unet"

    # the registry names this config class serves (see medseg.models.registry and medseg.serial)
    NAMES: ClassVar[tuple[str, ...]] = ("unet", "classic-unet", "attention-unet", "unet++")

    def __post_init__(self) -> None:
        check_unet_fields(self)
        check_dropout(self)
        check_encoder_weights_fields(self)

    @property
    def n_outputs(self) -> int:
        """How many outputs the network returns in training: full resolution plus each deep-supervision
        level above the two coarsest (nnU-Net's choice), or 1 without deep supervision."""
        return count_outputs(len(self.features), self.deep_supervision)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Product of the strides per axis: spatial sizes that are multiples of it need no padding."""
        return total_stride(self.strides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`ConfigError`."""
        return typing.cast(UNetConfig, config_from_dict(cls, d))


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
    """The 2015 U-Net (:func:`classic_config`, 64 -> 1024 features): the paper's 5 levels, or fewer when the
    planned U-Net has fewer for this patch and spacing (more levels would double the widths past 1024)."""
    depth = min(len(plan_unet(inputs).features), CLASSIC_DEPTH)
    return classic_config(inputs.ndim, inputs.in_channels, inputs.out_channels, depth=depth)


def plan_attention_unet(inputs: ModelInputs) -> UNetConfig:
    """The attention U-Net on the planned U-Net's topology (:func:`plan_unet`): same levels, widths,
    kernels and strides, so the two differ only by the gates on the skip connections."""
    return dataclasses.replace(plan_unet(inputs), name="attention-unet")


def plan_unetpp(inputs: ModelInputs) -> UNetConfig:
    """UNet++ on the planned U-Net's topology (:func:`plan_unet`: levels, kernels, strides; its widths on a GPU).

    On a CPU the widths are halved (8 -> 128 instead of 16 -> 256): the nested nodes of the top rows work at
    full and half resolution on ``j + 1`` concatenated maps, so at the U-Net's widths a CPU training step
    took 4.2-5.1x (2D, 256 x 256, batch 2) and 3.6-4.5x (3D, 64^3, batch 2) a ``unet`` step; at half the
    widths it takes 1.15-1.55x and 1.3-1.6x (measured on a 2-core AMD EPYC; docs/models.md). Cutting levels
    instead (to the paper's 5) saved less (1.8x in 2D) and shrinks the receptive field.
    """
    planned = plan_unet(inputs)
    features = planned.features if inputs.gpu else tuple(max(1, f // 2) for f in planned.features)
    return dataclasses.replace(planned, features=features, name="unet++")
