"""The physical frame of an image: :class:`Geometry` (spacing, origin, direction) and :class:`ImageInfo`.

Spacing is per *array* axis (numpy order: a 3D volume is ``(z, y, x)``); origin and direction are in ITK's
``(x, y, z)`` order, as SimpleITK reports them. Pure values: this module reads no file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError

__all__ = ["Geometry", "ImageInfo"]


@dataclass(frozen=True)
class Geometry:
    """Physical frame of an image's spatial axes.

    ``spacing`` is in mm per *array* axis (3D: ``(z, y, x)``); ``origin`` and the row-major flattened
    ``direction`` cosine matrix are in ITK order ``(x, y, z)``, as SimpleITK reports them.

    Example:
        >>> g = Geometry.identity(3, spacing=(3.0, 0.5, 0.5))
        >>> g.ndim, g.origin
        (3, (0.0, 0.0, 0.0))
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("spacing", "origin", "direction"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        n = len(self.spacing)
        if n == 0 or len(self.origin) != n or len(self.direction) != n * n:
            raise ValueError(
                f"geometry needs ndim spacings, ndim origin values and ndim² direction values, got "
                f"{len(self.spacing)}, {len(self.origin)} and {len(self.direction)}"
            )
        if not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive and finite, got {self.spacing}")
        if not all(math.isfinite(v) for v in self.origin + self.direction):
            raise ValueError("origin and direction must be finite")

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.spacing)

    @classmethod
    def identity(cls, ndim: int, spacing: Sequence[float] | None = None) -> Geometry:
        """Origin 0, identity direction, the given spacing (array order) or 1 mm."""
        spacing = tuple(spacing) if spacing is not None else (1.0,) * ndim
        return cls(spacing, (0.0,) * ndim, tuple(np.eye(ndim).ravel()))

    def matches(self, other: Geometry, rtol: float = 1e-3, atol: float = 1e-3) -> bool:
        """Whether both have the same ndim and near-equal spacing, origin and direction."""
        if self.ndim != other.ndim:
            return False
        pairs = zip(
            (self.spacing, self.origin, self.direction),
            (other.spacing, other.origin, other.direction),
            strict=True,
        )
        return all(np.allclose(a, b, rtol=rtol, atol=atol) for a, b in pairs)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able form, read back by :meth:`from_dict`."""
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict`; unknown or missing keys are a :class:`ConfigError`."""
        keys = {"spacing", "origin", "direction"}
        if set(d) != keys:
            raise ConfigError(f"geometry needs exactly the keys {sorted(keys)}, got {sorted(d)}")
        try:
            return cls(tuple(d["spacing"]), tuple(d["origin"]), tuple(d["direction"]))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"invalid geometry {d}: {err}") from err


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says, without reading voxels: ``shape`` is spatial, in array order."""

    path: Path
    shape: tuple[int, ...]
    channels: int
    geometry: Geometry
    dtype: str
