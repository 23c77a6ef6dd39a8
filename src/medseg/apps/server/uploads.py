"""One upload predicted in a private temporary folder, deleted when the job ends, whatever happens.

The upload's kind comes from its file name (415 for anything else); a zipped DICOM series is unpacked with
its members renamed (no path from the archive is used) and its total size bounded; the mask (a DICOM-SEG for
a DICOM series, else the upload's format) comes back as bytes. A problem with the upload is an
:class:`UploadRejected` whose one-line message never names a server path.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
from medseg_runtime import BundleError, BundlePredictor
from medseg_runtime.images import read_scan

import medseg
from medseg.apps.server.config import ServerConfig
from medseg.apps.server.viewer import VIEW_MAX_VOXELS, view_payload

__all__ = ["SUFFIXES", "Prediction", "UploadRejected", "predict_upload", "scrub", "upload_suffix"]

# accepted upload suffix -> media type of the mask sent back
SUFFIXES: dict[str, str] = {
    ".nii.gz": "application/gzip",
    ".nii": "application/octet-stream",
    ".nrrd": "application/octet-stream",
    ".mha": "application/octet-stream",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".jpg": "image/png",  # a JPEG scan gives a PNG mask (labels must survive compression)
    ".jpeg": "image/png",
    ".zip": "application/dicom",  # a zipped DICOM series gives one DICOM-SEG file
}
_PIXELS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")  # no physical spacing: sizes in pixels
_UNZIP_FACTOR = 4  # a zipped series may unpack to this many times the upload limit
_MAX_MEMBERS = 10_000
_PATH = re.compile(r"(?<![\w.])/[^\s:;,()'\"]+")


class UploadRejected(Exception):
    """An upload the server refuses: the HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Prediction:
    """The mask file (or a zip of one mask per structure), its sizes per class and the prediction time."""

    body: bytes
    filename: str
    media_type: str
    structures: list[dict[str, Any]]
    seconds: float
    view: dict[str, Any] | None = None  # the scan and labels for the browser viewer (viewer.view_payload)


def upload_suffix(filename: str) -> str:
    """The accepted suffix of ``filename`` (lower case), or 415 naming the accepted ones."""
    name = filename.lower()
    suffix = next((s for s in SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise UploadRejected(
            415, f"unsupported file type {PurePosixPath(name).suffix or '(none)'}: send one of {', '.join(SUFFIXES)}"
        )
    return suffix


def scrub(message: str, root: Path) -> str:
    """``message`` on one line without the temporary folder ``root`` or any other absolute path."""
    text = message.replace(f"{root}/in/", "").replace(str(root), "")
    return " ".join(_PATH.sub("<file>", text).split())


def predict_upload(
    predictor: BundlePredictor, upload: BinaryIO, filename: str, config: ServerConfig, *, view: bool = False
) -> Prediction:
    """Copy ``upload`` into a new temporary folder under ``config.temp_dir``, predict it, read the mask back;
    with ``view``, also the scan and its labels for the browser viewer (413 past ``VIEW_MAX_VOXELS``)."""
    suffix = upload_suffix(filename)
    with tempfile.TemporaryDirectory(dir=config.temp_dir, prefix="medseg-") as tmp:
        root = Path(tmp)
        try:
            return _predict(predictor, upload, _stem(filename, suffix), suffix, root, config, view)
        except BundleError as exc:
            raise UploadRejected(422, scrub(str(exc), root)) from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise UploadRejected(422, f"not a readable zip file ({scrub(str(exc), root)})") from None


def _stem(filename: str, suffix: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", name[: len(name) - len(suffix)]).lstrip("_")
    return stem[:100] or "scan"


def _predict(
    predictor: BundlePredictor, upload: BinaryIO, stem: str, suffix: str, root: Path, config: ServerConfig, view: bool
) -> Prediction:
    inputs, out = root / "in", root / "out"
    inputs.mkdir()
    if suffix == ".zip":
        scan = inputs / stem
        _unzip(upload, scan, config.max_upload_bytes * _UNZIP_FACTOR)
    else:
        scan = inputs / (stem + suffix)
        with scan.open("wb") as f:
            shutil.copyfileobj(upload, f)
    image = _viewable(scan) if view else None
    start = time.perf_counter()
    result = predictor.predict_case([scan], out, dicom_seg=suffix == ".zip")
    seconds = time.perf_counter() - start
    labels = predictor.bundle.manifest.labels
    sizes = medseg.structure_sizes(
        result.labels,
        result.spacing,
        labels.names,
        physical=suffix not in _PIXELS,
        overlapping=labels.overlapping,
    )
    structures = [{"index": s.index, "name": s.name, "voxels": s.voxels, "size": s.size, "unit": s.unit} for s in sizes]
    shown = None
    if image is not None:
        shown = view_payload(image, result.labels, result.spacing, labels.names, labels.overlapping)
    if len(result.written) == 1:
        path = result.written[0]
        return Prediction(path.read_bytes(), path.name, SUFFIXES[suffix], structures, seconds, shown)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in result.written:
            archive.write(path, path.relative_to(out).as_posix())
    return Prediction(buffer.getvalue(), f"{stem}.zip", "application/zip", structures, seconds, shown)


def _viewable(scan: Path) -> np.ndarray:
    """The scan's voxels ``(C, *spatial)`` for the viewer, refused (413) past ``VIEW_MAX_VOXELS`` values."""
    image = read_scan([scan]).array
    if image.size > VIEW_MAX_VOXELS:
        raise UploadRejected(
            413,
            f"scan of {image.size:,} values is too large for the viewer (at most {VIEW_MAX_VOXELS:,}); "
            "use POST /v1/models/{name}/predict for the mask alone",
        )
    return image


def _unzip(upload: BinaryIO, folder: Path, limit: int) -> None:
    """Every file of the zip into ``folder`` as ``00000.dcm``, ... (the archive's names are not used)."""
    folder.mkdir()
    total = 0
    with zipfile.ZipFile(upload) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > _MAX_MEMBERS:
            raise UploadRejected(413, f"the zip holds {len(members)} files; at most {_MAX_MEMBERS}")
        for i, member in enumerate(members):
            name = PurePosixPath(member.filename).name
            if name.upper() == "DICOMDIR" or name.startswith("."):
                continue  # an index or a hidden file (e.g. __MACOSX/._x), not a slice
            with archive.open(member) as src, (folder / f"{i:05d}.dcm").open("wb") as dst:
                while chunk := src.read(1 << 20):
                    total += len(chunk)
                    if total > limit:
                        raise UploadRejected(413, f"the zip unpacks to more than {limit // 2**20} MB")
                    dst.write(chunk)
