"""Dimension-agnostic building blocks of the U-Net family: layer factories, conv stacks, up-sampling.

Every block works in 2D and 3D: the layer classes are picked from small factories keyed by ``ndim``
(as MONAI's DynUNet does), so no block is written twice. Convolutions that feed a normalisation have no
bias (the norm removes any per-channel constant). Shapes: ``(B, C, *spatial)``.

Example:
    >>> import torch
    >>> block = ConvNormAct(1, 8, kernel_size=(1, 3, 3), stride=(1, 2, 2), ndim=3)
    >>> block(torch.zeros(2, 1, 5, 16, 16)).shape
    torch.Size([2, 8, 5, 8, 8])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.models.unet_config import UNetTopology

__all__ = [
    "ConvNormAct",
    "DecoderStage",
    "activation_layer",
    "conv_class",
    "conv_stack",
    "crop_spatial",
    "downsample_level",
    "dropout_layer",
    "init_weights",
    "interpolate_layer",
    "max_pool_layer",
    "negative_slope",
    "norm_layer",
    "pad_to_multiple",
    "upsample_layer",
]

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE: dict[int, type[nn.Module]] = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL: dict[int, type[nn.Module]] = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_INSTANCE_NORM: dict[int, type[nn.Module]] = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_BATCH_NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_DROPOUT: dict[int, type[nn.Module]] = {2: nn.Dropout2d, 3: nn.Dropout3d}
_INTERPOLATION: dict[int, str] = {2: "bilinear", 3: "trilinear"}
_NEGATIVE_SLOPE: dict[str, float] = {"leaky_relu": 0.01, "relu": 0.0}


def conv_class(ndim: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return _CONV[ndim]


def norm_layer(name: str, ndim: int, channels: int) -> nn.Module:
    """'instance' (affine, as nnU-Net) or 'batch' normalisation over ``channels``."""
    if name == "instance":
        return _INSTANCE_NORM[ndim](channels, affine=True)
    return _BATCH_NORM[ndim](channels)


def negative_slope(activation: str) -> float:
    """Slope of the activation for negative inputs: 0.01 for 'leaky_relu', 0 for 'relu'."""
    return _NEGATIVE_SLOPE[activation]


def activation_layer(name: str) -> nn.Module:
    """'leaky_relu' (slope 0.01, as nnU-Net) or 'relu'."""
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope("leaky_relu"), inplace=True)
    return nn.ReLU(inplace=True)


def dropout_layer(ndim: int, p: float) -> nn.Module:
    """Channel-wise dropout (``nn.Dropout2d``/``3d``, active in training only) with probability ``p``;
    ``nn.Identity`` for ``p = 0``. Neither has parameters, so checkpoints load with or without it."""
    return _DROPOUT[ndim](p) if p > 0 else nn.Identity()


def max_pool_layer(ndim: int, stride: Sequence[int]) -> nn.Module:
    """Max-pooling with kernel = stride: ``(B, C, *s) -> (B, C, *s / stride)``."""
    return _MAX_POOL[ndim](kernel_size=tuple(stride), stride=tuple(stride))


def interpolate_layer(ndim: int, scale: Sequence[int]) -> nn.Module:
    """(Bi/tri)linear up-sampling by ``scale`` per axis: ``(B, C, *s) -> (B, C, *s * scale)``."""
    return nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode=_INTERPOLATION[ndim], align_corners=False)


class ConvNormAct(nn.Sequential):
    """Convolution ('same' padding, no bias) -> norm -> activation.

    ``(B, in_channels, *s) -> (B, out_channels, *s / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        ndim: int,
        norm: str = "instance",
        activation: str = "leaky_relu",
    ) -> None:
        padding = tuple(k // 2 for k in kernel_size)
        conv = conv_class(ndim)(
            in_channels, out_channels, tuple(kernel_size), tuple(stride), padding=padding, bias=False
        )
        super().__init__(conv, norm_layer(norm, ndim, out_channels), activation_layer(activation))


def conv_stack(config: UNetTopology, level: int, in_channels: int, first_stride: Sequence[int]) -> nn.Sequential:
    """``config.convs_per_level`` ConvNormAct at ``level``'s width and kernel, the first one strided."""
    out_channels, kernel = config.features[level], config.kernel_sizes[level]
    ones = (1,) * config.ndim
    return nn.Sequential(
        *(
            ConvNormAct(
                in_channels if i == 0 else out_channels,
                out_channels,
                kernel,
                first_stride if i == 0 else ones,
                config.ndim,
                config.norm,
                config.activation,
            )
            for i in range(config.convs_per_level)
        )
    )


def downsample_level(config: UNetTopology, level: int) -> nn.Sequential:
    """Encoder level ``level``: ``(B, features[level-1], *s) -> (B, features[level], *s / strides[level])``.

    With ``downsample='conv'`` the first convolution is strided; with ``'maxpool'`` a max-pool (kernel =
    stride) comes first. Level 0 takes ``in_channels`` and does not downsample.
    """
    stride = config.strides[level]
    in_channels = config.in_channels if level == 0 else config.features[level - 1]
    if config.downsample == "conv" or level == 0:
        return conv_stack(config, level, in_channels, stride)
    pool = max_pool_layer(config.ndim, stride)
    return nn.Sequential(pool, *conv_stack(config, level, in_channels, (1,) * config.ndim))


def upsample_layer(config: UNetTopology, in_channels: int, out_channels: int, stride: Sequence[int]) -> nn.Module:
    """``(B, in_channels, *s) -> (B, out_channels, *s * stride)``, transposed conv or interpolation.

    Interpolation is (bi/tri)linear and followed by a 1x1 convolution that sets the channels.
    """
    stride = tuple(stride)
    if config.upsample == "transpose":
        return _CONV_TRANSPOSE[config.ndim](in_channels, out_channels, stride, stride, bias=False)
    return nn.Sequential(
        interpolate_layer(config.ndim, stride), conv_class(config.ndim)(in_channels, out_channels, 1, bias=False)
    )


class DecoderStage(nn.Module):
    """Up-sample, concatenate the skip connection, convolve: resolution ``level + 1`` -> ``level``.

    ``forward(x, skip)``: ``x`` is ``(B, features[level + 1], *s)``, ``skip`` is
    ``(B, features[level], *s * strides[level + 1])``; returns ``(B, features[level], *skip.shape[2:])``.
    """

    def __init__(self, config: UNetTopology, level: int) -> None:
        super().__init__()
        width = config.features[level]
        self.up = upsample_layer(config, config.features[level + 1], width, config.strides[level + 1])
        self.convs = conv_stack(config, level, 2 * width, (1,) * config.ndim)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


def init_weights(module: nn.Module, slope: float, generator: torch.Generator | None = None) -> None:
    """He (Kaiming) normal initialisation of every (transposed) convolution, zero biases, as nnU-Net.

    ``slope`` is the activation's negative slope (0.01 for leaky ReLU); ``generator`` makes it reproducible.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.conv._ConvNd):  # the base of every (transposed) convolution
            nn.init.kaiming_normal_(layer.weight, a=slope, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def pad_to_multiple(x: Tensor, divisor: list[int]) -> Tensor:
    """Zero-pad the end of each spatial axis of ``(B, C, *spatial)`` up to a multiple of ``divisor``."""
    pads: list[int] = []
    for axis in range(len(divisor) - 1, -1, -1):  # F.pad lists the last axis first
        size = x.shape[2 + axis]
        pads += [0, (divisor[axis] - size % divisor[axis]) % divisor[axis]]
    return F.pad(x, pads)


def crop_spatial(x: Tensor, size: list[int]) -> Tensor:
    """Keep the first ``size[i]`` entries of spatial axis ``i`` of ``(B, C, *spatial)``."""
    for axis in range(len(size)):
        x = x.narrow(2 + axis, 0, size[axis])
    return x
