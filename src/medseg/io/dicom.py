"""DICOM series: find the one series in a folder, check and sort its slices, read it; write a series.

Used by :mod:`medseg.io.itk`, which turns SimpleITK's ``RuntimeError`` into :class:`medseg.errors.DataError`;
:mod:`medseg.io.images` adds the size check (call that module).

A folder must hold exactly one series (GDCM series ids). Slices are sorted by their position along the
slice normal (``ImagePositionPatient`` projected on the cross product of ``ImageOrientationPatient``);
a missing slice or uneven spacing is refused here because ITK only warns about it.

Example:
    >>> series = find_series(Path("ct_folder"))            # doctest: +SKIP
    >>> image = read_series(series)                        # SimpleITK image, (x, y, z)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from medseg.errors import DataError
from medseg.fileutil import atomic_path

if TYPE_CHECKING:
    from medseg.io.geometry import Geometry

__all__ = ["Series", "SeriesHeader", "find_series", "integer_pixels", "read_series", "series_header", "write_series"]

_GAP_RTOL, _GAP_ATOL = 0.01, 1e-3  # mm; a missing slice doubles one gap
# Patient / study tags copied from a reference series into a written one (SimpleITK tag -> keyword).
_COPIED = {
    "0010|0010": "PatientName", "0010|0020": "PatientID", "0010|0030": "PatientBirthDate",
    "0010|0040": "PatientSex", "0020|000d": "StudyInstanceUID", "0008|0020": "StudyDate",
    "0008|0030": "StudyTime", "0008|0050": "AccessionNumber", "0008|1030": "StudyDescription",
    "0020|0010": "StudyID", "0008|0090": "ReferringPhysicianName", "0020|0052": "FrameOfReferenceUID",
    "0008|0060": "Modality",
}  # fmt: skip


@dataclass(frozen=True)
class Series:
    """The checked files of one series, sorted along the slice normal, and the slice step in mm."""

    folder: Path
    files: tuple[Path, ...]
    step: float | None  # None for a single file


@dataclass(frozen=True)
class SeriesHeader:
    """A series header with the getters of ``sitk.ImageFileReader`` (size etc. in ITK order x, y, z)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    pixel_id: int
    components: int

    def GetSize(self) -> tuple[int, ...]:
        return self.size

    def GetSpacing(self) -> tuple[float, ...]:
        return self.spacing

    def GetOrigin(self) -> tuple[float, ...]:
        return self.origin

    def GetDirection(self) -> tuple[float, ...]:
        return self.direction

    def GetPixelID(self) -> int:
        return self.pixel_id

    def GetNumberOfComponents(self) -> int:
        return self.components


def find_series(folder: Path) -> Series:
    """The single series in ``folder``, its slices sorted and checked for gaps and duplicates."""
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise DataError(
            folder,
            "holds no DICOM series",
            "pass the folder that directly holds the DICOM files (sub-folders are not searched)",
        )
    if len(ids) > 1:
        described = "; ".join(_describe(folder, uid) for uid in ids)
        raise DataError(
            folder,
            f"holds {len(ids)} DICOM series: {described}",
            "move each series into its own folder and pass the folder of the one to use",
        )
    files = [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])]
    if len(files) == 1:
        return Series(folder, tuple(files), None)
    return _sorted_series(folder, files)


def series_header(series: Series) -> SeriesHeader:
    """Header of the whole series from its first slice and the slice step; reads no pixels."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(series.files[0]))
    reader.ReadImageInformation()
    size, spacing = tuple(reader.GetSize()), tuple(reader.GetSpacing())
    if series.step is not None:
        if len(size) != 3 or size[2] != 1:
            raise DataError(series.folder, "mixes multi-frame files in one series", "export one file per slice")
        size, spacing = (size[0], size[1], len(series.files)), (spacing[0], spacing[1], series.step)
    return SeriesHeader(
        size=size,
        spacing=spacing,
        origin=tuple(reader.GetOrigin()),
        direction=tuple(reader.GetDirection()),
        pixel_id=reader.GetPixelID(),
        components=reader.GetNumberOfComponents(),
    )


def read_series(series: Series) -> sitk.Image:
    """Read the sorted slices as one SimpleITK image (raises SimpleITK's ``RuntimeError`` on failure)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    return reader.Execute()


def integer_pixels(array: np.ndarray, path: Path) -> np.ndarray:
    """``array`` in the smallest DICOM integer type that holds it; fractional values are refused."""
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
        raise DataError(
            path,
            "DICOM output stores whole numbers but the array has fractional values",
            "write probabilities or float images as .nii.gz",
        )
    if array.dtype.kind not in "biuf":
        raise DataError(path, f"cannot store dtype {array.dtype} in DICOM", "write .nii.gz instead")
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.uint16, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return array.astype(dtype)
    raise DataError(path, f"values {low}..{high} do not fit 32-bit DICOM pixels", "write .nii.gz instead")


def write_series(path: Path, pixels: np.ndarray, geometry: Geometry, reference: Path | None) -> None:
    """Write ``pixels`` ``(z, y, x)`` as a new series folder, atomically (temporary folder, then rename).

    Patient and study tags come from the ``reference`` series folder when given. An existing output
    folder is replaced only if it holds nothing but ``.dcm`` files.
    """
    tags = _reference_tags(reference) if reference is not None else {}
    tags = {"0008|0060": "OT", "0020|000d": generate_uid(), "0020|0052": generate_uid(), **tags}
    tags |= {"0020|000e": generate_uid(), "0008|103e": "medseg output", "0008|0008": "DERIVED\\SECONDARY"}
    _check_replaceable(path)
    old: Path | None = None
    try:
        with atomic_path(path) as tmp:
            tmp.mkdir()
            _write_slices(tmp, pixels, geometry, tags)
            if path.exists():
                old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
                os.replace(path, old)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old)


# ---------------------------------------------------------------------------------------------------


def _header(path: Path) -> Any:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as err:
        raise DataError(path, f"cannot be read as DICOM: {err}", "re-export the series") from err


def _describe(folder: Path, uid: str) -> str:
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    ds = _header(Path(files[0]))
    text = ", ".join(
        f"{name} {ds.get(keyword)}"
        for name, keyword in (("number", "SeriesNumber"), ("description", "SeriesDescription"))
        if ds.get(keyword) not in (None, "")
    )
    return f"{uid} ({text + ', ' if text else ''}{len(files)} files, e.g. {Path(files[0]).name})"


def _sorted_series(folder: Path, files: list[Path]) -> Series:
    headers = [_header(f) for f in files]
    for f, ds in zip(files, headers, strict=True):
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise DataError(
                f,
                "has no ImagePositionPatient / ImageOrientationPatient, so the slices cannot be ordered",
                "re-export the series with its position tags",
            )
    orientation = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    for f, ds in zip(files, headers, strict=True):
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=float), orientation, atol=1e-4):
            raise DataError(
                f,
                f"slice orientation differs from {files[0].name} in the same series (tilted or mixed stacks)",
                "split the stacks into separate folders or resample the series",
            )
    normal = np.cross(orientation[:3], orientation[3:])
    height = np.array([np.asarray(ds.ImagePositionPatient, dtype=float) @ normal for ds in headers])
    order = np.argsort(height, kind="stable")
    files, height = [files[i] for i in order], height[order]
    return Series(folder, tuple(files), _slice_step(folder, files, np.diff(height)))


def _slice_step(folder: Path, files: list[Path], gaps: np.ndarray) -> float:
    """The common slice gap in mm; duplicate positions or uneven gaps (a missing slice) are refused."""
    i = int(np.argmin(gaps))
    if gaps[i] < _GAP_ATOL:
        raise DataError(
            folder,
            f"slices {files[i].name} and {files[i + 1].name} share one position",
            "the series may hold several acquisitions (echoes, phases, time points); split them into folders",
        )
    step = float(gaps[i])
    uneven = np.flatnonzero(np.abs(gaps - step) > max(_GAP_RTOL * step, _GAP_ATOL))
    if uneven.size:
        j = int(uneven[0])
        raise DataError(
            folder,
            f"inconsistent slice spacing: {gaps[j]:.4g} mm between {files[j].name} and {files[j + 1].name} "
            f"but {step:.4g} mm elsewhere, so a slice is probably missing",
            "re-export the complete series",
        )
    return step


def _reference_tags(reference: Path) -> dict[str, str]:
    if not Path(reference).is_dir():
        raise DataError(reference, "is not a DICOM folder", "pass the DICOM series the output was made from")
    ds = _header(find_series(Path(reference)).files[0])
    tags = {}
    for tag, keyword in _COPIED.items():
        value = ds.get(keyword)
        if value not in (None, ""):
            tags[tag] = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
    return tags


def _check_replaceable(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise DataError(path, "exists and is a file, not a DICOM folder", "choose another output path")
    if path.is_dir():
        others = [p.name for p in path.iterdir() if not (p.is_file() and p.suffix.lower() == ".dcm")]
        if others:
            raise DataError(
                path,
                f"output folder exists and holds other things than .dcm files ({', '.join(others[:3])})",
                "choose a new or empty output folder",
            )


def _write_slices(folder: Path, pixels: np.ndarray, geometry: Geometry, tags: dict[str, str]) -> None:
    """One file per z slice; ImagePositionPatient / ImageOrientationPatient carry the geometry."""
    direction = np.reshape(geometry.direction, (3, 3))
    origin = np.asarray(geometry.origin)
    dz, dy, dx = geometry.spacing
    if np.linalg.det(direction) < 0:  # DICOM stacks along row x column: flip z to stay right-handed
        origin = origin + direction[:, 2] * dz * (pixels.shape[0] - 1)
        direction = direction * np.array([1.0, 1.0, -1.0])
        pixels = pixels[::-1]
    orientation = "\\".join(f"{v:.10g}" for v in (*direction[:, 0], *direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    for k, plane in enumerate(pixels):
        image = sitk.GetImageFromArray(np.ascontiguousarray(plane))
        image.SetSpacing((dx, dy))
        position = origin + direction[:, 2] * dz * k
        for key, value in {
            **tags,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.10g}" for v in position),
            "0020|0037": orientation,
            "0018|0050": f"{dz:.10g}",
            "0008|0018": generate_uid(),
        }.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{k + 1:04d}.dcm"))
        writer.Execute(image)
