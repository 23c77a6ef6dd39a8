"""UNet++ (Zhou et al. 2018), 2D and 3D: encoder -> nested dense skip pathways -> full-resolution heads.

The encoder is the U-Net's (:class:`~medseg.models.unet.Encoder`, node ``X[i][0]`` = level ``i``). Between
encoder and output, every level ``i`` grows a row of nested nodes: ``X[i][j]`` (``j >= 1``) is a conv stack at
level ``i``'s width and kernel applied to ``concat(X[i][0], ..., X[i][j-1], up(X[i+1][j-1]))``, where ``up``
brings the coarser node onto level ``i``'s grid by level ``i + 1``'s stride (so anisotropic strides and
kernels work). ``L`` levels give ``L (L - 1) / 2`` nested nodes; the top row ``X[0][1..L-1]`` is at full
resolution, and ``X[0][L-1]`` (the deepest-nested node) is the network's output.

Hand-written on medseg's blocks because MONAI's ``BasicUNetPlusPlus`` is fixed to five levels and isotropic
2x max-pooling; on that topology the two agree (the same parameters but MONAI's transposed-conv biases and
its head on ``X[0][1]``, the same outputs with copied weights; ``tests/models/test_unetpp.py``). The config
is a :class:`~medseg.models.unet_config.UNetConfig` named ``unet++``: the nested pathways add no setting.

Example:
    >>> import torch
    >>> config = UNetConfig(2, 1, 3, features=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
    ...                     strides=((1, 1), (2, 2), (2, 2)), name="unet++")
    >>> UNetPlusPlus(config).eval()(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medseg.models.blocks import (
    conv_class,
    conv_stack,
    crop_spatial,
    dropout_layer,
    init_weights,
    negative_slope,
    pad_to_multiple,
    upsample_layer,
)
from medseg.models.unet import Encoder
from medseg.models.unet_config import UNetConfig, UNetTopology

__all__ = ["NestedNode", "UNetPlusPlus", "nested_nodes"]


def nested_nodes(levels: int) -> list[tuple[int, int]]:
    """``(i, j)`` of every nested node of a ``levels``-level UNet++ in computing order: column by column
    (``j = 1 .. levels - 1``), levels ``i = 0 .. levels - 1 - j`` within a column.

    Example:
        >>> nested_nodes(3)
        [(0, 1), (1, 1), (0, 2)]
    """
    return [(i, j) for j in range(1, levels) for i in range(levels - j)]


class NestedNode(nn.Module):
    """Node ``X[i][j]`` (``j >= 1``): up-sample ``X[i+1][j-1]``, concatenate after ``X[i][0..j-1]``, convolve.

    ``forward(coarse, row)``: ``coarse`` is ``(B, features[i + 1], *s)``, ``row`` the ``j`` maps
    ``X[i][0..j-1]``, each ``(B, features[i], *s * strides[i + 1])``; returns ``(B, features[i], *row[0].shape[2:])``.
    The up-sampling (transposed conv or interpolation + 1x1 conv) maps ``features[i + 1] -> features[i]``.
    """

    def __init__(self, config: UNetTopology, level: int, column: int) -> None:
        super().__init__()
        width = config.features[level]
        self.up = upsample_layer(config, config.features[level + 1], width, config.strides[level + 1])
        self.convs = conv_stack(config, level, (column + 1) * width, (1,) * config.ndim)

    def forward(self, coarse: Tensor, row: list[Tensor]) -> Tensor:
        return self.convs(torch.cat(row + [self.up(coarse)], dim=1))  # noqa: RUF005 (TorchScript has no [*row])


class UNetPlusPlus(nn.Module):
    """UNet++ for ``(B, in_channels, *spatial)`` images, 2D or 3D, any spatial size.

    Eval mode (or ``deep_supervision=False``) returns the deepest-nested node's logits ``(B, out_channels,
    *spatial)``. Training mode with deep supervision returns ``config.n_outputs`` full-resolution maps from
    1x1 heads on the top row, the deepest-nested node first: ``X[0][L-1], X[0][L-2], ...``. The paper puts a
    head on each of ``X[0][1..L-1]``; we keep the ``max(1, L - 2)`` most nested of them, so the count equals
    the U-Net's (one loss rule for the family; ``X[0][1]`` still learns through the nodes it feeds). Padding
    to ``config.divisor``, bottleneck dropout (``config.dropout``, training only) and He-normal weights from
    ``generator`` as :class:`~medseg.models.unet.UNet`.

    Example:
        >>> kernels = ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
        >>> strides = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
        >>> config = UNetConfig(3, 1, 2, (4, 8, 16, 32), kernels, strides, name="unet++")
        >>> outputs = UNetPlusPlus(config).train()(torch.zeros(2, 1, 8, 16, 16))
        >>> [tuple(o.shape) for o in outputs]
        [(2, 2, 8, 16, 16), (2, 2, 8, 16, 16)]
    """

    def __init__(self, config: UNetConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        levels = len(config.features)
        self.encoder = Encoder(config)
        self.dropout = dropout_layer(config.ndim, config.dropout)  # on the bottleneck; no parameters
        self.node_index = nested_nodes(levels)
        self.nodes = nn.ModuleList(NestedNode(config, i, j) for i, j in self.node_index)
        conv = conv_class(config.ndim)
        self.heads = nn.ModuleList(conv(config.features[0], config.out_channels, 1) for _ in range(config.n_outputs))
        self.deep_supervision = config.deep_supervision
        self.divisor = list(config.divisor)  # inputs are padded to a multiple of this per axis
        init_weights(self, negative_slope(config.activation), generator)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        spatial = list(x.shape[2:])
        encoded = self.encoder(pad_to_multiple(x, self.divisor))
        encoded[-1] = self.dropout(encoded[-1])
        grid = [[level] for level in encoded]  # grid[i][j] = X[i][j]
        for k, node in enumerate(self.nodes):
            i, j = self.node_index[k]
            grid[i].append(node(grid[i + 1][j - 1], grid[i]))
        top = grid[0]
        if not (self.training and self.deep_supervision):
            return crop_spatial(self.heads[0](top[-1]), spatial)
        outputs: list[Tensor] = []
        for k, head in enumerate(self.heads):
            outputs.append(crop_spatial(head(top[-1 - k]), spatial))
        return outputs
