from __future__ import annotations

import numpy as np
import pytest

from medseg.evaluation.calibration import (
    apply_temperature,
    calibration_region,
    fit_temperature,
    reliability,
    top_label,
)


def test_reliability_matches_hand_computed_bins_and_ece() -> None:
    confidence = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False, True, False])
    diagram = reliability(confidence, correct, bins=10)
    # bin 9: confidence 0.95, accuracy 0.75, 4 voxels; bin 5: confidence 0.55, accuracy 0.5, 2 voxels
    assert diagram.counts[9] == 4 and diagram.counts[5] == 2 and sum(diagram.counts) == 6
    assert diagram.accuracy[9] == pytest.approx(0.75) and diagram.confidence[5] == pytest.approx(0.55)
    assert diagram.ece == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.05)
    assert np.isnan(diagram.accuracy[0])  # empty bins hold NaN and weigh nothing


def test_perfectly_calibrated_confidence_has_near_zero_ece() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 200_000)
    correct = rng.uniform(size=confidence.size) < confidence
    assert reliability(confidence, correct).ece < 0.01


def test_top_label_softmax_and_structures() -> None:
    probs = np.array([[0.7, 0.2], [0.3, 0.8]])  # (K=2, N=2)
    confidence, correct = top_label(probs, np.array([0, 0]), overlapping=False)
    np.testing.assert_allclose(confidence, [0.7, 0.8])
    np.testing.assert_array_equal(correct, [True, False])
    confidence, correct = top_label(np.array([[0.9, 0.2]]), np.array([[1, 1]]), overlapping=True)
    np.testing.assert_allclose(confidence, [0.9, 0.8])
    np.testing.assert_array_equal(correct, [True, False])


@pytest.mark.parametrize("overlapping", [False, True])
def test_temperature_keeps_labels_and_one_is_identity(overlapping: bool) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, 6))
    probs = 1 / (1 + np.exp(-logits)) if overlapping else np.exp(logits) / np.exp(logits).sum(0)
    np.testing.assert_allclose(apply_temperature(probs, 1.0, overlapping=overlapping), probs, atol=1e-6)
    for t in (0.3, 3.0):
        scaled = apply_temperature(probs, t, overlapping=overlapping)
        if overlapping:
            np.testing.assert_array_equal(scaled > 0.5, probs > 0.5)
        else:
            np.testing.assert_array_equal(scaled.argmax(0), probs.argmax(0))
            np.testing.assert_allclose(scaled.sum(0), 1.0, atol=1e-5)
    sharper = apply_temperature(probs, 0.5, overlapping=overlapping)
    assert np.abs(sharper - 0.5).mean() > np.abs(probs - 0.5).mean()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(0))
    return e / e.sum(0)


def test_fit_temperature_recovers_the_overconfidence() -> None:
    """Labels drawn from softmax(z / 2) while the model says softmax(z): the fitted temperature is about 2."""
    rng = np.random.default_rng(2)
    z = rng.normal(scale=3.0, size=(3, 40_000))
    truth = _softmax(z / 2.0)
    cumulative = truth.cumsum(0)
    u = rng.uniform(size=z.shape[1])
    labels = (u[None] > cumulative).sum(0)
    half = z.shape[1] // 2
    t = fit_temperature(
        [_softmax(z)[:, :half], _softmax(z)[:, half:]], [labels[:half], labels[half:]], overlapping=False
    )
    assert t == pytest.approx(2.0, rel=0.08)


def test_fit_temperature_for_structures() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(scale=2.0, size=(2, 30_000))
    targets = rng.uniform(size=z.shape) < 1 / (1 + np.exp(-z * 2.0))  # the model is underconfident by 2
    t = fit_temperature([1 / (1 + np.exp(-z))], [targets], overlapping=True)
    assert t == pytest.approx(0.5, rel=0.08)


def test_calibration_region_widens_the_union_box() -> None:
    reference, prediction = np.zeros((20, 30), int), np.zeros((20, 30), int)
    reference[8:12, 10:14] = 1
    prediction[10:14, 12:22] = 2
    box = calibration_region(reference, prediction, margin=0.25)
    # union rows 8..13 (6, pad 2), columns 10..21 (12, pad 3)
    assert box == (slice(6, 16), slice(7, 25))
    assert calibration_region(np.zeros((4, 4)), np.zeros((4, 4))) == (slice(0, 4), slice(0, 4))
