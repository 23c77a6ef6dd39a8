"""A per-case failure flag: predict each case's Dice from its uncertainty scores, flag the cases predicted low.

The model is deliberately small, because it is fitted on the out-of-fold cases of one run (tens of cases):
a linear model on standardised scores whose weights are constrained so that *more uncertainty never predicts
a higher Dice* (non-negative least squares on the negated scores, with a ridge penalty), so that it cannot
learn a spurious reversed trend from a handful of cases and it extrapolates the right way on a case far
worse than any it was fitted on. Every score is oriented "higher is worse" (:data:`FEATURES`); the volume
score is the absolute log ratio of the predicted volume to the median of the fitted cases.

A case is flagged when its predicted Dice is below the threshold (by default the 10th percentile of the
fitted cases' true Dice), or when a score lies far outside the range seen on the fitted cases (beyond the
largest by half that range): such a case is unlike anything the run was validated on.

:func:`ranking_quality` measures how well predicted Dice ranks cases: Spearman and Pearson correlation with
the true Dice and the *catch rate*, the fraction of the worst ``fraction`` of cases (by true Dice) that are
among the same number of cases with the lowest predicted Dice. :func:`leave_one_out` gives honest predictions
for the fitted cases themselves (each predicted by a model fitted without it).

Example:
    >>> scores = [{"entropy": e} for e in (0.1, 0.2, 0.3, 0.4)]
    >>> model = fit_failure_model(scores, [0.9, 0.8, 0.7, 0.6], ridge=0.0, features=("entropy",))
    >>> round(model.predict({"entropy": 0.5}), 2)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from medseg.errors import ConfigError

__all__ = [
    "FEATURES",
    "FailureModel",
    "fit_failure_model",
    "leave_one_out",
    "ranking_quality",
]

# the per-case scores (inference/uncertainty.case_scores) the model uses; each "higher is worse" once the
# volume is turned into its distance from the typical volume
FEATURES: tuple[str, ...] = (
    "entropy",
    "mutual_information",
    "disagreement_ratio",
    "uncertain_fraction",
    "low_confidence",
    "volume_ratio",
)
MIN_CASES = 4
OUTSIDE = 0.5  # a score beyond max + OUTSIDE × (max - min) of the fitted cases is "outside what was validated"


@dataclass(frozen=True)
class FailureModel:
    """``dice ≈ intercept - Σ weights[j] × (x[j] - mean[j]) / scale[j]``, clipped to [0, 1]."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float
    seen_min: tuple[float, ...]
    seen_max: tuple[float, ...]
    median_volume: float
    n_cases: int

    def vector(self, scores: Mapping[str, float]) -> np.ndarray:
        """The model's inputs from a case's scores (``volume_ml`` becomes ``|log(volume / median)|``)."""
        return np.array([_feature(scores, name, self.median_volume) for name in self.features])

    def predict(self, scores: Mapping[str, float]) -> float:
        """Predicted Dice of a case, in [0, 1]."""
        z = (self.vector(scores) - np.array(self.mean)) / np.array(self.scale)
        return float(np.clip(self.intercept - float(np.dot(self.weights, z)), 0.0, 1.0))

    def flag(self, scores: Mapping[str, float]) -> tuple[bool, list[str]]:
        """Whether the case is flagged, and why (one phrase per reason)."""
        reasons = []
        predicted = self.predict(scores)
        if predicted < self.threshold:
            reasons.append(f"predicted Dice {predicted:.2f} < {self.threshold:.2f}")
        x = self.vector(scores)
        for name, value, low, high in zip(self.features, x, self.seen_min, self.seen_max, strict=True):
            limit = high + OUTSIDE * max(high - low, 1e-6)
            if value > limit:
                reasons.append(f"{name} {value:.3g} beyond anything validated (max {high:.3g})")
        return bool(reasons), reasons


def _feature(scores: Mapping[str, float], name: str, median_volume: float) -> float:
    if name == "volume_ratio":
        volume = float(scores.get("volume_ml", 0.0))
        return abs(math.log((volume + 1e-3) / (median_volume + 1e-3)))
    if name not in scores:
        raise ConfigError(f"case scores lack {name!r}; compute them with medseg's uncertainty estimation")
    return float(scores[name])


def fit_failure_model(
    scores: Sequence[Mapping[str, float]],
    dice: Sequence[float],
    *,
    threshold: float | None = None,
    ridge: float = 1.0,
    features: Sequence[str] = FEATURES,
) -> FailureModel:
    """Fit the model to cases' ``scores`` and true ``dice`` (see the module docstring).

    ``threshold``: flag below this predicted Dice; default the 10th percentile of ``dice``. ``ridge``: the
    penalty on the standardised weights (in units of cases).
    """
    y = np.asarray(dice, dtype=np.float64)
    if len(scores) != y.size:
        raise ValueError(f"{len(scores)} cases of scores but {y.size} Dice values")
    if y.size < MIN_CASES:
        raise ConfigError(
            f"the failure flag needs at least {MIN_CASES} held-out cases with references, got {y.size}; "
            "use a larger validation fold or a cross-validation"
        )
    volumes = [float(s.get("volume_ml", 0.0)) for s in scores]
    median_volume = float(np.median(volumes))
    x = np.array([[_feature(s, name, median_volume) for name in features] for s in scores])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    # min ||(y - ȳ) + z w||² + ridge ||w||², w >= 0  ==  nnls on the stacked system
    a = np.vstack([-z, math.sqrt(ridge) * np.eye(len(features))])
    b = np.concatenate([y - y.mean(), np.zeros(len(features))])
    weights, _ = optimize.nnls(a, b)
    return FailureModel(
        features=tuple(features),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in weights),
        intercept=float(y.mean()),
        threshold=float(np.percentile(y, 10)) if threshold is None else float(threshold),
        seen_min=tuple(float(v) for v in x.min(axis=0)),
        seen_max=tuple(float(v) for v in x.max(axis=0)),
        median_volume=median_volume,
        n_cases=int(y.size),
    )


def leave_one_out(scores: Sequence[Mapping[str, float]], dice: Sequence[float], *, ridge: float = 1.0) -> list[float]:
    """Each case's Dice predicted by a model fitted on all the other cases."""
    predicted = []
    for i in range(len(scores)):
        rest = [s for j, s in enumerate(scores) if j != i]
        model = fit_failure_model(rest, [d for j, d in enumerate(dice) if j != i], ridge=ridge)
        predicted.append(model.predict(scores[i]))
    return predicted


def ranking_quality(predicted: Sequence[float], true: Sequence[float], *, fraction: float = 0.1) -> dict[str, float]:
    """Spearman and Pearson correlation of predicted vs true Dice, and the catch rate of the worst ``fraction``
    (at least one case): the share of the truly worst cases among the same number predicted lowest."""
    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if p.size != t.size or p.size < 3:
        raise ValueError(f"ranking quality needs >= 3 paired values, got {p.size} and {t.size}")
    n_worst = max(1, round(fraction * t.size))
    worst = set(np.argsort(t, kind="stable")[:n_worst].tolist())
    lowest = set(np.argsort(p, kind="stable")[:n_worst].tolist())
    constant = np.ptp(p) == 0 or np.ptp(t) == 0
    return {
        "spearman": float("nan") if constant else float(stats.spearmanr(p, t).statistic),
        "pearson": float("nan") if constant else float(stats.pearsonr(p, t).statistic),
        "catch_rate": len(worst & lowest) / n_worst,
        "n_worst": float(n_worst),
        "n_cases": float(t.size),
    }
