"""MONAI's SegResNet, UNETR, SwinUNETR and V-Net behind thin adapters: the only module that imports monai.

The networks are MONAI's, not re-implemented: each adapter holds the MONAI module as ``net`` (state keys
``net.<MONAI's keys>``, so a MONAI checkpoint loads into ``adapter.net``) and adds only what medseg's
contract asks of every network:

* any spatial size: inputs are zero-padded at the end of each axis to the size MONAI needs and the logits
  cropped back (SegResNet: a multiple of 2 ** (levels - 1); SwinUNETR: of 32; V-Net: of 16; UNETR: exactly
  its ``img_size``, so a larger input is an error);
* seeded weights: MONAI initialises from torch's global RNG, so the MONAI module is built under
  :func:`torch.random.fork_rng` with the CPU RNG seeded from ``generator``; the caller's RNG state is
  restored afterwards;
* V-Net with an ``in_channels`` that does not divide 16: a 1 x 1 x 1 input projection (``project``);
  V-Net's ``dropout`` also sets the two skip dropouts MONAI fixes at 0.5;
* UNETR: the cross-attention norms MONAI registers but never uses are frozen (``requires_grad=False``).

Shapes: ``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)`` in both modes (no deep
supervision).

Example:
    >>> import torch
    >>> from medseg.models.monai_configs import SegResNetConfig
    >>> net = SegResNet(SegResNetConfig(2, 1, 3, blocks_down=(1, 1, 1), blocks_up=(1, 1)),
    ...                 generator=torch.Generator().manual_seed(0)).eval()
    >>> net(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from monai.networks import nets
from torch import Tensor, nn

from medseg.models.blocks import crop_spatial, pad_to_multiple
from medseg.models.monai_configs import (
    SWIN_DIVISOR,
    SegResNetConfig,
    SwinUNETRConfig,
    UNETRConfig,
    VNetConfig,
)

__all__ = ["UNETR", "SegResNet", "SwinUNETR", "VNet", "build_seeded"]

Module = TypeVar("Module", bound=nn.Module)


def build_seeded(build: Callable[[], Module], generator: torch.Generator | None) -> Module:
    """``build()`` with torch's CPU RNG seeded from ``generator`` (one draw from it), restored afterwards.

    MONAI's modules draw their initial weights from torch's global RNG; this makes them a function of
    ``generator`` and leaves the caller's RNG untouched. ``generator=None`` builds from the global RNG.
    """
    if generator is None:
        return build()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))  # even under meta
    with torch.random.fork_rng(devices=[]):  # CPU only: MONAI builds on the CPU, CUDA RNGs stay as they are
        torch.default_generator.manual_seed(seed)
        return build()


class SegResNet(nn.Module):
    """MONAI's ``SegResNet`` (Myronenko 2018) for ``(B, in_channels, *spatial)``, 2D or 3D, any size.

    Example:
        >>> config = SegResNetConfig(3, 1, 2, blocks_down=(1, 1, 1), blocks_up=(1, 1))
        >>> SegResNet(config).eval()(torch.zeros(1, 1, 9, 10, 11)).shape
        torch.Size([1, 2, 9, 10, 11])
    """

    def __init__(self, config: SegResNetConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.net = build_seeded(
            lambda: nets.SegResNet(
                spatial_dims=config.ndim,
                init_filters=config.init_filters,
                in_channels=config.in_channels,
                out_channels=config.out_channels,
                dropout_prob=config.dropout or None,
                blocks_down=config.blocks_down,
                blocks_up=config.blocks_up,
            ),
            generator,
        )
        self.divisor = list(config.divisor)

    def forward(self, x: Tensor) -> Tensor:
        return crop_spatial(self.net(pad_to_multiple(x, self.divisor)), list(x.shape[2:]))


class UNETR(nn.Module):
    """MONAI's ``UNETR`` (Hatamizadeh et al. 2022) for ``(B, in_channels, *spatial)``, 2D or 3D.

    The ViT's position embedding fixes the input to ``config.img_size``: smaller inputs are zero-padded up
    to it and cropped back, a larger one raises ``ValueError`` (prediction feeds patch-sized windows, and
    the plan's ``img_size`` covers the patch).

    Example:
        >>> config = UNETRConfig(2, 1, 2, img_size=(32, 32), feature_size=4, hidden_size=32, mlp_dim=64,
        ...                      num_heads=2)
        >>> UNETR(config).eval()(torch.zeros(1, 1, 20, 31)).shape
        torch.Size([1, 2, 20, 31])
    """

    def __init__(self, config: UNETRConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.net = build_seeded(
            lambda: nets.UNETR(
                in_channels=config.in_channels,
                out_channels=config.out_channels,
                img_size=config.img_size,
                feature_size=config.feature_size,
                hidden_size=config.hidden_size,
                mlp_dim=config.mlp_dim,
                num_heads=config.num_heads,
                dropout_rate=config.dropout,
                spatial_dims=config.ndim,
            ),
            generator,
        )
        # MONAI's transformer blocks register norm_cross_attn but use it only with cross-attention (off in
        # UNETR): frozen, so no optimiser carries parameters that never get a gradient
        for block in self.net.vit.blocks:
            block.norm_cross_attn.requires_grad_(bool(block.with_cross_attention))
        self.img_size = list(config.img_size)

    def forward(self, x: Tensor) -> Tensor:
        spatial = list(x.shape[2:])
        if not torch.jit.is_tracing():  # a traced graph checks nothing; its crop fails on a larger input
            for axis in range(len(self.img_size)):
                if spatial[axis] > self.img_size[axis]:
                    raise ValueError(
                        f"UNETR input {spatial} exceeds its img_size {self.img_size}; feed windows of the patch size"
                    )
        pads: list[int] = []
        for axis in range(len(self.img_size) - 1, -1, -1):  # F.pad lists the last axis first
            pads += [0, self.img_size[axis] - spatial[axis]]
        return crop_spatial(self.net(F.pad(x, pads)), spatial)


class SwinUNETR(nn.Module):
    """MONAI's ``SwinUNETR`` (Hatamizadeh et al. 2022) for ``(B, in_channels, *spatial)``, 2D or 3D, any size.

    Inputs are zero-padded to a multiple of 32 per axis (and a 32 x 32 (x 32) one further to 64 on the last
    axis: its bottleneck would be one voxel, which MONAI's instance norm refuses). MONAI's window partition
    reads sizes as Python numbers, so a traced or exported graph holds for inputs that pad to the traced
    input's size only (any batch size); medseg exports at the patch size.

    Example:
        >>> config = SwinUNETRConfig(2, 1, 2, feature_size=12, depths=(1, 1, 1, 1), num_heads=(3, 3, 3, 3))
        >>> SwinUNETR(config).eval()(torch.zeros(1, 1, 40, 50)).shape
        torch.Size([1, 2, 40, 50])
    """

    def __init__(self, config: SwinUNETRConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.net = build_seeded(
            lambda: nets.SwinUNETR(
                in_channels=config.in_channels,
                out_channels=config.out_channels,
                depths=config.depths,
                num_heads=config.num_heads,
                window_size=config.window_size,
                feature_size=config.feature_size,
                drop_rate=config.dropout,
                spatial_dims=config.ndim,
            ),
            generator,
        )
        self.divisor = list(config.divisor)

    def forward(self, x: Tensor) -> Tensor:
        spatial = list(x.shape[2:])
        x = pad_to_multiple(x, self.divisor)
        # 0 or 32 without a Python branch, so tracing records it from the input's shape
        single_voxel = math.prod(x.shape[2:]) == SWIN_DIVISOR ** len(spatial)
        return crop_spatial(self.net(F.pad(x, [0, SWIN_DIVISOR * single_voxel])), spatial)


class VNet(nn.Module):
    """MONAI's ``VNet`` (Milletari et al. 2016) for ``(B, in_channels, D, H, W)``, any size.

    Inputs are zero-padded to a multiple of 16 per axis. When ``in_channels`` does not divide 16 (MONAI's
    condition), a 1 x 1 x 1 convolution ``project`` maps them onto ``config.net_in_channels`` first;
    otherwise ``project`` is the identity and the state keys are MONAI's alone. ``config.dropout`` sets
    every dropout of the network: MONAI's ``dropout_prob_down`` / ``dropout_prob_up`` and the skip dropout
    of the two finest up levels, which MONAI fixes at 0.5 (so 0.5 is MONAI's V-Net exactly, 0 none).

    Example:
        >>> net = VNet(VNetConfig(3, 3, 2)).eval()
        >>> net(torch.zeros(1, 3, 9, 10, 11)).shape
        torch.Size([1, 2, 9, 10, 11])
    """

    def __init__(self, config: VNetConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        p = config.dropout or None
        channels = config.net_in_channels
        self.project: nn.Module = nn.Identity()
        if channels != config.in_channels:
            self.project = build_seeded(lambda: nn.Conv3d(config.in_channels, channels, 1), generator)
        self.net = build_seeded(
            lambda: nets.VNet(
                spatial_dims=3,
                in_channels=channels,
                out_channels=config.out_channels,
                dropout_prob_down=p,
                dropout_prob_up=(p, config.dropout),
            ),
            generator,
        )
        for level in (self.net.up_tr64, self.net.up_tr32):  # MONAI fixes their skip dropout at 0.5
            level.dropout2.p = config.dropout
        self.divisor = list(config.divisor)

    def forward(self, x: Tensor) -> Tensor:
        return crop_spatial(self.net(pad_to_multiple(self.project(x), self.divisor)), list(x.shape[2:]))
