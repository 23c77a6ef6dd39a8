"""Histogram standardisation (--normalization histogram-match): the maths on arrays, and the option end to end
from planning (landmarks learnt in the fingerprint, recorded in plans.json) to preprocessed cases."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medseg.config.plans import load_plans, save_plans
from medseg.datasets.dataset import load_dataset
from medseg.errors import ConfigError
from medseg.planning.fingerprint import fingerprint
from medseg.planning.plans import Budget, make_plans
from medseg.preprocessing.forward import normalize
from medseg.preprocessing.histogram import (
    LANDMARK_PERCENTILES,
    body_voxels,
    case_landmarks,
    match_histogram,
    standard_landmarks,
)
from medseg.synthetic import SyntheticSpec, write_dataset


def _mri_like(rng: np.random.Generator, scale: float, offset: float) -> np.ndarray:
    """Two tissues in a zero-padded field of view; the scanner's unknown linear map is scale and offset."""
    image = np.zeros((40, 48, 48), np.float32)
    image[5:35, 8:40, 8:40] = rng.normal(100, 10, (30, 32, 32))
    image[12:28, 16:32, 16:32] = rng.normal(180, 12, (16, 16, 16))
    body = image > 0
    image[body] = image[body] * scale + offset
    return image


def test_cases_from_different_scanners_match_the_same_standard() -> None:
    rng = np.random.default_rng(0)
    a, b = _mri_like(rng, 1.0, 0.0), _mri_like(rng, 7.5, 300.0)  # b: another scanner's units
    standard = standard_landmarks([case_landmarks(a), case_landmarks(b)])
    ma, mb = match_histogram(a, standard), match_histogram(b, standard)
    assert ma.dtype == np.float32 and ma.shape == a.shape
    inner = (slice(14, 26), slice(18, 30), slice(18, 30))  # the second tissue in both
    assert abs(float(ma[inner].mean()) - float(mb[inner].mean())) < 0.03
    # z-scoring would not align a case whose tissue proportions differ; matching keeps the deciles in place
    np.testing.assert_allclose(case_landmarks(ma), np.asarray(standard) / 100, atol=0.02)


def test_the_standard_scale_spans_0_to_100_and_padding_is_left_out() -> None:
    rng = np.random.default_rng(1)
    image = _mri_like(rng, 2.0, 50.0)
    body = body_voxels(image)
    assert body.min() > 0 and body.size == np.count_nonzero(image)  # the zero padding is not the histogram
    standard = standard_landmarks([case_landmarks(image)])
    assert len(standard) == len(LANDMARK_PERCENTILES) and standard[0] == 0 and standard[-1] == pytest.approx(100)
    assert all(b > a for a, b in itertools.pairwise(standard))


def test_matching_extends_the_end_segments_and_survives_a_constant_image() -> None:
    rng = np.random.default_rng(2)
    image = rng.normal(0, 1, (64, 64)).astype(np.float32)
    standard = tuple(float(v) for v in np.linspace(0, 100, len(LANDMARK_PERCENTILES)))
    out = match_histogram(image, standard)
    order = np.argsort(image.ravel())
    assert np.all(np.diff(out.ravel()[order]) >= -1e-6)  # monotone, beyond the 1st/99th percentiles too
    assert out.min() < 0 and out.max() > 1
    flat = match_histogram(np.full((8, 8), 3.0), standard)
    assert np.all(flat == 0.5)
    with pytest.raises(ValueError, match="landmarks"):
        match_histogram(image, (0.0, 100.0))


def test_histogram_match_is_planned_recorded_and_applied(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", SyntheticSpec(ndim=2, shape=(48, 48)), n_cases=3, seed=0)
    fp = fingerprint(load_dataset(root))
    assert len(fp.landmarks) == 1 and len(fp.landmarks[0]) == len(LANDMARK_PERCENTILES)
    plans = make_plans(fp, Budget(normalization="histogram-match"))
    (norm,) = plans.data.normalization
    assert norm.scheme == "histogram" and norm.landmarks == fp.landmarks[0]
    save_plans(plans, tmp_path / "plans.json")
    assert load_plans(tmp_path / "plans.json").data.normalization == plans.data.normalization
    image = np.random.default_rng(3).normal(500, 80, (1, 48, 48)).astype(np.float32)
    np.testing.assert_array_equal(normalize(image, plans.data)[0], match_histogram(image[0], norm.landmarks))


def test_histogram_match_needs_landmarks(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", SyntheticSpec(ndim=2, shape=(32, 32)), n_cases=2, seed=0)
    fp = fingerprint(load_dataset(root))
    with pytest.raises(ConfigError, match="histogram landmarks"):
        make_plans(replace(fp, landmarks=()), Budget(normalization="histogram-match"))


def test_sampled_landmarks_are_close_to_the_full_ones() -> None:
    rng = np.random.default_rng(4)
    image = _mri_like(rng, 3.0, 10.0)
    full = case_landmarks(image)
    sampled = case_landmarks(image, np.random.default_rng(0), max_samples=5_000)
    assert not np.array_equal(full, sampled)  # it did sample
    np.testing.assert_allclose(sampled, full, rtol=0.05)
