"""Read and write medical images without losing their geometry (spacing, origin, direction).

Arrays are channel-first ``(C, *spatial)`` in numpy order: a 3D volume is ``(C, z, y, x)`` exactly as
SimpleITK's ``GetArrayFromImage`` gives it, a 2D image ``(C, y, x)``. :class:`Geometry`
(:mod:`medseg.io.geometry`) keeps the physical frame: spacing per *array* axis, origin and direction in ITK's
``(x, y, z)`` order.

This module picks the reader or writer by format and adds the checks every format shares (the file exists,
is not empty, fits :data:`MAX_VOXELS`; label dtypes). Formats: NIfTI, NRRD, MetaImage and DICOM series through
SimpleITK (:mod:`medseg.io.itk`, :mod:`medseg.io.dicom`); PNG, BMP, JPEG, GIF, TIFF and ``.npy`` through
Pillow / tifffile / numpy (:mod:`medseg.io.pixels`). Every failure
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
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.fileutil import compound_suffix, path_problem
from medseg.io import itk
from medseg.io import pixels as io2d
from medseg.io.geometry import Geometry, ImageInfo
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem

__all__ = [
    "MAX_VOXELS",
    "SUPPORTED_SUFFIXES",
    "Geometry",
    "ImageInfo",
    "case_stem",
    "has_physical_spacing",
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
_REEXPORT = "check that the file is complete: re-download or re-export it"


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


def has_physical_spacing(path: Path) -> bool:
    """Whether the file states its voxel spacing in physical units (mm). PNG, JPEG, GIF, BMP, TIFF and ``.npy``
    carry none (medseg reads them as 1 per pixel); a NIfTI file whose header leaves the spatial unit unknown
    (``xyzt_units`` 0, e.g. converted from TIFF slices) neither; NRRD, MetaImage and DICOM do."""
    fmt = image_format(path)
    if fmt == "nifti":
        import nibabel as nib

        try:
            header = nib.load(str(path)).header
            return header.get_xyzt_units()[0] != "unknown"  # type: ignore[attr-defined, no-any-return]
        except Exception:  # unreadable: reading the voxels reports it with its reason
            return True
    return fmt in itk.SITK_IO or fmt == "dicom"


def output_path_like(source: Path, out_dir: Path) -> Path:
    """``out_dir`` / the source's file (or DICOM folder) name."""
    return Path(out_dir) / Path(source).name


def read_info(path: Path) -> ImageInfo:
    """Read the header only and refuse images over :data:`MAX_VOXELS` before any voxel is loaded."""
    path = Path(path)
    with _os_errors(path):
        fmt = _check_exists(path)
        if fmt in itk.SITK_IO or fmt == "dicom":
            info = itk.read_info(path, fmt)
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


def read_channels(paths: Sequence[Path], *, resample: bool = False) -> tuple[np.ndarray, Geometry]:
    """Read one multi-channel file, or stack single-channel files (nnU-Net ``CASE_0000``...) to ``(C, *spatial)``.

    Channel files on different grids (shape, spacing, origin or direction) are refused, naming the file and
    the flag that accepts them; with ``resample`` each is resampled onto the first channel's grid in
    physical space, linearly (:func:`medseg.io.itk.resample_onto`), and the channels become float32.
    """
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
        if len(info.shape) != len(first.shape):
            raise DataError(
                info.path,
                f"is {len(info.shape)}D, {first.path.name} is {len(first.shape)}D",
                "all channel files of a case must have the same dimensionality",
            )
        if not resample:
            _require_same_grid(info, first)
    images = [read_image(p) for p in paths]
    shape, geometry = tuple(images[0][0].shape[1:]), images[0][1]
    if resample and any(a.shape[1:] != shape or not g.matches(geometry) for a, g in images):
        arrays = [_onto_grid(a, g, shape, geometry, path, paths[0]) for (a, g), path in zip(images, paths, strict=True)]
        return np.concatenate(arrays, axis=0), geometry
    return np.concatenate([a for a, _ in images], axis=0), geometry


_GRID_FIX = "all channel files of a case must share one voxel grid"


def _require_same_grid(info: ImageInfo, first: ImageInfo) -> None:
    """Refuse a channel file whose grid differs from the first channel's; the message names the flag."""
    flag = "--resample-channels resamples it onto that grid"
    if info.shape != first.shape:
        raise DataError(
            info.path, f"shape {info.shape} differs from {first.shape} of {first.path.name} ({flag})", _GRID_FIX
        )
    g, f = info.geometry, first.geometry
    if not g.matches(f):
        turned = not np.allclose(g.direction, f.direction, atol=1e-3)
        mine, theirs = _grid_text(g, turned), _grid_text(f, turned)
        raise DataError(info.path, f"geometry ({mine}) differs from {first.path.name} ({theirs}) ({flag})", _GRID_FIX)


def _grid_text(geometry: Geometry, direction: bool) -> str:
    text = f"spacing {_fmt(geometry.spacing)}, origin {_fmt(geometry.origin)}"
    return text + f", direction {_fmt([d + 0.0 for d in geometry.direction])}" if direction else text  # no -0


def _onto_grid(
    array: np.ndarray, geometry: Geometry, shape: tuple[int, ...], target: Geometry, path: Path, first: Path
) -> np.ndarray:
    """One channel ``(1, *spatial)`` as float32 on the grid ``shape`` x ``target`` (resampled if it is not)."""
    if array.shape[1:] == shape and geometry.matches(target):
        return array.astype(np.float32, copy=False)
    logger.info("%s: resampled onto the grid of %s", path, first.name)
    return itk.resample_onto(array[0], geometry, shape, target)[None]


def read_label(path: Path) -> tuple[np.ndarray, Geometry]:
    """Read a label map as a ``(*spatial)`` integer array: uint8 when it fits, else int16 / int32.

    Float files with whole-number values are cast; a colour-palette PNG gives its palette indices;
    an RGB mask is accepted only if its channels are equal (e.g. masks saved as JPEG).
    """
    path = Path(path)
    array, geometry = _read(path, palette_indices=True)
    if not all(np.array_equal(array[0], c) for c in array[1:]):
        kind = "colour channels" if image_format(path) not in itk.SITK_IO else "channels (a 4D image)"
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
    if fmt in itk.SITK_IO:
        itk.write(path, data, geometry, fmt)
    elif fmt == "dicom":
        if data.shape[0] != 1 or geometry.ndim != 3:
            raise DataError(path, "DICOM output needs a single-channel 3D volume", "write .nii.gz instead")
        itk.write_dicom(path, data[0], geometry, reference)
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
        if fmt not in itk.SITK_IO and fmt != "dicom":
            info = read_info(path)
            return io2d.read(path, fmt, palette_indices=palette_indices), info.geometry
        return itk.read(path, fmt, _check_size)  # the size check runs on the header, before the voxels


def _check_exists(path: Path) -> str:
    problem = path_problem(path)  # missing, a broken symbolic link, a link loop, permission denied, ...
    if problem is not None:
        raise DataError(path, *problem)
    fmt = image_format(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(path, "file is empty (0 bytes)", _REEXPORT)
    return fmt


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


@contextlib.contextmanager
def _os_errors(path: Path) -> Iterator[None]:
    """Any OSError while looking at or reading ``path`` (a file or a DICOM folder) becomes a DataError naming
    the file concerned: a user's damaged disk or permissions must cost one line, not a traceback."""
    try:
        yield
    except OSError as err:
        where = Path(err.filename) if isinstance(err.filename, str) and err.filename else path
        raise DataError(where, f"cannot be read ({err.strerror or err})", "check the file and its permissions") from err


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


def _is_identity(geometry: Geometry) -> bool:
    return geometry.matches(Geometry.identity(geometry.ndim), rtol=0.0, atol=1e-6)


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
