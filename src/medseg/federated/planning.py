"""One plan for every site: the sites' fingerprints merged on the server, then the usual planning rules.

A fingerprint (:mod:`medseg.planning.fingerprint`) holds statistics, not images: each case's array shape,
voxel spacing and size after cropping, per channel the foreground intensity mean, standard deviation and
0.5 / 99.5 percentiles and the histogram landmarks, and per class a median thickness in mm. Merging them:

* per-case shapes, spacings and crop sizes are pooled (the median spacing and shape are then exactly those
  of the pooled cases);
* intensity mean and standard deviation are pooled exactly (each site sampled the same number of voxels per
  case, so sites weigh by their case counts); the percentiles, landmarks and thicknesses are case-weighted
  means of the sites' values (an approximation: percentiles do not pool exactly).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from medseg.config.plans import Plans
from medseg.errors import ConfigError
from medseg.planning.fingerprint import Fingerprint, IntensityStats
from medseg.planning.plans import Budget, make_plans
from medseg.serial import from_dict, to_dict

__all__ = ["fingerprint_from_json", "fingerprint_to_json", "merge_fingerprints", "plan_federation"]


def fingerprint_to_json(fp: Fingerprint) -> str:
    return json.dumps(to_dict(fp))


def fingerprint_from_json(text: str, site: str) -> Fingerprint:
    try:
        return from_dict(Fingerprint, json.loads(text), "fingerprint")
    except (ValueError, ConfigError) as exc:
        raise ConfigError(
            f"site {site}: its fingerprint is not readable ({exc}); do both sides run the same medseg?"
        ) from exc


def merge_fingerprints(fps: Sequence[Fingerprint], names: Sequence[str], name: str) -> Fingerprint:
    """The fingerprint of the pooled cases of every site (see the module docstring); sites must agree on
    channels, classes and dimensionality (``names`` name them in the error)."""
    first = fps[0]
    for fp, site in zip(fps, names, strict=True):
        for what, a, b in (
            ("channels", fp.channel_names, first.channel_names),
            ("classes", fp.labels, first.labels),
            ("dimensionality", fp.ndim, first.ndim),
        ):
            if a != b:
                raise ConfigError(
                    f"site {site}: its {what} ({a}) differ from site {names[0]}'s ({b}); sites must hold the same task"
                )
    counts = np.array([len(fp.shapes) for fp in fps], dtype=np.float64)
    weights = counts / counts.sum()
    stats = tuple(
        _pool_stats([fp.foreground_intensity[c] for fp in fps], weights) for c in range(len(first.channel_names))
    )
    landmarks = (
        tuple(
            tuple(float(v) for v in np.average([fp.landmarks[c] for fp in fps], axis=0, weights=weights))
            for c in range(len(first.landmarks))
        )
        if all(len(fp.landmarks) == len(first.landmarks) for fp in fps)
        else ()
    )
    return Fingerprint(
        name=name,
        shapes=tuple(s for fp in fps for s in fp.shapes),
        spacings=tuple(s for fp in fps for s in fp.spacings),
        cropped_shapes=tuple(s for fp in fps for s in fp.cropped_shapes),
        channel_names=first.channel_names,
        labels=first.labels,
        foreground_intensity=stats,
        file_ending=first.file_ending,
        landmarks=landmarks,
        thickness_mm=_mean_thickness(fps, weights),
    )


def _pool_stats(stats: Sequence[IntensityStats], weights: np.ndarray) -> IntensityStats:
    means = np.array([s.mean for s in stats])
    mean = float(np.dot(weights, means))
    variance = float(np.dot(weights, np.array([s.std**2 for s in stats]) + (means - mean) ** 2))
    return IntensityStats(
        mean=mean,
        std=float(np.sqrt(variance)),
        p00_5=float(np.dot(weights, [s.p00_5 for s in stats])),
        p99_5=float(np.dot(weights, [s.p99_5 for s in stats])),
    )


def _mean_thickness(fps: Sequence[Fingerprint], weights: np.ndarray) -> tuple[float, ...]:
    n = len(fps[0].thickness_mm)
    if n == 0 or any(len(fp.thickness_mm) != n for fp in fps):
        return ()
    table = np.array([fp.thickness_mm for fp in fps], dtype=np.float64)
    out = []
    for column in table.T:
        finite = np.isfinite(column)
        out.append(float(np.average(column[finite], weights=weights[finite])) if finite.any() else float("nan"))
    return tuple(out)


def plan_federation(
    fp: Fingerprint, *, device: str, epochs: int, model: str, seed: int, changes: dict[str, Any]
) -> Plans:
    """Plan from the merged fingerprint like ``medseg plan`` (``epochs`` = rounds x local epochs: the
    learning-rate schedule runs over the whole federation), then apply the options ``changes`` (TrainConfig
    fields, e.g. iterations_per_epoch, amp)."""
    plans = make_plans(fp, Budget(device=device, epochs=epochs, model=model))
    return replace(plans, train=replace(plans.train, epochs=epochs, seed=seed, **changes))
