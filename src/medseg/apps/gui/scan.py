"""An opened scan and its three planes, as pure numpy (no Qt): reading through ``medseg.read_image``, the
modality shown and the window it starts with, and the 2D slices the views draw.

Planes of a 3D volume ``(z, y, x)``: axial fixes z, coronal fixes y, sagittal fixes x. Coronal and sagittal
slices are flipped vertically so that the last z slice is at the top. A 2D image has one plane, ``axial``.
A slice pixel ``(row, col)`` of a plane maps to a voxel with :func:`voxel_of` and back with :func:`pixel_of`.

Example:
    >>> volume = np.arange(24).reshape(2, 3, 4)
    >>> plane_slice(volume, "coronal", 1).tolist()
    [[16, 17, 18, 19], [4, 5, 6, 7]]
    >>> voxel_of("coronal", 1, (0, 2), volume.shape)
    (1, 1, 2)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import medseg
from medseg.apps.gui.display import Window

__all__ = ["PLANES", "Scan", "load_scan", "pixel_of", "plane_shape", "plane_slice", "plane_spacing", "voxel_of"]

logger = logging.getLogger(__name__)

PLANES = ("axial", "coronal", "sagittal")
_FIXED = {"axial": 0, "coronal": 1, "sagittal": 2}  # the array axis a plane fixes


@dataclass(frozen=True)
class Scan:
    """A scan as read: ``image`` (C, *spatial), its geometry, whether the spacing is physical (mm), the
    modality shown (``CT``, ``MR``, ``RGB``, ... or ``unknown``) and the window it opens with (None: RGB)."""

    path: Path
    image: np.ndarray
    geometry: medseg.Geometry
    physical: bool
    modality: str
    window: Window | None

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape in array order."""
        return tuple(self.image.shape[1:])

    @property
    def is_rgb(self) -> bool:
        return self.modality == "RGB"

    @property
    def is_dicom(self) -> bool:
        return self.path.is_dir()

    @property
    def planes(self) -> tuple[str, ...]:
        return PLANES if len(self.shape) == 3 else ("axial",)

    def describe(self) -> str:
        """One line of geometry: size, spacing (or 'no physical spacing') and modality."""
        size = " × ".join(str(s) for s in reversed(self.shape))
        if self.physical:
            spacing = " × ".join(f"{s:g}" for s in reversed(self.geometry.spacing)) + " mm"
        else:
            spacing = "no physical spacing (voxels)"
        channels = f", {self.image.shape[0]} channels" if self.image.shape[0] > 1 and not self.is_rgb else ""
        return f"{self.path.name}: {size} voxels, spacing {spacing}, {self.modality}{channels}"


def load_scan(path: Path) -> Scan:
    """Read ``path`` (a file or a DICOM series folder); unreadable files raise ``medseg.MedsegError``."""
    path = Path(path)
    image, geometry = medseg.read_image(path)
    modality = _modality(path, image)
    window = None if modality == "RGB" else _first_window(image[0], modality)
    return Scan(path, image, geometry, medseg.has_physical_spacing(path), modality, window)


def _modality(path: Path, image: np.ndarray) -> str:
    if image.shape[0] == 3 and image.dtype == np.uint8 and image.ndim == 3:
        return "RGB"
    if path.is_dir():
        tag = _dicom_modality(path)
        if tag not in ("", "OT"):  # OT ('other'): say what the values suggest
            return tag
    if image.dtype.kind in "if" and float(image.min()) < -500:  # Hounsfield units: air is -1000
        return "CT"
    return "unknown"


def _dicom_modality(folder: Path) -> str:
    import pydicom

    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            return str(pydicom.dcmread(file, stop_before_pixels=True).get("Modality", ""))
        except Exception:  # not a DICOM file (a DICOMDIR, a note): try the next
            logger.debug("%s: no DICOM header", file)
    return ""


def _first_window(image: np.ndarray, modality: str) -> Window:
    return Window.preset("soft-tissue") if modality == "CT" else Window.auto(image)


def plane_slice(volume: np.ndarray, plane: str, index: int, ndim: int | None = None) -> np.ndarray:
    """The 2D slice of ``volume`` (*spatial), or (C, *spatial) given the spatial ``ndim``; leading axes are kept:
    (C, z, y, x) gives (C, rows, cols). A 2D image (``ndim`` 2) is its own slice."""
    ndim = volume.ndim if ndim is None else ndim
    if ndim == 2:
        return volume
    axis = volume.ndim - 3 + _FIXED[plane]
    cut = np.take(volume, index, axis=axis)
    return cut if plane == "axial" else np.flip(cut, axis=-2)


def plane_shape(shape: tuple[int, ...], plane: str) -> tuple[int, int]:
    """(rows, cols) of a plane's slices for a spatial ``shape``."""
    if len(shape) == 2:
        return shape[0], shape[1]
    rest = [s for a, s in enumerate(shape) if a != _FIXED[plane]]
    return rest[0], rest[1]


def plane_spacing(spacing: tuple[float, ...], plane: str) -> tuple[float, float]:
    """(row, col) pixel size in mm of a plane's slices."""
    if len(spacing) == 2:
        return spacing[0], spacing[1]
    rest = [s for a, s in enumerate(spacing) if a != _FIXED[plane]]
    return rest[0], rest[1]


def voxel_of(plane: str, index: int, pixel: tuple[int, int], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The voxel (array order) under slice pixel ``(row, col)`` of slice ``index`` of ``plane``."""
    row, col = pixel
    if len(shape) == 2:
        return row, col
    if plane != "axial":
        row = shape[0] - 1 - row  # the z axis is shown flipped
    rest = [row, col]
    rest.insert(_FIXED[plane], index)
    return tuple(rest)


def pixel_of(plane: str, voxel: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int]:
    """Slice pixel ``(row, col)`` where ``voxel`` shows in ``plane`` (inverse of :func:`voxel_of`)."""
    if len(shape) == 2:
        return voxel[0], voxel[1]
    rest = [v for a, v in enumerate(voxel) if a != _FIXED[plane]]
    row = rest[0] if plane == "axial" else shape[0] - 1 - rest[0]
    return row, rest[1]
