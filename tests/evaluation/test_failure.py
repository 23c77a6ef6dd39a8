from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.evaluation.failure import FEATURES, fit_failure_model, leave_one_out, ranking_quality


def _scores(entropy: float, volume: float = 10.0, **other: float) -> dict[str, float]:
    base = {name: 0.1 for name in FEATURES if name != "volume_ratio"}
    return {**base, "entropy": entropy, "volume_ml": volume, **other}


def test_fit_recovers_a_linear_trend_and_predicts_it() -> None:
    entropies = [0.1, 0.2, 0.3, 0.4, 0.5]
    model = fit_failure_model([_scores(e) for e in entropies], [1.0 - e for e in entropies], ridge=0.0)
    assert model.predict(_scores(0.25)) == pytest.approx(0.75, abs=1e-6)
    assert model.predict(_scores(0.05)) == pytest.approx(0.95, abs=1e-6)
    assert model.predict(_scores(3.0)) == 0.0  # clipped to [0, 1]
    assert model.median_volume == 10.0 and model.n_cases == 5


def test_more_uncertainty_never_predicts_a_higher_dice() -> None:
    """A reversed trend in a few cases (more entropy, higher Dice) gets weight 0, not a negative one."""
    entropies = [0.1, 0.2, 0.3, 0.4]
    model = fit_failure_model([_scores(e) for e in entropies], [0.6, 0.7, 0.8, 0.9], ridge=0.0)
    assert all(w >= 0 for w in model.weights)
    assert model.weights[model.features.index("entropy")] == 0.0
    assert model.predict(_scores(0.9)) == pytest.approx(0.75)


def test_volume_far_from_typical_lowers_the_prediction() -> None:
    volumes = [8.0, 10.0, 12.0, 10.0, 9.0, 30.0]
    dice = [0.9, 0.92, 0.9, 0.91, 0.9, 0.5]  # the odd volume was the failure
    model = fit_failure_model([_scores(0.1, v) for v in volumes], dice, ridge=0.1)
    assert model.predict(_scores(0.1, 10.0)) > model.predict(_scores(0.1, 40.0))


def test_flag_below_threshold_and_outside_the_validated_range() -> None:
    entropies = [0.1, 0.15, 0.2, 0.25, 0.3]
    model = fit_failure_model([_scores(e) for e in entropies], [0.95, 0.9, 0.85, 0.8, 0.75], threshold=0.8, ridge=0.0)
    assert model.flag(_scores(0.12)) == (False, [])
    flagged, reasons = model.flag(_scores(0.29))
    assert flagged and reasons[0].startswith("predicted Dice 0.76 < 0.80")
    flagged, reasons = model.flag(_scores(0.12, disagreement_ratio=5.0))
    assert flagged and any("disagreement_ratio" in r and "beyond anything validated" in r for r in reasons)


def test_default_threshold_is_the_tenth_percentile() -> None:
    dice = [0.5, 0.6, 0.7, 0.8, 0.9]
    model = fit_failure_model([_scores(e) for e in (0.1, 0.2, 0.3, 0.4, 0.5)], dice)
    assert model.threshold == pytest.approx(float(np.percentile(dice, 10)))


def test_too_few_cases_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="at least 4 held-out cases"):
        fit_failure_model([_scores(0.1)] * 3, [0.9] * 3)


def test_leave_one_out_refits_without_the_case() -> None:
    entropies = [0.1, 0.2, 0.3, 0.4, 0.5]
    dice = [0.92, 0.79, 0.71, 0.62, 0.48]
    scores = [_scores(e) for e in entropies]
    predicted = leave_one_out(scores, dice, ridge=1.0)
    manual = fit_failure_model(scores[1:], dice[1:], ridge=1.0).predict(scores[0])
    assert predicted[0] == pytest.approx(manual)
    assert len(predicted) == 5


def test_ranking_quality_hand_computed() -> None:
    true = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    perfect = ranking_quality(true, true)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["catch_rate"] == 1.0 and perfect["n_worst"] == 1
    reversed_ = ranking_quality(true[::-1], true)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["catch_rate"] == 0.0
    swapped = ranking_quality([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.04, 0.1], true, fraction=0.2)
    assert swapped["n_worst"] == 2 and swapped["catch_rate"] == 1.0  # the worst two, in either order
    constant = ranking_quality([0.5] * 4, [0.1, 0.2, 0.3, 0.4])
    assert math.isnan(constant["spearman"])
