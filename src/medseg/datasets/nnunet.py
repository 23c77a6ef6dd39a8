"""The nnU-Net v2 raw layout (and medseg's extension for overlapping structures): read and write.

On disk::

    dataset.json            channel_names {"0": "CT", ...}, labels {"background": 0, "liver": 1, ...},
                            file_ending ".nii.gz", numTraining
    imagesTr/CASE_0000<ending>, CASE_0001<ending>, ...   one file per channel (four-digit channel suffix)
    labelsTr/CASE<ending>                                a label map whose values are those of 'labels'
    imagesTs/CASE_0000<ending>, ...                      unlabelled test cases (optional)

medseg extension for overlapping structures: ``"overlapping_labels": true`` in dataset.json and one binary
mask per structure in ``labelsTr/<structure>/CASE<ending>`` (nnU-Net itself has no format for overlapping
labels). Region-based labels (lists of values) are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medseg.datasets.records import (
    Case,
    CaseArrays,
    Dataset,
    DatasetMeta,
    Problem,
    missing_files,
    read_json,
    require_key,
    write_labels,
)
from medseg.errors import DataError
from medseg.fileutil import atomic_write_json
from medseg.io.images import write_image
from medseg.io.naming import channel_file_name, split_channel_suffix
from medseg.labels import LabelSpec

__all__ = ["read", "write"]


def read(root: Path, *, scan_labels: bool = True) -> Dataset:
    """Read the nnU-Net v2 raw dataset in ``root`` (``scan_labels`` is unused: dataset.json declares the labels)."""
    meta_path = root / "dataset.json"
    meta = read_json(meta_path)
    channels = require_key(meta_path, meta, "channel_names")
    labels = require_key(meta_path, meta, "labels")
    ending = str(require_key(meta_path, meta, "file_ending"))
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
    cases = _cases(root / "imagesTr", root / "labelsTr", ending, len(channel_names), problems, label_names, overlapping)
    tests = _cases(root / "imagesTs", None, ending, len(channel_names), problems, label_names, overlapping)
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


def write(root: Path, cases: Iterable[CaseArrays], meta: DatasetMeta) -> tuple[int, int]:
    """Write ``cases`` and dataset.json into the empty folder ``root``; return (training, test) case counts."""
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
        write_labels(root / "labelsTr", case, meta)
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


def _cases(
    images: Path,
    labels: Path | None,
    ending: str,
    n_channels: int,
    problems: list[Problem],
    label_names: dict[int, str],
    overlapping: bool,
) -> list[Case]:
    """The cases of ``images`` (channel files grouped by case id), their labels in ``labels`` (None: test
    cases); what is wrong with single cases is appended to ``problems``."""
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
        problems += missing_files(case)
        cases.append(case)
    return cases
