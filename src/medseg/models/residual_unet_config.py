"""The residual-encoder U-Net's topology as data: :class:`ResidualUNetConfig` and its plan rule (pure Python).

nnU-Net's ``ResidualEncoderUNet`` (Isensee et al. 2024, "nnU-Net Revisited") keeps the U-Net's topology and
decoder and replaces each encoder level's plain convolutions by a stack of basic residual blocks. The
config is a :class:`~medseg.models.unet_config.UNetConfig`'s fields plus ``blocks_per_level``; the network
is :class:`medseg.models.residual_unet.ResidualUNet`.

Example:
    >>> from medseg.models.configs import ModelInputs
    >>> config = plan_residual_unet(ModelInputs(2, 1, 3, (64, 64), (1.0, 1.0)))
    >>> config.blocks_per_level, config.features
    ((1, 2, 2, 2, 2), (16, 32, 64, 128, 256))
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from medseg.models.unet_config import (
    check_dropout,
    check_encoder_weights_fields,
    check_unet_fields,
    config_from_dict,
    config_to_dict,
    count_outputs,
    per_level_ints,
    plan_unet,
    total_stride,
)

if TYPE_CHECKING:
    from medseg.models.configs import ModelInputs

__all__ = ["NNUNET_RESENC_BLOCKS", "ResidualUNetConfig", "plan_residual_unet"]

# Residual blocks per encoder level of nnU-Net's ResEnc presets (M, L, XL): 1, 3, 4, 6, then 6 per level.
NNUNET_RESENC_BLOCKS: tuple[int, ...] = (1, 3, 4, 6)
CPU_MAX_BLOCKS = 2  # on a CPU a step must stay under a second: at most 2 blocks per level


@dataclass(frozen=True)
class ResidualUNetConfig:
    """Topology of a 2D or 3D U-Net with a residual encoder, one entry per level (level 0 = full resolution).

    The fields are :class:`~medseg.models.unet_config.UNetConfig`'s, with the same meaning and checks, plus
    ``blocks_per_level``: basic residual blocks (conv-norm-act-conv-norm, plus the skip, then act) at each
    encoder level. Level 0 starts with a stem convolution (``in_channels -> features[0]``), as nnU-Net's.
    With ``downsample='conv'`` the first block of a level is strided; with ``'maxpool'`` a max-pool comes
    first. ``convs_per_level`` is the decoder's convolutions per level (the encoder has two per block).
    """

    ndim: int
    in_channels: int
    out_channels: int
    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    blocks_per_level: tuple[int, ...]
    norm: str = "instance"
    activation: str = "leaky_relu"
    downsample: str = "conv"
    upsample: str = "transpose"
    convs_per_level: int = 2
    deep_supervision: bool = True
    dropout: float = 0.0
    encoder_weights: str = ""  # pretrained encoder weights (medseg pretrain) and their SHA-256, as UNetConfig's
    encoder_weights_sha256: str = ""
    name: str = "residual-unet"

    # the registry names this config class serves (see medseg.models.registry and medseg.serial)
    NAMES: ClassVar[tuple[str, ...]] = ("residual-unet",)

    def __post_init__(self) -> None:
        check_unet_fields(self)
        check_dropout(self)
        check_encoder_weights_fields(self)
        object.__setattr__(self, "blocks_per_level", per_level_ints(self, "blocks_per_level"))

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
    def from_dict(cls, d: dict[str, Any]) -> ResidualUNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`~medseg.errors.ConfigError`."""
        return typing.cast(ResidualUNetConfig, config_from_dict(cls, d))


def plan_residual_unet(inputs: ModelInputs) -> ResidualUNetConfig:
    """The planned U-Net's topology (:func:`~medseg.models.unet_config.plan_unet`: levels, widths, kernels,
    strides) with a residual encoder.

    Blocks per level follow nnU-Net's ResEnc presets, 1, 3, 4, 6, 6, ... on a GPU; on a CPU each level is
    capped at 2 blocks (1, 2, 2, 2, ...): a CPU training step then costs about 1.2-1.4x the plain U-Net's
    instead of 1.4-1.9x with nnU-Net's counts (measured on the demo and hippocampus plans, docs/models.md).
    """
    topology = plan_unet(inputs)
    levels = len(topology.features)
    blocks = NNUNET_RESENC_BLOCKS + (NNUNET_RESENC_BLOCKS[-1],) * max(0, levels - len(NNUNET_RESENC_BLOCKS))
    if not inputs.gpu:
        blocks = tuple(min(b, CPU_MAX_BLOCKS) for b in blocks)
    fields = {**dataclasses.asdict(topology), "name": "residual-unet"}
    return ResidualUNetConfig(**fields, blocks_per_level=blocks[:levels])
