"""NIfTI, NRRD and MetaImage through SimpleITK, plus the checks ITK misses (done with nibabel).

Also SimpleITK's part of DICOM series (header, voxels, quiet writing); :mod:`medseg.io.dicom` finds and sorts
the slices. Used by :mod:`medseg.io.images` (call that module): it checks that the file exists, dispatches by
format and refuses oversized images. SimpleITK's ``RuntimeError`` becomes :class:`medseg.errors.DataError`
naming the file; ITK's own warning printing is silenced.

Two ITK gaps are closed with nibabel: a truncated NIfTI file is refused (ITK zero-fills the missing data) and
NaN/Inf voxels of a float NIfTI are kept (ITK reads them as 0, which would hide them from ``medseg check``).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.errors import DataError
from medseg.fileutil import atomic_path, compound_suffix, make_dirs
from medseg.io import dicom
from medseg.io.geometry import Geometry, ImageInfo

__all__ = ["SITK_IO", "read", "read_info", "resample_onto", "write", "write_dicom"]

logger = logging.getLogger(__name__)

SITK_IO = {"nifti": "NiftiImageIO", "nrrd": "NrrdImageIO", "mha": "MetaImageIO"}  # format -> SimpleITK ImageIO
_NAMES = {"nifti": "NIfTI", "nrrd": "NRRD", "mha": "MetaImage", "dicom": "DICOM"}
_REEXPORT = "check that the file is complete: re-download or re-export it"
_SITK_DTYPES = {
    sitk.sitkUInt8: "uint8", sitk.sitkInt8: "int8", sitk.sitkUInt16: "uint16", sitk.sitkInt16: "int16",
    sitk.sitkUInt32: "uint32", sitk.sitkInt32: "int32", sitk.sitkUInt64: "uint64", sitk.sitkInt64: "int64",
    sitk.sitkFloat32: "float32", sitk.sitkFloat64: "float64",
    sitk.sitkVectorUInt8: "uint8", sitk.sitkVectorInt8: "int8", sitk.sitkVectorUInt16: "uint16",
    sitk.sitkVectorInt16: "int16", sitk.sitkVectorUInt32: "uint32", sitk.sitkVectorInt32: "int32",
    sitk.sitkVectorUInt64: "uint64", sitk.sitkVectorInt64: "int64", sitk.sitkVectorFloat32: "float32",
    sitk.sitkVectorFloat64: "float64",
}  # fmt: skip


def read_info(path: Path, fmt: str) -> ImageInfo:
    """The header of a NIfTI / NRRD / MetaImage file or of a DICOM series folder (``fmt`` 'dicom')."""
    with _quiet_itk():
        if fmt == "dicom":
            return _dicom_info(path)
        return _sitk_info(path, _sitk_reader(path, fmt))


def read(path: Path, fmt: str, check: Callable[[ImageInfo], None]) -> tuple[np.ndarray, Geometry]:
    """Read ``(C, *spatial)`` and its geometry; ``check`` sees the header's :class:`ImageInfo` before any voxel
    is loaded (and raises to refuse it, e.g. an oversized image)."""
    with _quiet_itk():
        if fmt == "dicom":
            series = dicom.find_series(path)
            check(_dicom_info(path, series))
            try:
                image = dicom.read_series(series)
            except RuntimeError as err:
                raise _itk_error(path, fmt, err) from err
        else:
            reader = _sitk_reader(path, fmt)
            check(_sitk_info(path, reader))
            if fmt == "nifti":
                _check_nifti_complete(path)
            try:
                image = reader.Execute()
            except RuntimeError as err:
                raise _itk_error(path, fmt, err) from err
    array, geometry = _from_sitk(image, path)
    if fmt == "nifti" and array.dtype.kind == "f":
        _restore_nifti_nans(path, array)
    return array, geometry


def write(path: Path, data: np.ndarray, geometry: Geometry, fmt: str) -> None:
    """Write ``(C, *spatial)`` atomically as NIfTI (several channels: 4D), NRRD or MetaImage (vector image)."""
    image = _to_sitk(data, geometry, fmt)
    compress = compound_suffix(path) != ".nii"
    try:
        with _quiet_itk():
            if compound_suffix(path) == ".mhd":
                _write_mhd(path, image, compress)
            else:
                with atomic_path(path) as tmp:
                    sitk.WriteImage(image, str(tmp), compress)
    except RuntimeError as err:
        logger.debug("%s: SimpleITK error: %s", path, err)
        raise DataError(
            path, f"cannot be written as {_NAMES[fmt]} with dtype {data.dtype}", "write .nii.gz or .npy instead"
        ) from err


def write_dicom(path: Path, volume: np.ndarray, geometry: Geometry, reference: Path | None) -> None:
    """Write a ``(z, y, x)`` volume as a DICOM series folder (tags copied from the ``reference`` series)."""
    with _quiet_itk():
        dicom.write_series(path, dicom.integer_pixels(volume, path), geometry, reference)


def resample_onto(channel: np.ndarray, geometry: Geometry, shape: tuple[int, ...], reference: Geometry) -> np.ndarray:
    """Resample one ``(*spatial)`` channel in ``geometry`` onto the grid ``shape`` x ``reference``, in physical
    space (spacing, origin and direction all count), linearly; float32 ``(*shape)``. Points of the new grid
    outside the channel's extent take the channel's minimum (its background: air in CT, 0 in most MRI)."""
    image = _to_sitk(np.asarray(channel, dtype=np.float32)[None], geometry, "nifti")
    grid = sitk.Image([int(n) for n in reversed(shape)], sitk.sitkFloat32)
    grid.SetSpacing(tuple(reversed(reference.spacing)))
    grid.SetOrigin(reference.origin)
    grid.SetDirection(reference.direction)
    background = float(np.min(channel)) if channel.size else 0.0
    resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, background, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


# ---------------------------------------------------------------------------------------------------
# reading


def _sitk_reader(path: Path, fmt: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(SITK_IO[fmt])  # the suffix decides: a PNG renamed to .nii.gz is refused
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise _itk_error(path, fmt, err) from err
    return reader


def _sitk_info(path: Path, reader: Any) -> ImageInfo:
    """ImageInfo from anything with SimpleITK's header getters (file reader or DICOM series header)."""
    size = tuple(int(s) for s in reader.GetSize())
    ndim, components = len(size), int(reader.GetNumberOfComponents())
    dtype = _SITK_DTYPES.get(reader.GetPixelID())
    if dtype is None:
        raise DataError(path, "has an unsupported pixel type (complex or label map)", "save it as int or float")
    spatial = 3 if ndim == 4 and components == 1 else ndim
    if spatial not in (2, 3) or (ndim == 4 and components > 1):
        raise DataError(path, f"has {ndim} dimensions of size {size}", "medseg reads 2D and 3D images")
    channels = components * (size[3] if spatial < ndim else 1)
    return ImageInfo(path, tuple(reversed(size[:spatial])), channels, _geometry(path, reader, spatial), dtype)


def _dicom_info(path: Path, series: dicom.Series | None = None) -> ImageInfo:
    try:
        header = dicom.series_header(series or dicom.find_series(path))
    except RuntimeError as err:
        raise _itk_error(path, "dicom", err) from err
    return _sitk_info(path, header)


def _geometry(path: Path, header: Any, n: int) -> Geometry:
    """Geometry of the first ``n`` axes of an ITK image or header, spacing turned into array order."""
    spacing, full = header.GetSpacing(), len(header.GetSpacing())
    matrix = np.asarray(header.GetDirection(), dtype=float).reshape(full, full)[:n, :n]
    try:
        return Geometry(tuple(reversed(spacing[:n])), tuple(header.GetOrigin()[:n]), tuple(matrix.ravel()))
    except ValueError as err:
        raise DataError(path, f"header has an invalid geometry: {err}", _REEXPORT) from err


def _from_sitk(image: sitk.Image, path: Path) -> tuple[np.ndarray, Geometry]:
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)  # (*spatial, C) -> (C, *spatial)
    elif image.GetDimension() < 4:  # a 4D scalar image already is (C, z, y, x)
        array = array[None]
    return np.ascontiguousarray(array), _geometry(path, image, array.ndim - 1)


def _check_nifti_complete(path: Path) -> None:
    """ITK silently zero-fills truncated NIfTI data, so compare the data size with the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proxy = nib.load(path).dataobj  # type: ignore[attr-defined]
            expected = int(proxy.offset) + math.prod(proxy.shape) * proxy.dtype.itemsize
    except Exception as err:  # nibabel is stricter than ITK about headers; ITK already parsed this one
        logger.debug("%s: nibabel cannot parse the header (%s); size check skipped", path, err)
        return
    if compound_suffix(path) == ".nii.gz":
        with open(path, "rb") as handle:
            handle.seek(-4, 2)
            if int.from_bytes(handle.read(4), "little") == expected % 2**32:
                return  # the gzip trailer records the expected uncompressed size
        actual = _gunzipped_size(path)
    else:
        actual = path.stat().st_size
    if actual < expected:
        raise DataError(path, f"file is truncated: {actual:,} of {expected:,} bytes", _REEXPORT)


def _gunzipped_size(path: Path) -> int:
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(path, f"compressed data is truncated or damaged ({err})", _REEXPORT) from err
    return total


def _restore_nifti_nans(path: Path, array: np.ndarray) -> None:
    """ITK's NIfTI reader turns NaN/Inf voxels into 0, which would hide them from `medseg check`; put them
    back from nibabel's reading of the same data (float files only). ``array`` is (C, *spatial)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = np.asanyarray(nib.load(path).dataobj)  # type: ignore[attr-defined]
    except Exception as err:  # nibabel is stricter about headers; ITK already read the voxels
        logger.debug("%s: nibabel cannot read the data (%s); NaN check skipped", path, err)
        return
    raw = raw.T  # nibabel (x, y, z[, c]) -> (c, z, y, x)
    bad = ~np.isfinite(raw)
    if bad.any() and bad.size == array.size:
        array[bad.reshape(array.shape)] = raw[bad]


def _itk_error(path: Path, fmt: str, err: RuntimeError) -> DataError:
    logger.debug("%s: SimpleITK error: %s", path, err)
    text = str(err)
    match = re.search(r"ITK ERROR: [^:]*: ([^\n]+)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = match.group(1).strip() if match else ""
    if not detail or detail.endswith(":"):  # NRRD puts its reason on the last line
        detail = lines[-1] if lines else "unknown error"
    detail = detail.replace(str(path), path.name)[:160]
    return DataError(path, f"cannot be read as {_NAMES[fmt]}: {detail}", _REEXPORT)


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's own warning printing; problems are reported as DataError instead."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


# ---------------------------------------------------------------------------------------------------
# writing


def _to_sitk(data: np.ndarray, geometry: Geometry, fmt: str) -> sitk.Image:
    """``(C, *spatial)`` -> SimpleITK image; several channels make a 4D NIfTI or a vector image."""
    n, channels = geometry.ndim, data.shape[0]
    spacing, origin = tuple(reversed(geometry.spacing)), geometry.origin
    if channels > 1 and fmt == "nifti" and n == 3:
        volumes = [_to_sitk(c[None], geometry, fmt) for c in data]
        image = sitk.JoinSeries(volumes)
        direction = np.eye(4)
        direction[:3, :3] = np.reshape(geometry.direction, (3, 3))
        image.SetSpacing((*spacing, 1.0))
        image.SetOrigin((*origin, 0.0))
        image.SetDirection(tuple(direction.ravel()))
        return image
    if channels > 1:
        image = sitk.GetImageFromArray(np.moveaxis(data, 0, -1), isVector=True)
    else:
        image = sitk.GetImageFromArray(data[0])
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(geometry.direction)
    return image


def _write_mhd(path: Path, image: sitk.Image, compress: bool) -> None:
    """A .mhd header names its data file, so write both under their final names in a temporary
    folder beside ``path``, then move the data file and, last, the header into place."""
    make_dirs(path.parent)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.tmp-") as folder:
        staged = Path(folder) / path.name
        sitk.WriteImage(image, str(staged), compress)
        for part in Path(folder).iterdir():
            if part != staged:
                os.replace(part, path.parent / part.name)
        os.replace(staged, path)
