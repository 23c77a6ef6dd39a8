"""Networks of the U-Net family and their configuration.

The configuration (:mod:`medseg.models.unet_config`) is pure Python; the networks need torch, which is imported
only when one of them is first used (``medseg.models.UNet``), so reading plans stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medseg.models.unet_config import MODEL_PRESETS, UNetConfig, classic_config, nnunet_config

if TYPE_CHECKING:
    from medseg.models.registry import MODELS, build_model
    from medseg.models.unet import UNet

__all__ = ["MODELS", "MODEL_PRESETS", "UNet", "UNetConfig", "build_model", "classic_config", "nnunet_config"]

# Names that need torch, and the module that defines each.
_LAZY = {
    "MODELS": "medseg.models.registry",
    "build_model": "medseg.models.registry",
    "UNet": "medseg.models.unet",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
