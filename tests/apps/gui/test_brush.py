"""Brush, eraser and their undo (pure numpy), and the plane <-> voxel mapping they rely on."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.apps.gui.brush import Dab, disk, paint
from medseg.apps.gui.scan import pixel_of, plane_shape, plane_slice, voxel_of

SHAPE = (4, 5, 6)


@pytest.mark.parametrize(("radius", "pixels"), [(0, 1), (1, 9), (2, 21)])
def test_disk_sizes_by_hand(radius: int, pixels: int) -> None:
    rows, cols = disk(radius)
    assert len(rows) == pixels and max(rows) == radius and min(cols) == -radius


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_pixels_and_voxels_map_both_ways(plane: str) -> None:
    volume = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    rows, cols = plane_shape(SHAPE, plane)
    index = 2
    picture = plane_slice(volume, plane, index)
    assert picture.shape == (rows, cols)
    for row in range(rows):
        for col in range(cols):
            voxel = voxel_of(plane, index, (row, col), SHAPE)
            assert volume[voxel] == picture[row, col]
            assert pixel_of(plane, voxel, SHAPE) == (row, col)


def test_coronal_shows_the_last_slice_on_top() -> None:
    volume = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    assert plane_slice(volume, "coronal", 0)[0, 0] == volume[-1, 0, 0]


def test_brush_paints_a_disk_in_one_slice_and_undoes() -> None:
    labels = np.zeros(SHAPE, np.uint8)
    stroke = paint(labels, Dab("sagittal", 3, (1, 2), radius=1), value=2)
    assert labels.sum() == 9 * 2 and (labels[:, :, 3] == 2).sum() == 9
    assert labels[SHAPE[0] - 1 - 1, 2, 3] == 2  # sagittal row 1 is z = 2 (z shown flipped)
    stroke.undo(labels)
    assert labels.sum() == 0
    stroke.redo(labels)
    assert labels.sum() == 18


def test_brush_is_clipped_at_the_border_and_merges_a_drag() -> None:
    labels = np.zeros(SHAPE, np.uint8)
    first = paint(labels, Dab("axial", 0, (0, 0), radius=1), value=1)
    assert len(first.indices) == 4  # the quarter of the 3 x 3 disk inside the slice
    first.extend(paint(labels, Dab("axial", 0, (0, 1), radius=1), value=1))
    assert len(first.indices) == 6
    first.undo(labels)
    assert labels.sum() == 0


def test_eraser_of_one_class_leaves_the_others() -> None:
    labels = np.zeros(SHAPE, np.uint8)
    labels[0, :2, :] = 1
    labels[0, 2:, :] = 2
    stroke = paint(labels, Dab("axial", 0, (2, 2), radius=1), value=0, only=1)
    assert len(stroke.indices) == 3 and (labels[0, 1:4, 1:4] == [[0, 0, 0], [2, 2, 2], [2, 2, 2]]).all()
    stroke.undo(labels)
    assert (labels[0, 1] == 1).all()


def test_overlapping_structure_mask_is_painted_alone() -> None:
    masks = np.zeros((2, *SHAPE), np.uint8)
    stroke = paint(masks, Dab("axial", 1, (2, 2), radius=0), value=1, structure=1)
    assert masks[1, 1, 2, 2] == 1 and masks.sum() == 1
    stroke.undo(masks)
    assert masks.sum() == 0


def test_paint_refuses_a_non_contiguous_array() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        paint(np.zeros((6, 6), np.uint8)[:, ::2], Dab("axial", 0, (0, 0), 0), 1)
