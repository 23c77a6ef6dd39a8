"""Post-processing chosen on out-of-fold predictions: kept only where it raises Dice, with the reported Dice
equal to what applying the chosen steps gives (computed here independently)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.config.postprocessing import PostProcessing
from medseg.evaluation.metrics import dice
from medseg.inference.choose_postprocessing import choose_postprocessing
from medseg.inference.postprocessing import apply_postprocessing, apply_steps, apply_steps_masks


def _square(shape: tuple[int, int], y: int, x: int, size: int, value: int = 1, out: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    out = np.zeros(shape, np.uint8) if out is None else out
    out[y : y + size, x : x + size] = value
    return out


def _mean_dice(pairs, steps, classes):  # type: ignore[no-untyped-def]
    return float(
        np.mean([[dice(apply_steps(p, steps) == k, r == k) for k in classes] for p, r in pairs], axis=0).mean()
    )


def test_a_stray_component_is_removed_and_the_dice_is_the_hand_computed_one() -> None:
    ref = _square((20, 20), 2, 2, 4)  # 16 voxels
    pred = ref.copy()
    pred[15:17, 15:17] = 1  # 4 stray voxels: Dice 2*16 / (20 + 16) = 0.8889
    choice = choose_postprocessing(lambda: [(pred, ref)], [1], overlapping=False)
    assert choice.dice == pytest.approx(32 / 36)
    assert choice.dice_postprocessed == pytest.approx(1.0)
    # largest component and small-component removal tie; the simpler (largest component) is kept
    assert choice.steps == (PostProcessing(largest_component=True, classes=(1,)),)


def test_nothing_is_kept_when_every_step_would_lower_dice() -> None:
    ref = _square((20, 20), 2, 2, 4)
    _square((20, 20), 12, 12, 4, out=ref)  # two true components
    pred = ref.copy()  # both components predicted exactly: every step can only tie or lose
    choice = choose_postprocessing(lambda: [(pred, ref)], [1], overlapping=False)
    assert choice.steps == () and choice.dice == choice.dice_postprocessed == pytest.approx(1.0)


def test_hole_filling_is_chosen_when_the_reference_is_solid() -> None:
    ref = _square((20, 20), 4, 4, 7)
    pred = ref.copy()
    pred[7, 7] = 0
    choice = choose_postprocessing(lambda: [(pred, ref)], [1], overlapping=False)
    assert choice.steps == (PostProcessing(fill_holes=True, classes=(1,)),)
    assert choice.dice_postprocessed == pytest.approx(1.0) and choice.dice < 1.0


def test_all_foreground_as_one_keeps_touching_classes_and_drops_a_far_blob() -> None:
    ref = _square((30, 30), 2, 2, 5, value=1)
    _square((30, 30), 2, 7, 5, value=2, out=ref)  # class 2 touches class 1
    pred = ref.copy()
    _square((30, 30), 24, 24, 3, value=2, out=pred)  # a far class-2 blob, smaller than the organ pair
    # per class alone, class 2's own largest component would also drop it; all-foreground comes first
    cases = [(pred, ref)]
    choice = choose_postprocessing(lambda: cases, [1, 2], overlapping=False)
    assert choice.steps[0] == PostProcessing(foreground_component=True)
    assert choice.dice_postprocessed == pytest.approx(1.0)
    assert choice.dice_postprocessed == pytest.approx(_mean_dice(cases, choice.steps, [1, 2]))


def test_the_choice_is_made_over_all_cases_not_per_case() -> None:
    """Largest component helps case a (a stray voxel) and hurts case b (two true components) more."""
    ref_a = _square((20, 20), 2, 2, 3)
    pred_a = ref_a.copy()
    pred_a[18, 18] = 1
    ref_b = _square((20, 20), 2, 2, 4)
    _square((20, 20), 12, 12, 4, out=ref_b)
    cases = [(pred_a, ref_a), (ref_b.copy(), ref_b)]
    choice = choose_postprocessing(lambda: cases, [1], overlapping=False)
    assert not any(s.largest_component for s in choice.steps)
    # removing components below the smallest reference component (9 voxels) helps a and leaves b alone
    assert choice.steps and choice.steps[0].min_voxels > 1
    assert choice.dice_postprocessed == pytest.approx(_mean_dice(cases, choice.steps, [1])) == pytest.approx(1.0)


def test_overlapping_structures_are_chosen_per_mask() -> None:
    ref = np.stack([_square((20, 20), 2, 2, 5), _square((20, 20), 4, 4, 5)])  # overlapping masks
    pred = ref.copy()
    pred[1, 17:19, 17:19] = 1  # a stray blob in structure 1 only
    choice = choose_postprocessing(lambda: [(pred, ref)], [0, 1], overlapping=True)
    assert choice.dice_postprocessed == pytest.approx(1.0)
    out = apply_steps_masks(pred, choice.steps)
    assert np.array_equal(out, ref)


def test_min_gain_keeps_small_improvements_out() -> None:
    ref = _square((40, 40), 2, 2, 10)  # 100 voxels
    pred = ref.copy()
    pred[38, 38] = 1  # Dice 200 / 201
    assert choose_postprocessing(lambda: [(pred, ref)], [1], overlapping=False).steps
    assert choose_postprocessing(lambda: [(pred, ref)], [1], overlapping=False, min_gain=0.01).steps == ()


def test_foreground_component_step_on_a_label_map() -> None:
    labels = _square((20, 20), 2, 2, 4, value=1)
    _square((20, 20), 2, 6, 4, value=2, out=labels)
    _square((20, 20), 15, 15, 2, value=1, out=labels)
    out = apply_postprocessing(labels, PostProcessing(foreground_component=True))
    expected = labels.copy()
    expected[15:17, 15:17] = 0
    assert np.array_equal(out, expected) and out.dtype == labels.dtype
    assert np.array_equal(labels[15:17, 15:17], np.ones((2, 2)))  # input untouched


def test_steps_on_masks_respect_their_classes() -> None:
    masks = np.stack([_square((10, 10), 0, 0, 2), _square((10, 10), 0, 0, 2)])
    masks[:, 8, 8] = 1
    out = apply_steps_masks(masks, [PostProcessing(largest_component=True, classes=(1,))])
    assert out[0, 8, 8] == 1 and out[1, 8, 8] == 0 and out.dtype == np.uint8
