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

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models.attention_unet import AttentionUNet
from medseg.models.configs import ModelConfig, ModelInputs
from medseg.models.mobile_unet import MobileUNet
from medseg.models.mobile_unet_config import MobileUNetConfig, plan_mobile_unet
from medseg.models.monai_configs import (
    SegResNetConfig,
    SwinUNETRConfig,
    UNETRConfig,
    VNetConfig,
    plan_segresnet,
    plan_swin_unetr,
    plan_unetr,
    plan_vnet,
)
from medseg.models.residual_unet import ResidualUNet
from medseg.models.residual_unet_config import ResidualUNetConfig, plan_residual_unet
from medseg.models.resnet_unet import ResNetUNet
from medseg.models.resnet_unet_config import ResNetUNetConfig, plan_resnet_unet
from medseg.models.unet import UNet
from medseg.models.unet_config import UNetConfig, plan_attention_unet, plan_classic_unet, plan_unet, plan_unetpp
from medseg.models.unetpp import UNetPlusPlus

__all__ = ["MODELS", "ModelEntry", "ModelFactory", "build_model", "model_entry"]


class ModelFactory(Protocol):
    """What a registered network is: ``factory(config, generator=...)`` returns an ``nn.Module`` whose
    training-mode output is one tensor or ``config.n_outputs`` deep-supervision tensors."""

    def __call__(self, config: Any, *, generator: torch.Generator | None = None) -> nn.Module: ...


@dataclass(frozen=True)
class ModelEntry:
    """One network: its config class, factory and plan rule, and what the shared contract
    (``tests/models/test_registry.py``) holds it to: the spatial dimensionalities it supports (``ndims``) and
    whether ``torch.jit.script`` compiles it (``scriptable``; tracing and ONNX export are required of all).
    ``static_shapes`` is empty when a traced or exported graph runs at any input size; otherwise it says why
    the graph holds only for inputs of the traced (padded) size (any batch), so an export uses the patch."""

    config: type
    build: ModelFactory
    plan: Callable[[ModelInputs], Any]
    description: str
    ndims: tuple[int, ...] = (2, 3)
    scriptable: bool = True
    static_shapes: str = ""

    def check_ndim(self, name: str, ndim: int) -> None:
        """Refuse data of a dimensionality the network does not support, naming the ones it does."""
        if ndim not in self.ndims:
            supported = " or ".join(f"{n}D" for n in self.ndims)
            raise ConfigError(f"model {name!r} supports {supported} data only; this data is {ndim}D")


def _monai_net(name: str) -> ModelFactory:
    """The factory of adapter ``name`` in :mod:`medseg.models.monai_nets`, imported on the first build only
    (importing monai costs seconds that a U-Net run should not pay)."""

    def build(config: Any, *, generator: torch.Generator | None = None) -> nn.Module:
        net: nn.Module = getattr(importlib.import_module("medseg.models.monai_nets"), name)(config, generator=generator)
        return net

    build.__qualname__ = build.__name__ = name
    return build


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(UNetConfig, UNet, plan_unet, "nnU-Net-style U-Net: topology planned from patch and spacing"),
    "classic-unet": ModelEntry(UNetConfig, UNet, plan_classic_unet, "the 2015 U-Net: 64 -> 1024 features"),
    "residual-unet": ModelEntry(
        ResidualUNetConfig, ResidualUNet, plan_residual_unet, "nnU-Net's residual-encoder U-Net, planned as unet"
    ),
    "attention-unet": ModelEntry(
        UNetConfig, AttentionUNet, plan_attention_unet, "Oktay et al.'s attention-gated U-Net, planned as unet"
    ),
    "unet++": ModelEntry(
        UNetConfig, UNetPlusPlus, plan_unetpp, "Zhou et al.'s UNet++: nested dense skips on unet's topology"
    ),
    "mobilenet-unet": ModelEntry(
        MobileUNetConfig,
        MobileUNet,
        plan_mobile_unet,
        "light U-Net for fast CPU inference: MobileNetV2 blocks, separable decoder, on unet's topology",
    ),
    "resnet18-unet": ModelEntry(
        ResNetUNetConfig,
        ResNetUNet,
        partial(plan_resnet_unet, name="resnet18-unet"),
        "U-Net with a ResNet-18 encoder (smp's Unet); ImageNet weights via --encoder-weights",
    ),
    "resnet34-unet": ModelEntry(
        ResNetUNetConfig,
        ResNetUNet,
        partial(plan_resnet_unet, name="resnet34-unet"),
        "U-Net with a ResNet-34 encoder (smp's Unet); ImageNet weights via --encoder-weights",
    ),
    "resnet50-unet": ModelEntry(
        ResNetUNetConfig,
        ResNetUNet,
        partial(plan_resnet_unet, name="resnet50-unet"),
        "U-Net with a ResNet-50 encoder (smp's Unet); ImageNet weights via --encoder-weights",
    ),
    "segresnet": ModelEntry(
        SegResNetConfig, _monai_net("SegResNet"), plan_segresnet, "MONAI's SegResNet (Myronenko 2018), wrapped"
    ),
    "unetr": ModelEntry(
        UNETRConfig, _monai_net("UNETR"), plan_unetr, "MONAI's UNETR: ViT encoder on the planned patch, wrapped"
    ),
    "swin-unetr": ModelEntry(
        SwinUNETRConfig,
        _monai_net("SwinUNETR"),
        plan_swin_unetr,
        "MONAI's SwinUNETR: Swin transformer encoder, wrapped",
        scriptable=False,  # MONAI's Swin blocks use keyword-only arguments and einops, which script rejects
        static_shapes="MONAI's window partition and attention masks take sizes as Python numbers",
    ),
    "vnet": ModelEntry(
        VNetConfig, _monai_net("VNet"), plan_vnet, "MONAI's V-Net (Milletari et al. 2016), 3D, wrapped", ndims=(3,)
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
    entry.check_ndim(config.name, config.ndim)
    return entry.build(config, generator=generator)
