"""Networks of the U-Net family and their configuration.

The configuration (:mod:`medseg.models.unet_config`) is pure Python; the networks need torch, which is imported
only when one of them is first used (``medseg.models.UNet``), so reading plans stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medseg.models.mobile_unet_config import MobileUNetConfig
from medseg.models.monai_configs import SegResNetConfig, SwinUNETRConfig, UNETRConfig, VNetConfig
from medseg.models.residual_unet_config import ResidualUNetConfig
from medseg.models.resnet_unet_config import ResNetUNetConfig
from medseg.models.unet_config import UNetConfig, classic_config, nnunet_config

if TYPE_CHECKING:
    from medseg.models.attention_unet import AttentionUNet
    from medseg.models.mobile_unet import MobileUNet
    from medseg.models.monai_nets import UNETR, SegResNet, SwinUNETR, VNet
    from medseg.models.registry import MODELS, build_model
    from medseg.models.residual_unet import ResidualUNet
    from medseg.models.resnet_unet import ResNetUNet
    from medseg.models.unet import UNet
    from medseg.models.unetpp import UNetPlusPlus

__all__ = [
    "MODELS",
    "UNETR",
    "AttentionUNet",
    "MobileUNet",
    "MobileUNetConfig",
    "ResNetUNet",
    "ResNetUNetConfig",
    "ResidualUNet",
    "ResidualUNetConfig",
    "SegResNet",
    "SegResNetConfig",
    "SwinUNETR",
    "SwinUNETRConfig",
    "UNETRConfig",
    "UNet",
    "UNetConfig",
    "UNetPlusPlus",
    "VNet",
    "VNetConfig",
    "build_model",
    "classic_config",
    "nnunet_config",
]

# Names that need torch, and the module that defines each.
_LAZY = {
    "MODELS": "medseg.models.registry",
    "build_model": "medseg.models.registry",
    "UNet": "medseg.models.unet",
    "ResidualUNet": "medseg.models.residual_unet",
    "AttentionUNet": "medseg.models.attention_unet",
    "UNetPlusPlus": "medseg.models.unetpp",
    "MobileUNet": "medseg.models.mobile_unet",
    "ResNetUNet": "medseg.models.resnet_unet",
    # MONAI's networks behind adapters: importing them imports monai
    "SegResNet": "medseg.models.monai_nets",
    "UNETR": "medseg.models.monai_nets",
    "SwinUNETR": "medseg.models.monai_nets",
    "VNet": "medseg.models.monai_nets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
