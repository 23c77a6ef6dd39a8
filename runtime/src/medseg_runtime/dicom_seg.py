"""A mask as a DICOM Segmentation object (DICOM-SEG) that references its source series, with highdicom.

One segment per foreground class, numbered by class index (segment 1 is class 1, ...) and labelled with the
class name from the bundle's manifest; one frame per source slice that holds the segment, each frame
referencing its source image (SOP instance UID). Patient, study and frame of reference come from the source
series. The codes are generic (category *Anatomical Structure*, type *Tissue*): the class names are free text.

highdicom (numpy, pillow and pydicom only) is the runtime's optional ``dicom`` extra
(``pip install './runtime[dicom]'``); a missing one is a one-line :class:`BundleError` naming that command.

Example:
    >>> files = series_files(Path("ct_folder"))                          # doctest: +SKIP
    >>> write_dicom_seg(Path("out/ct_folder.dcm"), labels, files, manifest.labels)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import secrets
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import SimpleITK as sitk

from medseg_runtime.errors import BundleError
from medseg_runtime.manifest import Labels

__all__ = ["SEG_SUFFIX", "series_files", "write_dicom_seg"]

SEG_SUFFIX = ".dcm"
_INSTALL = "pip install './runtime[dicom]' (or: pip install highdicom)"


def _highdicom() -> ModuleType:
    try:
        return importlib.import_module("highdicom")
    except ImportError as exc:
        raise BundleError(f"DICOM-SEG output needs highdicom: {_INSTALL}") from exc


def series_files(folder: Path) -> list[Path]:
    """The files of the single DICOM series in ``folder``, in the order SimpleITK reads them (the mask's z)."""
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(ids) != 1:
        found = "no DICOM series" if not ids else f"{len(ids)} DICOM series"
        raise BundleError(f"{folder}: holds {found}; pass a folder with exactly one series")
    return [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])]


def write_dicom_seg(path: Path, mask: np.ndarray, sources: list[Path], labels: Labels, *, version: str = "") -> Path:
    """Write ``mask`` as a DICOM-SEG at ``path`` (atomically) referencing the ``sources`` series.

    ``mask``: ``(z, y, x)`` class indices, or ``(K, z, y, x)`` binary masks for overlapping classes, with
    ``z`` in the order of ``sources`` (:func:`series_files`).
    """
    hd = _highdicom()
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    try:
        datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in sources]
    except (pydicom.errors.InvalidDicomError, OSError, ValueError) as exc:
        raise BundleError(f"{sources[0].parent}: a file cannot be read as DICOM ({exc})") from exc
    # exclusive classes: segment k is class k (1, 2, ...); overlapping structures: segment i + 1 is mask i
    if labels.overlapping:
        names = dict(enumerate(labels.names.values(), start=1))
    else:
        names = {k: v for k, v in labels.names.items() if k != 0}
    if labels.overlapping:
        pixels = np.moveaxis(mask > 0, 0, -1)  # (z, y, x, segments)
    else:
        pixels = np.asarray(mask, dtype=np.uint8 if max(names, default=0) < 256 else np.uint16)
    spatial = pixels.shape[:3] if labels.overlapping else pixels.shape
    if spatial[0] != len(datasets):
        raise BundleError(f"the mask has {spatial[0]} slices but the series {len(datasets)} files")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medseg", version=version or "unknown", family=codes.cid7162.ArtificialIntelligence
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=name,
            segmented_property_category=Code("91723000", "SCT", "Anatomical Structure"),
            segmented_property_type=Code("85756007", "SCT", "Tissue"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for k, name in sorted(names.items())
    ]
    try:
        seg = _segmentation(hd, datasets, pixels, segments, version)
    except (AttributeError, ValueError, TypeError, KeyError) as exc:  # highdicom names the missing / bad tag
        raise BundleError(f"{sources[0].parent}: the series cannot be referenced by a DICOM-SEG ({exc})") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        seg.save_as(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _segmentation(hd: ModuleType, datasets: list[Any], pixels: np.ndarray, segments: list[Any], version: str) -> Any:
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=max(int(datasets[0].get("SeriesNumber") or 0), 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name="medseg bundle",
        software_versions=version or "unknown",
        device_serial_number="none",
        series_description="medseg segmentation",
    )
