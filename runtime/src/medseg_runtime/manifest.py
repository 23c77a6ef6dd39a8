"""What a bundle's ``manifest.json`` says: everything prediction needs, as frozen dataclasses.

One schema, written by ``medseg export`` and read here; :data:`FORMAT_VERSION` guards against bundles of
another layout. Spacings, shapes and axes are in array order (3D: ``(z, y, x)``), as in medseg's plans.

Example:
    >>> manifest = Manifest.from_dict(json.loads(text))        # doctest: +SKIP
    >>> manifest.labels.names, manifest.configurations[0].patch_size
    ({0: 'background', 1: 'anterior', 2: 'posterior'}, (40, 56, 40))
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from medseg_runtime.errors import BundleError

__all__ = ["FORMAT_VERSION", "Configuration", "Labels", "Manifest", "Normalization", "PostStep"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Normalization:
    """One input channel's normalisation (medseg's ``ChannelNorm``: ct, zscore, imagenet, window, rescale)."""

    scheme: str
    clip_low: float = 0.0
    clip_high: float = 0.0
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class PostStep:
    """One post-processing step (medseg's ``PostProcessing``)."""

    largest_component: bool = False
    min_voxels: int = 0
    fill_holes: bool = False
    classes: tuple[int, ...] | None = None
    foreground_component: bool = False


@dataclass(frozen=True)
class Labels:
    """Class names by index, their voxel values in label files, and whether they overlap (sigmoid)."""

    names: dict[int, str]
    values: tuple[int, ...]
    overlapping: bool = False


@dataclass(frozen=True)
class Configuration:
    """One planned configuration: its preprocessing, sliding window and networks (its folds).

    ``networks`` are member names of the bundle; each takes ``(B, C, *patch_size)`` float32 and returns
    ``(B, K, *patch_size)`` logits. ``importance`` names the ``(*patch_size)`` float32 Gaussian weights (.npy).
    """

    ndim: int
    patch_size: tuple[int, ...]
    target_spacing: tuple[float, ...]
    normalization: tuple[Normalization, ...]
    crop_to_nonzero: bool
    overlap: float
    batch_size: int
    mirror_axes: tuple[int, ...]
    networks: tuple[str, ...]
    importance: str
    fusion: str = "early"
    configuration: str = "native"


@dataclass(frozen=True)
class Manifest:
    """The whole bundle: configurations (averaged as an ensemble when several), labels, post-processing."""

    format: str  # "onnx" or "torchscript"
    precision: str  # "float32", "int8" or "fp16"
    channel_names: tuple[str, ...]
    labels: Labels
    configurations: tuple[Configuration, ...]
    postprocessing: tuple[PostStep, ...] = ()
    resample_channels: bool = False
    card: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Read a manifest; a wrong version, a missing or an unknown key is a :class:`BundleError`."""
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise BundleError(f"bundle format {version!r} is not {FORMAT_VERSION}; export it again with this version")
        return _build(cls, data, "manifest")


def _build(cls: type, data: Any, where: str) -> Any:
    """``cls`` from a JSON object, its fields converted by their annotations; unknown keys are errors."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise BundleError(f"{where}: unknown keys {unknown}")
    try:
        return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()})
    except TypeError as exc:
        raise BundleError(f"{where}: {exc}") from exc


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        return tuple(_convert(args[0], v, where) for v in value)
    if origin is dict and args and args[0] is int:
        return {int(k): v for k, v in value.items()}
    return value


def dumps(manifest: Manifest) -> bytes:
    """The manifest as UTF-8 JSON bytes (what the bundle stores)."""
    return (json.dumps(manifest.to_dict(), indent=2) + "\n").encode("utf-8")
