"""The Medical Segmentation Decathlon layout: read and write.

On disk::

    dataset.json      modality {"0": "CT", ...}, labels {"0": "background", "1": ...},
                      training [{"image": "./imagesTr/CASE.nii.gz", "label": "./labelsTr/CASE.nii.gz"}, ...],
                      test ["./imagesTs/CASE.nii.gz", ...]
    imagesTr/CASE.nii.gz   multi-channel cases are one 4D NIfTI file (x, y, z, c)
    labelsTr/CASE.nii.gz   a label map whose values are the keys of 'labels'
    imagesTs/CASE.nii.gz   unlabelled test cases (optional)

The case id is the file stem. Paths in dataset.json must stay inside the dataset folder. MSD has no format
for overlapping structures (use the nnU-Net layout).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from medseg.datasets.records import (
    Case,
    CaseArrays,
    Dataset,
    DatasetMeta,
    Problem,
    dedup_cases,
    missing_files,
    read_json,
    require_key,
)
from medseg.errors import DataError
from medseg.fileutil import atomic_write_json, compound_suffix
from medseg.io.images import write_image
from medseg.io.naming import case_stem
from medseg.labels import LabelSpec

__all__ = ["read", "write"]


def read(root: Path, *, scan_labels: bool = True) -> Dataset:
    """Read the MSD dataset in ``root`` (``scan_labels`` is unused: dataset.json declares the labels)."""
    meta_path = root / "dataset.json"
    meta = read_json(meta_path)
    label_names = _int_keyed_labels(meta_path, require_key(meta_path, meta, "labels"))
    modality = meta.get("modality", {"0": "image"})
    if not isinstance(modality, dict) or not modality:
        raise DataError(meta_path, '\'modality\' must map channel index to name, e.g. {"0": "CT"}')
    channel_names = tuple(str(modality[k]) for k in sorted(modality, key=int))
    training = require_key(meta_path, meta, "training")
    if not isinstance(training, list):
        raise DataError(meta_path, '\'training\' must be a list of {"image": ..., "label": ...}')
    problems: list[Problem] = []
    cases = []
    for i, entry in enumerate(training):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DataError(meta_path, f"training entry {i} has no 'image' key")
        image = _inside(root, entry["image"], meta_path)
        label = _inside(root, entry["label"], meta_path) if entry.get("label") else None
        case = Case(case_stem(image), (image,), (label,) if label else ())
        problems += missing_files(case)
        cases.append(case)
    tests = [Case(case_stem(p), (p,)) for p in (_inside(root, t, meta_path) for t in meta.get("test", []) or [])]
    problems += [problem for case in tests for problem in missing_files(case)]
    cases_t, dup = dedup_cases(cases)
    return Dataset(
        root=root,
        layout="msd",
        cases=cases_t,
        labels=LabelSpec(label_names, tuple(sorted(label_names))),
        channel_names=channel_names,
        test_cases=tuple(tests),
        file_ending=compound_suffix(cases_t[0].channels[0]) if cases_t else ".nii.gz",
        problems=tuple(problems + dup),
    )


def write(root: Path, cases: Iterable[CaseArrays], meta: DatasetMeta) -> tuple[int, int]:
    """Write ``cases`` and dataset.json into the empty folder ``root``; return (training, test) case counts."""
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


def _int_keyed_labels(path: Path, labels: Any) -> dict[int, str]:
    if not isinstance(labels, dict) or not labels:
        raise DataError(path, '\'labels\' must map label value to name, e.g. {"0": "background"}')
    try:
        out = {int(k): str(v) for k, v in labels.items()}
    except ValueError as exc:
        raise DataError(path, f"'labels' keys must be integers ({exc})") from exc
    return dict(sorted(out.items()))


def _inside(root: Path, relative: Any, meta_path: Path) -> Path:
    """Resolve a path from dataset.json; refuse paths that leave the dataset folder."""
    if not isinstance(relative, str) or not relative:
        raise DataError(meta_path, f"expected a relative file path, got {relative!r}")
    # os.path.realpath, unlike Path.resolve on Python < 3.13, does not raise on a symbolic link loop; the
    # loop is reported as that case's problem (see records.missing_files)
    path = Path(os.path.realpath(root / relative))
    if not path.is_relative_to(os.path.realpath(root)):
        raise DataError(meta_path, f"path {relative!r} points outside the dataset folder", "use paths inside it")
    return root / Path(relative)
