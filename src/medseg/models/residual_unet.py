"""The residual-encoder U-Net (nnU-Net's ``ResidualEncoderUNet``), 2D and 3D: residual encoder -> decoder -> heads.

Each encoder level is a stack of basic residual blocks (He et al. 2016) instead of plain convolutions; the
decoder and the deep-supervision heads are the U-Net's (:mod:`medseg.models.unet`). Written in medseg's own
blocks (nnU-Net's ``dynamic_network_architectures`` is not a dependency). Differences from nnU-Net's: the
projection skip is a strided 1x1 convolution + norm (ResNet's option B; nnU-Net averages-pools first,
ResNet-D) and the decoder has ``convs_per_level`` convolutions per level (nnU-Net's ResEnc presets use 1).

Example:
    >>> import torch
    >>> config = ResidualUNetConfig(2, 1, 3, features=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
    ...                             strides=((1, 1), (2, 2), (2, 2)), blocks_per_level=(1, 2, 2))
    >>> ResidualUNet(config).eval()(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.models.blocks import (
    ConvNormAct,
    activation_layer,
    conv_class,
    max_pool_layer,
    norm_layer,
)
from medseg.models.residual_unet_config import ResidualUNetConfig
from medseg.models.unet import UNet

__all__ = ["ResidualBlock", "ResidualEncoder", "ResidualUNet", "residual_level"]


class ResidualBlock(nn.Module):
    """Basic residual block: ``act(norm(conv(act(norm(conv(x))))) + skip(x))``.

    ``(B, in_channels, *s) -> (B, out_channels, *s / stride)``. The first convolution carries the stride;
    the skip is the identity when channels and size stay, else a 1x1 convolution with the stride + norm.
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
        super().__init__()
        self.conv_norm_act = ConvNormAct(in_channels, out_channels, kernel_size, stride, ndim, norm, activation)
        padding = tuple(k // 2 for k in kernel_size)
        self.conv = conv_class(ndim)(out_channels, out_channels, tuple(kernel_size), padding=padding, bias=False)
        self.norm = norm_layer(norm, ndim, out_channels)
        self.skip: nn.Module = nn.Identity()
        if in_channels != out_channels or any(s != 1 for s in stride):
            projection = conv_class(ndim)(in_channels, out_channels, 1, tuple(stride), bias=False)
            self.skip = nn.Sequential(projection, norm_layer(norm, ndim, out_channels))
        self.act = activation_layer(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(self.conv_norm_act(x))) + self.skip(x))


def residual_level(config: ResidualUNetConfig, level: int) -> nn.Sequential:
    """Encoder level ``level``: ``blocks_per_level[level]`` residual blocks at its width and kernel.

    Level 0 starts with the stem (``ConvNormAct``, ``in_channels -> features[0]``); a deeper level with
    ``downsample='maxpool'`` with a max-pool, else its first block is strided.
    """
    width, kernel, stride = config.features[level], config.kernel_sizes[level], config.strides[level]
    ones = (1,) * config.ndim
    first: list[nn.Module] = []
    if level == 0:
        first.append(ConvNormAct(config.in_channels, width, kernel, ones, config.ndim, config.norm, config.activation))
        in_channels, stride = width, ones
    else:
        in_channels = config.features[level - 1]
        if config.downsample == "maxpool":
            first.append(max_pool_layer(config.ndim, stride))
            stride = ones
    blocks = (
        ResidualBlock(
            in_channels if i == 0 else width,
            width,
            kernel,
            stride if i == 0 else ones,
            config.ndim,
            config.norm,
            config.activation,
        )
        for i in range(config.blocks_per_level[level])
    )
    return nn.Sequential(*first, *blocks)


class ResidualEncoder(nn.Module):
    """``(B, in_channels, *spatial)`` -> per level ``l``: ``(B, features[l], *spatial / scale[l])``."""

    def __init__(self, config: ResidualUNetConfig) -> None:
        super().__init__()
        self.levels = nn.ModuleList(residual_level(config, level) for level in range(len(config.features)))

    def forward(self, x: Tensor) -> list[Tensor]:
        features: list[Tensor] = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class ResidualUNet(UNet):
    """U-Net with a residual encoder for ``(B, in_channels, *spatial)`` images, 2D or 3D, any spatial size.

    Outputs, padding, deep supervision and bottleneck dropout as :class:`~medseg.models.unet.UNet`: eval mode
    returns ``(B, out_channels, *spatial)``; training mode with deep supervision ``config.n_outputs`` maps,
    full resolution first. Weights: He normal, reproducible through ``generator``.

    Example:
        >>> config = ResidualUNetConfig(3, 1, 2, features=(4, 8, 16, 32), kernel_sizes=((3, 3, 3),) * 4,
        ...                             strides=((1, 1, 1),) + ((2, 2, 2),) * 3, blocks_per_level=(1, 2, 2, 2))
        >>> outputs = ResidualUNet(config).train()(torch.zeros(2, 1, 16, 16, 16))
        >>> [tuple(o.shape) for o in outputs]
        [(2, 2, 16, 16, 16), (2, 2, 8, 8, 8)]
    """

    def __init__(self, config: ResidualUNetConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__(config, generator=generator, encoder=ResidualEncoder(config))  # type: ignore[arg-type]  # the U-Net fields it reads are shared
