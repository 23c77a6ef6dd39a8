"""The U-Net, in 2D and 3D from the same code: encoder -> decoder -> head.

The topology (depth, widths, per-axis kernels and strides, norm, activation, down/up-sampling) comes from a
:class:`~medseg.models.unet_config.UNetConfig`; see :func:`~medseg.models.unet_config.classic_config` for the original
U-Net and :func:`~medseg.models.unet_config.nnunet_config` for nnU-Net's self-configured one.

Example:
    >>> import torch
    >>> config = UNetConfig(2, 1, 3, features=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
    ...                     strides=((1, 1), (2, 2), (2, 2)))
    >>> net = UNet(config).eval()
    >>> net(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from medseg.models.blocks import (
    DecoderStage,
    conv_class,
    crop_spatial,
    downsample_level,
    dropout_layer,
    init_weights,
    negative_slope,
    pad_to_multiple,
)
from medseg.models.unet_config import UNetConfig, UNetTopology

__all__ = ["Decoder", "Encoder", "OutputHeads", "UNet"]


class Encoder(nn.Module):
    """``(B, in_channels, *spatial)`` -> per level ``l``: ``(B, features[l], *spatial / scale[l])``.

    ``level(config, l)`` builds level ``l`` (default: the U-Net's conv stack; the light U-Net passes its
    inverted-residual levels)."""

    def __init__(self, config: UNetTopology, level: Callable[[Any, int], nn.Module] = downsample_level) -> None:
        super().__init__()
        self.levels = nn.ModuleList(level(config, i) for i in range(len(config.features)))

    def forward(self, x: Tensor) -> list[Tensor]:
        features: list[Tensor] = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """Encoder features (full resolution first, bottleneck last) -> decoder outputs, full resolution first.

    Returns one map per level except the bottleneck: ``(B, features[l], *spatial / scale[l])``, l = 0 .. L-2.
    ``stage(config, level)`` builds the stage that brings level ``level + 1`` up to ``level``; its
    ``forward(x, skip)`` gets the coarser decoder map and the encoder's skip (the attention U-Net gates it).
    """

    def __init__(self, config: UNetTopology, stage: Callable[[UNetTopology, int], nn.Module] = DecoderStage) -> None:
        super().__init__()
        deepest_first = range(len(config.features) - 2, -1, -1)
        self.stages = nn.ModuleList(stage(config, level) for level in deepest_first)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        x = features[-1]
        outputs: list[Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x, features[-2 - i])
            outputs.insert(0, x)
        return outputs


class OutputHeads(nn.ModuleList):
    """The 1x1 convolutions that turn decoder maps into logits, and the deep-supervision rule.

    ``forward(decoded, spatial)``: ``decoded`` are the decoder maps, full resolution first
    (``(B, features[l], *padded / scale[l])``), ``spatial`` the input's size before padding. Eval mode (or no
    deep supervision) returns ``(B, out_channels, *spatial)``; training mode with deep supervision returns
    ``config.n_outputs`` maps, map ``l`` cropped to ``ceil(spatial / scale[l])``. A ``ModuleList`` (state
    keys ``heads.0.weight``, ...), so checkpoints of earlier releases still load.
    """

    def __init__(self, config: UNetTopology) -> None:
        super().__init__(
            conv_class(config.ndim)(config.features[level], config.out_channels, 1) for level in range(config.n_outputs)
        )
        self.deep_supervision = config.deep_supervision
        self.scales = [  # per head: its downsampling factor per axis
            [math.prod(row[axis] for row in config.strides[: level + 1]) for axis in range(config.ndim)]
            for level in range(config.n_outputs)
        ]

    def forward(self, decoded: list[Tensor], spatial: list[int]) -> Tensor | list[Tensor]:
        if not (self.training and self.deep_supervision):
            return crop_spatial(self[0](decoded[0]), spatial)
        outputs: list[Tensor] = []
        for level, head in enumerate(self):
            scale = self.scales[level]
            size = [-(-spatial[axis] // scale[axis]) for axis in range(len(scale))]
            outputs.append(crop_spatial(head(decoded[level]), size))
        return outputs


class UNet(nn.Module):
    """U-Net for ``(B, in_channels, *spatial)`` images, 2D or 3D, any spatial size.

    Eval mode (or ``deep_supervision=False``) returns ``(B, out_channels, *spatial)`` logits. Training mode
    with deep supervision returns a list ``[full-res, 1/2, 1/4, ...]`` of logits at the decoder levels
    except the lowest one (nnU-Net gives that output weight 0), i.e. ``max(1, L - 2)`` maps for ``L``
    levels; map ``l`` has spatial size ``ceil(spatial / scale[l])``, ``scale[l]`` = product of
    ``strides[: l + 1]``. Inputs whose size is not a multiple of ``config.divisor`` are zero-padded at the
    end of each axis and the outputs cropped back. With ``config.dropout > 0`` the bottleneck features (the
    encoder's last level) pass channel-wise dropout before the decoder, in training only. Weights: He normal
    (nnU-Net's init), reproducible through ``generator``.

    Example:
        >>> kernels = ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
        >>> strides = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
        >>> config = UNetConfig(3, 1, 2, features=(4, 8, 16, 32), kernel_sizes=kernels, strides=strides)
        >>> outputs = UNet(config).train()(torch.zeros(2, 1, 8, 16, 16))
        >>> [tuple(o.shape) for o in outputs]
        [(2, 2, 8, 16, 16), (2, 2, 8, 8, 8)]
    """

    def __init__(
        self, config: UNetConfig, *, generator: torch.Generator | None = None, encoder: nn.Module | None = None
    ) -> None:
        """``encoder`` replaces the plain encoder (a family member that differs only there, e.g. the residual
        U-Net); it must return the levels' feature maps as :class:`Encoder` does."""
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else Encoder(config)
        self.dropout = dropout_layer(config.ndim, config.dropout)  # on the bottleneck; no parameters
        self.decoder = Decoder(config)
        self.heads = OutputHeads(config)
        self.divisor = list(config.divisor)  # inputs are padded to a multiple of this per axis
        init_weights(self, negative_slope(config.activation), generator)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        spatial = list(x.shape[2:])
        features = self.encoder(pad_to_multiple(x, self.divisor))
        features[-1] = self.dropout(features[-1])
        return self.heads(self.decoder(features), spatial)
