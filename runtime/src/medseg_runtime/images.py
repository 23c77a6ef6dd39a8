"""Scans in and masks out with SimpleITK: NIfTI, NRRD, MetaImage, PNG/BMP/TIFF, DICOM series folders.

Arrays are ``(C, *spatial)`` in numpy order (3D: ``(z, y, x)``); a mask is written with its input's spacing,
origin and direction, in its format (JPEG inputs give PNG masks), atomically (temporary name + rename).
"""

from __future__ import annotations

import gzip
import os
import re
import secrets
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg_runtime.errors import BundleError

__all__ = ["Frame", "Scan", "find_cases", "output_name", "read_scan", "write_mask"]

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Frame:
    """An image's physical frame as SimpleITK reports it (``(x, y, z)`` order): what a mask is written with."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Frame:
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))


@dataclass(frozen=True)
class Scan:
    """An image ``(C, *spatial)``, its spacing (array order) and its frame (the voxels are not kept twice)."""

    array: np.ndarray
    spacing: tuple[float, ...]
    frame: Frame


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), "")


def _stem(path: Path) -> str:
    return path.name[: len(path.name) - len(_suffix(path))] if _suffix(path) else path.name


def find_cases(inputs: Path) -> list[list[Path]]:
    """The cases under ``inputs``: a file, a DICOM folder, or a folder of scans (``CASE_0000`` channel files
    grouped into one case)."""
    if inputs.is_file() or (inputs.is_dir() and sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(inputs))):
        return [[inputs]]
    if not inputs.is_dir():
        raise BundleError(f"{inputs}: no such file or folder (check the path)")
    groups: dict[str, list[Path]] = {}
    for path in sorted(p for p in inputs.iterdir() if _suffix(p) and not p.name.startswith(".")):
        match = _CHANNEL.match(_stem(path))
        groups.setdefault(match["case"] if match else _stem(path), []).append(path)
    if not groups:
        raise BundleError(f"{inputs}: no scans found (expected files ending in {', '.join(SUFFIXES)})")
    return list(groups.values())


def _read_one(path: Path) -> sitk.Image:
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
            return reader.Execute()
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise BundleError(f"{path}: cannot be read as an image ({first})") from exc
    if _suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    return image


def _check_nifti_complete(path: Path) -> None:
    """ITK zero-fills a truncated NIfTI file silently: compare the data's size with its header's."""
    opener = gzip.open if _suffix(path) == ".nii.gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
        expected = _nifti_bytes(header)
        if expected is None:
            return  # not a header we know; ITK read it, so let it be
        if _suffix(path) == ".nii":
            actual = path.stat().st_size
        else:
            with open(path, "rb") as f:
                f.seek(-4, 2)
                if int.from_bytes(f.read(4), "little") == expected % 2**32:
                    return  # the gzip trailer records the uncompressed size: complete
            actual = 0
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    actual += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise BundleError(f"{path}: cannot be read as an image (compressed data truncated or damaged: {exc})") from exc
    if actual < expected:
        raise BundleError(f"{path}: cannot be read as an image (truncated: {actual:,} of {expected:,} bytes)")


def _nifti_bytes(header: bytes) -> int | None:
    """Header + data size in bytes of a NIfTI-1 or NIfTI-2 header (either byte order), else ``None``."""
    for order in "<>":
        if len(header) >= 348 and np.frombuffer(header[:4], f"{order}i4")[0] == 348:  # NIfTI-1
            dims = np.frombuffer(header[40:56], f"{order}i2").astype(np.int64)
            bitpix = int(np.frombuffer(header[72:74], f"{order}i2")[0])
            offset = int(np.frombuffer(header[108:112], f"{order}f4")[0])
        elif len(header) >= 540 and np.frombuffer(header[:4], f"{order}i4")[0] == 540:  # NIfTI-2
            dims = np.frombuffer(header[16:80], f"{order}i8")
            bitpix = int(np.frombuffer(header[14:16], f"{order}i2")[0])
            offset = int(np.frombuffer(header[168:176], f"{order}i8")[0])
        else:
            continue
        n = int(dims[0])
        if not 1 <= n <= 7 or (dims[1 : n + 1] < 0).any():
            return None
        return offset + int(np.prod(dims[1 : n + 1])) * bitpix // 8
    return None


def read_scan(channels: list[Path]) -> Scan:
    """Read one case: one (possibly multi-channel) file, or one file per channel on one grid."""
    images = [_read_one(p) for p in channels]
    arrays: list[np.ndarray] = []
    for path, image in zip(channels, images, strict=True):
        array = sitk.GetArrayFromImage(image)
        if image.GetNumberOfComponentsPerPixel() > 1:
            array = np.moveaxis(array, -1, 0)
        elif image.GetDimension() < 4:
            array = array[None]
        if arrays and array.shape[1:] != arrays[0].shape[1:]:
            raise BundleError(f"{path}: shape {array.shape[1:]} differs from {channels[0].name}'s (one grid per case)")
        arrays.append(array)
    first = images[0]
    ndim = arrays[0].ndim - 1
    spacing = tuple(float(s) for s in reversed(first.GetSpacing()[:ndim]))
    frame = Frame.of(first)
    del images, first  # SimpleITK's copies of the voxels
    return Scan(arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0), spacing, frame)


def output_name(source: Path) -> str:
    """The mask's file name: the input's (``CASE_0000.nii.gz`` -> ``CASE.nii.gz``, ``x.jpg`` -> ``x.png``)."""
    stem, suffix = _stem(source), source.name[len(_stem(source)) :]
    match = _CHANNEL.match(stem)
    case = match["case"] if match else stem
    if suffix.lower() in (".jpg", ".jpeg"):
        return case + ".png"  # a label map must survive compression unchanged
    if suffix.lower() == ".mhd":
        return case + ".mha"  # one file, so it can be written atomically
    if source.is_dir():
        return source.name + ".nii.gz"  # a DICOM series gives a NIfTI mask
    return case + suffix


def write_mask(path: Path, mask: np.ndarray, frame: Frame) -> Path:
    """Write ``mask`` (*spatial) in ``frame`` at ``path``, atomically."""
    image = sitk.GetImageFromArray(mask)
    ndim = mask.ndim
    image.SetSpacing(frame.spacing[:ndim])
    image.SetOrigin(frame.origin[:ndim])
    full = len(frame.spacing)
    direction = np.asarray(frame.direction).reshape(full, full)[:ndim, :ndim]
    image.SetDirection(tuple(direction.ravel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = _suffix(path)
    tmp = path.with_name(f".{_stem(path)}.tmp-{secrets.token_hex(4)}{suffix}")
    try:
        sitk.WriteImage(image, str(tmp), suffix not in (".nii", ".png", ".bmp"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
