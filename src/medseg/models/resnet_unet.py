"""The U-Net with a ResNet-18/34/50 encoder, 2D and 3D: ResNet encoder -> U-Net decoder -> heads.

segmentation_models_pytorch's ``Unet`` topology, hand-written in medseg's blocks (smp, torchvision and timm
are not dependencies; see :mod:`medseg.models.resnet`): the encoder's five feature maps (stem 1/2,
layer1 1/4, ..., layer4 1/32) feed five decoder stages, each a nearest-neighbour up-sampling, the
concatenated skip (none in the last, full-resolution stage) and two 3x3 conv-BN-ReLU. Differences from
smp's: 1x1 output convolutions (smp: 3x3), optional deep supervision (heads on the four finest decoder
stages, full resolution first, as :class:`~medseg.models.unet.UNet`), dropout on the bottleneck features,
and freezing of the first ``frozen_stages`` encoder stages. Encoder weights are loaded by
:mod:`medseg.models.encoder_weights`, by training only; a checkpoint holds them afterwards.

Example:
    >>> import torch
    >>> config = ResNetUNetConfig(2, 1, 3, strides=((2, 2),) * 5, encoder_width=8, name="resnet18-unet")
    >>> ResNetUNet(config).eval()(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from medseg.models.blocks import ConvNormAct, conv_class, crop_spatial, init_weights, pad_to_multiple
from medseg.models.resnet import ResNetEncoder, init_resnet
from medseg.models.resnet_unet_config import ResNetUNetConfig

__all__ = ["ResNetDecoderStage", "ResNetUNet"]


class ResNetDecoderStage(nn.Module):
    """Up-sample by ``scale`` (nearest), concatenate the skip (if any), two 3x3 conv-BN-ReLU.

    ``forward(x, skip)``: ``x`` is ``(B, in_channels, *s)``, ``skip`` ``(B, skip_channels, *s * scale)`` or
    None; returns ``(B, out_channels, *s * scale)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, scale: tuple[int, ...]) -> None:
        super().__init__()
        ndim = len(scale)
        self.up = nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode="nearest")
        kernel, ones = (3,) * ndim, (1,) * ndim
        self.convs = nn.Sequential(
            ConvNormAct(in_channels + skip_channels, out_channels, kernel, ones, ndim, "batch", "relu"),
            ConvNormAct(out_channels, out_channels, kernel, ones, ndim, "batch", "relu"),
        )

    def forward(self, x: Tensor, skip: Optional[Tensor]) -> Tensor:  # noqa: UP045 (TorchScript reads Optional)
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class ResNetUNet(nn.Module):
    """U-Net with a ResNet encoder for ``(B, in_channels, *spatial)`` images, 2D or 3D, any spatial size.

    Eval mode (or no deep supervision) returns ``(B, out_channels, *spatial)`` logits; training mode with
    deep supervision returns ``config.n_outputs`` (4) maps at the decoder's 1, 1/2, 1/4 and 1/8 stages,
    map ``l`` of size ``ceil(spatial / scale[l])``. Inputs are zero-padded at the end of each axis to a
    multiple of ``config.divisor`` (32) and the outputs cropped back. Weights: torchvision's ResNet init in
    the encoder, He normal elsewhere, reproducible through ``generator``. The first ``frozen_stages``
    encoder stages get ``requires_grad=False`` and their batch norms stay in eval mode in training.

    Example:
        >>> config = ResNetUNetConfig(3, 1, 2, strides=((1, 2, 2),) + ((2, 2, 2),) * 4, encoder_width=4,
        ...                           decoder_channels=(16, 8, 8, 4, 4), name="resnet18-unet")
        >>> outputs = ResNetUNet(config).train()(torch.zeros(2, 1, 16, 32, 32))
        >>> [tuple(o.shape) for o in outputs]
        [(2, 2, 16, 32, 32), (2, 2, 16, 16, 16), (2, 2, 8, 8, 8), (2, 2, 4, 4, 4)]
    """

    def __init__(self, config: ResNetUNetConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        ndim, rows = config.ndim, config.strides
        self.encoder = ResNetEncoder(config.depth, config.in_channels, ndim, width=config.encoder_width, strides=rows)
        self.dropout: nn.Module = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        channels, decoder = self.encoder.channels, config.decoder_channels
        in_channels = [channels[4], *decoder[:4]]
        skip_channels = [channels[3], channels[2], channels[1], channels[0]]
        self.stages = nn.ModuleList(
            ResNetDecoderStage(in_channels[j], skip_channels[j], decoder[j], rows[4 - j]) for j in range(4)
        )
        self.final = ResNetDecoderStage(in_channels[4], 0, decoder[4], rows[0])
        finest_first = [decoder[4], decoder[3], decoder[2], decoder[1]][: config.n_outputs]
        self.heads = nn.ModuleList(conv_class(ndim)(c, config.out_channels, 1) for c in finest_first)
        self.scales = [  # per head: its downsampling factor per axis
            [math.prod(row[axis] for row in rows[:level]) for axis in range(ndim)] for level in range(config.n_outputs)
        ]
        self.deep_supervision = config.deep_supervision
        self.divisor = list(config.divisor)
        self.frozen_stages = config.frozen_stages
        init_resnet(self.encoder, generator)
        init_weights(self.stages, 0.0, generator)
        init_weights(self.final, 0.0, generator)
        init_weights(self.heads, 0.0, generator)
        for stage in self.encoder.stages()[: self.frozen_stages]:
            for module in stage:
                module.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> ResNetUNet:
        """As ``nn.Module.train``, but the frozen encoder stages' batch norms stay in eval mode."""
        super().train(mode)
        for stage in self.encoder.stages()[: self.frozen_stages]:
            for module in stage:
                module.eval()
        return self

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        spatial = list(x.shape[2:])
        features = self.encoder(pad_to_multiple(x, self.divisor))
        y = self.dropout(features[4])
        decoded: list[Tensor] = []
        for j, stage in enumerate(self.stages):
            y = stage(y, features[3 - j])
            decoded.insert(0, y)
        decoded.insert(0, self.final(y, None))
        if not (self.training and self.deep_supervision):
            return crop_spatial(self.heads[0](decoded[0]), spatial)
        outputs: list[Tensor] = []
        for level, head in enumerate(self.heads):
            scale = self.scales[level]
            size = [-(-spatial[axis] // scale[axis]) for axis in range(len(scale))]
            outputs.append(crop_spatial(head(decoded[level]), size))
        return outputs
