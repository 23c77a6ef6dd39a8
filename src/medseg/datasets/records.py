"""The records every dataset layout reads into or writes from, and the helpers more than one layout uses.

Reading gives a :class:`Dataset`: a tuple of :class:`Case` (id, channel paths, label paths) plus label names
and channel names. Problems that concern single cases (a missing label, duplicate ids) are collected as
:class:`Problem` in ``Dataset.problems`` so that ``medseg check`` can list them all; problems that make the
whole dataset unusable raise :class:`~medseg.errors.DataError`. Writing takes :class:`CaseArrays` (a case held
in memory) and :class:`DatasetMeta` (what dataset.json says).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.fileutil import path_problem
from medseg.io.images import Geometry, write_image
from medseg.labels import LabelSpec

__all__ = [
    "Case",
    "CaseArrays",
    "Dataset",
    "DatasetMeta",
    "Problem",
    "dedup_cases",
    "missing_files",
    "read_json",
    "require_key",
    "write_labels",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file concerned and a sentence a person can act on."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Case:
    """One case: its id, one path per input channel, and its label path(s).

    ``label`` is empty for unlabelled cases, one path for a label map (exclusive classes), or one path
    per structure for overlapping binary masks (in the order of ``Dataset.labels.names``).
    """

    case_id: str
    channels: tuple[Path, ...]
    label: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A segmentation dataset in medseg's internal form.

    ``labels`` (:class:`~medseg.labels.LabelSpec`) names the classes: for exclusive labels index 0 is
    background and ``labels.values[i]`` is the voxel value of class ``i`` in the label files (identical to
    ``i`` for MSD and nnU-Net datasets; e.g. ``(0, 255)`` for a folder of 0/255 PNG masks). For overlapping
    structures there is no background: ``labels.names`` maps 1..K to structure names and a voxel belongs to
    structure k where its mask file is non-zero.

    Example:
        >>> ds = load_dataset(Path("Task04_Hippocampus"))     # doctest: +SKIP
        >>> ds.layout, len(ds.cases), ds.labels.names
        ('msd', 260, {0: 'background', 1: 'Anterior', 2: 'Posterior'})
    """

    root: Path
    layout: str
    cases: tuple[Case, ...]
    labels: LabelSpec
    channel_names: tuple[str, ...]
    test_cases: tuple[Case, ...] = ()
    file_ending: str = ".nii.gz"
    problems: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def num_classes(self) -> int:
        """Network output channels: classes incl. background, or structures for multi-label."""
        return len(self.labels.names)

    @property
    def labelled_cases(self) -> tuple[Case, ...]:
        return tuple(c for c in self.cases if c.label)


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


# ------------------------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (dataset.json); anything else is a :class:`DataError` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read file ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise DataError(path, "must hold a JSON object")
    return data


def require_key(path: Path, data: dict[str, Any], key: str) -> Any:
    """``data[key]`` of the dataset.json ``path``; a missing key is a :class:`DataError`."""
    if key not in data:
        raise DataError(path, f"missing key '{key}'", "see the MSD / nnU-Net v2 dataset.json format")
    return data[key]


def missing_files(case: Case) -> list[Problem]:
    """Image and label files that cannot be looked at: missing, broken symbolic links, link loops, ..."""
    problems = []
    for kind, paths in (("image file", case.channels), (f"label file of case {case.case_id}", case.label)):
        for path in paths:
            found = path_problem(path)
            if found is not None:
                missing = found[0] == "no such file or folder"
                problems.append(Problem(path, f"{kind} missing" if missing else found[0]))
    return problems


def dedup_cases(cases: list[Case]) -> tuple[tuple[Case, ...], list[Problem]]:
    """Keep the first case of each id; report the others."""
    seen: dict[str, Case] = {}
    problems = []
    for case in cases:
        if case.case_id in seen:
            problems.append(
                Problem(case.channels[0], f"duplicate case id '{case.case_id}' (also {seen[case.case_id].channels[0]})")
            )
            continue
        seen[case.case_id] = case
    return tuple(seen.values()), problems


# ------------------------------------------------------------------------------------------- writing


def write_labels(folder: Path, case: CaseArrays, meta: DatasetMeta) -> None:
    """Write a labelled case's label map as ``folder/CASE<ending>``, or for overlapping structures one binary
    mask per structure as ``folder/<structure>/CASE<ending>``."""
    assert case.label is not None  # callers check; internal invariant, not user input
    if meta.labels.overlapping:
        for k, name in enumerate(meta.labels.names.values()):
            mask = case.label[k].astype(np.uint8)
            write_image(folder / name / f"{case.case_id}{meta.file_ending}", mask, case.geometry)
    else:
        write_image(folder / f"{case.case_id}{meta.file_ending}", case.label.astype(np.uint8), case.geometry)
