"""Tests of medseg.transforms.augment and the deterministic transforms it calls (medseg.transforms)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from medseg.config.augment import AugmentConfig
from medseg.errors import ConfigError
from medseg.transforms import (
    add_gaussian_noise,
    adjust_contrast,
    adjust_gamma,
    affine,
    affine_matrix,
    centre_crop,
    flip,
    gaussian_blur,
    rotation_matrix,
    scale_brightness,
)
from medseg.transforms.augment import AugmentParams, apply_params, augment, draw_params, rotation_context

NO_INTENSITY = {"p_brightness": 0.0, "p_contrast": 0.0, "p_gamma": 0.0, "p_noise": 0.0, "p_blur": 0.0}
ALL_ON = {"p_spatial": 1.0, "p_brightness": 1.0, "p_contrast": 1.0, "p_gamma": 1.0, "p_noise": 1.0, "p_blur": 1.0}
SHAPES = [(24, 20), (14, 12, 10)]


def blob(shape: tuple[int, ...], centre_shift: float = 0.1, radius: float = 0.3) -> np.ndarray:
    """``(*shape)`` float32: 1 inside an off-centre ellipsoid, 0 outside."""
    grid = np.indices(shape, dtype=np.float64)
    distance = sum(((g / (n - 1)) - 0.5 - centre_shift) ** 2 for g, n in zip(grid, shape, strict=True))
    return (distance < radius**2).astype(np.float32)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def two_structures(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Image ``(2, *shape)`` equal to two overlapping masks ``(2, *shape)`` uint8."""
    masks = np.stack([blob(shape, 0.1, 0.3), blob(shape, -0.05, 0.25)]).astype(np.uint8)
    return masks.astype(np.float32), masks


# ---------------------------------------------------------------- spatial transforms, image and label together


@pytest.mark.parametrize("shape", SHAPES)
def test_flip_equals_numpy_flip_and_keeps_label_on_image(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, *shape)).astype(np.float32)
    label = (image[0] > 0).astype(np.int64)
    masks = (image > 0).astype(np.uint8)
    for axes in [(0,), (1,), tuple(range(len(shape)))]:
        out_image, out_label = flip(image, label, axes)
        _, out_masks = flip(image, masks, axes)
        np.testing.assert_array_equal(out_image, np.flip(image, [a + 1 for a in axes]))
        np.testing.assert_array_equal(out_label, (out_image[0] > 0).astype(np.int64))
        np.testing.assert_array_equal(out_masks, (out_image > 0).astype(np.uint8))


@pytest.mark.parametrize("shape", SHAPES)
def test_augment_with_only_flips_keeps_label_exactly_equal_to_thresholded_image(shape: tuple[int, ...]) -> None:
    config = AugmentConfig(flip_axes=tuple(range(len(shape))), p_spatial=0.0, **NO_INTENSITY)
    image = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    label = (image[0] > 0).astype(np.uint8)
    outputs = set()
    for seed in range(12):
        out_image, out_label = augment(image, label, config, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_label, (out_image[0] > 0).astype(np.uint8))
        outputs.add(out_image.tobytes())
    assert len(outputs) > 2  # several flip combinations were drawn


@pytest.mark.parametrize("shape", SHAPES)
def test_spatial_augment_keeps_index_label_on_image(shape: tuple[int, ...]) -> None:
    config = AugmentConfig(rotation_degrees=30.0, p_spatial=1.0, **NO_INTENSITY)
    image = blob(shape)[None]
    label = (image[0] > 0.5).astype(np.int64)
    for seed in range(4):
        out_image, out_label = augment(image, label, config, np.random.default_rng(seed))
        assert not np.array_equal(out_label, label)  # something moved
        assert dice(out_label, out_image[0] > 0.5) > 0.9


@pytest.mark.parametrize("shape", SHAPES)
def test_spatial_augment_keeps_each_binary_mask_on_its_channel(shape: tuple[int, ...]) -> None:
    config = AugmentConfig(rotation_degrees=30.0, p_spatial=1.0, **NO_INTENSITY)
    image, masks = two_structures(shape)
    for seed in range(4):
        out_image, out_masks = augment(image, masks, config, np.random.default_rng(seed))
        assert out_masks.shape == masks.shape and out_masks.dtype == np.uint8
        for k in range(2):
            assert dice(out_masks[k], out_image[k] > 0.5) > 0.9


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
@pytest.mark.parametrize("shape", SHAPES)
def test_index_label_values_stay_in_the_original_set(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(2)
    label = rng.choice(np.array([0, 3, 7], dtype=dtype), size=shape)
    image = rng.standard_normal((1, *shape)).astype(np.float32)
    config = AugmentConfig(rotation_degrees=40.0, p_spatial=1.0)
    for seed in range(3):
        out_image, out_label = augment(image, label, config, np.random.default_rng(seed))
        assert out_label.dtype == dtype and out_label.shape == shape
        assert out_image.dtype == np.float32 and out_image.shape == image.shape
        assert set(np.unique(out_label)) <= {0, 3, 7}


@pytest.mark.parametrize("shape", SHAPES)
def test_bool_masks_stay_bool(shape: tuple[int, ...]) -> None:
    image, masks = two_structures(shape)
    config = AugmentConfig(p_spatial=1.0)
    _, out_masks = augment(image, masks.astype(bool), config, np.random.default_rng(0))
    assert out_masks.dtype == bool and out_masks.shape == masks.shape and out_masks.any()


def test_rotation_by_90_degrees_is_rot90() -> None:
    # input = R (out - c) + c with R = [[0, -1], [1, 0]] reads x[n-1-j, i]: np.rot90 with k = -1.
    rng = np.random.default_rng(3)
    image = rng.standard_normal((2, 9, 9)).astype(np.float32)
    label = rng.integers(0, 4, (9, 9))
    out_image, out_label = affine(image, label, rotation_matrix([np.pi / 2], 2))
    np.testing.assert_allclose(out_image, np.rot90(image, -1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_array_equal(out_label, np.rot90(label, -1))
    volume = rng.standard_normal((1, 5, 7, 7)).astype(np.float32)
    out_volume, _ = affine(volume, volume[0] > 0, rotation_matrix([np.pi / 2, 0, 0], 3))
    np.testing.assert_allclose(out_volume, np.rot90(volume, -1, axes=(2, 3)), atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "angles", "scale", "out_shape"),
    [
        ((23, 31), (0.4,), 0.8, None),
        ((23, 31), (-0.7,), 1.3, (16, 21)),
        ((11, 14, 9), (0.2, -0.3, 0.5), 1.1, None),
        ((11, 14, 9), (0.1, 0.2, 0.3), 0.9, (8, 9, 6)),
    ],
)
def test_affine_matches_scipy_affine_transform(
    shape: tuple[int, ...], angles: tuple[float, ...], scale: float, out_shape: tuple[int, ...] | None
) -> None:
    rng = np.random.default_rng(4)
    image = rng.standard_normal((1, *shape)).astype(np.float32)
    label = rng.integers(0, 5, shape).astype(np.uint8)
    matrix = affine_matrix(angles, scale, len(shape))
    out = out_shape or shape
    # Reference: the documented mapping input = M (o - co) + start + co, with a centred crop start.
    start = np.array([(n - o) // 2 for n, o in zip(shape, out, strict=True)])
    centre = (np.array(out) - 1) / 2
    offset = start + centre - matrix @ centre
    ref_image = ndimage.affine_transform(image[0], matrix, offset, output_shape=out, order=1)
    ref_label = ndimage.affine_transform(label, matrix, offset, output_shape=out, order=0)
    out_image, out_label = affine(image, label, matrix, out_shape)
    coords = np.tensordot(matrix, np.indices(out), axes=1) + offset.reshape(-1, 1, *(1,) * (len(out) - 1))
    inside = np.all((coords >= 0) & (coords <= np.array(shape).reshape(-1, *(1,) * len(out)) - 1), axis=0)
    not_tie = np.all(np.abs(coords - np.floor(coords) - 0.5) > 1e-3, axis=0)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out_image[0][inside], ref_image[inside], atol=1e-4)
    np.testing.assert_array_equal(out_label[inside & not_tie], ref_label[inside & not_tie])
    assert np.all(out_image[0][~inside & (np.abs(coords).max(axis=0) > 1e3)] == 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_identity_affine_with_out_shape_equals_centre_crop(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(5)
    image = rng.standard_normal((2, *shape)).astype(np.float32)
    label = rng.integers(0, 3, (2, *shape)).astype(np.uint8)
    out_shape = tuple(n - 3 for n in shape)
    crop_image, crop_label = centre_crop(image, label, out_shape)
    start = (3 // 2,) * len(shape)
    window = tuple(slice(s, s + o) for s, o in zip(start, out_shape, strict=True))
    np.testing.assert_array_equal(crop_image, image[(slice(None), *window)])
    aff_image, aff_label = affine(image, label, np.eye(len(shape)), out_shape)
    np.testing.assert_allclose(aff_image, crop_image, atol=1e-5)
    np.testing.assert_array_equal(aff_label, crop_label)


@pytest.mark.parametrize(("scale", "radius", "area_ratio"), [(2.0, 0.15, 4.0), (0.5, 0.35, 0.25)])
def test_scale_above_one_enlarges_structures(scale: float, radius: float, area_ratio: float) -> None:
    image = blob((64, 64), centre_shift=0.0, radius=radius)[None]
    label = image[0].astype(np.uint8)
    _, out_label = affine(image, label, affine_matrix((), scale, 2))
    assert out_label.sum() / label.sum() == pytest.approx(area_ratio, rel=0.1)


# ---------------------------------------------------------------- the random pipeline


@pytest.mark.parametrize("shape", SHAPES)
def test_same_seed_same_output_and_different_seeds_differ(shape: tuple[int, ...]) -> None:
    image, masks = two_structures(shape)
    config = AugmentConfig(**ALL_ON)
    first = augment(image, masks, config, np.random.default_rng(7))
    again = augment(image, masks, config, np.random.default_rng(7))
    other = augment(image, masks, config, np.random.default_rng(8))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_augment_is_draw_params_then_apply_params() -> None:
    image, masks = two_structures((16, 18))
    config = AugmentConfig(**ALL_ON)
    params = draw_params(config, np.random.default_rng(9), n_channels=2, ndim=2)
    assert params.rotation and params.scale != 1.0 and params.noise_std > 0
    assert all(len(p) == 2 for p in (params.blur_sigma, params.brightness, params.contrast, params.gamma))
    expected = apply_params(image, masks, params)
    got = augment(image, masks, config, np.random.default_rng(9))
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("shape", SHAPES)
def test_intensity_transforms_leave_label_untouched(shape: tuple[int, ...]) -> None:
    config = AugmentConfig(**{**ALL_ON, "p_spatial": 0.0, "flip_axes": ()})
    image, masks = two_structures(shape)
    index_label = masks[0].astype(np.int64) * 4
    for label in (masks, index_label):
        image_before, label_before = image.copy(), label.copy()
        out_image, out_label = augment(image, label, config, np.random.default_rng(10))
        np.testing.assert_array_equal(out_label, label)
        assert not np.allclose(out_image, image)
        np.testing.assert_array_equal(image, image_before)  # inputs not modified
        np.testing.assert_array_equal(label, label_before)


def test_no_op_augment_returns_fresh_arrays() -> None:
    config = AugmentConfig(flip_axes=(), p_spatial=0.0, **NO_INTENSITY)
    image, masks = two_structures((8, 8))
    out_image, out_masks = augment(image, masks, config, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_masks, masks)
    assert not np.shares_memory(out_image, image) and not np.shares_memory(out_masks, masks)


def test_float64_image_comes_back_float32() -> None:
    image = np.ones((1, 6, 6))
    out_image, _ = augment(image, np.zeros((6, 6), np.uint8), AugmentConfig(), np.random.default_rng(0))
    assert out_image.dtype == np.float32


def test_rotate_in_plane_only_turns_around_the_through_plane_axis() -> None:
    config = AugmentConfig(p_spatial=1.0, rotate_in_plane_only=True)  # default: around z, axis 0
    params = draw_params(config, np.random.default_rng(0), n_channels=1, ndim=3)
    assert params.rotation[0] != 0 and params.rotation[1:] == (0.0, 0.0)
    last = draw_params(dataclasses.replace(config, through_plane_axis=-1), np.random.default_rng(0), 1, 3)
    assert last.rotation[:2] == (0.0, 0.0) and last.rotation[2] != 0
    slices = np.stack([blob((12, 12))] * 5)  # (5, 12, 12): identical slices along axis 0
    out_image, _ = apply_params(slices[None], slices > 0.5, params)
    np.testing.assert_allclose(out_image[0, 1:-1], np.broadcast_to(out_image[0, 2], (3, 12, 12)), atol=1e-5)


def test_draw_frequencies_follow_the_probabilities() -> None:
    config = AugmentConfig(p_gamma=1.0)
    rng = np.random.default_rng(11)
    draws = [draw_params(config, rng, n_channels=1, ndim=2) for _ in range(2000)]
    assert np.mean([bool(d.rotation) for d in draws]) == pytest.approx(0.2, abs=0.04)
    assert np.mean([d.brightness is not None for d in draws]) == pytest.approx(0.15, abs=0.04)
    assert np.mean([0 in d.flip_axes for d in draws]) == pytest.approx(0.5, abs=0.05)
    gammas = np.array([d.gamma[0] for d in draws])
    assert np.all((gammas >= 0.7) & (gammas <= 1.5))
    assert np.mean(gammas < 1) == pytest.approx(0.5, abs=0.05)  # half below 1, as in nnU-Net


@pytest.mark.parametrize("bad_label_shape", [(9, 8), (2, 3, 8, 8)])
def test_label_not_matching_image_is_rejected(bad_label_shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="label"):
        augment(np.zeros((1, 8, 8), np.float32), np.zeros(bad_label_shape), AugmentConfig(), np.random.default_rng())


# ---------------------------------------------------------------- context for rotation


def test_rotation_context_hand_computed() -> None:
    no_spatial = AugmentConfig(p_spatial=0.0)
    assert rotation_context((10, 10), no_spatial) == (0, 0)
    zoom_in_only = AugmentConfig(rotation_degrees=0.0, scale_range=(1.0, 1.25))
    assert rotation_context((10, 12, 8), zoom_in_only) == (0, 0, 0)
    # a 10 x 10 square turned by 45° spans 10 * sqrt(2) = 14.14 -> 15 voxels, 5 more
    assert rotation_context((10, 10), AugmentConfig(rotation_degrees=45.0, scale_range=(1.0, 1.0))) == (5, 5)
    # zooming out by 0.5 samples twice the extent
    assert rotation_context((10, 6), AugmentConfig(rotation_degrees=0.0, scale_range=(0.5, 2.0))) == (10, 6)


@pytest.mark.parametrize(("patch", "angles"), [((16, 20), (np.pi / 6,)), ((8, 10, 12), (np.pi / 6,) * 3)])
def test_context_fills_the_extremely_rotated_patch_with_image(
    patch: tuple[int, ...], angles: tuple[float, ...]
) -> None:
    config = AugmentConfig(rotation_degrees=30.0, scale_range=(0.8, 1.25))
    extreme = AugmentParams(rotation=angles, scale=0.8)
    context = rotation_context(patch, config)
    bigger = tuple(p + c for p, c in zip(patch, context, strict=True))
    ones = np.ones((1, *bigger), np.float32)
    out_image, out_label = apply_params(ones, ones[0].astype(np.uint8), extreme, out_shape=patch)
    assert out_image.shape == (1, *patch) and out_label.shape == patch
    assert out_image.min() > 0.999 and out_label.min() == 1
    # without the context the corners come from outside the patch and are 0
    plain = np.ones((1, *patch), np.float32)
    assert apply_params(plain, plain[0], extreme)[0].min() < 0.5


# ---------------------------------------------------------------- intensity transforms, hand-computed


def test_scale_brightness_per_channel() -> None:
    image = np.array([[[1.0, 2.0]], [[3.0, -1.0]]], np.float32)
    np.testing.assert_allclose(scale_brightness(image, [1.5, 0.5]), [[[1.5, 3.0]], [[1.5, -0.5]]])


def test_adjust_contrast_stretches_about_the_mean_within_the_old_range() -> None:
    image = np.array([[[0.0, 1.0, 2.0, 5.0]]], np.float32)  # mean 2
    # (x - 2) * 2 + 2 = [-2, 0, 2, 8], clipped to [0, 5]
    np.testing.assert_allclose(adjust_contrast(image, 2.0), [[[0.0, 0.0, 2.0, 5.0]]])
    np.testing.assert_allclose(adjust_contrast(image, 0.5), [[[1.0, 1.5, 2.0, 3.5]]])


def test_adjust_gamma_matches_monai_and_keeps_the_range() -> None:
    monai_transforms = pytest.importorskip("monai.transforms")
    rng = np.random.default_rng(12)
    image = (rng.standard_normal((2, 6, 7)) * 3 + 1).astype(np.float32)
    out = adjust_gamma(image, [0.7, 1.5])
    for channel, gamma in enumerate([0.7, 1.5]):
        reference = np.asarray(monai_transforms.AdjustContrast(gamma)(image[channel : channel + 1]))
        np.testing.assert_allclose(out[channel : channel + 1], reference, rtol=1e-5, atol=1e-5)
        assert out[channel].min() == pytest.approx(image[channel].min(), abs=1e-5)
        assert out[channel].max() == pytest.approx(image[channel].max(), abs=1e-5)
    np.testing.assert_allclose(adjust_gamma(image, 1.0), image, atol=1e-5)


def test_gaussian_blur_per_channel_matches_scipy() -> None:
    image = np.zeros((2, 15, 15), np.float32)
    image[:, 7, 7] = 1.0
    out = gaussian_blur(image, [0.5, 1.0])
    for channel, sigma in enumerate([0.5, 1.0]):
        np.testing.assert_allclose(out[channel], ndimage.gaussian_filter(image[channel], sigma), atol=1e-6)
    assert out[0, 7, 7] > out[1, 7, 7]  # the smaller sigma keeps the peak higher


def test_gaussian_noise_has_the_requested_std_and_is_reproducible() -> None:
    image = np.zeros((1, 64, 64), np.float32)
    noisy = add_gaussian_noise(image, 0.1, np.random.default_rng(13))
    assert noisy.std() == pytest.approx(0.1, rel=0.05) and abs(noisy.mean()) < 0.01
    np.testing.assert_array_equal(noisy, add_gaussian_noise(image, 0.1, np.random.default_rng(13)))


# ---------------------------------------------------------------- configuration


def test_config_round_trips_through_json() -> None:
    config = AugmentConfig(flip_axes=(0, 1, 2), rotation_degrees=30.0, rotate_in_plane_only=True)
    assert AugmentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert AugmentConfig.from_dict({}) == AugmentConfig()


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="rotation_deg"):
        AugmentConfig.from_dict({"rotation_deg": 10})


@pytest.mark.parametrize(
    "change",
    [
        {"p_spatial": 1.5},
        {"p_blur": -0.1},
        {"flip_axes": (0, 0)},
        {"flip_axes": (-1,)},
        {"flip_axes": (0.5,)},
        {"through_plane_axis": 1.0},
        {"scale_range": (1.2, 0.8)},
        {"gamma_range": (0.0, 1.5)},
        {"blur_sigma": (1.0,)},
        {"brightness": 1.0},
        {"noise_std": -1.0},
        {"rotation_degrees": 400.0},
        {"through_plane_axis": 3},
        {"rotate_in_plane_only": "yes"},
        {"rotation_degrees": "ten"},
    ],
)
def test_invalid_config_values_are_errors(change: dict[str, object]) -> None:
    data = {**AugmentConfig().to_dict(), **change}
    with pytest.raises(ConfigError, match=f"augment.{next(iter(change))} = "):
        AugmentConfig.from_dict(data)


def test_flip_axis_beyond_the_data_is_an_error() -> None:
    config = dataclasses.replace(AugmentConfig(), flip_axes=(0, 1, 2))
    with pytest.raises(ConfigError, match="flip_axes"):
        augment(np.zeros((1, 8, 8), np.float32), np.zeros((8, 8), np.uint8), config, np.random.default_rng())


# ----------------------------------------------------------------------- elastic, simulated low resolution


def test_an_elastic_field_is_smooth_bounded_and_seeded() -> None:
    from medseg.transforms import elastic_field

    field = elastic_field((32, 32), alpha=200.0, sigma=10.0, rng=np.random.default_rng(1))
    again = elastic_field((32, 32), alpha=200.0, sigma=10.0, rng=np.random.default_rng(1))
    assert field.shape == (2, 32, 32) and field.dtype == np.float32 and np.array_equal(field, again)
    assert 0.1 < np.abs(field).max() < 20  # a few voxels, not the image size
    neighbour_step = np.abs(np.diff(field, axis=1)).max()
    assert neighbour_step < 0.25 * np.abs(field).max()  # smooth: neighbours move nearly alike
    assert np.array_equal(elastic_field((8, 8), 0.0, 10.0, np.random.default_rng(0)), np.zeros((2, 8, 8)))


@pytest.mark.parametrize("shape", SHAPES)
def test_elastic_deformation_moves_image_and_label_together(shape: tuple[int, ...]) -> None:
    image = blob(shape)[None]
    label = (image[0] > 0.5).astype(np.uint8)
    params = AugmentParams(elastic_alpha=300.0, elastic_sigma=4.0, elastic_seed=3)
    out_image, out_label = apply_params(image, label, params)
    assert not np.array_equal(out_label, label)  # it did deform
    assert set(np.unique(out_label)) <= {0, 1} and out_label.dtype == np.uint8
    assert dice(out_image[0] > 0.5, out_label > 0) > 0.95  # the label follows the image


def test_elastic_and_low_resolution_are_drawn_only_when_enabled() -> None:
    """Configurations without them keep the random stream (and so the patches) of earlier versions."""
    off = AugmentConfig(**ALL_ON)
    changed_ranges = dataclasses.replace(off, elastic_sigma=(1.0, 2.0), low_res_zoom=(0.3, 0.4))
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert draw_params(off, a, 1, 2) == draw_params(changed_ranges, b, 1, 2)
    assert a.random() == b.random()
    on = dataclasses.replace(off, p_elastic=1.0, p_low_res=1.0)
    params = draw_params(on, np.random.default_rng(5), 2, 3)
    assert 0 <= params.elastic_alpha <= 200 and 9 <= params.elastic_sigma <= 13 and params.elastic_seed > 0
    assert params.low_res is not None and len(params.low_res) == 2 and all(0.5 <= z <= 1 for z in params.low_res)


def test_simulated_low_resolution_blurs_fine_detail_and_keeps_the_shape() -> None:
    from medseg.transforms import simulate_low_resolution

    checker = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.float32)[None]
    image = np.concatenate([checker, checker])
    out = simulate_low_resolution(image, (0.5, 1.0))
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.array_equal(out[1], image[1])  # zoom 1: unchanged
    assert out[0].std() < 0.5 * image[0].std()  # the 1-voxel pattern is lost at half the resolution
    smooth = blob((32, 32))[None]
    assert np.abs(simulate_low_resolution(smooth, 0.5) - smooth).mean() < 0.1  # large structures survive
    assert not np.shares_memory(out, image)


def test_new_plans_turn_on_low_resolution_and_leave_elastic_off() -> None:
    assert AugmentConfig().p_low_res == 0.0 and AugmentConfig().p_elastic == 0.0  # old plans: unchanged
    config = AugmentConfig.from_dict({"p_elastic": 0.2, "elastic_alpha": [0, 100], "low_res_zoom": [0.6, 0.9]})
    assert config.elastic_alpha == (0.0, 100.0) and config.low_res_zoom == (0.6, 0.9)
    with pytest.raises(ConfigError, match=r"augment.low_res_zoom = \(0.5, 1.5\) is invalid"):
        AugmentConfig(low_res_zoom=(0.5, 1.5))
