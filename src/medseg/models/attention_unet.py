"""The attention U-Net (Oktay et al. 2018), 2D and 3D: encoder -> decoder with gated skips -> heads.

Each skip connection passes an additive attention gate before the decoder concatenates it: the gating
signal is the coarser decoder map (the bottleneck for the deepest stage), so context from a coarser scale
picks which skip voxels reach the decoder. Encoder, up-sampling, convolutions and deep-supervision heads are
the U-Net's (:mod:`medseg.models.unet`); the topology is a :class:`~medseg.models.unet_config.UNetConfig`
named ``attention-unet``. Written in medseg's own blocks (MONAI is not a runtime dependency).

Example:
    >>> import torch
    >>> config = UNetConfig(2, 1, 3, features=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
    ...                     strides=((1, 1), (2, 2), (2, 2)), name="attention-unet")
    >>> AttentionUNet(config).eval()(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.models.blocks import (
    conv_class,
    conv_stack,
    dropout_layer,
    init_weights,
    interpolate_layer,
    negative_slope,
    pad_to_multiple,
    upsample_layer,
)
from medseg.models.unet import Decoder, Encoder, OutputHeads
from medseg.models.unet_config import UNetConfig, UNetTopology

__all__ = ["AttentionDecoderStage", "AttentionGate", "AttentionUNet"]


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, eqs. 1-2): ``x * alpha`` with per-voxel ``alpha`` in (0, 1).

    ``forward(x, g)``: skip features ``x`` ``(B, skip_channels, *s * stride)``, gating signal ``g``
    ``(B, gate_channels, *s)`` from the coarser level. ``x`` is brought to ``g``'s grid by ``W_x`` (kernel =
    stride = ``stride``, no bias), ``g`` projected by ``W_g`` (1x1); ``psi`` is a 1x1 convolution to one channel:
    ``alpha = sigmoid(psi(relu(W_x x + W_g g + b_g)) + b_psi)`` is computed on ``g``'s grid and resampled
    (bi/tri)linearly to ``x``'s grid. Returns ``(B, skip_channels, *s * stride)``. With ``stride`` all ones
    it is MONAI's ``AttentionBlock`` without its batch norms.
    """

    def __init__(
        self, skip_channels: int, gate_channels: int, inter_channels: int, stride: Sequence[int], ndim: int
    ) -> None:
        super().__init__()
        conv, stride = conv_class(ndim), tuple(stride)
        self.w_x = conv(skip_channels, inter_channels, stride, stride, bias=False)
        self.w_g = conv(gate_channels, inter_channels, 1)
        self.psi = conv(inter_channels, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.resample = interpolate_layer(ndim, stride)

    def coefficients(self, x: Tensor, g: Tensor) -> Tensor:
        """``alpha``: ``(B, 1, *x.shape[2:])``, in (0, 1)."""
        return self.resample(torch.sigmoid(self.psi(self.relu(self.w_x(x) + self.w_g(g)))))

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        return x * self.coefficients(x, g)


class AttentionDecoderStage(nn.Module):
    """Gate the skip, up-sample, concatenate, convolve: resolution ``level + 1`` -> ``level``.

    As :class:`~medseg.models.blocks.DecoderStage`, with the skip passed through an :class:`AttentionGate`
    whose gating signal is ``x``: ``forward(x, skip)`` with ``x`` ``(B, features[level + 1], *s)`` and
    ``skip`` ``(B, features[level], *s * strides[level + 1])`` returns ``(B, features[level], *skip.shape[2:])``.
    The gate's intermediate channels are half the skip's (as Oktay et al. and MONAI), at least 1.
    """

    def __init__(self, config: UNetTopology, level: int) -> None:
        super().__init__()
        width, coarse, stride = config.features[level], config.features[level + 1], config.strides[level + 1]
        self.gate = AttentionGate(width, coarse, max(1, width // 2), stride, config.ndim)
        self.up = upsample_layer(config, coarse, width, stride)
        self.convs = conv_stack(config, level, 2 * width, (1,) * config.ndim)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(torch.cat([self.up(x), self.gate(skip, x)], dim=1))


class AttentionUNet(nn.Module):
    """Attention U-Net for ``(B, in_channels, *spatial)`` images, 2D or 3D, any spatial size.

    Outputs, padding and deep supervision as :class:`~medseg.models.unet.UNet`: eval mode returns
    ``(B, out_channels, *spatial)``; training mode with deep supervision ``config.n_outputs`` maps, full
    resolution first; ``config.dropout`` as the U-Net's (bottleneck, training only). Weights: He normal,
    reproducible through ``generator``.

    Example:
        >>> kernels = ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
        >>> strides = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
        >>> config = UNetConfig(3, 1, 2, (4, 8, 16, 32), kernels, strides, name="attention-unet")
        >>> outputs = AttentionUNet(config).train()(torch.zeros(2, 1, 8, 16, 16))
        >>> [tuple(o.shape) for o in outputs]
        [(2, 2, 8, 16, 16), (2, 2, 8, 8, 8)]
    """

    def __init__(self, config: UNetConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dropout = dropout_layer(config.ndim, config.dropout)  # on the bottleneck; no parameters
        self.decoder = Decoder(config, stage=AttentionDecoderStage)
        self.heads = OutputHeads(config)
        self.divisor = list(config.divisor)  # inputs are padded to a multiple of this per axis
        init_weights(self, negative_slope(config.activation), generator)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        spatial = list(x.shape[2:])
        features = self.encoder(pad_to_multiple(x, self.divisor))
        features[-1] = self.dropout(features[-1])
        return self.heads(self.decoder(features), spatial)
