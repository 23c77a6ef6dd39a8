"""The light U-Net's topology as data: :class:`MobileUNetConfig` and its plan rule (pure Python, no torch).

The network (:class:`medseg.models.mobile_unet.MobileUNet`, registry name ``mobilenet-unet``) keeps the planned
U-Net's levels, widths, per-axis kernels and strides, and swaps its convolutions for cheap ones: MobileNetV2's
inverted residual blocks in the encoder (Sandler et al. 2018) and depthwise-separable convolutions in the
decoder. The config is a :class:`~medseg.models.unet_config.UNetConfig`'s fields plus ``blocks_per_level``
and ``expansion``.

Example:
    >>> from medseg.models.configs import ModelInputs
    >>> config = plan_mobile_unet(ModelInputs(2, 1, 3, (64, 64), (1.0, 1.0)))
    >>> config.blocks_per_level, config.expansion, config.features
    ((0, 2, 2, 2, 2), 4, (8, 16, 32, 64, 128))
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from medseg.errors import ConfigError
from medseg.models.unet_config import (
    check_dropout,
    check_encoder_weights_fields,
    check_unet_fields,
    config_from_dict,
    config_to_dict,
    count_outputs,
    plan_unet,
    total_stride,
)

if TYPE_CHECKING:
    from medseg.models.configs import ModelInputs

__all__ = ["MOBILENET_V2_BLOCKS", "MobileUNetConfig", "plan_mobile_unet"]

# Inverted residual blocks per resolution of MobileNetV2 (its table 2, from stride 2 on: 1, 2, 3, then 7 and
# 4 at the two coarsest); per U-Net level we take 1, 2, 3, 4, then 4 per level.
MOBILENET_V2_BLOCKS: tuple[int, ...] = (1, 2, 3, 4)
CPU_MAX_BLOCKS = 2  # on a CPU: at most 2 blocks per level, none at full resolution (the stem alone)
CPU_WIDTH_MULTIPLIER = 0.5  # MobileNet's width multiplier (Howard et al. 2017), applied to the U-Net's features
EXPANSION = {False: 4, True: 6}  # hidden channels = expansion x input channels; MobileNetV2 uses 6


@dataclass(frozen=True)
class MobileUNetConfig:
    """Topology of a light 2D or 3D U-Net, one entry per level (level 0 = full resolution).

    The fields are :class:`~medseg.models.unet_config.UNetConfig`'s, with the same meaning and checks, plus
    ``blocks_per_level`` (inverted residual blocks at each encoder level: at least 1, except level 0, where
    0 leaves the stem alone at full resolution) and ``expansion`` (each block's
    hidden channels are ``expansion`` times its input channels; 1 drops the expanding 1x1 convolution, as
    MobileNetV2's first block). Level 0 starts with a plain stem convolution (``in_channels -> features[0]``).
    With ``downsample='conv'`` the first block of a level carries the stride (in its depthwise convolution);
    with ``'maxpool'`` a max-pool comes first. ``convs_per_level`` counts the decoder's depthwise-separable
    convolutions per level.
    """

    ndim: int
    in_channels: int
    out_channels: int
    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    blocks_per_level: tuple[int, ...]
    expansion: int = 6
    norm: str = "instance"
    activation: str = "leaky_relu"
    downsample: str = "conv"
    upsample: str = "transpose"
    convs_per_level: int = 2
    deep_supervision: bool = True
    dropout: float = 0.0
    encoder_weights: str = ""  # pretrained encoder weights (medseg pretrain) and their SHA-256, as UNetConfig's
    encoder_weights_sha256: str = ""
    name: str = "mobilenet-unet"

    # the registry names this config class serves (see medseg.models.registry and medseg.serial)
    NAMES: ClassVar[tuple[str, ...]] = ("mobilenet-unet",)

    def __post_init__(self) -> None:
        check_unet_fields(self)
        check_dropout(self)
        check_encoder_weights_fields(self)
        object.__setattr__(self, "blocks_per_level", _checked_blocks(self))
        if isinstance(self.expansion, bool) or not isinstance(self.expansion, int) or self.expansion < 1:
            raise ConfigError(f"MobileUNetConfig.expansion = {self.expansion!r} must be a positive integer (e.g. 6)")

    @property
    def n_outputs(self) -> int:
        """Outputs in training: as :attr:`UNetConfig.n_outputs <medseg.models.unet_config.UNetConfig.n_outputs>`."""
        return count_outputs(len(self.features), self.deep_supervision)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Product of the strides per axis: spatial sizes that are multiples of it need no padding."""
        return total_stride(self.strides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MobileUNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`~medseg.errors.ConfigError`."""
        return typing.cast(MobileUNetConfig, config_from_dict(cls, d))


def _checked_blocks(config: MobileUNetConfig) -> tuple[int, ...]:
    """``blocks_per_level`` as a tuple: one count per level, at least 1, at least 0 at level 0."""
    where, value, levels = "MobileUNetConfig.blocks_per_level", config.blocks_per_level, len(config.features)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != levels:
        raise ConfigError(f"{where} = {value!r} must have one entry per level ({levels}, as many as features)")
    for level, count in enumerate(value):
        least = 0 if level == 0 else 1
        if isinstance(count, bool) or not isinstance(count, int) or count < least:
            raise ConfigError(f"{where}[{level}] = {count!r} must be an integer >= {least}")
    return tuple(value)


def plan_mobile_unet(inputs: ModelInputs) -> MobileUNetConfig:
    """The planned U-Net's topology (:func:`~medseg.models.unet_config.plan_unet`: levels, widths, kernels,
    strides) with MobileNetV2-style blocks.

    On a GPU: the U-Net's widths, blocks per level 1, 2, 3, 4, 4, ... and expansion 6 (MobileNetV2's). On a
    CPU, where thin layers are bound by memory traffic rather than arithmetic: half the U-Net's widths
    (MobileNet's width multiplier 0.5), no block at full resolution (the stem alone; 0, 2, 2, ...) and
    expansion 4. At the U-Net's widths, eval mode on a 2-core CPU took 1.6-2.4x (2D, 256 x 256) and 2.5-2.8x
    (3D, 96^3) ``unet``'s time; with these three it takes 0.5-0.7x and 0.55-0.8x (docs/models.md).
    """
    topology = plan_unet(inputs)
    levels = len(topology.features)
    blocks = MOBILENET_V2_BLOCKS + (MOBILENET_V2_BLOCKS[-1],) * max(0, levels - len(MOBILENET_V2_BLOCKS))
    features = topology.features
    if not inputs.gpu:
        blocks = (0, *(min(b, CPU_MAX_BLOCKS) for b in blocks[1:]))
        features = tuple(max(1, round(f * CPU_WIDTH_MULTIPLIER)) for f in features)
    fields = {**dataclasses.asdict(topology), "features": features, "name": "mobilenet-unet"}
    return MobileUNetConfig(**fields, blocks_per_level=blocks[:levels], expansion=EXPANSION[inputs.gpu])
