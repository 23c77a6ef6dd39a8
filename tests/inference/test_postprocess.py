from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.config.postprocessing import PostProcessing
from medseg.errors import ConfigError
from medseg.inference.postprocessing import (
    apply_postprocessing,
    apply_postprocessing_mask,
    fill_holes,
    fill_holes_mask,
    keep_largest_component,
    largest_component_mask,
    remove_small_components,
    remove_small_components_mask,
)


def _arr(rows: str) -> np.ndarray:
    """A 2D int array from lines of digits, e.g. '010 / 111'."""
    return np.array([[int(ch) for ch in row.strip()] for row in rows.split("/")])


# a diagonal of 3 voxels (one component with 8-connectivity, three with 4-connectivity)
# and a vertical pair of 2 voxels
DIAGONAL_VS_PAIR = _arr("100001 / 010001 / 001000")


def test_largest_component_uses_full_connectivity_2d() -> None:
    out = largest_component_mask(DIAGONAL_VS_PAIR)
    np.testing.assert_array_equal(out, _arr("100000 / 010000 / 001000").astype(bool))


def test_largest_component_uses_full_connectivity_3d() -> None:
    mask = np.zeros((4, 5, 5), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = mask[2, 2, 2] = True  # corner-touching chain of 3
    mask[0, 3, 3] = mask[0, 3, 4] = True  # face pair of 2
    expected = mask.copy()
    expected[0, 3, 3:5] = False
    np.testing.assert_array_equal(largest_component_mask(mask), expected)


def test_largest_component_tie_keeps_first_and_empty_stays_empty() -> None:
    np.testing.assert_array_equal(largest_component_mask(_arr("1010")), _arr("1000").astype(bool))
    empty = np.zeros((3, 3), bool)
    assert not largest_component_mask(empty).any()


@pytest.mark.parametrize(("min_voxels", "expected"), [(0, "1011011101"), (2, "0011011100"), (3, "0000011100")])
def test_remove_small_components_mask_threshold_is_inclusive(min_voxels: int, expected: str) -> None:
    mask = _arr("1011011101")  # components of 1, 2, 3 and 1 voxels
    out = remove_small_components_mask(mask, min_voxels)
    np.testing.assert_array_equal(out, _arr(expected).astype(bool))


def test_remove_small_components_mask_3d_counts_corner_neighbours() -> None:
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True
    np.testing.assert_array_equal(remove_small_components_mask(mask, 2), mask)
    assert not remove_small_components_mask(mask, 3).any()


def test_keep_largest_component_per_class_and_input_untouched() -> None:
    labels = _arr("110022 / 000002 / 100200 / 110000").astype(np.uint8)
    before = labels.copy()
    out = keep_largest_component(labels)
    np.testing.assert_array_equal(out, _arr("000022 / 000002 / 100000 / 110000"))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(labels, before)
    only_two = keep_largest_component(labels, classes=[2])
    np.testing.assert_array_equal(only_two, _arr("110022 / 000002 / 100000 / 110000"))


def test_label_map_components_are_per_class() -> None:
    # class 1 touches class 2, but each class forms its own components
    labels = _arr("1122 / 0002 / 1000")
    np.testing.assert_array_equal(keep_largest_component(labels), _arr("1122 / 0002 / 0000"))


def test_remove_small_components_label_map() -> None:
    labels = _arr("1103 / 0003 / 2003 / 0220")
    np.testing.assert_array_equal(remove_small_components(labels, 3), _arr("0003 / 0003 / 2003 / 0220"))
    np.testing.assert_array_equal(remove_small_components(labels, 3, classes=[2]), labels)


DIAMOND = _arr("00100 / 01010 / 10001 / 01010 / 00100")


def test_fill_holes_mask_diagonal_ring_is_closed() -> None:
    # the ring is 8-connected; the background inside cannot leak out through the diagonal gaps
    out = fill_holes_mask(DIAMOND)
    np.testing.assert_array_equal(out, _arr("00100 / 01110 / 11111 / 01110 / 00100").astype(bool))


def test_fill_holes_mask_open_region_is_not_a_hole() -> None:
    u_shape = _arr("10001 / 10001 / 11111")
    np.testing.assert_array_equal(fill_holes_mask(u_shape), u_shape.astype(bool))


@pytest.mark.parametrize("tunnel", [False, True])
def test_fill_holes_3d_hollow_cube(tunnel: bool) -> None:
    shell = np.zeros((7, 7, 7), np.int16)
    shell[1:6, 1:6, 1:6] = 4
    shell[2:5, 2:5, 2:5] = 0
    if tunnel:
        shell[3, 3, 1] = 0  # a face-connected opening to the outside
    out = fill_holes(shell)
    expected = shell.copy()
    if not tunnel:
        expected[2:5, 2:5, 2:5] = 4
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(fill_holes_mask(shell > 0), expected > 0)


def test_fill_holes_label_map_needs_a_single_surrounding_class() -> None:
    labels = np.ones((7, 7), np.int32)
    labels[1:6, 1:6] = 0
    labels[2:5, 2:5] = 2
    labels[3, 3] = 0  # hole of class 2 alone -> filled with 2
    out = fill_holes(labels)
    expected = labels.copy()
    expected[3, 3] = 2  # the gap between the class 1 ring and class 2 touches both: left alone
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(fill_holes(labels, classes=[1]), labels)


@pytest.mark.parametrize("shape", [(12, 13), (7, 8, 6)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_holes_single_class_equals_scipy(shape: tuple[int, ...], seed: int) -> None:
    mask = np.random.default_rng(seed).random(shape) > 0.45
    np.testing.assert_array_equal(fill_holes(mask.astype(np.uint8) * 3), ndimage.binary_fill_holes(mask) * 3)


def test_apply_postprocessing_runs_each_step() -> None:
    labels = np.zeros((8, 8), np.uint8)
    labels[1:6, 1:6] = 1
    labels[3, 3] = 0  # hole
    labels[7, 7] = 1  # speck
    labels[0, 7] = 2  # speck of another class
    config = PostProcessing(largest_component=True, fill_holes=True, classes=(1,))
    expected = np.zeros_like(labels)
    expected[1:6, 1:6] = 1
    expected[0, 7] = 2
    np.testing.assert_array_equal(apply_postprocessing(labels, config), expected)
    expected[0, 7] = 0
    expected[3, 3] = 0
    np.testing.assert_array_equal(apply_postprocessing(labels, PostProcessing(min_voxels=2)), expected)
    unchanged = apply_postprocessing(labels, PostProcessing())
    np.testing.assert_array_equal(unchanged, labels)
    assert unchanged is not labels


def test_apply_postprocessing_mask() -> None:
    mask = np.pad(DIAMOND, ((0, 0), (0, 2))).astype(bool)
    mask[4, 0] = True  # touches the ring's (3, 1) at a corner: part of the ring's component
    mask[0, 6] = True  # a separate speck
    both = apply_postprocessing_mask(mask, PostProcessing(largest_component=True, fill_holes=True))
    expected = np.pad(fill_holes_mask(DIAMOND), ((0, 0), (0, 2)))
    expected[4, 0] = True
    np.testing.assert_array_equal(both, expected)
    speck = np.zeros((4, 4), bool)
    speck[0, 0] = True
    assert not apply_postprocessing_mask(speck, PostProcessing(min_voxels=2)).any()
    assert apply_postprocessing_mask(speck, PostProcessing()) is not speck


@pytest.mark.parametrize(
    "call",
    [
        lambda: PostProcessing(min_voxels=-1),
        lambda: remove_small_components_mask(np.ones((2, 2)), -3),
        lambda: keep_largest_component(np.ones((2, 2), int), classes=[0, 1]),
    ],
)
def test_invalid_options_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        call()
