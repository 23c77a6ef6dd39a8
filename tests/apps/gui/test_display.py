"""Window/level, auto-contrast and the overlay colouring (pure numpy) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

import medseg
from medseg.apps.gui.display import CT_PRESETS, Window, blend_overlay, class_colours, to_rgb, to_uint8


@pytest.mark.parametrize("name", CT_PRESETS)
def test_presets_are_medsegs_hu_windows(name: str) -> None:
    level, width = medseg.HU_WINDOWS[name]
    window = Window.preset(name)
    assert (window.low, window.high) == (level - width / 2, level + width / 2)


def test_soft_tissue_window_by_hand() -> None:
    window = Window.preset("soft-tissue")  # level 40, width 400: -160 .. 240 HU
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    # (hu + 160) * 255 / 400, rounded and clipped
    assert to_uint8(hu, window).tolist() == [0, 0, 128, 255, 255]


def test_auto_contrast_uses_percentiles() -> None:
    image = np.arange(1001, dtype=np.float32)  # percentile p of 0..1000 is 10 p
    window = Window.auto(image, 1.0, 99.0)
    assert (window.low, window.high) == pytest.approx((10.0, 990.0))
    assert Window.auto(np.full((4, 4), 7.0)) == Window(7.0, 8.0)  # flat image: no division by zero


def test_rgb_is_shown_as_it_is_and_grey_is_repeated() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb(rgb, None), np.moveaxis(rgb, 0, -1))
    grey = to_rgb(np.array([[0.0, 100.0]]), Window(0.0, 100.0))
    assert grey.tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_overlay_blends_class_colours_by_hand() -> None:
    colours = class_colours(3)
    assert colours[0].tolist() == [0, 0, 0] and len({tuple(c) for c in colours}) == 3
    rgb = np.full((1, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 2]], np.uint8)
    out = blend_overlay(rgb, labels, colours, 0.25)
    assert out[0, 0].tolist() == [100, 100, 100]  # background untouched
    for k in (1, 2):
        expected = np.rint(0.75 * 100 + 0.25 * colours[k].astype(float)).astype(int).tolist()
        assert out[0, k].tolist() == expected


def test_overlapping_masks_use_row_k_plus_one_and_later_on_top() -> None:
    colours = class_colours(3)
    masks = np.array([[[1, 1]], [[0, 1]]], np.uint8)  # structure 0 at both pixels, structure 1 at the second
    out = blend_overlay(np.zeros((1, 2, 3), np.uint8), masks, colours, 1.0, overlapping=True)
    assert out[0, 0].tolist() == colours[1].tolist()
    assert out[0, 1].tolist() == colours[2].tolist()
