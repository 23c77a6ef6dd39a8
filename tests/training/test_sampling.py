"""Tests of medseg.training.sampling: patch shapes, padding, foreground oversampling, class locations."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.training.sampling import PatchSampler, class_locations


def ramp_case(shape: tuple[int, ...], channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Image whose every voxel value is unique (so a patch reveals where it came from) and a label of it."""
    image = np.arange(channels * np.prod(shape), dtype=np.float32).reshape(channels, *shape) + 1
    return image, (image[0].astype(np.int64) % 3).astype(np.uint8)


def find_window(image: np.ndarray, patch: np.ndarray) -> tuple[int, ...]:
    """Where ``patch`` (unpadded, from :func:`ramp_case`) starts in ``image``."""
    flat = int(np.flatnonzero(image[0] == patch[0].flat[0])[0])
    return tuple(int(i) for i in np.unravel_index(flat, image.shape[1:]))


@pytest.mark.parametrize(
    ("case_shape", "patch_size"),
    [((30, 25), (16, 16)), ((5, 40), (8, 8)), ((12, 10, 9), (8, 8, 8)), ((4, 20, 6), (6, 6, 6))],
)
@pytest.mark.parametrize("layout", ["index", "masks"])
def test_patch_shapes_and_dtypes(case_shape: tuple[int, ...], patch_size: tuple[int, ...], layout: str) -> None:
    image, label = ramp_case(case_shape)
    if layout == "masks":
        label = np.stack([label == 1, label == 2])
    sampler = PatchSampler(patch_size, foreground_fraction=0.5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        patch_image, patch_label = sampler.sample(image, label, rng)
        assert patch_image.shape == (2, *patch_size) and patch_image.dtype == np.float32
        assert patch_label.shape == label.shape[: label.ndim - len(case_shape)] + patch_size
        assert patch_label.dtype == label.dtype


@pytest.mark.parametrize(("case_shape", "patch_size"), [((30, 25), (16, 16)), ((12, 10, 9), (8, 5, 8))])
def test_random_crop_is_an_aligned_window_of_the_case(case_shape: tuple[int, ...], patch_size: tuple[int, ...]) -> None:
    image, label = ramp_case(case_shape)
    sampler = PatchSampler(patch_size, foreground_fraction=0.0)
    rng = np.random.default_rng(1)
    starts = set()
    for _ in range(20):
        patch_image, patch_label = sampler.sample(image, label, rng)
        start = find_window(image, patch_image)
        window = tuple(slice(s, s + p) for s, p in zip(start, patch_size, strict=True))
        np.testing.assert_array_equal(patch_image, image[(slice(None), *window)])
        np.testing.assert_array_equal(patch_label, label[window])
        starts.add(start)
    assert len(starts) > 10  # random positions


@pytest.mark.parametrize(("case_shape", "patch_size"), [((5, 7), (8, 10)), ((3, 20), (6, 8)), ((2, 3, 4), (4, 4, 4))])
def test_small_case_is_padded_with_zeros_and_kept_whole(
    case_shape: tuple[int, ...], patch_size: tuple[int, ...]
) -> None:
    image, label = ramp_case(case_shape, channels=1)
    sampler = PatchSampler(patch_size, foreground_fraction=0.0)
    rng = np.random.default_rng(2)
    for _ in range(5):
        patch_image, patch_label = sampler.sample(image, label, rng)
        start = find_window(image, patch_image[:, patch_image[0] > 0].reshape(1, -1))
        kept = tuple(slice(s, s + min(n, p)) for s, n, p in zip(start, case_shape, patch_size, strict=True))
        inside = image[(slice(None), *kept)]
        assert (patch_image > 0).sum() == inside.size  # everything else is padding
        assert patch_image.sum() == pytest.approx(inside.sum())
        assert np.all(patch_image[patch_image <= 0] == 0) and patch_label.sum() == label[kept].sum()


def test_foreground_fraction_is_about_one_third() -> None:
    # One 2 x 2 foreground blob in a corner of a 120 x 120 case: a random 16 x 16 crop contains it with
    # probability (7 / 105)^2 = 0.4 %, a foreground patch always. Expected share 1/3 + 2/3 * 0.004 = 0.336.
    image = np.zeros((1, 120, 120), np.float32)
    label = np.zeros((120, 120), np.uint8)
    label[5:7, 5:7] = 1
    locations = class_locations(label, 2, np.random.default_rng(0))
    rng = np.random.default_rng(3)
    hits = [PatchSampler((16, 16)).sample(image, label, rng, locations)[1].any() for _ in range(600)]
    assert 0.27 < np.mean(hits) < 0.40  # ± 3.5 standard deviations (0.019)
    never = [PatchSampler((16, 16), 0.0).sample(image, label, rng, locations)[1].any() for _ in range(200)]
    assert np.mean(never) < 0.05


def test_foreground_class_is_chosen_uniformly_not_by_voxel_count() -> None:
    # Class 1 fills the upper half, class 2 is one voxel far below it: patches centred on class 1 never
    # reach class 2, so the share of patches holding class 2 is the chance of choosing it, 1/2.
    image = np.zeros((1, 64, 64), np.float32)
    label = np.zeros((64, 64), np.int64)
    label[:32] = 1
    label[60, 60] = 2
    sampler = PatchSampler((8, 8), foreground_fraction=1.0)
    rng = np.random.default_rng(4)
    patches = [sampler.sample(image, label, rng)[1] for _ in range(300)]
    assert all(p.any() for p in patches)  # every foreground patch contains foreground
    assert 0.4 < np.mean([(p == 2).any() for p in patches]) < 0.6


def test_foreground_patch_with_binary_masks_contains_a_present_structure() -> None:
    image = np.zeros((1, 10, 40, 40), np.float32)
    masks = np.zeros((3, 10, 40, 40), bool)
    masks[0, 2, 3, 3] = True
    masks[2, 8, 30:, 30:] = True  # channel 1 is empty
    masks[0, 8, 35, 35] = True  # overlaps channel 2
    locations = class_locations(masks, 3, np.random.default_rng(0))
    assert sorted(locations) == [1, 3]
    sampler = PatchSampler((4, 8, 8), foreground_fraction=1.0)
    rng = np.random.default_rng(5)
    patches = [sampler.sample(image, masks, rng, locations)[1] for _ in range(60)]
    assert all(p.any() for p in patches) and not any(p[1].any() for p in patches)
    assert any(p[0].any() and not p[2].any() for p in patches) and any(p[2].any() for p in patches)


def test_foreground_voxel_near_the_border_stays_inside_the_patch() -> None:
    image, label = np.zeros((1, 50, 50), np.float32), np.zeros((50, 50), np.uint8)
    for corner in [(0, 0), (49, 49), (0, 49), (25, 1)]:
        label[:] = 0
        label[corner] = 1
        patch_label = PatchSampler((10, 12), 1.0).sample(image, label, np.random.default_rng(6))[1]
        assert patch_label.sum() == 1


def test_case_without_foreground_gives_a_random_crop() -> None:
    image, label = np.ones((1, 20, 20), np.float32), np.zeros((20, 20), np.uint8)
    patch_image, patch_label = PatchSampler((8, 8), 1.0).sample(image, label, np.random.default_rng(7))
    assert patch_image.shape == (1, 8, 8) and not patch_label.any() and patch_image.min() == 1


def test_same_seed_same_patch_and_precomputed_locations_change_nothing() -> None:
    image, label = ramp_case((30, 30))
    sampler = PatchSampler((8, 8), foreground_fraction=0.5)
    locations = class_locations(label, 2, np.random.default_rng(0))  # fewer than 10000: no subsampling
    for seed in range(5):
        first = sampler.sample(image, label, np.random.default_rng(seed))
        again = sampler.sample(image, label, np.random.default_rng(seed), locations)
        np.testing.assert_array_equal(first[0], again[0])
        np.testing.assert_array_equal(first[1], again[1])


@pytest.mark.parametrize("foreground_fraction", [0.0, 1.0])
def test_context_surrounds_the_same_patch(foreground_fraction: float) -> None:
    image, label = ramp_case((20, 30))
    context = (5, 6)
    plain = PatchSampler((8, 10), foreground_fraction)
    wide = PatchSampler((8, 10), foreground_fraction, context=context)
    for seed in range(6):
        patch_image, patch_label = plain.sample(image, label, np.random.default_rng(seed))
        wide_image, wide_label = wide.sample(image, label, np.random.default_rng(seed))
        assert wide_image.shape == (2, 13, 16) and wide_label.shape == (13, 16)
        centre = (slice(2, 10), slice(3, 13))  # start context // 2
        np.testing.assert_array_equal(wide_image[(slice(None), *centre)], patch_image)
        np.testing.assert_array_equal(wide_label[centre], patch_label)


def test_class_locations_of_an_index_map() -> None:
    label = np.zeros((6, 7, 8), np.int16)
    label[1, 2, 3] = 5
    label[4:, :2, :] = 2
    locations = class_locations(label, 3, np.random.default_rng(0))
    assert sorted(locations) == [2, 5]
    np.testing.assert_array_equal(locations[5], [[1, 2, 3]])
    assert locations[2].shape == (2 * 2 * 8, 3) and locations[2].dtype == np.int64
    assert np.all(label[tuple(locations[2].T)] == 2)
    assert class_locations(np.zeros((4, 4)), 2, np.random.default_rng(0)) == {}


def test_class_locations_subsamples_distinct_voxels() -> None:
    label = np.zeros((40, 50), np.uint8)
    label[:30] = 1
    label[35, 7] = 2
    first = class_locations(label, 2, np.random.default_rng(1), max_per_class=100)
    assert first[1].shape == (100, 2) and len({tuple(c) for c in first[1]}) == 100
    assert np.all(label[tuple(first[1].T)] == 1) and first[1][:, 0].max() > 20  # spread, not the first rows
    np.testing.assert_array_equal(first[2], [[35, 7]])
    np.testing.assert_array_equal(first[1], class_locations(label, 2, np.random.default_rng(1), 100)[1])


def test_class_locations_of_overlapping_masks() -> None:
    masks = np.zeros((2, 5, 5), np.uint8)
    masks[0, 1:3, 1:3] = 1
    masks[1, 2:4, 2:4] = 1
    locations = class_locations(masks, 2, np.random.default_rng(0))
    assert sorted(locations) == [1, 2]
    assert {tuple(c) for c in locations[1]} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert {tuple(c) for c in locations[2]} == {(2, 2), (2, 3), (3, 2), (3, 3)}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patch_size": ()},
        {"patch_size": (0, 8)},
        {"patch_size": (8, 8), "foreground_fraction": 1.5},
        {"patch_size": (8, 8), "context": (2,)},
        {"patch_size": (8, 8), "context": (2, -1)},
    ],
)
def test_invalid_sampler_settings_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PatchSampler(**kwargs)  # type: ignore[arg-type]


def test_patch_dimensionality_must_match_the_case() -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        PatchSampler((8, 8, 8)).sample(np.zeros((1, 10, 10)), np.zeros((10, 10)), np.random.default_rng())
    with pytest.raises(ValueError, match="label"):
        PatchSampler((8, 8)).sample(np.zeros((1, 10, 10)), np.zeros((10, 11)), np.random.default_rng())
