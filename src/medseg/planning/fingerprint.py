"""Fingerprint a dataset: read every labelled case once and keep what planning needs.

Shapes, spacings, sizes after cropping to the non-zero region, foreground intensity statistics per
channel (sampled, 10,000 voxels per case, with the seeded generator passed in), and the standard histogram
landmarks per channel for ``--normalization histogram-match`` (:mod:`medseg.preprocessing.histogram`, from up
to 200,000 body voxels per case), and how thin each class's regions are (:func:`thickness_mm`, on up to
:data:`THICKNESS_CASES` cases): what the time-budget rule keeps resolvable when it coarsens the spacing.
This is the only planning step that reads files; :mod:`medseg.planning.plans` turns the result into plans
without touching disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.datasets.records import Dataset
from medseg.errors import DataError
from medseg.io.images import read_channels, read_label
from medseg.labels import LabelSpec
from medseg.preprocessing.forward import nonzero_bbox
from medseg.preprocessing.histogram import case_landmarks, standard_landmarks

__all__ = ["Fingerprint", "IntensityStats", "fingerprint", "thickness_mm"]


_SAMPLES_PER_CASE = 10_000
_LANDMARK_SAMPLES = 200_000
THICKNESS_CASES = 20  # the cases thickness is measured on (the first ones: deterministic, bounded cost)
THICKNESS_MAX_VOXELS = 2**24  # larger label maps are subsampled for it (a 512 x 512 x 300 CT by 2 per axis)


@dataclass(frozen=True)
class IntensityStats:
    mean: float
    std: float
    p00_5: float
    p99_5: float


@dataclass(frozen=True)
class Fingerprint:
    """What planning needs to know about a dataset (spacings and shapes in array axis order)."""

    name: str
    shapes: tuple[tuple[int, ...], ...]
    spacings: tuple[tuple[float, ...], ...]
    cropped_shapes: tuple[tuple[int, ...], ...]
    channel_names: tuple[str, ...]
    labels: LabelSpec
    foreground_intensity: tuple[IntensityStats, ...]
    file_ending: str
    landmarks: tuple[tuple[float, ...], ...] = ()  # per channel: the standard histogram (histogram-match)
    thickness_mm: tuple[float, ...] = ()  # per class (background included) or structure: median thickness

    @property
    def ndim(self) -> int:
        return len(self.shapes[0])


def fingerprint(
    dataset: Dataset, *, seed: int = 0, progress: Callable[[], None] | None = None, resample_channels: bool = False
) -> Fingerprint:
    """Read every labelled case once: shapes, spacings, non-zero crop sizes, foreground intensities.
    ``resample_channels``: channel files on other grids are resampled onto the first channel's, as
    preprocessing will, so shapes and spacings are the first channel's."""
    cases = dataset.labelled_cases
    if not cases:
        raise DataError(dataset.root, "no labelled cases", "training needs images with masks")
    rng = np.random.default_rng(seed)
    landmark_rng = np.random.default_rng([seed, 1])  # its own stream: the intensity samples stay as they were
    shapes, spacings, cropped = [], [], []
    samples: list[list[np.ndarray]] = []
    landmarks: list[list[np.ndarray]] = []
    thickness: list[list[float]] = []
    for index, case in enumerate(cases):
        image, geometry = read_channels(list(case.channels), resample=resample_channels)
        label, _ = read_label(case.label[0])
        if label.shape != image.shape[1:]:
            raise DataError(
                case.label[0],
                f"label shape {label.shape} differs from image shape {image.shape[1:]}",
                "run `medseg check` for details",
            )
        shapes.append(tuple(image.shape[1:]))
        spacings.append(tuple(float(s) for s in geometry.spacing))
        lo, hi = nonzero_bbox(image)
        cropped.append(tuple(int(h - l_) for l_, h in zip(lo, hi, strict=True)))
        foreground = label > 0
        if not foreground.any():
            foreground = np.ones_like(foreground)
        values = image[:, foreground]
        pick = rng.choice(values.shape[1], size=min(_SAMPLES_PER_CASE, values.shape[1]), replace=False)
        samples.append([values[c, pick].astype(np.float64) for c in range(values.shape[0])])
        landmarks.append([case_landmarks(c, landmark_rng, _LANDMARK_SAMPLES) for c in image])
        if index < THICKNESS_CASES:
            thickness.append(_case_thickness(case.label, label, dataset, geometry.spacing))
        if progress is not None:
            progress()
    n_channels = len(samples[0])
    stats = tuple(_intensity_stats(np.concatenate([s[c] for s in samples])) for c in range(n_channels))
    channel_names = (
        dataset.channel_names
        if len(dataset.channel_names) == n_channels
        else tuple(f"channel_{c}" for c in range(n_channels))
    )
    return Fingerprint(
        name=dataset.root.name,
        shapes=tuple(shapes),
        spacings=tuple(spacings),
        cropped_shapes=tuple(cropped),
        channel_names=channel_names,
        labels=dataset.labels,
        foreground_intensity=stats,
        file_ending=dataset.file_ending,
        landmarks=tuple(standard_landmarks([case[c] for case in landmarks]) for c in range(n_channels)),
        thickness_mm=tuple(
            float(np.median(finite)) if (finite := [v for v in column if np.isfinite(v)]) else float("nan")
            for column in zip(*thickness, strict=True)
        ),
    )


def thickness_mm(mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    """How thin a region is: twice the mean distance (mm) from its voxels to the nearest voxel outside it.

    A strip of width w gives about w / 2, a disc of diameter d about d / 3: a scale, not a width, but one
    that orders structures by thinness (DRIVE vessels 3.3 px, ISBI membranes 5.0 px, JSRT clavicles 19 px,
    Kvasir polyps 86 px). NaN for an empty mask."""
    if not mask.any():
        return float("nan")
    # the region's bounding box and one voxel around it hold every distance that matters: no EDT of the volume
    lo, hi = nonzero_bbox(mask[None])
    box = tuple(slice(max(a - 1, 0), min(b + 1, n)) for a, b, n in zip(lo, hi, mask.shape, strict=True))
    region = mask[box]
    distance = ndimage.distance_transform_edt(region, sampling=spacing)
    return 2.0 * float(distance[region].mean())


def _case_thickness(paths: tuple, label: np.ndarray, dataset: Dataset, spacing: tuple[float, ...]) -> list[float]:
    """Per class (every class of a label map, the background included: ISBI's thin class is its background)
    or per structure (overlapping masks, one file each)."""
    step = max(1, math.ceil((label.size / THICKNESS_MAX_VOXELS) ** (1 / label.ndim)))
    every = (slice(None, None, step),) * label.ndim  # a large volume: a regular subsample (coarser, not lost)
    coarse = tuple(s * step for s in spacing)
    if dataset.labels.overlapping:
        structures = [label] + [read_label(p)[0] for p in paths[1:]]
        return [thickness_mm(a[every] > 0, coarse) for a in structures]
    sampled = label[every]
    return [thickness_mm(sampled == v, coarse) for v in dataset.labels.values]


def _intensity_stats(values: np.ndarray) -> IntensityStats:
    return IntensityStats(
        mean=float(values.mean()),
        std=float(values.std()),
        p00_5=float(np.percentile(values, 0.5)),
        p99_5=float(np.percentile(values, 99.5)),
    )
