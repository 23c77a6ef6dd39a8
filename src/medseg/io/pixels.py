"""Pixel files without physical geometry: PNG, BMP, JPEG, GIF (Pillow), TIFF (tifffile) and ``.npy``.

Used by :mod:`medseg.io.images`, which adds identity geometry and the size checks; call that module,
not this one. Arrays are channel-first ``(C, *spatial)``.

- Pillow: grey (``L``, ``I;16``, ``I``, ``F``, 1-bit as bool) gives C=1; a palette image with a grey
  palette gives its grey values (C=1), with a colour palette RGB (C=3) or, for labels, its indices;
  RGB gives C=3; alpha is dropped.
- TIFF: axes ``S`` (samples) or ``C`` are channels, the other axes of size > 1 spatial (2 or 3).
- ``.npy``: a 2D or 3D array is one channel; a 4D array is ``(C, z, y, x)``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from medseg.errors import DataError
from medseg.fileutil import atomic_path

__all__ = ["read", "read_header", "write"]

logger = logging.getLogger(__name__)

_PIL_FORMATS = {"png": "PNG", "bmp": "BMP", "jpeg": "JPEG", "gif": "GIF"}
_REEXPORT = "check that the file is complete: re-download or re-export it"
# Pillow mode -> (mode to convert to, or None to keep; channels; numpy dtype)
_PIL_MODES: dict[str, tuple[str | None, int, str]] = {
    "1": (None, 1, "bool"),
    "L": (None, 1, "uint8"),
    "LA": ("L", 1, "uint8"),
    "La": ("L", 1, "uint8"),
    "I;16": (None, 1, "uint16"),
    "I;16L": (None, 1, "uint16"),
    "I;16B": (None, 1, "uint16"),
    "I;16N": (None, 1, "uint16"),
    "I": (None, 1, "int32"),
    "F": (None, 1, "float32"),
    "RGB": (None, 3, "uint8"),
    **{mode: ("RGB", 3, "uint8") for mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "PA")},
}


def read_header(path: Path, fmt: str) -> tuple[tuple[int, ...], int, str]:
    """``(spatial shape, channels, dtype name)`` without decoding pixels."""
    if fmt == "npy":
        with _npy(path) as array:
            shape, channels = _npy_layout(path, array.shape)
            return shape, channels, array.dtype.name
    if fmt == "tiff":
        with _tiff(path) as series:
            _, shape, channels = _tiff_layout(path, series.axes, series.shape)
            return shape, channels, np.dtype(series.dtype).name
    with _open_pil(path) as image:
        _, channels, dtype = _pil_plan(image, palette_indices=False, path=path)
        return (image.height, image.width), channels, dtype


def read(path: Path, fmt: str, *, palette_indices: bool = False) -> np.ndarray:
    """Pixels as ``(C, *spatial)``; ``palette_indices`` keeps a colour palette's indices (for labels)."""
    if fmt == "npy":
        with _npy(path) as mapped:
            array = np.array(mapped, order="C")  # a copy: the file is not kept open
        return array if array.ndim == 4 else array[None]
    if fmt == "tiff":
        return _read_tiff(path)
    return _read_pil(path, palette_indices)


def write(path: Path, data: np.ndarray, fmt: str) -> None:
    """Write ``(C, *spatial)`` atomically; PNG/BMP/JPEG/GIF need 2D, C in {1, 3} and values 0..255."""
    if fmt == "npy":
        if data.shape[0] > 1 and data.ndim == 3:
            logger.warning("%s: a 2D multi-channel .npy reads back as a 3D volume; use .tif to keep C", path)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, data[0] if data.shape[0] == 1 else data, allow_pickle=False)
    elif fmt == "tiff":
        _write_tiff(path, data)
    else:
        _write_pil(path, data, fmt)


# --- Pillow -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_pil(path: Path) -> Iterator[Image.Image]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as err:
        raise DataError(path, f"image is over Pillow's size limit ({err})", "tile or downsample it") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(path, f"cannot be read as an image: {_detail(err, path)}", _REEXPORT) from err
    with image:
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            raise DataError(path, f"has {frames} frames", "save the frame to segment as a single-frame image")
        yield image


def _pil_plan(image: Image.Image, *, palette_indices: bool, path: Path) -> tuple[str | None, int, str]:
    if image.mode == "P":
        if _grey_palette(image):
            return "L", 1, "uint8"
        return (None, 1, "uint8") if palette_indices else ("RGB", 3, "uint8")
    if image.mode not in _PIL_MODES:
        raise DataError(path, f"has unsupported pixel mode '{image.mode}'", "save it as grey or RGB")
    return _PIL_MODES[image.mode]


def _grey_palette(image: Image.Image) -> bool:
    palette = image.getpalette("RGB")
    if not palette:
        return True
    rgb = np.asarray(palette).reshape(-1, 3)
    return bool(np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))


def _read_pil(path: Path, palette_indices: bool) -> np.ndarray:
    with _open_pil(path) as image:
        convert, channels, dtype = _pil_plan(image, palette_indices=palette_indices, path=path)
        try:
            with warnings.catch_warnings():  # palette transparency is dropped on purpose
                warnings.simplefilter("ignore", UserWarning)
                pixels = np.asarray(image.convert(convert) if convert else image)
        except (OSError, SyntaxError, ValueError) as err:
            raise DataError(path, f"cannot be decoded: {_detail(err, path)}", _REEXPORT) from err
    pixels = pixels.astype(dtype, copy=False)
    return np.ascontiguousarray(np.moveaxis(pixels, -1, 0) if channels > 1 else pixels[None])


def _write_pil(path: Path, data: np.ndarray, fmt: str) -> None:
    name = _PIL_FORMATS[fmt]
    if data.ndim != 3 or data.shape[0] not in (1, 3):
        raise DataError(
            path,
            f"{name} holds 2D grey or RGB images, not {data.shape[0]} channels of {data.ndim - 1}D",
            "write .nii.gz, .tif or .npy instead",
        )
    if fmt == "png" and data.shape[0] == 1 and data.dtype == np.uint16:
        image = Image.fromarray(data[0])  # 16-bit grey PNG (PIL mode I;16), common for CT and X-ray slices
    else:
        pixels = _to_uint8(path, data, name)
        image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1))
    options = {"quality": 95} if fmt == "jpeg" else {}
    with atomic_path(path) as tmp:
        image.save(tmp, format=name, **options)


def _to_uint8(path: Path, data: np.ndarray, name: str) -> np.ndarray:
    if data.dtype == np.uint8:
        return data
    if data.dtype.kind == "f" and not np.all(np.isfinite(data) & (data == np.round(data))):
        raise DataError(
            path,
            f"{name} stores 8-bit integers, not float values",
            "write .tif, .nii.gz or .npy, or scale to 0..255 and cast to uint8 first",
        )
    low, high = (data.min(), data.max()) if data.size else (0, 0)
    if low < 0 or high > 255:
        raise DataError(
            path,
            f"values {low:g}..{high:g} do not fit the 8-bit {name} format",
            "write .tif, .nii.gz or .npy to keep them, or rescale to 0..255 first",
        )
    return data.astype(np.uint8)


# --- TIFF -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tiff(path: Path) -> Iterator[tifffile.TiffPageSeries]:
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise DataError(path, "TIFF holds no image", _REEXPORT)
            yield tif.series[0]
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
        raise DataError(path, f"cannot be read as TIFF: {_detail(err, path)}", _REEXPORT) from err


def _tiff_layout(path: Path, axes: str, shape: tuple[int, ...]) -> tuple[list[int], tuple[int, ...], int]:
    """Order of kept axes (channel first), spatial shape and channel count of a TIFF series."""
    kept = [i for i, (axis, size) in enumerate(zip(axes, shape, strict=True)) if size > 1 or axis in "YX"]
    channel = [i for i in kept if axes[i] in "SC"]
    spatial = [i for i in kept if i not in channel]
    if len(channel) > 1 or len(spatial) not in (2, 3):
        raise DataError(
            path,
            f"TIFF axes {axes} of shape {shape} are not a 2D/3D image with at most one channel axis",
            "save one 2D or 3D image per file",
        )
    channels = shape[channel[0]] if channel else 1
    return channel + spatial, tuple(shape[i] for i in spatial), channels


def _read_tiff(path: Path) -> np.ndarray:
    with _tiff(path) as series:
        order, shape, _ = _tiff_layout(path, series.axes, series.shape)
        try:
            array = series.asarray()
        except ValueError as err:
            if "imagecodecs" not in str(err):
                raise DataError(path, f"cannot be decoded: {err}", _REEXPORT) from err
            if len(shape) != 2:
                raise DataError(path, f"cannot be decoded: {err}", "pip install imagecodecs") from err
            array = None  # a compression tifffile cannot decode alone (e.g. LZW): Pillow can
    if array is None:
        return _read_pil(path, palette_indices=False)
    array = array.transpose(order + [i for i in range(array.ndim) if i not in order])
    array = array.reshape(array.shape[: len(order)])  # drop the size-1 axes moved to the end
    return np.ascontiguousarray(array if len(order) > len(shape) else array[None])


def _write_tiff(path: Path, data: np.ndarray) -> None:
    spatial = "YX" if data.ndim == 3 else "ZYX"
    if data.shape[0] == 1:
        pixels, axes, photometric = data[0], spatial, "minisblack"
    elif data.shape[0] == 3 and data.ndim == 3 and data.dtype in (np.uint8, np.uint16):
        pixels, axes, photometric = np.moveaxis(data, 0, -1), "YXS", "rgb"
    else:
        pixels, axes, photometric = data, "C" + spatial, "minisblack"
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, pixels, photometric=photometric, metadata={"axes": axes})


# --- NPY --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _npy(path: Path) -> Iterator[np.ndarray]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        if "object" in str(err).lower() or "pickle" in str(err).lower():
            raise DataError(path, "holds pickled Python objects, which are not loaded", "save a numeric array") from err
        raise DataError(path, f"cannot be read as .npy: {_detail(err, path)}", _REEXPORT) from err
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise DataError(path, f"holds {getattr(array, 'dtype', 'no')} data, not numbers", "save a numeric array")
    yield array


def _npy_layout(path: Path, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    if len(shape) in (2, 3):
        return tuple(shape), 1
    if len(shape) == 4:
        return tuple(shape[1:]), shape[0]
    raise DataError(path, f"array of shape {shape} is not 2D, 3D or (C, z, y, x)", "save a 2D or 3D array")


def _detail(err: BaseException, path: Path) -> str:
    """A library's error message, shortened, with the full path replaced by the file name."""
    return str(err).replace(str(path), path.name)[:160]
