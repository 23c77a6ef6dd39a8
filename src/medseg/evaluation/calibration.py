"""Calibration of voxel probabilities: reliability diagram, expected calibration error, temperature scaling.

Pure functions of arrays. A segmentation's voxels are mostly easy background, which makes any calibration
measure over the whole scan look excellent; the measures here are taken over a *region* around the
structures (:func:`calibration_region`: the bounding box of reference ∪ prediction, widened by a margin),
where the model's confidence matters.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar ``T`` fitted to minimise the negative
log-likelihood on validation voxels. medseg stores probabilities, not logits; since softmax is
shift-invariant, ``log p`` are logits of ``p``, so ``softmax(log p / T)`` is exactly temperature scaling of
the logits the probabilities came from (sigmoid: ``sigmoid(logit(p) / T)``). Labels do not change: argmax and
the 0.5 threshold are invariant under ``T``.

Example:
    >>> import numpy as np
    >>> diagram = reliability(np.array([0.9, 0.9, 0.6, 0.6]), np.array([True, True, True, False]), bins=5)
    >>> round(diagram.ece, 3)
    0.1
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = [
    "Reliability",
    "apply_temperature",
    "calibration_region",
    "fit_temperature",
    "reliability",
    "top_label",
]

_EPS = 1e-7


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram: per confidence bin the mean confidence, the accuracy and the voxel count.

    ``ece`` is the expected calibration error, ``sum(count / total * |accuracy - confidence|)`` over bins.
    Empty bins hold NaN and weigh nothing.
    """

    edges: tuple[float, ...]
    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]
    counts: tuple[int, ...]
    ece: float


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> Reliability:
    """Reliability diagram of predictions with top-label ``confidence`` in [0, 1] and ``correct`` (bool).

    Bins are equal-width on [0, 1] (``bins`` of them; a confidence of exactly 1 falls in the last).
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} differ in size")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=False), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, accuracy = conf_sum / counts, acc_sum / counts
    total = max(int(counts.sum()), 1)
    gaps = np.where(counts > 0, np.abs(accuracy - mean_conf), 0.0)
    ece = float(np.sum(counts / total * gaps))
    return Reliability(
        tuple(float(e) for e in edges),
        tuple(float(c) for c in mean_conf),
        tuple(float(a) for a in accuracy),
        tuple(int(n) for n in counts),
        ece,
    )


def top_label(probabilities: np.ndarray, reference: np.ndarray, *, overlapping: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel confidence of the predicted label and whether it is right, flattened.

    ``probabilities`` is ``(K, *spatial)``; ``reference`` is ``(*spatial)`` class indices, or ``(K, *spatial)``
    binary masks for overlapping structures (then every structure's voxel is one binary prediction, with
    confidence ``max(p, 1 - p)``).
    """
    if overlapping:
        confidence = np.maximum(probabilities, 1 - probabilities)
        correct = (probabilities > 0.5) == (reference > 0)
        return confidence.ravel(), correct.ravel()
    predicted = np.argmax(probabilities, axis=0)
    confidence = np.take_along_axis(probabilities, predicted[None], axis=0)[0]
    return confidence.ravel(), (predicted == reference).ravel()


def calibration_region(reference: np.ndarray, prediction: np.ndarray, margin: float = 0.25) -> tuple[slice, ...]:
    """Slices of the bounding box of ``reference > 0`` ∪ ``prediction > 0`` (both ``(*spatial)``), widened on
    each side by ``margin`` × its extent (at least 2 voxels); the whole image when both are empty."""
    foreground = (np.asarray(reference) > 0) | (np.asarray(prediction) > 0)
    if not foreground.any():
        return tuple(slice(0, n) for n in foreground.shape)
    box = []
    for axis, size in enumerate(foreground.shape):
        hits = np.flatnonzero(foreground.any(axis=tuple(a for a in range(foreground.ndim) if a != axis)))
        low, high = int(hits[0]), int(hits[-1]) + 1
        pad = max(math.ceil(margin * (high - low)), 2)
        box.append(slice(max(low - pad, 0), min(high + pad, size)))
    return tuple(box)


def apply_temperature(probabilities: np.ndarray, temperature: float, *, overlapping: bool) -> np.ndarray:
    """Probabilities ``(K, *spatial)`` rescaled by ``temperature`` (see the module docstring); float32."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    if overlapping:
        logits = np.log(p) - np.log1p(-p)
        return (1 / (1 + np.exp(-logits / temperature))).astype(np.float32)
    scaled = np.log(p) / temperature
    scaled -= scaled.max(axis=0, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=0, keepdims=True)).astype(np.float32)


def fit_temperature(probabilities: Sequence[np.ndarray], targets: Sequence[np.ndarray], *, overlapping: bool) -> float:
    """The temperature minimising the mean negative log-likelihood of ``targets`` under ``probabilities``.

    Each item of ``probabilities`` is ``(K, N)`` (voxels sampled from one case), each target ``(N,)`` class
    indices, or ``(K, N)`` binary masks for overlapping structures. Searched on log T in [1/20, 20].
    """
    if not probabilities:
        raise ValueError("fit_temperature needs at least one case")
    log_p = np.log(np.clip(np.concatenate([np.asarray(p, np.float64) for p in probabilities], axis=1), _EPS, 1))
    if overlapping:
        y = np.concatenate([np.asarray(t) for t in targets], axis=1) > 0
        p = np.clip(np.exp(log_p), _EPS, 1 - _EPS)
        logits = np.log(p) - np.log1p(-p)

        def nll(log_t: float) -> float:
            z = logits / math.exp(log_t)
            return float(np.mean(np.logaddexp(0, np.where(y, -z, z))))

    else:
        y = np.concatenate([np.asarray(t) for t in targets]).astype(np.int64)
        columns = np.arange(y.size)

        def nll(log_t: float) -> float:
            z = log_p / math.exp(log_t)
            log_norm = np.logaddexp.reduce(z, axis=0)
            return float(np.mean(log_norm - z[y, columns]))

    result = optimize.minimize_scalar(nll, bounds=(-math.log(20), math.log(20)), method="bounded")
    return float(math.exp(result.x))
