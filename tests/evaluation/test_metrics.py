from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)
from scipy import ndimage

from medseg.errors import ConfigError, MedsegError
from medseg.evaluation.metrics import (
    EMPTY_POLICY,
    METRIC_NAMES,
    assd,
    binary_metrics,
    confusion,
    dice,
    hausdorff,
    iou,
    label_map_metrics,
    normalized_surface_dice,
    precision,
    sensitivity,
    specificity,
    summarise,
    surface_distances,
)


def _squares(shift_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 3x3 squares in an 8x8 image, the reference shifted by one voxel along ``shift_axis``."""
    pred = np.zeros((8, 8), bool)
    pred[2:5, 2:5] = True
    return pred, np.roll(pred, 1, axis=shift_axis)


def test_confusion_counts_by_hand() -> None:
    pred, ref = _squares(0)
    assert confusion(pred, ref) == (6, 3, 3, 52)


def test_overlap_and_rates_by_hand() -> None:
    pred, ref = _squares(0)
    assert dice(pred, ref) == pytest.approx(2 * 6 / 18)
    assert iou(pred, ref) == pytest.approx(6 / 12)
    assert sensitivity(pred, ref) == pytest.approx(6 / 9)
    assert precision(pred, ref) == pytest.approx(6 / 9)
    assert specificity(pred, ref) == pytest.approx(52 / 55)


def test_surface_distances_by_hand_anisotropic() -> None:
    # Surfaces are the 8 border voxels of each square (the centre erodes away). Shifted by one row of
    # 2 mm: the outer rows are 2 mm from the other surface; each centre lies on the other square's
    # surface whose nearest own-surface voxel is 1 mm away along the 1 mm axis.
    pred, ref = _squares(0)
    d_pr, d_rp = surface_distances(pred, ref, (2.0, 1.0))
    expected = [0, 0, 0, 0, 1, 2, 2, 2]
    np.testing.assert_allclose(np.sort(d_pr), expected)
    np.testing.assert_allclose(np.sort(d_rp), expected)
    assert hausdorff(pred, ref, (2.0, 1.0)) == pytest.approx(2.0)
    assert hausdorff(pred, ref, (2.0, 1.0), percentile=95) == pytest.approx(2.0)
    assert hausdorff(pred, ref, (2.0, 1.0), percentile=50) == pytest.approx(0.5)
    assert assd(pred, ref, (2.0, 1.0)) == pytest.approx(14 / 16)
    assert normalized_surface_dice(pred, ref, (2.0, 1.0), 1.0) == pytest.approx(10 / 16)
    assert normalized_surface_dice(pred, ref, (2.0, 1.0), 2.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("shift_axis", "expected_hd"), [(0, 2.0), (1, 1.0)])
def test_anisotropic_spacing_changes_distances(shift_axis: int, expected_hd: float) -> None:
    pred, ref = _squares(shift_axis)
    assert hausdorff(pred, ref, (2.0, 1.0)) == pytest.approx(expected_hd)
    assert hausdorff(pred, ref, (1.0, 1.0)) == pytest.approx(1.0)


def test_three_d_cube_shift_by_hand() -> None:
    pred = np.zeros((6, 6, 6), bool)
    pred[1:4, 1:4, 1:4] = True
    ref = np.roll(pred, 1, axis=2)
    assert dice(pred, ref) == pytest.approx(2 * 18 / 54)
    assert hausdorff(pred, ref, (1.0, 1.0, 3.0)) == pytest.approx(3.0)


def test_perfect_prediction() -> None:
    pred, _ = _squares(0)
    m = binary_metrics(pred, pred, (0.7, 1.3))
    assert set(m) == set(METRIC_NAMES)
    assert all(type(v) is float for v in m.values())
    for name in ("dice", "iou", "nsd", "sensitivity", "specificity", "precision"):
        assert m[name] == 1.0
    for name in ("hd", "hd95", "assd"):
        assert m[name] == 0.0


def test_empty_policy_both_empty() -> None:
    empty = np.zeros((5, 5), bool)
    m = binary_metrics(empty, empty, (1.0, 1.0))
    assert (m["dice"], m["iou"], m["nsd"]) == (1.0, 1.0, 1.0)
    assert (m["hd"], m["hd95"], m["assd"]) == (0.0, 0.0, 0.0)
    assert math.isnan(m["sensitivity"])
    assert math.isnan(m["precision"])
    assert m["specificity"] == 1.0


@pytest.mark.parametrize("pred_is_empty", [True, False])
def test_empty_policy_one_empty(pred_is_empty: bool) -> None:
    mask, _ = _squares(0)
    empty = np.zeros_like(mask)
    pred, ref = (empty, mask) if pred_is_empty else (mask, empty)
    m = binary_metrics(pred, ref, (1.0, 1.0))
    assert (m["dice"], m["iou"], m["nsd"]) == (0.0, 0.0, 0.0)
    assert all(math.isnan(m[k]) for k in ("hd", "hd95", "assd"))
    if pred_is_empty:
        assert m["sensitivity"] == 0.0
        assert math.isnan(m["precision"])
        assert m["specificity"] == 1.0
    else:
        assert math.isnan(m["sensitivity"])
        assert m["precision"] == 0.0
        assert m["specificity"] == pytest.approx(55 / 64)
    d_pr, d_rp = surface_distances(pred, ref, (1.0, 1.0))
    assert np.all(np.isinf(d_pr if not pred_is_empty else d_rp))
    assert (d_pr if pred_is_empty else d_rp).size == 0


def test_specificity_nan_without_reference_background() -> None:
    full = np.ones((3, 4), bool)
    assert math.isnan(specificity(full, full))
    assert math.isnan(EMPTY_POLICY.undefined_rate)


def _blob(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, level: float) -> np.ndarray:
    smooth = ndimage.gaussian_filter(rng.random(shape), sigma)
    return smooth > np.quantile(smooth, level)


def _monai(fn, pred: np.ndarray, ref: np.ndarray, **kw) -> float:  # type: ignore[no-untyped-def]
    as_t = [torch.from_numpy(a[None, None].astype(np.float32)) for a in (pred, ref)]
    return float(fn(as_t[0], as_t[1], include_background=True, **kw)[0, 0])


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((40, 36), (1.0, 1.0)),
        ((40, 36), (0.8, 2.5)),
        ((18, 20, 16), (1.5, 0.7, 3.0)),
        ((20, 20, 12), (1, 1, 1)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_monai_on_random_blobs(shape: tuple[int, ...], spacing: tuple[float, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, ref = _blob(rng, shape, 2.0, 0.6), _blob(rng, shape, 2.0, 0.55)
    m = binary_metrics(pred, ref, spacing, nsd_tolerance_mm=1.5)
    assert m["dice"] == pytest.approx(_monai(compute_dice, pred, ref), rel=1e-6)
    hd = _monai(compute_hausdorff_distance, pred, ref, spacing=spacing)
    hd95 = _monai(compute_hausdorff_distance, pred, ref, spacing=spacing, percentile=95)
    asd = _monai(compute_average_surface_distance, pred, ref, spacing=spacing, symmetric=True)
    nsd = _monai(compute_surface_dice, pred, ref, spacing=spacing, class_thresholds=[1.5])
    assert m["hd"] == pytest.approx(hd, rel=1e-5)
    assert m["hd95"] == pytest.approx(hd95, rel=1e-5)
    assert m["assd"] == pytest.approx(asd, rel=1e-5)
    assert m["nsd"] == pytest.approx(nsd, rel=1e-6)


def test_masks_touching_the_border_agree_with_monai() -> None:
    ref = np.ones((10, 12), bool)
    pred = np.zeros_like(ref)
    pred[:7, 3:] = True
    hd = _monai(compute_hausdorff_distance, pred, ref, spacing=(1.0, 2.0))
    assert hausdorff(pred, ref, (1.0, 2.0)) == pytest.approx(hd)
    # by hand: the farthest reference surface voxel is the corner (9, 0); the nearest prediction
    # surface voxel to it is the corner (6, 3), 3 rows * 1 mm and 3 columns * 2 mm away
    assert hd == pytest.approx(math.hypot(3.0, 6.0))


def test_crop_does_not_change_distances() -> None:
    rng = np.random.default_rng(3)
    pred, ref = np.zeros((60, 60), bool), np.zeros((60, 60), bool)
    pred[20:30, 20:30] = _blob(rng, (10, 10), 1.0, 0.3)
    ref[22:32, 18:28] = _blob(rng, (10, 10), 1.0, 0.3)
    small = surface_distances(pred[15:35, 15:35], ref[15:35, 15:35], (1.0, 2.0))
    large = surface_distances(pred, ref, (1.0, 2.0))
    for a, b in zip(small, large, strict=True):
        np.testing.assert_allclose(np.sort(a), np.sort(b))


masks_2d = arrays(bool, st.tuples(st.integers(1, 7), st.integers(1, 7)))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_symmetry_and_bounds(data: st.DataObject) -> None:
    a = data.draw(masks_2d)
    b = data.draw(arrays(bool, a.shape))
    spacing = (1.0, 1.7)
    ab, ba = binary_metrics(a, b, spacing), binary_metrics(b, a, spacing)
    for name in ("dice", "iou", "hd", "hd95", "assd", "nsd"):
        np.testing.assert_allclose(ab[name], ba[name], equal_nan=True)
    np.testing.assert_allclose(ab["sensitivity"], ba["precision"], equal_nan=True)
    for name in ("dice", "iou", "nsd", "sensitivity", "specificity", "precision"):
        assert math.isnan(ab[name]) or 0.0 <= ab[name] <= 1.0
    assert math.isnan(ab["hd"]) or 0.0 <= ab["assd"] <= ab["hd"] + 1e-9
    assert math.isnan(ab["hd"]) or 0.0 <= ab["hd95"] <= ab["hd"] + 1e-9
    assert ab["iou"] <= ab["dice"] + 1e-12


def test_label_map_metrics_one_vs_rest() -> None:
    pred = np.array([[0, 1, 1], [2, 2, 0], [0, 0, 0]])
    ref = np.array([[0, 1, 0], [2, 2, 2], [0, 0, 0]])
    out = label_map_metrics(pred, ref, classes=[1, 2, 3], spacing=(1.0, 1.0))
    assert out[1]["dice"] == pytest.approx(2 / 3)
    assert out[2]["dice"] == pytest.approx(4 / 5)
    assert out[3]["dice"] == 1.0  # absent from both
    assert out[1] == binary_metrics(pred == 1, ref == 1, (1.0, 1.0))


def test_summarise_skips_nan_and_counts() -> None:
    cases = [{"dice": 0.5, "hd": 2.0}, {"dice": 1.0, "hd": math.nan}, {"dice": 0.0, "hd": 4.0}]
    s = summarise(cases)
    assert s["dice"] == {
        "mean": 0.5,
        "median": 0.5,
        "std": pytest.approx(np.std([0.5, 1, 0])),
        "n": 3,
        "n_nan": 0,
    }
    assert s["hd"]["mean"] == 3.0
    assert (s["hd"]["n"], s["hd"]["n_nan"]) == (2, 1)
    all_nan = summarise([{"hd": math.nan}])["hd"]
    assert math.isnan(all_nan["mean"])
    assert all_nan["n"] == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: dice(np.zeros((2, 2)), np.zeros((2, 3))), MedsegError),
        (lambda: hausdorff(np.ones((2, 2)), np.ones((2, 2)), (1.0,)), MedsegError),
        (lambda: hausdorff(np.ones((2, 2)), np.ones((2, 2)), (1.0, -1.0)), MedsegError),
        (lambda: hausdorff(np.ones((2, 2)), np.ones((2, 2)), (1.0, 1.0), percentile=101), ConfigError),
        (lambda: normalized_surface_dice(np.ones((2, 2)), np.ones((2, 2)), (1.0, 1.0), -1.0), ConfigError),
        (lambda: label_map_metrics(np.zeros((2, 2)), np.zeros((3, 2)), [1], (1.0, 1.0)), MedsegError),
    ],
)
def test_invalid_input_raises(call, error: type[Exception]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        call()
