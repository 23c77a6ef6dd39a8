"""A light U-Net for fast CPU inference, 2D and 3D: MobileNetV2-style encoder -> separable decoder -> heads.

The topology is the planned U-Net's (levels, widths, per-axis kernels and strides); only the convolutions
change. Each encoder level is a stack of MobileNetV2 inverted residual blocks (Sandler et al. 2018): 1x1
expansion, depthwise ``k x k`` (``groups`` = channels), linear 1x1 projection, with the input added back
when the block keeps channels and size. Each decoder stage up-samples, concatenates the skip and applies
depthwise-separable convolutions (depthwise ``k x k``, then pointwise 1x1; Howard et al. 2017, MobileNet).
The deep-supervision heads are the U-Net's (:class:`~medseg.models.unet.OutputHeads`).

Hand-written on medseg's blocks: torchvision's and timm's MobileNets are 2D ImageNet classifiers with fixed
isotropic strides, while the planned topology needs 3D and per-axis (anisotropic) kernels and strides.
Differences from MobileNetV2: the config's norm and activation (instance norm, leaky ReLU by default)
instead of batch norm and ReLU6, every block uses the same ``expansion``, and the stem keeps full resolution.

Example:
    >>> import torch
    >>> config = MobileUNetConfig(2, 1, 3, features=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
    ...                           strides=((1, 1), (2, 2), (2, 2)), blocks_per_level=(1, 2, 2), expansion=4)
    >>> MobileUNet(config).eval()(torch.zeros(1, 1, 37, 45)).shape
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
    dropout_layer,
    init_weights,
    max_pool_layer,
    negative_slope,
    norm_layer,
    pad_to_multiple,
    upsample_layer,
)
from medseg.models.mobile_unet_config import MobileUNetConfig
from medseg.models.unet import Decoder, Encoder, OutputHeads
from medseg.models.unet_config import UNetTopology

__all__ = ["InvertedResidual", "MobileEncoder", "MobileUNet", "SeparableConv", "SeparableDecoderStage", "mobile_level"]


def _conv_norm(
    config: UNetTopology, in_channels: int, out_channels: int, kernel: Sequence[int], stride: Sequence[int], groups: int
) -> list[nn.Module]:
    """Convolution ('same' padding, no bias, ``groups``) and norm: ``(B, in, *s) -> (B, out, *s / stride)``."""
    conv = conv_class(config.ndim)(
        in_channels,
        out_channels,
        tuple(kernel),
        tuple(stride),
        padding=tuple(k // 2 for k in kernel),
        groups=groups,
        bias=False,
    )
    return [conv, norm_layer(config.norm, config.ndim, out_channels)]


class InvertedResidual(nn.Module):
    """MobileNetV2's block: ``project(depthwise(expand(x)))``, plus ``x`` when channels and size stay.

    ``(B, in_channels, *s) -> (B, out_channels, *s / stride)``. ``expand`` is 1x1 conv -> norm -> act to
    ``expansion * in_channels`` hidden channels (absent for ``expansion`` 1); ``depthwise`` is a ``kernel``
    conv with ``groups`` = hidden channels and the stride -> norm -> act; ``project`` is 1x1 conv -> norm,
    without activation (the linear bottleneck). ``residual`` is true exactly when the stride is all ones and
    ``in_channels == out_channels``.
    """

    def __init__(
        self,
        config: MobileUNetConfig,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int],
        stride: Sequence[int],
    ) -> None:
        super().__init__()
        hidden, ones = in_channels * config.expansion, (1,) * config.ndim
        expand = [*_conv_norm(config, in_channels, hidden, ones, ones, 1), activation_layer(config.activation)]
        self.expand = nn.Sequential(*expand) if config.expansion > 1 else nn.Sequential()
        depthwise = [*_conv_norm(config, hidden, hidden, kernel, stride, hidden), activation_layer(config.activation)]
        self.depthwise = nn.Sequential(*depthwise)
        self.project = nn.Sequential(*_conv_norm(config, hidden, out_channels, ones, ones, 1))
        self.residual = in_channels == out_channels and all(s == 1 for s in stride)

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class SeparableConv(nn.Sequential):
    """Depthwise-separable convolution: depthwise ``kernel`` conv -> norm -> act -> 1x1 conv -> norm -> act.

    ``(B, in_channels, *s) -> (B, out_channels, *s)``.
    """

    def __init__(self, config: UNetTopology, in_channels: int, out_channels: int, kernel: Sequence[int]) -> None:
        ones = (1,) * config.ndim
        super().__init__(
            *_conv_norm(config, in_channels, in_channels, kernel, ones, in_channels),
            activation_layer(config.activation),
            *_conv_norm(config, in_channels, out_channels, ones, ones, 1),
            activation_layer(config.activation),
        )


class SeparableDecoderStage(nn.Module):
    """Up-sample, concatenate the skip, ``convs_per_level`` separable convolutions: level ``level + 1`` -> ``level``.

    As :class:`~medseg.models.blocks.DecoderStage`: ``forward(x, skip)`` with ``x`` ``(B, features[level + 1],
    *s)`` and ``skip`` ``(B, features[level], *s * strides[level + 1])`` returns ``(B, features[level],
    *skip.shape[2:])``.
    """

    def __init__(self, config: UNetTopology, level: int) -> None:
        super().__init__()
        width, kernel = config.features[level], config.kernel_sizes[level]
        self.up = upsample_layer(config, config.features[level + 1], width, config.strides[level + 1])
        self.convs = nn.Sequential(
            *(
                SeparableConv(config, 2 * width if i == 0 else width, width, kernel)
                for i in range(config.convs_per_level)
            )
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


def mobile_level(config: MobileUNetConfig, level: int) -> nn.Sequential:
    """Encoder level ``level``: ``blocks_per_level[level]`` inverted residual blocks at its width and kernel.

    Level 0 starts with the stem (``ConvNormAct``, ``in_channels -> features[0]``); a deeper level with
    ``downsample='maxpool'`` with a max-pool, else its first block carries the stride.
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
        InvertedResidual(config, in_channels if i == 0 else width, width, kernel, stride if i == 0 else ones)
        for i in range(config.blocks_per_level[level])
    )
    return nn.Sequential(*first, *blocks)


def MobileEncoder(config: MobileUNetConfig) -> Encoder:
    """The U-Net's :class:`~medseg.models.unet.Encoder` over inverted-residual levels (:func:`mobile_level`)."""
    return Encoder(config, level=mobile_level)


class MobileUNet(nn.Module):
    """Light U-Net for ``(B, in_channels, *spatial)`` images, 2D or 3D, any spatial size.

    Outputs, padding, deep supervision and bottleneck dropout as :class:`~medseg.models.unet.UNet`: eval
    mode returns ``(B, out_channels, *spatial)``; training mode with deep supervision ``config.n_outputs``
    maps at the decoder levels, full resolution first. Weights: He normal, reproducible through ``generator``.

    Example:
        >>> kernels = ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
        >>> strides = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
        >>> config = MobileUNetConfig(3, 1, 2, (4, 8, 16, 32), kernels, strides, blocks_per_level=(1, 2, 2, 2))
        >>> outputs = MobileUNet(config).train()(torch.zeros(2, 1, 8, 16, 16))
        >>> [tuple(o.shape) for o in outputs]
        [(2, 2, 8, 16, 16), (2, 2, 8, 8, 8)]
    """

    def __init__(self, config: MobileUNetConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = MobileEncoder(config)
        self.dropout = dropout_layer(config.ndim, config.dropout)  # on the bottleneck; no parameters
        self.decoder = Decoder(config, stage=SeparableDecoderStage)
        self.heads = OutputHeads(config)
        self.divisor = list(config.divisor)  # inputs are padded to a multiple of this per axis
        init_weights(self, negative_slope(config.activation), generator)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        spatial = list(x.shape[2:])
        features = self.encoder(pad_to_multiple(x, self.divisor))
        features[-1] = self.dropout(features[-1])
        return self.heads(self.decoder(features), spatial)
