"""Histogram standardisation (Nyúl & Udupa 2000; ``--normalization histogram-match``): each case's intensity
histogram is mapped piecewise-linearly onto a standard one learnt from the training cases.

MRI intensities have no fixed unit: the same tissue lands at different values in different scanners and
sessions, and a per-case z-score only aligns the mean and the spread, not the shape. Nyúl's method aligns
landmarks of the histogram: the 1st and 99th percentiles and the deciles in between
(:data:`LANDMARK_PERCENTILES`). Learning (:func:`standard_landmarks`): each training case's landmarks are
mapped linearly so that its 1st percentile becomes 0 and its 99th 100, and the mapped landmarks are averaged
over the cases. Applying (:func:`match_histogram`): a case's own landmarks are mapped piecewise-linearly onto
the standard ones (linear extension beyond the ends) and the result divided by 100, so the bulk of every case
lies in about [0, 1] with its deciles where the training set's lie.

The landmarks of a case are taken over its body voxels (:func:`body_voxels`): when the minimum intensity
fills more than a tenth of the image (zero padding around an MRI head), those voxels are left out; otherwise
every voxel counts (an X-ray or a microscopy image has no padding). TorchIO's ``HistogramStandardization``
implements the same method on its own subject objects and file lists; this is the same mathematics on
medseg's arrays (pure numpy), so it runs inside preprocessing and the exported predictor without TorchIO.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LANDMARK_PERCENTILES", "body_voxels", "case_landmarks", "match_histogram", "standard_landmarks"]

LANDMARK_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
STANDARD_RANGE = 100.0  # the standard scale's 1st..99th percentile span (divided out when matching)
PADDING_FRACTION = 0.1  # a minimum value filling more than this share of the image is padding


def body_voxels(channel: np.ndarray) -> np.ndarray:
    """The voxels whose histogram is matched: all but the padding (see the module docstring), flattened."""
    flat = np.asarray(channel).ravel()
    low = flat.min()
    padding = flat == low
    if padding.mean() > PADDING_FRACTION and not padding.all():
        return flat[~padding]
    return flat


def case_landmarks(channel: np.ndarray, rng: np.random.Generator | None = None, max_samples: int = 0) -> np.ndarray:
    """The landmark intensities of one case's channel (float64, one per :data:`LANDMARK_PERCENTILES`); with
    ``rng`` and ``max_samples``, from at most that many body voxels drawn with replacement (cheap on a large
    CT: no permutation of the whole volume)."""
    body = body_voxels(channel)
    if rng is not None and 0 < max_samples < body.size:
        body = body[rng.integers(0, body.size, size=max_samples)]
    return np.percentile(body.astype(np.float64), LANDMARK_PERCENTILES)


def standard_landmarks(per_case: list[np.ndarray]) -> tuple[float, ...]:
    """The standard scale from the landmarks of the training cases: each mapped linearly onto [0, 100]
    between its first and last landmark, then averaged. Cases with a constant body are skipped."""
    mapped = []
    for landmarks in per_case:
        span = float(landmarks[-1] - landmarks[0])
        if span > 0:
            mapped.append((landmarks - landmarks[0]) / span * STANDARD_RANGE)
    if not mapped:
        return tuple(float(p) for p in np.linspace(0.0, STANDARD_RANGE, len(LANDMARK_PERCENTILES)))
    return tuple(float(v) for v in np.mean(mapped, axis=0))


def match_histogram(channel: np.ndarray, standard: tuple[float, ...]) -> np.ndarray:
    """Map ``channel`` (any shape) onto the ``standard`` landmarks, divided by 100; float32.

    Between landmarks the map is linear; below the first and above the last it continues the first and
    last segments' slopes. Landmarks that coincide (a case whose deciles repeat, e.g. a binary-looking image)
    are merged first, so the map stays a function.
    """
    target = np.asarray(standard, dtype=np.float64)
    if target.shape != (len(LANDMARK_PERCENTILES),):
        raise ValueError(f"standard landmarks need {len(LANDMARK_PERCENTILES)} values, got {target.size}")
    source = case_landmarks(channel)
    keep = np.concatenate([[True], np.diff(source) > 0])
    source, target = source[keep], target[keep]
    values = np.asarray(channel, dtype=np.float64)
    if source.size < 2:  # a constant body: nothing to match, centre it on the standard scale's middle
        return np.full(values.shape, float(np.median(standard)) / STANDARD_RANGE, dtype=np.float32)
    out = np.interp(values, source, target)
    low_slope = (target[1] - target[0]) / (source[1] - source[0])
    high_slope = (target[-1] - target[-2]) / (source[-1] - source[-2])
    below, above = values < source[0], values > source[-1]
    out[below] = target[0] + (values[below] - source[0]) * low_slope
    out[above] = target[-1] + (values[above] - source[-1]) * high_slope
    return (out / STANDARD_RANGE).astype(np.float32)
