"""Configs of the MONAI networks medseg wraps, and their plan rules (pure Python, no torch, no monai).

Four networks are MONAI's own (``monai.networks.nets``), built by the thin adapters of
:mod:`medseg.models.monai_nets`: SegResNet (Myronenko 2018), UNETR (Hatamizadeh et al. 2022), SwinUNETR
(Hatamizadeh et al. 2022) and V-Net (Milletari et al. 2016). Each config holds only the MONAI parameters
that matter for a plan; every other MONAI argument keeps MONAI's default. ``dropout`` is passed to MONAI's
own dropout argument (SegResNet ``dropout_prob``, UNETR ``dropout_rate``, SwinUNETR ``drop_rate``, V-Net
``dropout_prob_down`` / ``dropout_prob_up`` and the skip dropouts MONAI fixes) and acts where MONAI puts it,
not on a bottleneck. None of them has deep supervision: training returns one tensor.

Example:
    >>> from medseg.models.configs import ModelInputs
    >>> config = plan_unetr(ModelInputs(3, 1, 2, (40, 56, 40), (1.0, 1.0, 1.0)))
    >>> config.img_size, config.hidden_size
    ((48, 64, 48), 256)
    >>> UNETRConfig.from_dict(config.to_dict()) == config
    True
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from medseg.errors import ConfigError
from medseg.models.unet_config import check_dropout, config_from_dict, config_to_dict

if TYPE_CHECKING:
    from medseg.models.configs import ModelInputs

__all__ = [
    "SWIN_DIVISOR",
    "UNETR_PATCH",
    "VNET_DIVISOR",
    "SegResNetConfig",
    "SwinUNETRConfig",
    "UNETRConfig",
    "VNetConfig",
    "plan_segresnet",
    "plan_swin_unetr",
    "plan_unetr",
    "plan_vnet",
]

SEGRESNET_GROUPS = 8  # MONAI's SegResNet normalises with GroupNorm(8 groups): widths must be multiples of 8
UNETR_PATCH = 16  # UNETR's ViT cuts the image into 16 x 16 (x 16) patches (fixed in MONAI)
SWIN_DIVISOR = 32  # SwinUNETR: 2 x 2 (x 2) patches, then four 2x patch mergings
SWIN_EMBED_MULTIPLE = 12  # MONAI refuses a SwinUNETR feature_size that is not a multiple of 12
VNET_DIVISOR = 16  # V-Net halves every axis four times
VNET_WIDTH = 16  # V-Net's first level has 16 channels; MONAI needs in_channels to divide it


def _positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} = {value!r} must be a positive integer")
    return value


def _int_tuple(where: str, value: Any, length: int | None, example: str) -> tuple[int, ...]:
    """Check a sequence of positive integers (of ``length`` entries, when given) and return it as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ConfigError(f"{where} = {value!r} must be a list of positive integers, e.g. {example}")
    if length is not None and len(value) != length:
        raise ConfigError(f"{where} = {value!r} must have {length} entries, e.g. {example}")
    return tuple(_positive_int(f"{where}[{i}]", v) for i, v in enumerate(value))


def _check_common(config: Any, ndims: tuple[int, ...] = (2, 3)) -> str:
    """Check ``name``, ``ndim``, channels and ``dropout``; return the class name for further messages."""
    cls = type(config).__name__
    if config.name not in config.NAMES:
        raise ConfigError(f"{cls}.name = {config.name!r} is not one of {', '.join(config.NAMES)}")
    if isinstance(config.ndim, bool) or config.ndim not in ndims:
        raise ConfigError(f"{cls}.ndim = {config.ndim!r} must be {' or '.join(map(str, ndims))} (spatial dimensions)")
    for field in ("in_channels", "out_channels"):
        _positive_int(f"{cls}.{field}", getattr(config, field))
    check_dropout(config)
    return cls


class _Serialised:
    """What every config here shares: ``to_dict`` and a single training output (each class has its own
    typed ``from_dict``)."""

    @property
    def n_outputs(self) -> int:
        """Outputs in training: 1 (MONAI's networks here have no deep supervision)."""
        return 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)


@dataclass(frozen=True)
class SegResNetConfig(_Serialised):
    """MONAI's ``SegResNet``: a residual encoder (``blocks_down`` blocks per level, widths doubling from
    ``init_filters``), a light decoder (``blocks_up`` blocks per level) and trilinear up-sampling; group norm
    with 8 groups, ReLU. ``dropout`` is MONAI's ``dropout_prob``: channel dropout after the first convolution.
    """

    ndim: int
    in_channels: int
    out_channels: int
    init_filters: int = 8
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    dropout: float = 0.0
    name: str = "segresnet"

    NAMES: ClassVar[tuple[str, ...]] = ("segresnet",)

    def __post_init__(self) -> None:
        cls = _check_common(self)
        if _positive_int(f"{cls}.init_filters", self.init_filters) % SEGRESNET_GROUPS:
            raise ConfigError(
                f"{cls}.init_filters = {self.init_filters} must be a multiple of {SEGRESNET_GROUPS} (group norm)"
            )
        down = _int_tuple(f"{cls}.blocks_down", self.blocks_down, None, "[1, 2, 2, 4]")
        if len(down) < 2:
            raise ConfigError(
                f"{cls}.blocks_down = {self.blocks_down!r} must list at least 2 levels, e.g. [1, 2, 2, 4]"
            )
        up = _int_tuple(f"{cls}.blocks_up", self.blocks_up, len(down) - 1, "[1, 1, 1] (one per level but the last)")
        object.__setattr__(self, "blocks_down", down)
        object.__setattr__(self, "blocks_up", up)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Sizes that need no padding: multiples of 2 ** (levels - 1) per axis."""
        return (2 ** (len(self.blocks_down) - 1),) * self.ndim

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegResNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`~medseg.errors.ConfigError`."""
        return typing.cast(SegResNetConfig, config_from_dict(cls, d))


@dataclass(frozen=True)
class UNETRConfig(_Serialised):
    """MONAI's ``UNETR``: a ViT encoder (12 layers, 16 x 16 (x 16) patches, ``hidden_size`` wide with
    ``num_heads`` heads and an MLP of ``mlp_dim``) and a convolutional decoder ``feature_size`` wide.

    ``img_size`` is fixed by the position embedding: the adapter zero-pads smaller inputs up to it and crops
    back; a larger input is an error. Each entry is a multiple of 16. ``dropout`` is MONAI's ``dropout_rate``
    (in the transformer blocks).
    """

    ndim: int
    in_channels: int
    out_channels: int
    img_size: tuple[int, ...]
    feature_size: int = 16
    hidden_size: int = 768
    mlp_dim: int = 3072
    num_heads: int = 12
    dropout: float = 0.0
    name: str = "unetr"

    NAMES: ClassVar[tuple[str, ...]] = ("unetr",)

    def __post_init__(self) -> None:
        cls = _check_common(self)
        size = _int_tuple(f"{cls}.img_size", self.img_size, self.ndim, "[64, 64, 64] (one per spatial axis)")
        if any(s % UNETR_PATCH for s in size):
            raise ConfigError(f"{cls}.img_size = {list(size)} must be multiples of {UNETR_PATCH} (UNETR's patch)")
        for field in ("feature_size", "hidden_size", "mlp_dim", "num_heads"):
            _positive_int(f"{cls}.{field}", getattr(self, field))
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"{cls}.hidden_size = {self.hidden_size} must be a multiple of num_heads = {self.num_heads}"
            )
        object.__setattr__(self, "img_size", size)

    @property
    def divisor(self) -> tuple[int, ...]:
        """``img_size``: the only size that needs no padding (smaller inputs are padded up to it)."""
        return self.img_size

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNETRConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`~medseg.errors.ConfigError`."""
        return typing.cast(UNETRConfig, config_from_dict(cls, d))


@dataclass(frozen=True)
class SwinUNETRConfig(_Serialised):
    """MONAI's ``SwinUNETR``: a Swin transformer encoder (four stages of ``depths`` blocks with ``num_heads``
    heads, shifted windows of ``window_size``, embedding ``feature_size`` doubling per stage) and a
    convolutional decoder ``feature_size`` wide. ``feature_size`` is a multiple of 12 (MONAI's rule) and
    ``feature_size * 2 ** stage`` a multiple of ``num_heads[stage]``. ``dropout`` is MONAI's ``drop_rate``.
    """

    ndim: int
    in_channels: int
    out_channels: int
    feature_size: int = 24
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    dropout: float = 0.0
    name: str = "swin-unetr"

    NAMES: ClassVar[tuple[str, ...]] = ("swin-unetr",)

    def __post_init__(self) -> None:
        cls = _check_common(self)
        width = _positive_int(f"{cls}.feature_size", self.feature_size)
        if width % SWIN_EMBED_MULTIPLE:
            raise ConfigError(f"{cls}.feature_size = {width} must be a multiple of {SWIN_EMBED_MULTIPLE}, e.g. 24")
        depths = _int_tuple(f"{cls}.depths", self.depths, 4, "[2, 2, 2, 2] (one per stage)")
        heads = _int_tuple(f"{cls}.num_heads", self.num_heads, 4, "[3, 6, 12, 24] (one per stage)")
        for stage, h in enumerate(heads):
            if (width * 2**stage) % h:
                raise ConfigError(
                    f"{cls}.num_heads[{stage}] = {h} must divide stage {stage}'s width feature_size * "
                    f"{2**stage} = {width * 2**stage}"
                )
        _positive_int(f"{cls}.window_size", self.window_size)
        object.__setattr__(self, "depths", depths)
        object.__setattr__(self, "num_heads", heads)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Sizes that need no padding: multiples of 32 per axis (a 32 x 32 (x 32) input is padded further,
        its bottleneck would be a single voxel)."""
        return (SWIN_DIVISOR,) * self.ndim

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SwinUNETRConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`~medseg.errors.ConfigError`."""
        return typing.cast(SwinUNETRConfig, config_from_dict(cls, d))


@dataclass(frozen=True)
class VNetConfig(_Serialised):
    """MONAI's ``VNet``, 3D only: fixed widths 16 -> 256 (4 halvings), 5 x 5 x 5 convolutions, batch norm,
    ELU. MONAI needs ``in_channels`` to divide 16; other counts get a 1 x 1 x 1 input projection to
    :attr:`net_in_channels` channels first. ``dropout`` is MONAI's ``dropout_prob_down`` and both entries
    of ``dropout_prob_up`` (channel dropout in the deepest levels) and, set by the adapter, the skip dropout
    of the two finest up levels that MONAI fixes at 0.5: 0.5 is MONAI's V-Net exactly, 0 has no dropout.
    """

    ndim: int
    in_channels: int
    out_channels: int
    dropout: float = 0.0
    name: str = "vnet"

    NAMES: ClassVar[tuple[str, ...]] = ("vnet",)

    def __post_init__(self) -> None:
        _check_common(self, ndims=(3,))

    @property
    def net_in_channels(self) -> int:
        """Channels MONAI's V-Net takes: ``in_channels`` if it divides 16, else the next divisor of 16 above
        it (16 at most); the adapter projects ``in_channels`` onto them."""
        return next((c for c in (1, 2, 4, 8, 16) if c >= self.in_channels), VNET_WIDTH)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Sizes that need no padding: multiples of 16 per axis."""
        return (VNET_DIVISOR,) * self.ndim

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`~medseg.errors.ConfigError`."""
        return typing.cast(VNetConfig, config_from_dict(cls, d))


def plan_segresnet(inputs: ModelInputs) -> SegResNetConfig:
    """MONAI's SegResNet with MONAI's blocks (1, 2, 2, 4 down, 1, 1, 1 up): 32 initial filters on a GPU (the
    paper's width), 8 on a CPU (MONAI's default, where a step must stay around a second)."""
    return SegResNetConfig(inputs.ndim, inputs.in_channels, inputs.out_channels, init_filters=32 if inputs.gpu else 8)


def plan_unetr(inputs: ModelInputs) -> UNETRConfig:
    """MONAI's UNETR on the planned patch (``img_size`` = the patch rounded up to multiples of 16): MONAI's
    defaults on a GPU (hidden size 768, MLP 3072, 12 heads, feature size 16); on a CPU hidden size 256, MLP
    1024 and 4 heads (feature size 16)."""
    img_size = tuple(-(-p // UNETR_PATCH) * UNETR_PATCH for p in inputs.patch_size)
    hidden, mlp, heads = (768, 3072, 12) if inputs.gpu else (256, 1024, 4)
    return UNETRConfig(
        inputs.ndim,
        inputs.in_channels,
        inputs.out_channels,
        img_size=img_size,
        feature_size=16,
        hidden_size=hidden,
        mlp_dim=mlp,
        num_heads=heads,
    )


def plan_swin_unetr(inputs: ModelInputs) -> SwinUNETRConfig:
    """MONAI's SwinUNETR with MONAI's depths, heads and window (2, 2, 2, 2; 3, 6, 12, 24; 7): feature size 24
    on a GPU (MONAI's default), 12 on a CPU (the smallest MONAI allows)."""
    return SwinUNETRConfig(inputs.ndim, inputs.in_channels, inputs.out_channels, feature_size=24 if inputs.gpu else 12)


def plan_vnet(inputs: ModelInputs) -> VNetConfig:
    """MONAI's V-Net (its widths are fixed): MONAI's dropout 0.5 on a GPU, none on a CPU, where the few
    thousand steps a CPU affords converge faster without. A CPU step is slow whatever the plan
    (45.6 M parameters, 5 x 5 x 5 convolutions; see docs/models.md)."""
    return VNetConfig(inputs.ndim, inputs.in_channels, inputs.out_channels, dropout=0.5 if inputs.gpu else 0.0)
