"""Segmentation metrics on binary masks: overlap, confusion-matrix rates and surface distances in mm.

All functions are pure and take boolean-like numpy arrays of shape ``(*spatial)`` (any non-zero value is
foreground) and, for distances, the voxel ``spacing`` in mm, one value per spatial axis.

Surfaces follow MONAI's ``use_subvoxels=False`` convention, so results agree with ``monai.metrics``:
the surface of a mask is ``mask XOR binary_erosion(mask)`` with the face-connected (connectivity-1)
structure and voxels outside the image counted as background; surface distances are exact Euclidean
distances (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``) from each surface voxel
of one mask to the nearest surface voxel of the other. The masks are cropped to the bounding box of
their union plus a 1-voxel margin first, so a small structure in a 512³ volume stays cheap.

Empty masks (decided once here, tested in ``tests/test_metrics.py``):

=====================  ==============  ==============  ===============
metric                 both empty      pred empty      ref empty
=====================  ==============  ==============  ===============
dice, iou, nsd         1               0               0
hd, hd95, assd         0               NaN             NaN
sensitivity            NaN             0               NaN
precision              NaN             NaN             0
specificity            tn/(tn+fp)      tn/(tn+fp)      tn/(tn+fp)
=====================  ==============  ==============  ===============

* A distance to a surface that does not exist is undefined, so it is NaN rather than MONAI's ``inf``
  (which poisons every mean). :func:`summarise` skips NaN and reports ``n`` (values used) and
  ``n_nan`` (values skipped), so a missed structure stays visible next to its dice of 0.
* A rate whose denominator is zero is NaN: sensitivity with no reference voxels, precision with no
  predicted voxels, specificity with no reference background (``tn + fp == 0``).
* MONAI returns NaN for dice/NSD when both masks are empty; we return 1 (the prediction is correct),
  as nnU-Net does for dice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError, MedsegError

__all__ = [
    "EMPTY_POLICY",
    "METRIC_NAMES",
    "EmptyPolicy",
    "assd",
    "binary_metrics",
    "confusion",
    "dice",
    "hausdorff",
    "iou",
    "label_map_metrics",
    "normalized_surface_dice",
    "precision",
    "sensitivity",
    "specificity",
    "summarise",
    "surface_distances",
]

METRIC_NAMES: tuple[str, ...] = (
    "dice",
    "iou",
    "hd95",
    "hd",
    "assd",
    "nsd",
    "sensitivity",
    "specificity",
    "precision",
)


@dataclass(frozen=True)
class EmptyPolicy:
    """Values returned when a mask is empty (see the table in the module docstring).

    Example:
        >>> EMPTY_POLICY.overlap_both_empty
        1.0
    """

    overlap_both_empty: float = 1.0  # dice, iou, nsd when pred and ref are both empty
    overlap_one_empty: float = 0.0  # dice, iou, nsd when exactly one is empty
    distance_both_empty: float = 0.0  # hd, hd95, assd when both are empty
    distance_one_empty: float = math.nan  # hd, hd95, assd when exactly one is empty
    undefined_rate: float = math.nan  # sensitivity / precision / specificity with a zero denominator


EMPTY_POLICY = EmptyPolicy()


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred).astype(bool, copy=False), np.asarray(ref).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise MedsegError(
            f"prediction shape {pred.shape} differs from reference shape {ref.shape} "
            "(resample the prediction onto the reference grid before evaluating)"
        )
    return pred, ref


def _spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=float)))
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise MedsegError(
            f"spacing {tuple(spacing)} does not fit a {ndim}-D mask "
            f"(give {ndim} positive voxel sizes in mm, one per axis)"
        )
    return values


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else EMPTY_POLICY.undefined_rate


def confusion(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int, int]:
    """Voxel counts ``(tp, fp, fn, tn)`` of two masks of shape ``(*spatial)``."""
    pred, ref = _pair(pred, ref)
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(ref)) - tp
    return tp, fp, fn, pred.size - tp - fp - fn


def _overlap(tp: int, fp: int, fn: int, *, jaccard: bool) -> float:
    if tp + fp + fn == 0:
        return EMPTY_POLICY.overlap_both_empty
    return tp / (tp + fp + fn) if jaccard else 2 * tp / (2 * tp + fp + fn)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|P∩R| / (|P| + |R|)``; 1 when both masks are empty."""
    tp, fp, fn, _ = confusion(pred, ref)
    return _overlap(tp, fp, fn, jaccard=False)


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|P∩R| / |P∪R|``; 1 when both masks are empty."""
    tp, fp, fn, _ = confusion(pred, ref)
    return _overlap(tp, fp, fn, jaccard=True)


def sensitivity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Recall ``tp / (tp + fn)``; NaN when the reference is empty."""
    tp, _, fn, _ = confusion(pred, ref)
    return _ratio(tp, tp + fn)


def specificity(pred: np.ndarray, ref: np.ndarray) -> float:
    """``tn / (tn + fp)``; NaN when the reference has no background voxel."""
    _, fp, _, tn = confusion(pred, ref)
    return _ratio(tn, tn + fp)


def precision(pred: np.ndarray, ref: np.ndarray) -> float:
    """Positive predictive value ``tp / (tp + fp)``; NaN when the prediction is empty."""
    tp, fp, _, _ = confusion(pred, ref)
    return _ratio(tp, tp + fp)


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _crop_to_union(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union plus a 1-voxel margin (clipped to the image)."""
    union = pred | ref
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(hits[0]) - 1, 0), int(hits[-1]) + 2))
    return pred[tuple(box)], ref[tuple(box)]


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each ``pred`` surface voxel to the ``ref`` surface, and from ``ref`` to ``pred``.

    Args:
        pred, ref: masks of shape ``(*spatial)``.
        spacing: voxel size in mm per spatial axis.

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``, 1-D float64 arrays with one entry per surface voxel.
        When one mask is empty its array is empty and the other is filled with ``inf``
        (the nearest surface does not exist).
    """
    pred, ref = _pair(pred, ref)
    sampling = _spacing(spacing, pred.ndim)
    if not (pred.any() or ref.any()):
        return np.zeros(0), np.zeros(0)
    pred, ref = _crop_to_union(pred, ref)
    surf_p, surf_r = _surface(pred), _surface(ref)
    if not (surf_p.any() and surf_r.any()):
        return np.full(np.count_nonzero(surf_p), np.inf), np.full(np.count_nonzero(surf_r), np.inf)
    to_ref = ndimage.distance_transform_edt(~surf_r, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~surf_p, sampling=sampling)
    return to_ref[surf_p], to_pred[surf_r]


def _distance_or_empty(d_pr: np.ndarray, d_rp: np.ndarray) -> float | None:
    """The policy value when a surface is missing, else None."""
    if d_pr.size == 0 and d_rp.size == 0:
        return EMPTY_POLICY.distance_both_empty
    if d_pr.size == 0 or d_rp.size == 0:
        return EMPTY_POLICY.distance_one_empty
    return None


def _hausdorff_from(d_pr: np.ndarray, d_rp: np.ndarray, percentile: float) -> float:
    empty = _distance_or_empty(d_pr, d_rp)
    if empty is not None:
        return empty
    return float(max(np.percentile(d_pr, percentile), np.percentile(d_rp, percentile)))


def _assd_from(d_pr: np.ndarray, d_rp: np.ndarray) -> float:
    empty = _distance_or_empty(d_pr, d_rp)
    if empty is not None:
        return empty
    return float((d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size))


def _nsd_from(d_pr: np.ndarray, d_rp: np.ndarray, tolerance_mm: float) -> float:
    if d_pr.size == 0 and d_rp.size == 0:
        return EMPTY_POLICY.overlap_both_empty
    if d_pr.size == 0 or d_rp.size == 0:
        return EMPTY_POLICY.overlap_one_empty
    within = np.count_nonzero(d_pr <= tolerance_mm) + np.count_nonzero(d_rp <= tolerance_mm)
    return float(within / (d_pr.size + d_rp.size))


def hausdorff(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], percentile: float = 100.0) -> float:
    """Symmetric (percentile) Hausdorff distance in mm; ``percentile=95`` gives HD95.

    The maximum of the two directed percentile distances (MONAI's convention; percentiles
    interpolate linearly like ``numpy.percentile``). Empty masks: see the module docstring.
    """
    if not 0.0 <= percentile <= 100.0:
        raise ConfigError(f"percentile {percentile} is outside [0, 100] (use 95 for HD95, 100 for HD)")
    return _hausdorff_from(*surface_distances(pred, ref, spacing), percentile)


def assd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm: ``(Σ d_pr + Σ d_rp) / (n_p + n_r)``."""
    return _assd_from(*surface_distances(pred, ref, spacing))


def _check_tolerance(tolerance_mm: float) -> None:
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ConfigError(f"NSD tolerance {tolerance_mm} mm is invalid (give a finite value >= 0 in mm)")


def normalized_surface_dice(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance_mm: float) -> float:
    """Normalised surface dice (Nikolov et al. 2021): fraction of both surfaces within ``tolerance_mm``.

    Surface size is counted in surface voxels (MONAI ``compute_surface_dice(use_subvoxels=False)``).
    """
    _check_tolerance(tolerance_mm)
    return _nsd_from(*surface_distances(pred, ref, spacing), tolerance_mm)


def binary_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], *, nsd_tolerance_mm: float = 1.0
) -> dict[str, float]:
    """Every metric in :data:`METRIC_NAMES` for one pair of masks of shape ``(*spatial)``.

    Example:
        >>> m = binary_metrics(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, 1.0))
        >>> m["dice"], m["hd95"]
        (1.0, 0.0)
    """
    _check_tolerance(nsd_tolerance_mm)
    tp, fp, fn, tn = confusion(pred, ref)
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    return {
        "dice": _overlap(tp, fp, fn, jaccard=False),
        "iou": _overlap(tp, fp, fn, jaccard=True),
        "hd95": _hausdorff_from(d_pr, d_rp, 95.0),
        "hd": _hausdorff_from(d_pr, d_rp, 100.0),
        "assd": _assd_from(d_pr, d_rp),
        "nsd": _nsd_from(d_pr, d_rp, nsd_tolerance_mm),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
    }


def label_map_metrics(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    classes: Sequence[int],
    spacing: Sequence[float],
    *,
    nsd_tolerance_mm: float = 1.0,
) -> dict[int, dict[str, float]]:
    """:func:`binary_metrics` per class (one-vs-rest) of two integer label maps of shape ``(*spatial)``."""
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise MedsegError(
            f"prediction shape {pred_labels.shape} differs from reference shape {ref_labels.shape} "
            "(resample the prediction onto the reference grid before evaluating)"
        )
    return {
        int(c): binary_metrics(pred_labels == c, ref_labels == c, spacing, nsd_tolerance_mm=nsd_tolerance_mm)
        for c in classes
    }


def summarise(per_case: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, median and population std (ddof=0) of each metric over cases, skipping NaN.

    Returns:
        ``{metric: {"mean", "median", "std", "n", "n_nan"}}`` in order of first appearance; ``n`` counts
        the non-NaN values used and ``n_nan`` those skipped. With no usable value the statistics are NaN.
    """
    names = list(dict.fromkeys(name for case in per_case for name in case))
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        values = np.array([case[name] for case in per_case if name in case], dtype=float)
        kept = values[~np.isnan(values)]
        stats = (float(np.mean(kept)), float(np.median(kept)), float(np.std(kept))) if kept.size else (math.nan,) * 3
        summary[name] = {
            "mean": stats[0],
            "median": stats[1],
            "std": stats[2],
            "n": int(kept.size),
            "n_nan": int(values.size - kept.size),
        }
    return summary
