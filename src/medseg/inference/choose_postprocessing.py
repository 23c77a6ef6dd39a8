"""Post-processing chosen on out-of-fold predictions, kept only where it raises Dice (nnU-Net's rule, widened).

Three passes over the cases (each pass re-reads them through ``cases()``, so nothing but per-case Dice is
held in memory):

1. all foreground as one: keep the largest connected component of the union of the classes; kept when the
   mean foreground Dice over cases and classes rises (only with two or more classes);
2. per class, on top of step 1: nothing, the largest component, or removing components smaller than
   a quarter, a half or all of the smallest reference component of that class, each with and without hole
   filling; the option with the highest mean Dice of that class is kept when it beats doing nothing by more
   than ``min_gain`` (ties keep the simpler option);
3. the whole sequence applied to every case: its Dice is what is reported. If the classes' choices together
   lower the mean (they interact through the background), only step 1 is kept, or nothing.

The score is the plain mean of per-case Dice (both masks empty counts 1, as in :mod:`medseg.evaluation.metrics`).
Label maps hold class indices ``(*spatial)``; overlapping structures are ``(K, *spatial)`` masks and their
"classes" are structure indices.

Example:
    >>> ref = np.zeros((8, 8), np.uint8); ref[2:5, 2:5] = 1
    >>> pred = ref.copy(); pred[7, 7] = 1                    # a stray voxel
    >>> choice = choose_postprocessing(lambda: [(pred, ref)], [1], overlapping=False)
    >>> choice.dice_postprocessed > choice.dice
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.config.postprocessing import PostProcessing
from medseg.evaluation.metrics import dice
from medseg.inference.postprocessing import apply_steps, apply_steps_masks

__all__ = ["PostProcessingChoice", "choose_postprocessing"]

Cases = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # -> (prediction, reference) per case


@dataclass(frozen=True)
class PostProcessingChoice:
    """The steps kept and the mean foreground Dice (over cases, then classes) before and after them."""

    steps: tuple[PostProcessing, ...]
    dice: float
    dice_postprocessed: float
    per_class: dict[int, float]  # class -> mean Dice before
    per_class_postprocessed: dict[int, float]


def _mask(array: np.ndarray, k: int, overlapping: bool) -> np.ndarray:
    return array[k] > 0 if overlapping else array == k


def _apply(array: np.ndarray, steps: Sequence[PostProcessing], overlapping: bool) -> np.ndarray:
    return apply_steps_masks(array, steps) if overlapping else apply_steps(array, steps)


def _dices(pred: np.ndarray, ref: np.ndarray, classes: Sequence[int], overlapping: bool) -> list[float]:
    return [dice(_mask(pred, k, overlapping), _mask(ref, k, overlapping)) for k in classes]


def _smallest_component(mask: np.ndarray) -> int:
    """Voxels of the smallest full-connectivity component of ``mask`` (0 when empty)."""
    ids, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    return int(np.bincount(ids.ravel())[1:].min()) if n else 0


def _options(k: int, smallest: int) -> list[PostProcessing]:
    """Per-class candidates of step 2, simplest first (index 0: nothing)."""
    cls = (k,)
    sizes = sorted({max(2, smallest // 4), max(2, smallest // 2), max(2, smallest)}) if smallest > 1 else []
    removals = [
        PostProcessing(classes=cls),
        PostProcessing(largest_component=True, classes=cls),
        *(PostProcessing(min_voxels=s, classes=cls) for s in sizes),
    ]
    return [*removals, *(PostProcessing(p.largest_component, p.min_voxels, True, cls) for p in removals)]


def choose_postprocessing(
    cases: Cases, classes: Sequence[int], *, overlapping: bool, min_gain: float = 0.0
) -> PostProcessingChoice:
    """Choose post-processing on (prediction, reference) pairs; see the module docstring for the rule."""
    classes = list(classes)
    fg = PostProcessing(foreground_component=True)
    try_fg = len(classes) > 1
    before: list[list[float]] = []
    with_fg: list[list[float]] = []
    smallest = dict.fromkeys(classes, 0)
    for pred, ref in cases():  # pass 1
        before.append(_dices(pred, ref, classes, overlapping))
        if try_fg:
            with_fg.append(_dices(_apply(pred, [fg], overlapping), ref, classes, overlapping))
        for k in classes:
            size = _smallest_component(_mask(ref, k, overlapping))
            if size and (smallest[k] == 0 or size < smallest[k]):
                smallest[k] = size
    if not before:
        raise ValueError("choose_postprocessing needs at least one case")
    base = np.asarray(before).mean(axis=0)
    keep_fg = try_fg and float(np.asarray(with_fg).mean()) > float(base.mean()) + min_gain
    first = [fg] if keep_fg else []

    options = {k: _options(k, smallest[k]) for k in classes}
    scores = {k: np.zeros(len(options[k])) for k in classes}
    n = 0
    for pred, ref in cases():  # pass 2
        start = _apply(pred, first, overlapping)
        for k in classes:
            ref_k = _mask(ref, k, overlapping)
            for j, option in enumerate(options[k]):
                out = start if j == 0 else _apply(start, [option], overlapping)
                scores[k][j] += dice(_mask(out, k, overlapping), ref_k)
        n += 1
    per_class_steps = []
    for k in classes:
        mean = scores[k] / n
        best = int(np.argmax(mean))  # the first maximum: the simplest of equals
        if best != 0 and mean[best] > mean[0] + min_gain:
            per_class_steps.append(options[k][best])

    steps = (*first, *per_class_steps)
    after = np.asarray([_dices(_apply(p, steps, overlapping), r, classes, overlapping) for p, r in cases()])
    after_mean = after.mean(axis=0)
    if per_class_steps and after_mean.mean() < (np.asarray(with_fg).mean(axis=0) if keep_fg else base).mean():
        steps, after_mean = tuple(first), (np.asarray(with_fg).mean(axis=0) if keep_fg else base)
    return PostProcessingChoice(
        steps=steps,
        dice=float(base.mean()),
        dice_postprocessed=float(after_mean.mean()),
        per_class=dict(zip(classes, map(float, base), strict=True)),
        per_class_postprocessed=dict(zip(classes, map(float, after_mean), strict=True)),
    )
