"""Dataset layouts, detected automatically, turned into one internal representation.

Three layouts are recognised (``detect_layout``):

==========  ==============================================================================================
``msd``     Medical Segmentation Decathlon: ``dataset.json`` (``modality``, ``labels``, ``training``) with
            ``imagesTr/`` + ``labelsTr/`` (+ ``imagesTs/``). Multi-channel cases are 4D NIfTI files.
``nnunet``  nnU-Net v2 raw: ``dataset.json`` with ``channel_names``, ``labels``, ``file_ending``; one file per
            channel ``CASE_0000<ending>``, labels ``labelsTr/CASE<ending>``.
            medseg extension for overlapping structures: ``"overlapping_labels": true`` in dataset.json and
            one binary mask per structure in ``labelsTr/<structure>/CASE<ending>`` (nnU-Net itself has no
            format for overlapping labels).
``folder``  ``images/`` + ``masks/`` (or ``labels/``) matched by file stem, the layout of most tutorials.
            Label values are discovered from the masks. If ``masks/`` holds one sub-folder per structure
            (``masks/heart/ID.png``, ``masks/left_lung/ID.png``) the structures are overlapping binary masks.
            An entry of ``images/`` may be a DICOM series folder; its mask is ``masks/<folder name>.<ext>``.
==========  ==============================================================================================

Whatever the layout, the result is a :class:`Dataset`: a tuple of :class:`Case` (id, channel paths, label
paths) plus label names and channel names. Problems that concern single cases (a missing label, duplicate
ids) are collected in ``Dataset.problems`` so that ``medseg check`` can list them all; problems that make the
whole dataset unusable raise :class:`~medseg.errors.DataError`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.fileutil import compound_suffix, path_problem
from medseg.io.images import read_label
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem, split_channel_suffix
from medseg.labels import LabelSpec

__all__ = [
    "LAYOUTS",
    "Case",
    "Dataset",
    "Problem",
    "detect_layout",
    "discover_label_values",
    "load_dataset",
]

logger = logging.getLogger(__name__)

LAYOUTS = ("msd", "nnunet", "folder")
_MASK_FOLDERS = ("masks", "labels")


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


def detect_layout(root: Path) -> str:
    """Return ``'msd'``, ``'nnunet'`` or ``'folder'`` for the dataset folder ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found", "pass the folder that holds the images")
    meta = root / "dataset.json"
    if meta.is_file():
        data = _read_json(meta)
        if "channel_names" in data or "file_ending" in data:
            return "nnunet"
        if "training" in data or "modality" in data:
            return "msd"
        raise DataError(
            meta,
            "dataset.json has neither nnU-Net keys (channel_names, labels, file_ending) nor MSD keys "
            "(modality, labels, training)",
            "fix the file or remove it to use the images/ + masks/ layout",
        )
    if (root / "images").is_dir() and any((root / m).is_dir() for m in _MASK_FOLDERS):
        return "folder"
    if (root / "imagesTr").is_dir():
        raise DataError(root, "imagesTr/ found but no dataset.json", "add dataset.json (MSD or nnU-Net v2)")
    raise DataError(
        root,
        "no known dataset layout (dataset.json + imagesTr/labelsTr, or images/ + masks/)",
        "see `medseg convert --help`",
    )


def load_dataset(root: Path, *, scan_labels: bool = True) -> Dataset:
    """Read the dataset in ``root`` in whichever layout it is.

    ``scan_labels`` reads every mask of a ``folder`` dataset to discover its label values (the other
    layouts declare them in dataset.json).
    """
    root = Path(root)
    try:
        layout = detect_layout(root)
        if layout == "msd":
            return _load_msd(root)
        if layout == "nnunet":
            return _load_nnunet(root)
        return _load_folder(root, scan_labels=scan_labels)
    except OSError as exc:  # a folder that cannot be listed, a file that cannot be looked at
        where = Path(exc.filename) if exc.filename else root
        raise DataError(where, f"cannot be read ({exc.strerror or exc})", "check the file and its permissions") from exc


# ---------------------------------------------------------------------------------------------- MSD


def _load_msd(root: Path) -> Dataset:
    meta_path = root / "dataset.json"
    meta = _read_json(meta_path)
    label_names = _int_keyed_labels(meta_path, _require(meta_path, meta, "labels"))
    modality = meta.get("modality", {"0": "image"})
    if not isinstance(modality, dict) or not modality:
        raise DataError(meta_path, '\'modality\' must map channel index to name, e.g. {"0": "CT"}')
    channel_names = tuple(str(modality[k]) for k in sorted(modality, key=int))
    training = _require(meta_path, meta, "training")
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
        problems += _missing_files(case)
        cases.append(case)
    tests = [Case(case_stem(p), (p,)) for p in (_inside(root, t, meta_path) for t in meta.get("test", []) or [])]
    problems += [problem for case in tests for problem in _missing_files(case)]
    cases_t, dup = _dedup(cases)
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


# ------------------------------------------------------------------------------------------- nnU-Net


def _load_nnunet(root: Path) -> Dataset:
    meta_path = root / "dataset.json"
    meta = _read_json(meta_path)
    channels = _require(meta_path, meta, "channel_names")
    labels = _require(meta_path, meta, "labels")
    ending = str(_require(meta_path, meta, "file_ending"))
    if not isinstance(channels, dict) or not channels:
        raise DataError(meta_path, '\'channel_names\' must map channel index to name, e.g. {"0": "CT"}')
    channel_names = tuple(str(channels[k]) for k in sorted(channels, key=int))
    if not isinstance(labels, dict):
        raise DataError(meta_path, "'labels' must map label name to integer value")
    if any(isinstance(v, list) for v in labels.values()):
        raise DataError(
            meta_path, "region-based labels (lists of values) are not supported", "use plain integer labels"
        )
    try:
        label_names = {int(v): str(k) for k, v in labels.items()}
    except (TypeError, ValueError) as exc:
        raise DataError(meta_path, f"'labels' values must be integers ({exc})") from exc
    overlapping = bool(meta.get("overlapping_labels", False))
    if overlapping:
        label_names = {v: n for v, n in label_names.items() if v != 0}
    problems: list[Problem] = []
    cases = _nnunet_cases(
        root / "imagesTr", root / "labelsTr", ending, len(channel_names), problems, label_names, overlapping
    )
    tests = _nnunet_cases(root / "imagesTs", None, ending, len(channel_names), problems, label_names, overlapping)
    if not cases:
        raise DataError(root / "imagesTr", f"no training images ending in {ending}", "check 'file_ending'")
    return Dataset(
        root=root,
        layout="nnunet",
        cases=tuple(cases),
        labels=LabelSpec(dict(sorted(label_names.items())), tuple(sorted(label_names)), overlapping),
        channel_names=channel_names,
        test_cases=tuple(tests),
        file_ending=ending,
        problems=tuple(problems),
    )


def _nnunet_cases(
    images: Path,
    labels: Path | None,
    ending: str,
    n_channels: int,
    problems: list[Problem],
    label_names: dict[int, str],
    overlapping: bool,
) -> list[Case]:
    if not images.is_dir():
        return []
    by_case: dict[str, dict[int, Path]] = {}
    for path in sorted(images.iterdir()):
        if not path.name.endswith(ending) or path.name.startswith("."):
            continue
        case_id, channel = split_channel_suffix(path.name[: -len(ending)])
        if channel is None:
            problems.append(Problem(path, "name lacks the channel suffix _XXXX (e.g. CASE_0000" + ending + ")"))
            continue
        by_case.setdefault(case_id, {})[channel] = path
    cases = []
    for case_id, chans in sorted(by_case.items()):
        if sorted(chans) != list(range(n_channels)):
            problems.append(
                Problem(images / case_id, f"has channels {sorted(chans)}, dataset.json declares {n_channels}")
            )
            continue
        label: tuple[Path, ...] = ()
        if labels is not None:
            if overlapping:
                label = tuple(labels / name / f"{case_id}{ending}" for name in label_names.values())
            else:
                label = (labels / f"{case_id}{ending}",)
        case = Case(case_id, tuple(chans[i] for i in range(n_channels)), label)
        problems += _missing_files(case)
        cases.append(case)
    return cases


# -------------------------------------------------------------------------------------------- folder


def _load_folder(root: Path, *, scan_labels: bool) -> Dataset:
    images_dir = root / "images"
    masks_dir = next(root / m for m in _MASK_FOLDERS if (root / m).is_dir())
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
        problems += _missing_files(cases[-1])  # broken symbolic links, link loops
    image_stems = {case_stem(p) for p in images}
    for group in masks_by_stem.values():
        problems += [
            Problem(p, "mask without an image of the same stem") for s, p in group.items() if s not in image_stems
        ]
    cases_t, dup = _dedup(cases)
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


# ------------------------------------------------------------------------------------------- helpers


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read file ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise DataError(path, "must hold a JSON object")
    return data


def _require(path: Path, data: dict[str, Any], key: str) -> Any:
    if key not in data:
        raise DataError(path, f"missing key '{key}'", "see the MSD / nnU-Net v2 dataset.json format")
    return data[key]


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
    # loop is reported as that case's problem (see _missing_files)
    path = Path(os.path.realpath(root / relative))
    if not path.is_relative_to(os.path.realpath(root)):
        raise DataError(meta_path, f"path {relative!r} points outside the dataset folder", "use paths inside it")
    return root / Path(relative)


def _missing_files(case: Case) -> list[Problem]:
    """Image and label files that cannot be looked at: missing, broken symbolic links, link loops, ..."""
    problems = []
    for kind, paths in (("image file", case.channels), (f"label file of case {case.case_id}", case.label)):
        for path in paths:
            found = path_problem(path)
            if found is not None:
                missing = found[0] == "no such file or folder"
                problems.append(Problem(path, f"{kind} missing" if missing else found[0]))
    return problems


def _dedup(cases: list[Case]) -> tuple[tuple[Case, ...], list[Problem]]:
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
