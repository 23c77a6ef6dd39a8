"""A segmentation being looked at and corrected, as pure numpy (no Qt): the labels and probabilities the model
gave, the table of structures, and saving the mask in the scan's format and geometry.

The mask is written with ``medseg.write_image(path, values, geometry, reference=scan)``, class indices
mapped back to the dataset's label values (``LabelSpec.to_values``), so it opens over the scan in any viewer.
A DICOM series cannot get a DICOM-SEG object yet (the deployment issue): its mask is saved as NIfTI beside
the series folder, and :func:`default_mask_path` says so.

Example:
    >>> default_mask_path(Path("scans/case_01.nii.gz"))
    (PosixPath('scans/case_01_seg.nii.gz'), '')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import medseg
from medseg.apps.gui.scan import Scan

__all__ = ["DICOM_NOTE", "Segmentation", "default_mask_path", "export_surfaces", "save_mask"]

DICOM_NOTE = "DICOM-SEG output is not available yet: the mask of a DICOM series is saved as NIfTI beside it"
_LOSSY = (".jpg", ".jpeg")  # a mask in JPEG would not survive compression: PNG instead


@dataclass
class Segmentation:
    """Labels ``(*spatial)`` class indices (or ``(K, *spatial)`` masks for overlapping structures) of a scan,
    with the model's probabilities ``(K, *spatial)`` when known and the label spec of the model's plans."""

    labels: np.ndarray
    spec: medseg.LabelSpec
    probabilities: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.ascontiguousarray(self.labels, dtype=np.uint8)  # the brush writes through flat views

    @property
    def overlapping(self) -> bool:
        return self.spec.overlapping

    @property
    def structures(self) -> dict[int, str]:
        """The structures one can draw: class index (or mask index) -> name, background left out."""
        return {k: v for k, v in self.spec.names.items() if self.overlapping or k != 0}

    def sizes(self, scan: Scan) -> list[medseg.StructureSize]:
        """The structure table: volume in ml (3D) or area in mm² (2D), voxels without physical spacing, and
        the model's mean probability inside each structure."""
        return medseg.structure_sizes(
            self.labels,
            scan.geometry.spacing,
            self.spec.names,
            physical=scan.physical,
            probabilities=self.probabilities,
            overlapping=self.overlapping,
        )


def default_mask_path(source: Path) -> tuple[Path, str]:
    """Where the mask of ``source`` is offered to be saved (``NAME_seg`` + the source's suffix, PNG for JPEG,
    NIfTI beside a DICOM folder) and a note for the user ('' when nothing needs saying)."""
    source = Path(source)
    if source.is_dir():
        return source.parent / f"{source.name}_seg.nii.gz", DICOM_NOTE
    suffix = next((s for s in medseg.SUPPORTED_SUFFIXES if source.name.lower().endswith(s)), source.suffix)
    stem = source.name[: len(source.name) - len(suffix)]
    suffix = ".png" if suffix.lower() in _LOSSY else suffix
    return source.with_name(f"{stem}_seg{suffix}"), ""


def save_mask(path: Path, segmentation: Segmentation, scan: Scan) -> list[Path]:
    """Write the mask to ``path`` in ``path``'s format and the scan's geometry; overlapping structures give
    one file each (``NAME_<structure>`` + suffix). Returns the files written."""
    path = Path(path)
    if path.suffix == "" and scan.is_dicom:
        raise medseg.DataError(path, "DICOM-SEG output is not available yet", "save as .nii.gz")
    spec, labels = segmentation.spec, segmentation.labels
    if not spec.overlapping:
        return [medseg.write_image(path, spec.to_values(labels), scan.geometry, reference=scan.path)]
    suffix = next((s for s in medseg.SUPPORTED_SUFFIXES if path.name.lower().endswith(s)), path.suffix)
    stem = path.name[: len(path.name) - len(suffix)]
    return [
        medseg.write_image(path.with_name(f"{stem}_{name}{suffix}"), labels[k], scan.geometry, reference=scan.path)
        for k, name in spec.names.items()
    ]


def export_surfaces(path: Path, surfaces: Sequence[medseg.Surface]) -> list[Path]:
    """Write surfaces to ``path``: ``.obj`` one file (an object each), otherwise binary STL, one file per
    structure (``NAME_<structure>.stl``: STL has no object names). Returns the files written."""
    path = Path(path)
    if path.suffix.lower() == ".obj":
        return [medseg.write_obj(path, surfaces)]
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return [medseg.write_stl(path.with_name(f"{stem}_{s.name}.stl"), s) for s in surfaces]
