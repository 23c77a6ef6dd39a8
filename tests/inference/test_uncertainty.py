from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.datasets.dataset import load_dataset
from medseg.errors import ConfigError
from medseg.inference.predictor import Predictor
from medseg.inference.uncertainty import (
    SampleAccumulator,
    UncertaintyEstimator,
    UncertaintyOptions,
    case_scores,
    entropy_map,
    has_dropout,
)
from medseg.io.geometry import Geometry
from medseg.io.images import read_image
from medseg.models.registry import build_model
from medseg.models.unet_config import nnunet_config
from medseg.planning.fingerprint import fingerprint
from medseg.planning.plans import Budget, make_plans


def test_entropy_is_zero_for_certain_and_one_for_uniform() -> None:
    probs = np.zeros((4, 2, 3), dtype=np.float32)
    probs[1] = 1.0
    np.testing.assert_allclose(entropy_map(probs, overlapping=False), 0.0, atol=1e-5)
    np.testing.assert_allclose(entropy_map(np.full((4, 2, 3), 0.25), overlapping=False), 1.0, atol=1e-6)
    structures = np.stack([np.full((2, 3), 0.5), np.full((2, 3), 0.99)])
    np.testing.assert_allclose(entropy_map(structures, overlapping=True), 1.0, atol=1e-6)  # the largest of the two


def test_accumulator_mean_mutual_information_and_disagreement() -> None:
    a = np.array([[0.9, 0.5], [0.1, 0.5]], dtype=np.float32)  # (K=2, N=2)
    b = np.array([[0.1, 0.5], [0.9, 0.5]], dtype=np.float32)
    acc = SampleAccumulator(overlapping=False)
    acc.add(a, 0.5)
    acc.add(b, 0.5)
    maps = acc.finish()
    np.testing.assert_allclose(maps.probabilities, [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_array_equal(maps.disagreement, [True, False])
    # voxel 0: the mean is uniform (entropy 1) but each sample is sure-ish: mutual information = 1 - H(0.9, 0.1)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    np.testing.assert_allclose(maps.mutual_information, [1 - h, 0.0], atol=1e-5)
    assert maps.n_samples == 2


def test_identical_samples_have_no_mutual_information() -> None:
    acc = SampleAccumulator(overlapping=True)
    p = np.array([[[0.2, 0.7]], [[0.6, 0.4]]], dtype=np.float32)
    for _ in range(3):
        acc.add(p, 1.0)
    maps = acc.finish()
    np.testing.assert_allclose(maps.probabilities, p, atol=1e-6)
    np.testing.assert_allclose(maps.mutual_information, 0.0, atol=1e-6)
    assert not maps.disagreement.any()


def test_case_scores_by_hand() -> None:
    probs = np.zeros((2, 4, 4), dtype=np.float32)
    probs[0], probs[1] = 1.0, 0.0
    probs[:, :2, :2] = [[0.2]], [[0.8]]
    labels = probs.argmax(0)
    disagreement = np.zeros((4, 4), bool)
    disagreement[0, 2] = True
    acc = SampleAccumulator(overlapping=False)
    acc.add(probs)
    maps = replace(acc.finish(), disagreement=disagreement)
    scores = case_scores(maps, labels, Geometry.identity(2, spacing=(2.0, 5.0)), overlapping=False)
    h = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8)) / math.log(2)
    assert scores["entropy"] == pytest.approx(4 * h / 5, rel=1e-5)  # region: 4 foreground + 1 disagreement voxel
    assert scores["disagreement_ratio"] == pytest.approx(1 / 4)
    assert scores["low_confidence"] == pytest.approx(0.2, abs=1e-6)
    assert scores["volume_ml"] == pytest.approx(4 * 10 / 1000)
    assert scores["uncertain_fraction"] == pytest.approx(4 / 5)


def _predictor(root: Path, dropout: float, spacing: tuple[float, ...]) -> Predictor:
    """An untrained tiny network planned on the scan's own grid (no resampling: 4 windows per pass)."""
    plans = make_plans(fingerprint(load_dataset(root)), Budget())
    plans = replace(plans, data=replace(plans.data, target_spacing=spacing))
    patch = (8, 32, 32)
    config = nnunet_config(3, 1, 4, patch, spacing, base_features=4, max_features=8)
    config = replace(config, dropout=dropout)
    plans = replace(plans, patch_size=patch, model=config, infer=replace(plans.infer, batch_size=4))
    model = build_model(config, generator=torch.Generator().manual_seed(0)).eval()
    return Predictor(plans, model, torch.device("cpu"))


def test_samples_count_flips_and_dropout_passes(msd_3d: Path) -> None:
    image, geometry = read_image(load_dataset(msd_3d).cases[0].channels[0])
    predictor = _predictor(msd_3d, 0.3, geometry.spacing)
    assert has_dropout(predictor.model)
    plain = UncertaintyEstimator(predictor, UncertaintyOptions(tta=False)).estimate(image, geometry)
    assert plain.maps.n_samples == 1 and not plain.maps.disagreement.any()
    np.testing.assert_allclose(plain.maps.mutual_information, 0.0, atol=1e-6)
    mc = UncertaintyEstimator(predictor, UncertaintyOptions(tta=False, dropout_samples=2, seed=5))
    first, again = mc.estimate(image, geometry), mc.estimate(image, geometry)
    assert first.maps.n_samples == 2 and first.maps.mutual_information.max() > 0
    np.testing.assert_array_equal(first.maps.entropy, again.maps.entropy)  # seeded: the same passes
    assert not predictor.model.training and all(not m.training for m in predictor.model.modules())
    flips = UncertaintyEstimator(predictor, UncertaintyOptions(tta=True)).estimate(image, geometry)
    assert flips.maps.n_samples == 8 and flips.maps.entropy.shape == image.shape[1:]


def test_mc_dropout_without_dropout_is_refused(msd_3d: Path) -> None:
    image, geometry = read_image(load_dataset(msd_3d).cases[0].channels[0])
    predictor = _predictor(msd_3d, 0.0, geometry.spacing)
    with pytest.raises(ConfigError, match="has no dropout"):
        UncertaintyEstimator(predictor, UncertaintyOptions(tta=False, dropout_samples=2)).estimate(image, geometry)
    with pytest.raises(ConfigError, match="at least 2"):
        UncertaintyOptions(dropout_samples=1)
