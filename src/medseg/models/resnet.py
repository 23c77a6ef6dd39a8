"""ResNet-18/34/50 encoders (He et al. 2016), 2D and 3D, with torchvision's parameter names.

Hand-written rather than imported: torchvision does not import beside medseg's torch build and timm pulls
it in, so neither may be a dependency. The module tree is torchvision's (``conv1``, ``bn1``, ``layer1`` ..
``layer4``, blocks with ``conv1/bn1/conv2/bn2(/conv3/bn3)`` and ``downsample.0/1``), which is also timm's,
so their ImageNet state dicts load as they are (:mod:`medseg.models.encoder_weights`); ``fc`` is left out.
Differences from torchvision's: the layer classes come from ``ndim`` (3D uses 7x7x7 and 3x3x3 kernels),
strides are per axis (a 3D plan may keep 1 on a thin axis) and the widths scale with ``width`` (64 there).
Bottleneck carries the stride in its 3x3 convolution (ResNet v1.5, as torchvision and timm).

Example:
    >>> import torch
    >>> encoder = ResNetEncoder(18, in_channels=1, ndim=2)
    >>> [tuple(f.shape[1:]) for f in encoder(torch.zeros(1, 1, 64, 64))]
    [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.models.resnet_unet_config import ENCODER_LEVELS, RESNET_LAYOUTS

__all__ = ["BasicBlock", "Bottleneck", "ResNetEncoder", "init_resnet"]

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAX_POOL: dict[int, type[nn.Module]] = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def _conv(ndim: int, cin: int, cout: int, kernel: int, stride: Sequence[int] | int = 1) -> nn.Module:
    stride = (stride,) * ndim if isinstance(stride, int) else tuple(stride)
    return _CONV[ndim](cin, cout, (kernel,) * ndim, stride, padding=(kernel // 2,) * ndim, bias=False)


def _projection(ndim: int, cin: int, cout: int, stride: Sequence[int]) -> nn.Module | None:
    """``downsample``: a strided 1x1 convolution + batch norm when channels or size change, else None."""
    if cin == cout and all(s == 1 for s in stride):
        return None
    return nn.Sequential(_conv(ndim, cin, cout, 1, stride), _BATCH_NORM[ndim](cout))


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))``, two 3x3 convolutions, the first strided.

    ``(B, in_channels, *s) -> (B, width, *s / stride)``.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: Sequence[int], ndim: int) -> None:
        super().__init__()
        self.conv1 = _conv(ndim, in_channels, width, 3, stride)
        self.bn1 = _BATCH_NORM[ndim](width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(ndim, width, width, 3)
        self.bn2 = _BATCH_NORM[ndim](width)
        self.downsample = _projection(ndim, in_channels, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce to ``width``) -> 3x3 (strided) -> 1x1 (expand to ``4 * width``), + ``downsample(x)``.

    ``(B, in_channels, *s) -> (B, 4 * width, *s / stride)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: Sequence[int], ndim: int) -> None:
        super().__init__()
        self.conv1 = _conv(ndim, in_channels, width, 1)
        self.bn1 = _BATCH_NORM[ndim](width)
        self.conv2 = _conv(ndim, width, width, 3, stride)
        self.bn2 = _BATCH_NORM[ndim](width)
        self.conv3 = _conv(ndim, width, width * self.expansion, 1)
        self.bn3 = _BATCH_NORM[ndim](width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(ndim, in_channels, width * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNetEncoder(nn.Module):
    """ResNet-``depth`` without its classifier: ``(B, in_channels, *s)`` -> five feature maps.

    The maps are the stem's (after conv1, bn1, relu; ``width`` channels at ``s / strides[0]``) and
    layer1..layer4's (layer1 after the max-pool of ``strides[1]``). ``strides``: five rows, one stride per
    axis each (default 2 everywhere, as ImageNet's ResNet: 1/2, 1/4, 1/8, 1/16, 1/32). ``channels`` lists
    the five maps' widths. ``stages`` are the modules ``frozen_stages`` counts: the stem, layer1..layer4.
    """

    def __init__(
        self,
        depth: int,
        in_channels: int,
        ndim: int,
        *,
        width: int = 64,
        strides: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        kind, blocks = RESNET_LAYOUTS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        rows = [tuple(r) for r in strides] if strides is not None else [(2,) * ndim] * ENCODER_LEVELS
        self.conv1 = _conv(ndim, in_channels, width, 7, rows[0])
        self.bn1 = _BATCH_NORM[ndim](width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = _MAX_POOL[ndim](kernel_size=3, stride=rows[1], padding=1)
        layers: list[nn.Sequential] = []
        cin = width
        for i, n_blocks in enumerate(blocks):
            first = (1,) * ndim if i == 0 else rows[i + 1]
            planes = width * 2**i
            stack = [block(cin, planes, first, ndim)]
            cin = planes * block.expansion
            stack += [block(cin, planes, (1,) * ndim, ndim) for _ in range(n_blocks - 1)]
            layers.append(nn.Sequential(*stack))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.channels = [width] + [width * 2**i * block.expansion for i in range(4)]

    def stages(self) -> list[list[nn.Module]]:
        """The modules of each freezable stage, in order: the stem (conv1, bn1), layer1, ..., layer4."""
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3, self.layer4(f3)]


def init_resnet(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """torchvision's ResNet initialisation: He normal (fan out, ReLU) convolutions, batch norms 1 and 0."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
