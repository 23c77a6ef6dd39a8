"""Every model configuration class, as one tagged union for ``plans.json`` (pure Python, no torch).

``Plans.model`` is a :data:`ModelConfig`; in JSON it is an object whose ``"name"`` picks the class (each
class lists the names it serves in its ``NAMES`` class variable, see :mod:`medseg.serial`). To add a
network, add its config class to this union and its entry to :data:`medseg.models.registry.MODELS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from medseg.models.mobile_unet_config import MobileUNetConfig
from medseg.models.monai_configs import SegResNetConfig, SwinUNETRConfig, UNETRConfig, VNetConfig
from medseg.models.residual_unet_config import ResidualUNetConfig
from medseg.models.resnet_unet_config import ResNetUNetConfig
from medseg.models.unet_config import UNetConfig

__all__ = ["ModelConfig", "ModelInputs"]

# A union of every config class (UNetConfig serves unet, classic-unet, attention-unet and unet++).
# Union, not |: a runtime alias that serial.from_dict reads (hence noqa: UP007).
ModelConfig = Union[  # noqa: UP007
    UNetConfig,
    ResidualUNetConfig,
    ResNetUNetConfig,
    MobileUNetConfig,
    SegResNetConfig,
    UNETRConfig,
    SwinUNETRConfig,
    VNetConfig,
]


@dataclass(frozen=True)
class ModelInputs:
    """What planning knows when it configures a network: dimensionality, channels in and out, the patch
    (array axis order, planned voxels), the target spacing (mm) and whether it plans for a GPU."""

    ndim: int
    in_channels: int
    out_channels: int
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...]
    gpu: bool = False
