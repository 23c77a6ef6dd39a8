"""Multi-modal fusion: how a case's channels (T1, FLAIR, T1 post-contrast, ...) meet in the network.

``plans.json`` records ``fusion`` and :func:`build_network` builds the network for it (training and
prediction both build through it):

* ``early`` (the default): the channels are stacked and enter one network (``in_channels`` = C). This is
  the registered network itself, unchanged.
* ``intermediate``: one encoder per modality (each with ``in_channels`` = 1) and one decoder with its heads
  (:class:`IntermediateFusion`). At every level the C encoders' feature maps are concatenated and a 1x1
  convolution brings them back to the level's width; the fused maps are the decoder's skips and bottleneck.
  Only networks built as ``encoder -> decoder -> heads`` (the U-Net family: ``unet``, ``classic-unet``,
  ``residual-unet``, ``attention-unet``) can be split so; :func:`check_fusion` refuses others at plan time.
  What it relies on is the U-Net's forward: ``encoder(x)`` returns the levels' maps (``features[l]``
  channels each), the network's ``dropout`` (if any) acts on the last one, ``decoder(maps)`` and
  ``heads(decoded, spatial)`` follow, and ``divisor`` is the size multiple the encoder needs.
* ``late``: one whole network per modality (``in_channels`` = 1), logits averaged (:class:`LateFusion`),
  each deep-supervision output too. Works for every registered network.

Cost: ``intermediate`` has C encoders and ``late`` C whole networks, so a training step costs about C
times (``late``) or a bit under C times (``intermediate``) the early network's. Both trace, export to ONNX
and (for scriptable networks) script like the networks they are built from.

Why concatenation + 1x1 convolution, not a mean, for ``intermediate``: a modality matters at some scales
and for some structures only (FLAIR shows oedema, T1 post-contrast the enhancing rim), and a learnt 1x1
mixing can weight each modality per level and per feature, for ``C * f^2`` extra weights per level of width
``f`` (small beside the encoders). Each 1x1 convolution is initialised to the mean of the modalities' maps
(block-diagonal ``1/C``), so an untrained fused network starts as mean fusion: the decoder sees features of
the scale a single encoder gives it, and training moves away from the mean only where it helps.

Hand-written (no library offers fusion of the U-Net family's encoders); built from the registered networks
(:data:`medseg.models.registry.MODELS`), so every network keeps its own blocks, padding and initialisation.

Example:
    >>> from medseg.models.unet_config import UNetConfig
    >>> config = UNetConfig(2, 2, 3, features=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
    ...                     strides=((1, 1), (2, 2), (2, 2)))
    >>> net = build_network(config, "intermediate").eval()
    >>> net(torch.zeros(1, 2, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.models.blocks import conv_class, pad_to_multiple
from medseg.models.configs import ModelConfig, ModelInputs
from medseg.models.registry import MODELS, build_model

__all__ = [
    "FUSIONS",
    "IntermediateFusion",
    "LateFusion",
    "build_network",
    "check_fusion",
    "check_fusion_channels",
    "intermediate_models",
    "splits_into_encoder_decoder",
]

FUSIONS: tuple[str, ...] = ("early", "intermediate", "late")


def build_network(config: ModelConfig, fusion: str = "early", *, generator: torch.Generator | None = None) -> nn.Module:
    """The network of ``config`` for ``fusion`` ('early', 'intermediate' or 'late'); ``config.in_channels``
    is the number of modalities. ``generator`` seeds every branch's weights (the branches differ)."""
    check_fusion(fusion, config)
    if fusion == "early":
        return build_model(config, generator=generator)
    if fusion == "intermediate":
        return IntermediateFusion(config, generator=generator)
    return LateFusion(config, generator=generator)


def check_fusion(fusion: str, config: ModelConfig, inputs: ModelInputs | None = None) -> None:
    """Refuse a fusion the network or the data cannot do, in one line: an unknown name, ``intermediate`` or
    ``late`` with a single channel, ``intermediate`` for a network that is not ``encoder -> decoder -> heads``
    (``inputs``, when given, lets the message name the registered networks that are, for this data)."""
    check_fusion_channels(fusion, config.in_channels)
    if fusion == "intermediate" and not splits_into_encoder_decoder(config):
        names = ", ".join(intermediate_models(inputs)) if inputs is not None else "the U-Net family"
        raise ConfigError(
            f"fusion 'intermediate' needs a network built as encoder -> decoder -> heads, which model "
            f"{config.name!r} is not; choose one of {names} (or --fusion late, which fits every model)"
        )


def check_fusion_channels(fusion: str, n_channels: int) -> None:
    """Refuse an unknown fusion, or ``intermediate`` / ``late`` for data of fewer than 2 channels (cheap:
    planning calls it before reading any case)."""
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if fusion != "early" and n_channels < 2:
        raise ConfigError(
            f"fusion {fusion!r} needs at least 2 channels (modalities); this data has {n_channels}: use --fusion early"
        )


def splits_into_encoder_decoder(config: ModelConfig) -> bool:
    """Whether the network of ``config`` has ``encoder``, ``decoder`` and ``heads`` modules, a ``divisor``
    and per-level ``features`` (what :class:`IntermediateFusion` takes apart). Built on the meta device: no
    memory and milliseconds, whatever the network's size."""
    if not hasattr(config, "features"):
        return False
    with torch.device("meta"):
        net = build_model(_single_channel(config), generator=torch.Generator())  # meta: draws nothing
    parts = (getattr(net, part, None) for part in ("encoder", "decoder", "heads"))
    return all(isinstance(p, nn.Module) for p in parts) and hasattr(net, "divisor")


def intermediate_models(inputs: ModelInputs) -> list[str]:
    """The registered networks that :class:`IntermediateFusion` can split, planned for ``inputs`` (a network
    that cannot be planned for them is no choice for this data, so it is left out)."""
    names = []
    for name, entry in sorted(MODELS.items()):
        if inputs.ndim not in entry.ndims:
            continue
        try:
            config = entry.plan(inputs)
        except ConfigError:
            continue
        if splits_into_encoder_decoder(config):
            names.append(name)
    return names


def _single_channel(config: Any) -> Any:
    return dataclasses.replace(config, in_channels=1)


class IntermediateFusion(nn.Module):
    """One encoder per modality, features fused at every level, one decoder and its heads.

    ``(B, C, *spatial)`` -> as the network of ``config``: eval mode ``(B, out_channels, *spatial)``; training
    mode with deep supervision ``config.n_outputs`` maps, full resolution first. Channel ``c`` enters
    encoder ``c`` alone; at level ``l`` the C maps ``(B, features[l], ...)`` are concatenated and a 1x1
    convolution (no bias; initialised to their mean) gives ``(B, features[l], ...)``. The encoders, decoder
    and heads are those of ``config``'s registered network built with ``in_channels`` = 1.

    Example:
        >>> from medseg.models.unet_config import UNetConfig
        >>> config = UNetConfig(2, 3, 2, (4, 8), ((3, 3),) * 2, ((1, 1), (2, 2)), deep_supervision=False)
        >>> IntermediateFusion(config).eval()(torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 2, 16, 16])
    """

    def __init__(self, config: ModelConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        modalities, widths = config.in_channels, tuple(cast(Any, config).features)
        nets = [build_model(_single_channel(config), generator=generator) for _ in range(modalities)]
        self.encoders = nn.ModuleList(cast(nn.Module, net.encoder) for net in nets)
        conv = conv_class(config.ndim)
        self.fuse = nn.ModuleList(_mean_init(conv(modalities * f, f, 1, bias=False), modalities) for f in widths)
        first = cast(Any, nets[0])
        dropout = getattr(first, "dropout", None)  # the network's, on the (fused) bottleneck; no parameters
        self.dropout = dropout if isinstance(dropout, nn.Module) else nn.Identity()
        self.decoder, self.heads = cast(nn.Module, first.decoder), cast(nn.Module, first.heads)
        self.divisor = [int(d) for d in first.divisor]  # inputs are padded to a multiple of this per axis

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        spatial = list(x.shape[2:])
        x = pad_to_multiple(x, self.divisor)
        per_modality = [encoder(x[:, c : c + 1]) for c, encoder in enumerate(self.encoders)]
        fused: list[Tensor] = []
        for level, fuse in enumerate(self.fuse):
            fused.append(fuse(torch.cat([features[level] for features in per_modality], dim=1)))
        fused[-1] = self.dropout(fused[-1])
        return self.heads(self.decoder(fused), spatial)


def _mean_init(conv: nn.Module, modalities: int) -> nn.Module:
    """Set a 1x1 convolution ``(C * f) -> f`` to the mean over the C modalities of each feature."""
    weight = cast(Tensor, conv.weight)  # (f, C * f, 1, ...)
    width = weight.shape[0]
    with torch.no_grad():
        eye = torch.eye(width, dtype=weight.dtype, device=weight.device) / modalities
        weight.copy_(eye.repeat(1, modalities).reshape(weight.shape))
    return conv


class LateFusion(nn.Module):
    """One whole network per modality, their logits averaged.

    ``(B, C, *spatial)`` -> as the network of ``config``: channel ``c`` enters network ``c`` (built with
    ``in_channels`` = 1); eval mode returns the mean of the C logit maps ``(B, out_channels, *spatial)``,
    training mode with deep supervision the mean of each of the ``config.n_outputs`` outputs. The mean is
    ``torch.stack(...).mean(0)`` of the branches' outputs, exactly.

    Example:
        >>> from medseg.models.unet_config import UNetConfig
        >>> config = UNetConfig(2, 2, 3, (4, 8), ((3, 3),) * 2, ((1, 1), (2, 2)))
        >>> LateFusion(config).eval()(torch.zeros(1, 2, 15, 17)).shape
        torch.Size([1, 3, 15, 17])
    """

    def __init__(self, config: ModelConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.branches = nn.ModuleList(
            build_model(_single_channel(config), generator=generator) for _ in range(config.in_channels)
        )

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        per_branch: list[list[Tensor]] = []  # each branch's outputs (one, or the deep-supervision maps)
        single = True
        for c, branch in enumerate(self.branches):
            out = branch(x[:, c : c + 1])
            if isinstance(out, Tensor):
                per_branch.append([out])
            else:
                per_branch.append(out)
                single = False
        means = [torch.stack([outs[k] for outs in per_branch]).mean(0) for k in range(len(per_branch[0]))]
        if single:
            return means[0]
        return means
