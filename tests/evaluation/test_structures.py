"""Structure sizes (ml, mm², voxels) and confidences against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.evaluation.structures import StructureSize, structure_sizes

NAMES = {0: "background", 1: "liver", 2: "tumour"}


def test_volume_in_ml_from_spacing() -> None:
    labels = np.zeros((4, 10, 10), np.uint8)
    labels[:2, :5, :5] = 1  # 50 voxels of 3 x 0.5 x 0.5 mm = 0.75 mm³ -> 37.5 mm³ = 0.0375 ml
    labels[3, 9, 9] = 2
    rows = structure_sizes(labels, (3.0, 0.5, 0.5), NAMES)
    assert rows == [
        StructureSize(1, "liver", 50, pytest.approx(0.0375), "ml"),
        StructureSize(2, "tumour", 1, pytest.approx(0.00075), "ml"),
    ]


def test_area_in_mm2_for_2d_and_voxels_without_spacing() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[1:3, 1:4] = 2  # 6 pixels of 0.2 x 0.3 mm = 0.36 mm²
    (liver, tumour) = structure_sizes(labels, (0.2, 0.3), NAMES)
    assert (liver.voxels, liver.size, liver.unit) == (0, 0.0, "mm²")
    assert (tumour.voxels, tumour.size, tumour.unit) == (6, pytest.approx(0.36), "mm²")
    (_, tumour) = structure_sizes(labels, (1.0, 1.0), NAMES, physical=False)
    assert (tumour.size, tumour.unit) == (6.0, "voxels")


def test_confidence_is_the_mean_probability_inside_the_structure() -> None:
    labels = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    probabilities = np.zeros((3, 2, 3), np.float32)
    probabilities[1] = [[0.1, 0.9, 0.7], [0.0, 0.0, 0.2]]
    probabilities[2] = [[0.0, 0.0, 0.0], [0.6, 0.4, 0.0]]
    liver, tumour = structure_sizes(labels, (1.0, 1.0), NAMES, probabilities=probabilities)
    assert liver.confidence == pytest.approx(0.8)
    assert tumour.confidence == pytest.approx(0.5)
    empty = structure_sizes(np.zeros((2, 3), np.uint8), (1.0, 1.0), NAMES, probabilities=probabilities)
    assert [r.confidence for r in empty] == [None, None]


def test_overlapping_structures_are_masks_each() -> None:
    masks = np.zeros((2, 2, 4, 4), np.uint8)
    masks[0, 0] = 1  # 16 voxels of 1 mm³
    masks[1, :, :2, :2] = 1  # 8 voxels, overlapping the first in 4
    rows = structure_sizes(masks, (1.0, 1.0, 1.0), {0: "a", 1: "b"}, overlapping=True)
    assert [(r.name, r.voxels, r.size) for r in rows] == [("a", 16, 0.016), ("b", 8, 0.008)]


def test_labels_must_match_the_spacing() -> None:
    with pytest.raises(ValueError, match="do not match"):
        structure_sizes(np.zeros((2, 2), np.uint8), (1.0, 1.0, 1.0), NAMES)
