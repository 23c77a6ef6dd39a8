"""The ``images/`` + ``masks/`` folder layout of most tutorials: read and write.

On disk::

    images/ID.png             any supported image format; an entry may be a DICOM series folder
    masks/ID.png              (or labels/) the mask with the same file stem; for a DICOM series folder
                              ``masks/<folder name>.<ext>``
    masks/<structure>/ID.png  alternatively one sub-folder per structure: overlapping binary masks
                              (``masks/heart/ID.png``, ``masks/left_lung/ID.png``)

There is no dataset.json: label values are discovered from the masks (e.g. ``(0, 255)`` for 0/255 PNG masks),
structure names from the sub-folders. The layout holds labelled cases only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from medseg.datasets.records import (
    Case,
    CaseArrays,
    Dataset,
    DatasetMeta,
    Problem,
    dedup_cases,
    missing_files,
    write_labels,
)
from medseg.errors import DataError
from medseg.fileutil import compound_suffix
from medseg.io.images import read_label, write_image
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem
from medseg.labels import LabelSpec

__all__ = ["MASK_FOLDERS", "discover_label_values", "read", "write"]

MASK_FOLDERS = ("masks", "labels")  # the first of these that exists holds the masks


def read(root: Path, *, scan_labels: bool = True) -> Dataset:
    """Read the ``images/`` + ``masks/`` dataset in ``root``.

    ``scan_labels`` reads every mask to discover the label values (without it they are left empty).
    """
    images_dir = root / "images"
    masks_dir = next(root / m for m in MASK_FOLDERS if (root / m).is_dir())
    images = _image_entries(images_dir)
    if not images:
        raise DataError(images_dir, "no images with a supported suffix", f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    structures = sorted(p for p in masks_dir.iterdir() if p.is_dir() and not _is_dicom_folder(p))
    overlapping = bool(structures) and not _image_entries(masks_dir, files_only=True)
    masks_by_stem = (
        {s.name: {case_stem(p): p for p in _image_entries(s)} for s in structures}
        if overlapping
        else {"": {case_stem(p): p for p in _image_entries(masks_dir)}}
    )
    problems: list[Problem] = []
    cases = []
    for image in images:
        stem = case_stem(image)
        found = tuple(group.get(stem) for group in masks_by_stem.values())
        missing = [name or "label" for name, p in zip(masks_by_stem, found, strict=True) if p is None]
        if missing:
            problems.append(Problem(image, f"no mask with the same stem in {masks_dir.name}/ ({', '.join(missing)})"))
        label = tuple(p for p in found if p is not None) if not missing else ()
        cases.append(Case(stem, (image,), label))
        problems += missing_files(cases[-1])  # broken symbolic links, link loops
    image_stems = {case_stem(p) for p in images}
    for group in masks_by_stem.values():
        problems += [
            Problem(p, "mask without an image of the same stem") for s, p in group.items() if s not in image_stems
        ]
    cases_t, dup = dedup_cases(cases)
    if overlapping:
        label_names = {i + 1: s.name for i, s in enumerate(structures)}
        values: tuple[int, ...] = tuple(label_names)
    else:
        values = discover_label_values(cases_t) if scan_labels else ()
        label_names = {i: ("background" if v == 0 else f"label_{v}") for i, v in enumerate(values)}
    return Dataset(
        root=root,
        layout="folder",
        cases=cases_t,
        labels=LabelSpec(label_names, values, overlapping),
        channel_names=("image",),
        file_ending=compound_suffix(images[0]) if not images[0].is_dir() else "",
        problems=tuple(problems + dup),
    )


def write(root: Path, cases: Iterable[CaseArrays], meta: DatasetMeta) -> tuple[int, int]:
    """Write ``cases`` into the empty folder ``root`` as ``images/`` + ``masks/``; return (training, 0)."""
    ending = meta.file_ending
    n = 0
    for case in cases:
        if case.label is None:
            raise DataError(root, f"case {case.case_id} has no label", "the folder layout holds labelled cases only")
        image = case.image[0] if case.image.shape[0] == 1 else case.image
        write_image(root / "images" / f"{case.case_id}{ending}", image, case.geometry)
        write_labels(root / "masks", case, meta)
        n += 1
    return n, 0


def discover_label_values(cases: Iterable[Case]) -> tuple[int, ...]:
    """Read every label map and return the sorted distinct values (0 always included).

    Unreadable labels are skipped here; ``medseg check`` reports them.
    """
    values: set[int] = {0}
    for case in cases:
        for path in case.label:
            try:
                array, _ = read_label(path)
            except DataError:
                continue
            values.update(int(v) for v in np.unique(array))
    return tuple(sorted(values))


def _image_entries(folder: Path, *, files_only: bool = False) -> list[Path]:
    """Image files and DICOM folders in ``folder``; a name with an image suffix that is not a folder counts
    even when it cannot be opened (a broken symbolic link, a link loop), so that its case reports it."""
    entries = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if (not path.is_dir() and compound_suffix(path) in SUPPORTED_SUFFIXES) or (
            not files_only and path.is_dir() and _is_dicom_folder(path)
        ):
            entries.append(path)
    return entries


def _is_dicom_folder(path: Path) -> bool:
    """A folder counts as a DICOM series when it holds files that are not images of another format."""
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    return bool(files) and all(compound_suffix(p) in ("", ".dcm", ".ima") for p in files)
