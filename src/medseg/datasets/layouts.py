"""Writing datasets in the standard layouts (MSD, nnU-Net v2 raw, images/ + masks/ folders).

Used by ``medseg convert`` and by the synthetic-data generator. The whole dataset is written into a
temporary folder beside the target and renamed at the end, so an interrupted run leaves nothing
half-written under the target name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.fileutil import atomic_path, atomic_write_json, make_dirs
from medseg.io.images import Geometry, write_image
from medseg.io.naming import channel_file_name
from medseg.labels import LabelSpec

__all__ = ["CaseArrays", "DatasetMeta", "write_layout"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CaseArrays:
    """One case held in memory: ``image`` (C, *spatial), ``label`` (*spatial) class indices or
    (K, *spatial) binary masks for overlapping structures, or None for an unlabelled (test) case."""

    case_id: str
    image: np.ndarray
    geometry: Geometry
    label: np.ndarray | None = None


@dataclass(frozen=True)
class DatasetMeta:
    """What dataset.json says: names of classes (index -> name) and channels, file ending."""

    name: str
    labels: LabelSpec
    channel_names: tuple[str, ...]
    file_ending: str = ".nii.gz"
    description: str = ""


def write_layout(out: Path, layout: str, cases: Iterable[CaseArrays], meta: DatasetMeta) -> Path:
    """Write ``cases`` under ``out`` in ``layout`` ('msd', 'nnunet' or 'folder'); return ``out``.

    ``out`` must not exist yet (or be an empty folder).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "output folder exists and is not empty", "choose a new folder or remove it")
    writer = {"msd": _write_msd, "nnunet": _write_nnunet, "folder": _write_folder}.get(layout)
    if writer is None:
        raise DataError(out, f"unknown layout '{layout}'", "use one of msd, nnunet, folder")
    if out.is_dir():
        out.rmdir()
    with atomic_path(out) as tmp:
        make_dirs(tmp)
        n_train, n_test = writer(tmp, cases, meta)
    logger.info("wrote %d training and %d test cases to %s (%s layout)", n_train, n_test, out, layout)
    return out


def _write_nnunet(root: Path, cases: Iterable[CaseArrays], meta: DatasetMeta) -> tuple[int, int]:
    ending = meta.file_ending
    n_train = n_test = 0
    for case in cases:
        folder = "imagesTr" if case.label is not None else "imagesTs"
        for c in range(case.image.shape[0]):
            write_image(root / folder / channel_file_name(case.case_id, c, ending), case.image[c], case.geometry)
        if case.label is None:
            n_test += 1
            continue
        n_train += 1
        _write_labels(root / "labelsTr", case, meta)
    labels: dict[str, Any] = {name: index for index, name in sorted(meta.labels.names.items())}
    if meta.labels.overlapping:
        labels = {"background": 0, **labels}
    data: dict[str, Any] = {
        "name": meta.name,
        "description": meta.description,
        "channel_names": {str(i): n for i, n in enumerate(meta.channel_names)},
        "labels": labels,
        "numTraining": n_train,
        "file_ending": ending,
    }
    if meta.labels.overlapping:
        data["overlapping_labels"] = True
    atomic_write_json(root / "dataset.json", data)
    return n_train, n_test


def _write_msd(root: Path, cases: Iterable[CaseArrays], meta: DatasetMeta) -> tuple[int, int]:
    if meta.labels.overlapping:
        raise DataError(root, "the MSD layout has no format for overlapping structures", "use --layout nnunet")
    ending = meta.file_ending
    training, test = [], []
    for case in cases:
        image = case.image[0] if case.image.shape[0] == 1 else case.image
        if case.label is None:
            write_image(root / "imagesTs" / f"{case.case_id}{ending}", image, case.geometry)
            test.append(f"./imagesTs/{case.case_id}{ending}")
            continue
        write_image(root / "imagesTr" / f"{case.case_id}{ending}", image, case.geometry)
        write_image(root / "labelsTr" / f"{case.case_id}{ending}", case.label.astype(np.uint8), case.geometry)
        training.append({"image": f"./imagesTr/{case.case_id}{ending}", "label": f"./labelsTr/{case.case_id}{ending}"})
    data = {
        "name": meta.name,
        "description": meta.description,
        "tensorImageSize": "4D" if len(meta.channel_names) > 1 else "3D",
        "modality": {str(i): n for i, n in enumerate(meta.channel_names)},
        "labels": {str(i): n for i, n in sorted(meta.labels.names.items())},
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
    }
    atomic_write_json(root / "dataset.json", data)
    return len(training), len(test)


def _write_folder(root: Path, cases: Iterable[CaseArrays], meta: DatasetMeta) -> tuple[int, int]:
    ending = meta.file_ending
    n = 0
    for case in cases:
        if case.label is None:
            raise DataError(root, f"case {case.case_id} has no label", "the folder layout holds labelled cases only")
        image = case.image[0] if case.image.shape[0] == 1 else case.image
        write_image(root / "images" / f"{case.case_id}{ending}", image, case.geometry)
        _write_labels(root / "masks", case, meta)
        n += 1
    return n, 0


def _write_labels(folder: Path, case: CaseArrays, meta: DatasetMeta) -> None:
    assert case.label is not None  # callers check; internal invariant, not user input
    if meta.labels.overlapping:
        for k, name in enumerate(meta.labels.names.values()):
            mask = case.label[k].astype(np.uint8)
            write_image(folder / name / f"{case.case_id}{meta.file_ending}", mask, case.geometry)
    else:
        write_image(folder / f"{case.case_id}{meta.file_ending}", case.label.astype(np.uint8), case.geometry)
