"""Every network medseg can build, by name: one literal dict, ``{name: ModelEntry}``.

An entry names the config class (one member of :data:`medseg.models.configs.ModelConfig`), the factory
that builds the network from it, and the planning rule that fills the config from what planning knows
(:class:`~medseg.models.configs.ModelInputs`). ``plans.json`` records the name in ``model.name``;
``medseg train --model NAME`` picks it.

Example:
    >>> from medseg.models.unet_config import classic_config
    >>> net = build_model(classic_config(2, in_channels=1, out_channels=2, base_features=4))
    >>> type(net).__name__
    'UNet'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models.attention_unet import AttentionUNet
from medseg.models.configs import ModelConfig, ModelInputs
from medseg.models.residual_unet import ResidualUNet
from medseg.models.residual_unet_config import ResidualUNetConfig, plan_residual_unet
from medseg.models.unet import UNet
from medseg.models.unet_config import UNetConfig, plan_attention_unet, plan_classic_unet, plan_unet

__all__ = ["MODELS", "ModelEntry", "ModelFactory", "build_model", "model_entry"]


class ModelFactory(Protocol):
    """What a registered network is: ``factory(config, generator=...)`` returns an ``nn.Module`` whose
    training-mode output is one tensor or ``config.n_outputs`` deep-supervision tensors."""

    def __call__(self, config: Any, *, generator: torch.Generator | None = None) -> nn.Module: ...


@dataclass(frozen=True)
class ModelEntry:
    config: type
    build: ModelFactory
    plan: Callable[[ModelInputs], Any]
    description: str


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(UNetConfig, UNet, plan_unet, "nnU-Net-style U-Net: topology planned from patch and spacing"),
    "classic-unet": ModelEntry(UNetConfig, UNet, plan_classic_unet, "the 2015 U-Net: 64 -> 1024 features"),
    "residual-unet": ModelEntry(
        ResidualUNetConfig, ResidualUNet, plan_residual_unet, "nnU-Net's residual-encoder U-Net, planned as unet"
    ),
    "attention-unet": ModelEntry(
        UNetConfig, AttentionUNet, plan_attention_unet, "Oktay et al.'s attention-gated U-Net, planned as unet"
    ),
}


def model_entry(name: str) -> ModelEntry:
    """The entry of model ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(config: ModelConfig, *, generator: torch.Generator | None = None) -> nn.Module:
    """Build the network ``config.name`` from ``config``; ``generator`` seeds its weight initialisation."""
    entry = model_entry(config.name)
    if not isinstance(config, entry.config):
        raise ConfigError(f"model {config.name!r} needs a {entry.config.__name__}, got {type(config).__name__}")
    return entry.build(config, generator=generator)
