"""Tests of the synthetic chest-CT generator: determinism, anatomy, intensities, overlapping masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.synthetic import (
    LABEL_NAMES,
    OVERLAP_NAMES,
    SyntheticCase,
    SyntheticSpec,
    make_case,
    make_cases,
    overlapping_masks,
)

SMALL_2D = SyntheticSpec(ndim=2, shape=(64, 64))
SMALL_3D = SyntheticSpec(ndim=3, shape=(12, 64, 64))
SPECS = pytest.mark.parametrize("spec", [SMALL_2D, SMALL_3D], ids=["2d", "3d"])


def _assert_same(a: SyntheticCase, b: SyntheticCase) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.spacing == b.spacing


@SPECS
def test_same_seed_gives_identical_cases_and_other_seeds_differ(spec: SyntheticSpec) -> None:
    first, again, other = (make_cases(spec, 2, seed) for seed in (5, 5, 6))
    for a, b in zip(first, again, strict=True):
        _assert_same(a, b)
    for a, c in zip(first, other, strict=True):
        assert not np.array_equal(a.label, c.label)
        assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(first[0].label, first[1].label)


@SPECS
def test_cases_do_not_depend_on_how_many_are_made(spec: SyntheticSpec) -> None:
    few, many = make_cases(spec, 2, seed=9), make_cases(spec, 5, seed=9)
    assert len(few) == 2 and len(many) == 5
    for a, b in zip(few, many[:2], strict=True):
        _assert_same(a, b)


def test_case_i_uses_the_ith_spawned_child_generator() -> None:
    child = np.random.SeedSequence(7).spawn(3)[2]
    _assert_same(make_case(SMALL_2D, np.random.default_rng(child)), make_cases(SMALL_2D, 3, seed=7)[2])


def test_zero_cases_is_an_empty_list() -> None:
    assert make_cases(SMALL_2D, 0, seed=1) == []


@SPECS
def test_shape_dtype_spacing(spec: SyntheticSpec) -> None:
    for case in make_cases(spec, 4, seed=2):
        assert case.image.shape == spec.shape and case.label.shape == spec.shape
        assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
        assert np.isfinite(case.image).all()
        assert case.image.min() >= -1024 and case.image.max() <= 3071
        assert len(case.spacing) == spec.ndim
        assert all(isinstance(s, float) for s in case.spacing)
        assert case.spacing[-1] == case.spacing[-2] and 0.68 <= case.spacing[-1] <= 0.92
        if spec.ndim == 3:
            assert 2.0 <= case.spacing[0] <= 3.0
    assert len({case.spacing for case in make_cases(spec, 4, seed=2)}) > 1


@pytest.mark.parametrize(
    "spec", [SMALL_2D, SMALL_3D, SyntheticSpec(ndim=2, shape=(32, 48)), SyntheticSpec(shape=(4, 32, 32))]
)
def test_every_case_has_every_label_as_one_connected_structure(spec: SyntheticSpec) -> None:
    for case in make_cases(spec, 8, seed=3):
        assert set(np.unique(case.label).tolist()) == set(LABEL_NAMES)
        counts = {k: ndimage.label(case.label == k)[1] for k in (1, 2, 3)}
        assert counts == {1: 2, 2: 1, 3: 1}  # two lungs, one heart, one aorta


@pytest.mark.parametrize("spec", [SyntheticSpec(ndim=2, shape=(128, 128)), SyntheticSpec()], ids=["2d", "3d"])
def test_aorta_radius_is_at_least_four_voxels_at_default_size(spec: SyntheticSpec) -> None:
    for case in make_cases(spec, 3, seed=4):
        aorta = (case.label == 3).reshape(-1, *spec.shape[-2:])
        areas = aorta.sum(axis=(1, 2))
        assert areas.min() >= np.pi * 4**2 * 0.95  # a tube through every slice, radius >= 4 voxels


@SPECS
def test_hounsfield_units_per_structure(spec: SyntheticSpec) -> None:
    for case in make_cases(spec, 6, seed=5):
        median = {k: float(np.median(case.image[case.label == k])) for k in (1, 2, 3)}
        assert median[1] < -700
        assert 0 < median[2] < 120
        assert median[3] > median[2] + 50
        corners = case.image[..., [0, 1, -2, -1], :][..., [0, 1, -2, -1]]
        assert np.median(corners) < -900  # air outside the body


def test_bone_is_brighter_than_aorta_and_fat_darker_than_heart() -> None:
    case = make_cases(SyntheticSpec(ndim=2, shape=(128, 128), noise_hu=0.0), 1, seed=8)[0]
    background_in_body = (case.label == 0) & (case.image > -500)
    assert np.percentile(case.image[background_in_body], 99) > 500  # spine and ribs
    assert np.percentile(case.image[background_in_body], 10) < -50  # subcutaneous and mediastinal fat


def _body_box(image: np.ndarray) -> tuple[int, ...]:
    body = image > -500  # the fat layer bounds the body; lungs (-850) lie inside it
    return tuple(int(i) for sl in ndimage.find_objects(body.astype(np.uint8))[0] for i in (sl.start, sl.stop))


@SPECS
def test_body_size_and_position_vary_between_cases(spec: SyntheticSpec) -> None:
    boxes = np.array([_body_box(case.image) for case in make_cases(spec, 8, seed=6)])
    assert len({tuple(b) for b in boxes}) == len(boxes)
    widths = boxes[:, -1] - boxes[:, -2]
    centres = (boxes[:, -1] + boxes[:, -2]) / 2
    assert widths.max() - widths.min() >= 0.08 * spec.shape[-1]
    assert centres.max() - centres.min() >= 0.05 * spec.shape[-1]
    assert widths.max() <= spec.shape[-1]


@SPECS
def test_chest_layout(spec: SyntheticSpec) -> None:
    """Heart between the lungs and anterior (smaller row) to the aorta; columns run right to left."""
    for case in make_cases(spec, 6, seed=7):
        lungs, _ = ndimage.label(case.label == 1)
        lung_cols = sorted(ndimage.center_of_mass(lungs > 0, lungs, [1, 2])[i][-1] for i in (0, 1))
        heart = ndimage.center_of_mass(case.label == 2)
        aorta = ndimage.center_of_mass(case.label == 3)
        assert lung_cols[0] < heart[-1] < lung_cols[1]
        assert heart[-2] < aorta[-2]


def test_lungs_shrink_towards_the_ends_of_a_volume() -> None:
    for case in make_cases(SyntheticSpec(shape=(16, 64, 64)), 4, seed=8):
        area = (case.label == 1).sum(axis=(1, 2))
        assert area[0] < area.max() and area[-1] < area.max()
        assert (area > 0).all()


def test_noise_level_and_smoothing_switch() -> None:
    shape = (96, 96)
    clean = make_cases(SyntheticSpec(ndim=2, shape=shape, noise_hu=0.0), 1, seed=10)[0]
    noisy = make_cases(SyntheticSpec(ndim=2, shape=shape, noise_hu=30.0), 1, seed=10)[0]
    np.testing.assert_array_equal(clean.label, noisy.label)
    inside = clean.image > -900  # no clipping at -1024 there
    assert np.std(noisy.image[inside] - clean.image[inside]) == pytest.approx(30.0, rel=0.05)
    sharp = make_cases(SyntheticSpec(ndim=2, shape=shape, noise_hu=0.0, smooth_sigma=0.0), 1, seed=10)[0]
    np.testing.assert_array_equal(sharp.label, clean.label)
    np.testing.assert_allclose(clean.image, ndimage.gaussian_filter(sharp.image, 0.7), atol=1e-3)
    np.testing.assert_array_equal(sharp.image[:4, :4], np.full((4, 4), -1000.0, np.float32))


def test_overlapping_masks_on_a_hand_made_case() -> None:
    label = np.array(
        [
            [1, 0, 0, 2, 0, 1, 0],  # between the lungs: columns 1-4
            [1, 1, 0, 3, 1, 0, 0],  # aorta row: columns 2-3 are between
            [1, 0, 0, 0, 0, 1, 0],  # behind the aorta: not mediastinum
        ],
        dtype=np.uint8,
    )
    case = SyntheticCase(image=np.zeros(label.shape, np.float32), label=label, spacing=(1.0, 1.0))
    masks = overlapping_masks(case)
    expected_mediastinum = np.array(
        [[0, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=np.uint8
    )
    np.testing.assert_array_equal(masks[0], label == 1)
    np.testing.assert_array_equal(masks[1], label == 2)
    np.testing.assert_array_equal(masks[2], expected_mediastinum)


@SPECS
def test_overlapping_masks_overlap(spec: SyntheticSpec) -> None:
    assert OVERLAP_NAMES == ("lungs", "heart", "mediastinum")
    for case in make_cases(spec, 4, seed=11):
        masks = overlapping_masks(case)
        assert masks.shape == (3, *spec.shape) and masks.dtype == np.uint8
        assert set(np.unique(masks).tolist()) == {0, 1}
        lungs, heart, mediastinum = masks.astype(bool)
        np.testing.assert_array_equal(lungs, case.label == 1)
        np.testing.assert_array_equal(heart, case.label == 2)
        assert (mediastinum & heart).sum() == heart.sum() > 0
        assert (mediastinum & (case.label == 3)).sum() == (case.label == 3).sum()
        assert mediastinum.sum() > (heart | (case.label == 3)).sum()  # plus tissue between the lungs
        assert not (mediastinum & lungs).any()
        assert (masks.sum(axis=0) > 1).any()


@settings(max_examples=15, deadline=None)
@given(
    ndim=st.sampled_from([2, 3]),
    rows=st.integers(32, 72),
    cols=st.integers(32, 72),
    slices=st.integers(4, 10),
    seed=st.integers(0, 2**32),
)
def test_any_valid_shape_gives_all_labels(ndim: int, rows: int, cols: int, slices: int, seed: int) -> None:
    shape = (rows, cols) if ndim == 2 else (slices, rows, cols)
    case = make_cases(SyntheticSpec(ndim=ndim, shape=shape), 1, seed)[0]
    assert case.image.shape == shape
    assert set(np.unique(case.label).tolist()) == set(LABEL_NAMES)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ndim": 4, "shape": (4, 4, 32, 32)},
        {"ndim": 2},  # default shape is 3D
        {"ndim": 3, "shape": (32, 96)},
        {"ndim": 2, "shape": (64.0, 64)},
        {"ndim": 2, "shape": (16, 64)},
        {"ndim": 3, "shape": (2, 64, 64)},
        {"noise_hu": -1.0},
        {"noise_hu": float("nan")},
        {"smooth_sigma": -0.5},
        {"smooth_sigma": "0.7"},
    ],
)
def test_invalid_spec_raises_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="synthetic spec"):
        SyntheticSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "seed"), [(-1, 0), (2, -1), (2, 1.5), (True, 0)])
def test_invalid_count_or_seed_raises_config_error(n: object, seed: object) -> None:
    with pytest.raises(ConfigError, match="synthetic cases"):
        make_cases(SMALL_2D, n, seed)  # type: ignore[arg-type]


def test_list_shape_is_stored_as_tuple() -> None:
    assert SyntheticSpec(ndim=2, shape=[64, 48]).shape == (64, 48)  # type: ignore[arg-type]
