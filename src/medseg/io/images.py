"""Read and write medical images without losing their geometry (spacing, origin, direction).

Arrays are channel-first ``(C, *spatial)`` in numpy order: a 3D volume is ``(C, z, y, x)`` exactly as
SimpleITK's ``GetArrayFromImage`` gives it, a 2D image ``(C, y, x)``. :class:`Geometry` keeps the physical
frame: spacing per *array* axis, origin and direction in ITK's ``(x, y, z)`` order.

Formats: NIfTI, NRRD, MetaImage and DICOM series through SimpleITK (:mod:`medseg.io.dicom`); PNG, BMP,
JPEG, GIF, TIFF and ``.npy`` through Pillow / tifffile / numpy (:mod:`medseg.io.pixels`). Every failure
a user can cause (missing, empty, damaged or oversized files, odd DICOM folders) raises
:class:`medseg.errors.DataError` naming the file.

Example:
    >>> image, geometry = read_image(Path("imagesTr/case_01.nii.gz"))   # doctest: +SKIP
    >>> image.shape, geometry.spacing                                     # doctest: +SKIP
    ((1, 36, 50, 35), (1.0, 1.0, 1.0))
    >>> write_image(Path("out/case_01.nii.gz"), mask, geometry)          # doctest: +SKIP
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.errors import ConfigError, DataError
from medseg.fileutil import atomic_path, compound_suffix, make_dirs, path_problem
from medseg.io import dicom
from medseg.io import pixels as io2d
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem

__all__ = [
    "MAX_VOXELS",
    "SUPPORTED_SUFFIXES",
    "Geometry",
    "ImageInfo",
    "case_stem",
    "image_format",
    "output_path_like",
    "read_channels",
    "read_image",
    "read_info",
    "read_label",
    "write_image",
]

logger = logging.getLogger(__name__)

MAX_VOXELS: int = 2**31

_FORMATS = {
    ".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".mha": "mha", ".mhd": "mha",
    ".png": "png", ".bmp": "bmp", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif",
    ".tif": "tiff", ".tiff": "tiff", ".npy": "npy",
}  # fmt: skip
_SITK_IO = {"nifti": "NiftiImageIO", "nrrd": "NrrdImageIO", "mha": "MetaImageIO"}
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


def image_format(path: Path) -> str:
    """Format name from the suffix: 'nifti', 'nrrd', 'mha', 'png', ..., or 'dicom' for a folder."""
    path = Path(path)
    suffix = compound_suffix(path)
    if path.is_dir() or (not suffix and not path.is_file()):
        return "dicom"
    if suffix in _FORMATS:
        return _FORMATS[suffix]
    if suffix in (".dcm", ".ima") or path.name.upper() == "DICOMDIR":
        raise DataError(path, "is a single DICOM file", "pass the folder that holds the whole DICOM series")
    if not suffix:
        raise DataError(path, "has no suffix to tell its format", "add one, or pass the folder of a DICOM series")
    raise DataError(
        path,
        f"unsupported file type '{suffix}'",
        f"convert it to one of {', '.join(SUPPORTED_SUFFIXES)} or a DICOM folder",
    )


def output_path_like(source: Path, out_dir: Path) -> Path:
    """``out_dir`` / the source's file (or DICOM folder) name."""
    return Path(out_dir) / Path(source).name


def read_info(path: Path) -> ImageInfo:
    """Read the header only and refuse images over :data:`MAX_VOXELS` before any voxel is loaded."""
    path = Path(path)
    with _os_errors(path):
        fmt = _check_exists(path)
        with _quiet_itk():
            if fmt in _SITK_IO:
                info = _sitk_info(path, _sitk_reader(path, fmt))
            elif fmt == "dicom":
                info = _dicom_info(path)
            else:
                shape, channels, dtype = io2d.read_header(path, fmt)
                info = ImageInfo(path, shape, channels, Geometry.identity(len(shape)), dtype)
    _check_size(info)
    return info


def read_image(path: Path) -> tuple[np.ndarray, Geometry]:
    """Read an image as ``(C, *spatial)`` in its stored dtype and the geometry of its spatial axes.

    C is 1 for grey, 3 for RGB, and the 4th dimension of an MSD-style 4D NIfTI ``(x, y, z, c)``.
    """
    return _read(Path(path), palette_indices=False)


def read_channels(paths: Sequence[Path]) -> tuple[np.ndarray, Geometry]:
    """Read one multi-channel file, or stack single-channel files (nnU-Net ``CASE_0000``...) to ``(C, *spatial)``."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_channels needs at least one path")
    if len(paths) == 1:
        return read_image(paths[0])
    infos = [read_info(p) for p in paths]  # compare headers before loading any voxels
    first = infos[0]
    for info in infos:
        if info.channels != 1:
            raise DataError(
                info.path,
                f"has {info.channels} channels but is one of several channel files of a case",
                "save each channel as its own single-channel file (CASE_0000, CASE_0001, ...)",
            )
        if info.shape != first.shape:
            raise DataError(
                info.path,
                f"shape {info.shape} differs from {first.shape} of {first.path.name}",
                "all channel files of a case must share one voxel grid; resample them to the first",
            )
        if not info.geometry.matches(first.geometry):
            raise DataError(
                info.path,
                f"geometry (spacing {_fmt(info.geometry.spacing)}, origin {_fmt(info.geometry.origin)}) "
                f"differs from {first.path.name} (spacing {_fmt(first.geometry.spacing)}, "
                f"origin {_fmt(first.geometry.origin)})",
                "all channel files of a case must share one voxel grid; resample them to the first",
            )
    arrays = [read_image(p)[0] for p in paths]
    return np.concatenate(arrays, axis=0), first.geometry


def read_label(path: Path) -> tuple[np.ndarray, Geometry]:
    """Read a label map as a ``(*spatial)`` integer array: uint8 when it fits, else int16 / int32.

    Float files with whole-number values are cast; a colour-palette PNG gives its palette indices;
    an RGB mask is accepted only if its channels are equal (e.g. masks saved as JPEG).
    """
    path = Path(path)
    array, geometry = _read(path, palette_indices=True)
    if not all(np.array_equal(array[0], c) for c in array[1:]):
        kind = "colour channels" if image_format(path) not in _SITK_IO else "channels (a 4D image)"
        problem = f"mask has {array.shape[0]} different {kind}; save it as a single-channel label image"
        raise DataError(path, problem)
    return _label_dtype(array[0], path), geometry


def write_image(path: Path, array: np.ndarray, geometry: Geometry, reference: Path | None = None) -> Path:
    """Write ``(*spatial)`` or ``(C, *spatial)`` atomically, in the format of ``path``'s suffix.

    A path without suffix is written as a DICOM series folder, copying patient and study tags from
    the ``reference`` DICOM folder when given. Several channels become a 4D NIfTI ``(x, y, z, c)``, a
    vector MetaImage/NRRD, a channel-first ``.npy`` or a ``CYX`` / ``CZYX`` TIFF. 2D formats (PNG,
    BMP, JPEG, GIF) store uint8 and refuse values outside 0..255. Returns ``path``.
    """
    path = Path(path)
    fmt = image_format(path)
    data = _channels_first(np.asarray(array), geometry)
    if data.dtype == bool or data.dtype == np.float16:
        data = data.astype(np.uint8 if data.dtype == bool else np.float32)
    if fmt in _SITK_IO:
        _write_sitk(path, data, geometry, fmt)
    elif fmt == "dicom":
        if data.shape[0] != 1 or geometry.ndim != 3:
            raise DataError(path, "DICOM output needs a single-channel 3D volume", "write .nii.gz instead")
        with _quiet_itk():
            dicom.write_series(path, dicom.integer_pixels(data[0], path), geometry, reference)
    else:
        if not _is_identity(geometry):
            logger.warning("%s: %s files store no spacing/origin/direction; geometry dropped", path, fmt)
        io2d.write(path, data, fmt)
    return path


# ---------------------------------------------------------------------------------------------------
# reading


def _read(path: Path, palette_indices: bool) -> tuple[np.ndarray, Geometry]:
    with _os_errors(path):
        fmt = _check_exists(path)
        if fmt not in _SITK_IO and fmt != "dicom":
            info = read_info(path)
            return io2d.read(path, fmt, palette_indices=palette_indices), info.geometry
        with _quiet_itk():
            if fmt == "dicom":
                series = dicom.find_series(path)
                _check_size(_dicom_info(path, series))
                try:
                    image = dicom.read_series(series)
                except RuntimeError as err:
                    raise _itk_error(path, fmt, err) from err
            else:
                reader = _sitk_reader(path, fmt)
                _check_size(_sitk_info(path, reader))
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


def _check_exists(path: Path) -> str:
    problem = path_problem(path)  # missing, a broken symbolic link, a link loop, permission denied, ...
    if problem is not None:
        raise DataError(path, *problem)
    fmt = image_format(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(path, "file is empty (0 bytes)", _REEXPORT)
    return fmt


def _sitk_reader(path: Path, fmt: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_SITK_IO[fmt])  # the suffix decides: a PNG renamed to .nii.gz is refused
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


def _check_size(info: ImageInfo) -> None:
    count = math.prod(info.shape) * info.channels
    if count > MAX_VOXELS:
        raise DataError(
            info.path,
            f"header claims {info.shape} x {info.channels} channels = {count:,} voxels, over the limit "
            f"of {MAX_VOXELS:,}",
            "the header is probably damaged; otherwise crop or downsample the image first",
        )
    if count == 0:
        raise DataError(info.path, f"image has no voxels (shape {info.shape})", _REEXPORT)


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
def _os_errors(path: Path) -> Iterator[None]:
    """Any OSError while looking at or reading ``path`` (a file or a DICOM folder) becomes a DataError naming
    the file concerned: a user's damaged disk or permissions must cost one line, not a traceback."""
    try:
        yield
    except OSError as err:
        where = Path(err.filename) if isinstance(err.filename, str) and err.filename else path
        raise DataError(where, f"cannot be read ({err.strerror or err})", "check the file and its permissions") from err


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's own warning printing; problems are reported as DataError instead."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def _label_dtype(label: np.ndarray, path: Path) -> np.ndarray:
    if label.dtype == bool:
        return label.astype(np.uint8)
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)):
            raise DataError(path, "label has NaN or infinite values", "labels must be whole numbers")
        fractional = label[label != np.round(label)]
        if fractional.size:
            raise DataError(
                path,
                f"label has non-integer values (e.g. {fractional.flat[0]:g})",
                "labels must be whole class numbers; is this an image rather than a mask?",
            )
    elif label.dtype.kind not in "iu":
        raise DataError(path, f"label has non-numeric dtype {label.dtype}", "save it as an integer image")
    low, high = (label.min(), label.max()) if label.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32):
        limits = np.iinfo(dtype)
        if limits.min <= low and high <= limits.max:
            return label.astype(dtype)
    raise DataError(path, f"label values {low}..{high} do not fit int32", "relabel with small class numbers")


# ---------------------------------------------------------------------------------------------------
# writing


def _channels_first(array: np.ndarray, geometry: Geometry) -> np.ndarray:
    if array.ndim == geometry.ndim:
        return array[None]
    if array.ndim == geometry.ndim + 1:
        return array
    raise ValueError(f"array of shape {array.shape} does not fit a {geometry.ndim}D geometry")


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


def _write_sitk(path: Path, data: np.ndarray, geometry: Geometry, fmt: str) -> None:
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


def _is_identity(geometry: Geometry) -> bool:
    return geometry.matches(Geometry.identity(geometry.ndim), rtol=0.0, atol=1e-6)


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
