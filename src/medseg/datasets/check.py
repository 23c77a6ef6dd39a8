"""Dataset validation: read every case and list everything that would hurt training.

``check_dataset`` never raises for a bad case: each problem becomes a :class:`~medseg.datasets.records.Problem`
naming the file. Found: unreadable or truncated files, missing labels, duplicate ids (from loading), image /
label shape or geometry mismatch, labels outside the declared set, non-binary structure masks, NaN/Inf
voxels, constant (e.g. all-zero) images, channel files of a case that disagree in shape or geometry (unless
``resample_channels``: then they are resampled onto the first channel's grid, as preprocessing will), and
masks saved in a lossy format (:func:`lossy_mask_threshold`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.datasets.records import Case, Dataset, Problem
from medseg.errors import DataError
from medseg.io.images import Geometry, read_channels, read_label

__all__ = ["CaseSummary", "CheckReport", "check_case", "check_dataset", "lossy_levels", "lossy_mask_threshold"]

LOSSY_NEAR = 16  # stray values of a lossy mask lie at most this far from their level
LOSSY_MIN_GAP = 32  # real levels at least this far apart (0/255 masks), unlike consecutive class indices
LOSSY_STRAY_FRACTION = 0.1  # stray values hold less than this share of all voxels
LOSSY_LEVEL_FRACTION = 0.01  # each level holds at least this share


@dataclass(frozen=True)
class CaseSummary:
    """What ``check`` learnt about one readable case."""

    case_id: str
    channels: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    intensity_min: float
    intensity_max: float
    label_counts: dict[int, int]  # class index -> voxels (for overlapping masks: structure -> voxels)


@dataclass(frozen=True)
class CheckReport:
    dataset: Dataset
    cases: tuple[CaseSummary, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def label_totals(self) -> dict[int, int]:
        totals: dict[int, int] = {}
        for case in self.cases:
            for k, n in case.label_counts.items():
                totals[k] = totals.get(k, 0) + n
        return dict(sorted(totals.items()))


def check_dataset(
    dataset: Dataset, *, progress: Callable[[], None] | None = None, resample_channels: bool = False
) -> CheckReport:
    """Check every case of ``dataset`` (training and test cases); see the module docstring.

    Cases are read one after the other: reading them from several threads crashed the process once with
    heap corruption inside the native image readers (ITK's NIfTI library keeps global state).
    """
    summaries: list[CaseSummary] = []
    problems: list[Problem] = list(dataset.problems)
    for case in list(dataset.cases) + list(dataset.test_cases):
        summary, case_problems = check_case(case, dataset, resample_channels=resample_channels)
        if summary is not None:
            summaries.append(summary)
        problems += case_problems
        if progress is not None:
            progress()
    report = CheckReport(dataset, tuple(summaries), tuple(_unique(problems)))
    if dataset.labels.overlapping or not summaries:
        return report
    totals = report.label_totals()
    by_value = {dataset.labels.values[k]: n for k, n in totals.items()}
    levels = lossy_levels(by_value)
    if not levels:
        return report
    threshold = _midpoint(levels)
    fix = (
        f"convert with `medseg convert {dataset.root} OUT --mask-threshold {threshold:g}` (value >= {threshold:g} -> 1)"
        if len(levels) == 2
        else "save the masks in a lossless format (PNG, NIfTI)"
    )
    lossy = Problem(
        dataset.root,
        f"masks look lossy (JPEG-like artefacts): {len(by_value)} label values cluster around the levels "
        f"{', '.join(map(str, levels))}; {fix}",
    )
    return CheckReport(dataset, report.cases, (*report.problems, lossy))


def lossy_mask_threshold(voxels_by_value: dict[int, int]) -> float | None:
    """The binarisation threshold for masks whose values cluster around a few far-apart levels, or None.

    A mask saved as JPEG (or exported with anti-aliasing) keeps its real levels (0 and 255) as the most
    frequent values, with stray values close to them (1-8 and 247-254 on Kvasir-SEG). The rule: the sorted
    values fall into clusters (a gap of more than :data:`LOSSY_NEAR` starts a new one); there are at least two,
    their most frequent values (the levels) lie at least :data:`LOSSY_MIN_GAP` apart and each hold at least
    :data:`LOSSY_LEVEL_FRACTION` of the voxels, at least three values are
    not levels, each within :data:`LOSSY_NEAR` of its level, and together they hold under
    :data:`LOSSY_STRAY_FRACTION` of the voxels. Class indices 0..K form one cluster (never lossy); a clean 0/255
    mask has no stray values; a label map with classes 0..20 and 255 ("ignore") has its classes' many voxels.
    Returns the midpoint of the two lowest levels, rounded up (128 for 0/255).
    """
    levels = lossy_levels(voxels_by_value)
    return _midpoint(levels) if levels else None


def _midpoint(levels: list[int]) -> float:
    return float(np.ceil((levels[0] + levels[1]) / 2))


def lossy_levels(voxels_by_value: dict[int, int]) -> list[int]:
    """The real levels of lossy masks (see :func:`lossy_mask_threshold`), or [] when the masks look clean."""
    total = sum(voxels_by_value.values())
    values = sorted(voxels_by_value)
    if total == 0 or len(values) < 5:
        return []
    clusters: list[list[int]] = [[values[0]]]
    for v in values[1:]:
        if v - clusters[-1][-1] > LOSSY_NEAR:
            clusters.append([])
        clusters[-1].append(v)
    levels = [max(c, key=lambda v: voxels_by_value[v]) for c in clusters]
    if len(levels) < 2 or min(b - a for a, b in itertools.pairwise(levels)) < LOSSY_MIN_GAP:
        return []
    if any(voxels_by_value[level] < LOSSY_LEVEL_FRACTION * total for level in levels):
        return []  # a rare value far from the others is a class of its own, not a level
    stray = [(v, level) for c, level in zip(clusters, levels, strict=True) for v in c if v != level]
    if len(stray) < 3 or any(abs(v - level) > LOSSY_NEAR for v, level in stray):
        return []
    if sum(voxels_by_value[v] for v, _ in stray) >= LOSSY_STRAY_FRACTION * total:
        return []
    return levels


def check_case(
    case: Case, dataset: Dataset, *, resample_channels: bool = False
) -> tuple[CaseSummary | None, list[Problem]]:
    """Read one case and return its summary (None if unreadable) and its problems; ``resample_channels``
    accepts channel files on different grids (resampled onto the first channel's)."""
    if any(not p.exists() for p in case.channels):
        return None, []  # reported by the loader already
    try:
        image, geometry = read_channels(list(case.channels), resample=resample_channels)
    except DataError as exc:
        return None, [Problem(exc.path, exc.problem)]
    problems = _image_problems(case, image)
    counts: dict[int, int] = {}
    for k, path in enumerate(case.label):
        if not path.exists():
            continue
        try:
            label, label_geometry = read_label(path)
        except DataError as exc:
            problems.append(Problem(exc.path, exc.problem))
            continue
        if not _same_grid(path, image.shape[1:], geometry, label.shape, label_geometry, problems):
            continue
        if dataset.labels.overlapping:
            problems += _mask_problems(path, label)
            counts[k + 1] = int(np.count_nonzero(label))
        else:
            counts.update(_label_counts(path, label, dataset, problems))
    finite = image[np.isfinite(image)] if not np.issubdtype(image.dtype, np.integer) else image
    summary = CaseSummary(
        case_id=case.case_id,
        channels=image.shape[0],
        shape=tuple(image.shape[1:]),
        spacing=geometry.spacing,
        intensity_min=float(finite.min()) if finite.size else float("nan"),
        intensity_max=float(finite.max()) if finite.size else float("nan"),
        label_counts=dict(sorted(counts.items())),
    )
    return summary, problems


def _image_problems(case: Case, image: np.ndarray) -> list[Problem]:
    problems = []
    for c in range(image.shape[0]):
        path = case.channels[c] if len(case.channels) > 1 else case.channels[0]
        channel = image[c]
        where = f" (channel {c})" if image.shape[0] > 1 else ""
        if np.issubdtype(channel.dtype, np.floating):
            n_bad = int(channel.size - np.count_nonzero(np.isfinite(channel)))
            if n_bad:
                problems.append(Problem(path, f"{n_bad} NaN/Inf voxels{where}"))
                continue
        if channel.size == 0:
            problems.append(Problem(path, f"image is empty{where}"))
        elif channel.min() == channel.max():
            problems.append(Problem(path, f"image is constant (every voxel = {channel.flat[0]}){where}"))
    return problems


def _same_grid(
    path: Path,
    image_shape: tuple[int, ...],
    image_geometry: Geometry,
    label_shape: tuple[int, ...],
    label_geometry: Geometry,
    problems: list[Problem],
) -> bool:
    if tuple(label_shape) != tuple(image_shape):
        hint = ""
        if len(label_shape) == len(image_shape) and all(
            s % t == 0 and s // t == image_shape[0] // label_shape[0]
            for s, t in zip(image_shape, label_shape, strict=True)
        ):
            hint = (
                f"; the image is exactly {image_shape[0] // label_shape[0]}x the label: "
                "`medseg convert --resize-images-to-masks` resamples it"
            )
        problems.append(
            Problem(path, f"label shape {tuple(label_shape)} differs from image shape {tuple(image_shape)}{hint}")
        )
        return False
    if not label_geometry.matches(image_geometry):
        turned = not np.allclose(label_geometry.direction, image_geometry.direction, atol=1e-3)
        label_text, image_text = _geo(label_geometry, turned), _geo(image_geometry, turned)
        problems.append(Problem(path, f"label geometry differs from the image: {label_text} vs {image_text}"))
    return True


def _label_counts(path: Path, label: np.ndarray, dataset: Dataset, problems: list[Problem]) -> dict[int, int]:
    values, counts = np.unique(label, return_counts=True)
    declared = {v: i for i, v in enumerate(dataset.labels.values)}
    outside = [int(v) for v in values if int(v) not in declared]
    if outside:
        problems.append(
            Problem(path, f"label values {outside} are not declared (declared: {list(dataset.labels.values)})")
        )
    return {declared[int(v)]: int(n) for v, n in zip(values, counts, strict=True) if int(v) in declared}


def _mask_problems(path: Path, mask: np.ndarray) -> list[Problem]:
    values = np.unique(mask)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = [int(v) for v in values[:6]]
        return [Problem(path, f"structure mask is not binary (values {shown}{'...' if len(values) > 6 else ''})")]
    return []


def _geo(g: Geometry, direction: bool = False) -> str:
    spacing = ", ".join(f"{s:.4g}" for s in g.spacing)
    origin = ", ".join(f"{s:.4g}" for s in g.origin)
    turned = " direction (" + ", ".join(f"{s:.3g}" for s in g.direction) + ")" if direction else ""
    return f"spacing ({spacing}) origin ({origin}){turned}"


def _unique(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        key = (str(p.path), p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
