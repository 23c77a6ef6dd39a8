"""Every network medseg can build, by name: one literal dict, filled where it is defined.

Example:
    >>> from medseg.models.unet_config import classic_config
    >>> net = build_model(classic_config(2, in_channels=1, out_channels=2, base_features=4), "unet")
    >>> type(net).__name__
    'UNet'
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models.unet import UNet
from medseg.models.unet_config import UNetConfig

__all__ = ["MODELS", "ModelFactory", "build_model"]


class ModelFactory(Protocol):
    """What a registered model is: ``factory(config, generator=...)`` returns an ``nn.Module``."""

    def __call__(self, config: UNetConfig, *, generator: torch.Generator | None = None) -> nn.Module: ...


MODELS: dict[str, ModelFactory] = {
    "unet": UNet,
}


def build_model(config: UNetConfig, name: str = "unet", *, generator: torch.Generator | None = None) -> nn.Module:
    """Build the network ``name`` from ``config``; ``generator`` seeds its weight initialisation."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](config, generator=generator)
