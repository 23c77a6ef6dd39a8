"""The ResNet-encoder U-Net as data: :class:`ResNetUNetConfig` and its plan rule (pure Python, no torch).

The network (:class:`medseg.models.resnet_unet.ResNetUNet`) is segmentation_models_pytorch's ``Unet``
topology: a ResNet-18, -34 or -50 encoder (He et al. 2016, torchvision's parameter names, so ImageNet
weights load) with five feature levels (stem 1/2, layer1 1/4, ... layer4 1/32) and a U-Net decoder of five
stages, the last back at full resolution. The registry name picks the encoder depth
(``resnet18-unet``, ``resnet34-unet``, ``resnet50-unet``).

Example:
    >>> from medseg.models.configs import ModelInputs
    >>> config = plan_resnet_unet(ModelInputs(2, 1, 3, (64, 64), (1.0, 1.0)), name="resnet34-unet")
    >>> config.divisor, config.decoder_channels, config.n_outputs
    ((32, 32), (128, 64, 32, 16, 16), 4)
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from medseg.errors import ConfigError
from medseg.models.unet_config import config_from_dict, config_to_dict, count_outputs, plan_unet, total_stride

if TYPE_CHECKING:
    from medseg.models.configs import ModelInputs

__all__ = ["ENCODER_LEVELS", "RESNET_LAYOUTS", "ResNetUNetConfig", "plan_resnet_unet"]

# Per depth: the block type and the blocks of layer1..layer4 (torchvision's resnet18/34/50).
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
ENCODER_LEVELS = 5  # downsampling steps: conv1, max-pool, layer2, layer3, layer4 (1/2 ... 1/32)
FROZEN_STAGES_MAX = 5  # stem, layer1, layer2, layer3, layer4
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ResNetUNetConfig:
    """A 2D or 3D U-Net whose encoder is a ResNet (depth from ``name``).

    ``strides`` has one row per downsampling step of the encoder (conv1, max-pool, layer2, layer3, layer4),
    each with one stride per axis: ImageNet's ResNet uses 2 everywhere (total 32); a 3D plan may keep 1 on
    an axis too thin to halve five times. ``encoder_width`` is the stem's width (torchvision's 64; layers
    have 1, 2, 4, 8 times it, Bottleneck outputs 4 times that); pretrained weights need 64.
    ``decoder_channels`` are the five decoder stages' widths, deepest first (the last is at full
    resolution). ``dropout`` is applied to the bottleneck features (layer4's output).

    ``encoder_weights`` is the file the encoder's weights are loaded from at the start of training
    (provenance; the checkpoint holds them afterwards, prediction never reads it) and
    ``encoder_weights_sha256`` its recorded SHA-256, checked before loading. ``frozen_stages`` freezes the
    first N of stem, layer1, ..., layer4 (0: none): no gradient, batch norms kept in eval mode.
    """

    ndim: int
    in_channels: int
    out_channels: int
    strides: tuple[tuple[int, ...], ...]
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    encoder_width: int = 64
    deep_supervision: bool = True
    dropout: float = 0.0
    encoder_weights: str = ""
    encoder_weights_sha256: str = ""
    frozen_stages: int = 0
    name: str = "resnet34-unet"

    # the registry names this config class serves (see medseg.models.registry and medseg.serial)
    NAMES: ClassVar[tuple[str, ...]] = ("resnet18-unet", "resnet34-unet", "resnet50-unet")

    def __post_init__(self) -> None:
        cls = type(self).__name__
        if self.name not in self.NAMES:
            raise ConfigError(f"{cls}.name = {self.name!r} is not one of {', '.join(self.NAMES)}")
        if self.ndim not in (2, 3) or isinstance(self.ndim, bool):
            raise ConfigError(f"{cls}.ndim = {self.ndim!r} must be 2 or 3 (spatial dimensions)")
        for field in ("in_channels", "out_channels", "encoder_width"):
            _positive(f"{cls}.{field}", getattr(self, field))
        object.__setattr__(self, "strides", _strides(f"{cls}.strides", self.strides, self.ndim))
        channels = self.decoder_channels
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) != 5:
            raise ConfigError(f"{cls}.decoder_channels = {channels!r} must list 5 widths, e.g. (256, 128, 64, 32, 16)")
        object.__setattr__(self, "decoder_channels", tuple(_positive(f"{cls}.decoder_channels", c) for c in channels))
        if not isinstance(self.deep_supervision, bool):
            raise ConfigError(f"{cls}.deep_supervision = {self.deep_supervision!r} must be true or false")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"{cls}.dropout = {self.dropout!r} must be a probability in [0, 1), e.g. 0.3")
        _check_weights(self)

    @property
    def depth(self) -> int:
        """The ResNet's depth: 18, 34 or 50 (from ``name``)."""
        return int(self.name.removeprefix("resnet").split("-")[0])

    @property
    def n_outputs(self) -> int:
        """Outputs in training: with deep supervision the decoder maps at 1, 1/2, 1/4 and 1/8 (all but the
        coarsest, as the U-Net's rule for its six resolutions), else 1."""
        return count_outputs(ENCODER_LEVELS + 1, self.deep_supervision)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Product of the strides per axis (32 for ImageNet's ResNet): sizes that need no padding."""
        return total_stride(self.strides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResNetUNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`~medseg.errors.ConfigError`."""
        return typing.cast(ResNetUNetConfig, config_from_dict(cls, d))


def _positive(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} = {value!r} must be a positive integer")
    return value


def _strides(where: str, value: Any, ndim: int) -> tuple[tuple[int, ...], ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != ENCODER_LEVELS:
        raise ConfigError(f"{where} = {value!r} must have {ENCODER_LEVELS} rows (conv1, max-pool, layer2..layer4)")
    rows = []
    for level, row in enumerate(value):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != ndim:
            raise ConfigError(f"{where}[{level}] = {row!r} must have one stride per spatial axis ({ndim}, ndim)")
        if any(isinstance(s, bool) or s not in (1, 2) for s in row):
            raise ConfigError(f"{where}[{level}] = {row!r}: each stride must be 1 or 2")
        rows.append(tuple(row))
    return tuple(rows)


def _check_weights(config: ResNetUNetConfig) -> None:
    cls = type(config).__name__
    frozen = config.frozen_stages
    if isinstance(frozen, bool) or not isinstance(frozen, int) or not 0 <= frozen <= FROZEN_STAGES_MAX:
        raise ConfigError(
            f"{cls}.frozen_stages = {frozen!r} must be 0 (none) to {FROZEN_STAGES_MAX} (stem and layer1..layer4)"
        )
    if not isinstance(config.encoder_weights, str) or not isinstance(config.encoder_weights_sha256, str):
        raise ConfigError(f"{cls}.encoder_weights and encoder_weights_sha256 must be strings")
    if config.encoder_weights and not _SHA256.fullmatch(config.encoder_weights_sha256):
        raise ConfigError(
            f"{cls}.encoder_weights_sha256 = {config.encoder_weights_sha256!r} must be the 64 lower-case hex "
            f"digits of {config.encoder_weights}'s SHA-256 (`medseg plan --encoder-weights` records it)"
        )


def plan_resnet_unet(inputs: ModelInputs, *, name: str = "resnet34-unet") -> ResNetUNetConfig:
    """The ResNet U-Net ``name`` for ``inputs``: smp's decoder widths (256, 128, 64, 32, 16) on a GPU,
    half as wide (128, 64, 32, 16, 16) on a CPU.

    2D: ImageNet's ResNet (width 64, stride 2 at all five steps), so ImageNet weights fit. 3D: the planned
    U-Net's strides (:func:`~medseg.models.unet_config.plan_unet`), step by step: its first five
    downsamplings, stride 1 where it pools an axis less (a thin or coarse axis) or fewer than five times,
    so the divisor is the U-Net's and the planned patch needs no padding. On a CPU the 3D encoder is 16
    wide and the decoder (64, 32, 16, 16, 8): a 64-wide 3D ResNet-18 would cost several times the U-Net's
    step (estimated from its FLOPs), and there are no 3D ImageNet weights that a narrower one would lose.
    """
    ndim = inputs.ndim
    if ndim == 2:
        strides: tuple[tuple[int, ...], ...] = ((2, 2),) * ENCODER_LEVELS
    else:
        planned = plan_unet(inputs).strides[1 : ENCODER_LEVELS + 1]  # its downsamplings, finest first
        strides = (*planned, *((1,) * ndim,) * (ENCODER_LEVELS - len(planned)))
    if inputs.gpu:
        width, decoder = 64, (256, 128, 64, 32, 16)
    elif ndim == 2:
        width, decoder = 64, (128, 64, 32, 16, 16)
    else:
        width, decoder = 16, (64, 32, 16, 16, 8)
    return ResNetUNetConfig(
        ndim=ndim,
        in_channels=inputs.in_channels,
        out_channels=inputs.out_channels,
        strides=strides,
        decoder_channels=decoder,
        encoder_width=width,
        name=name,
    )
