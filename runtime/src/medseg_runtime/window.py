"""Gaussian-weighted sliding window with mirroring TTA, streamed along the first spatial axis.

The same windows, batches, weights and order of summation as medseg's ``inference/sliding_window.py``; the
averaged logits are handed out row block by row block (:func:`logit_rows`) as soon as no later window
touches them, so at most two ``(K, patch0, *spatial[1:])`` slabs are held, never a ``(K, *spatial)`` map.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["Network", "logit_rows", "mirror_combinations", "window_starts"]

Network = Callable[[np.ndarray], np.ndarray]  # (B, C, *patch) float32 -> (B, K, *patch) float32


def window_starts(image_size: Sequence[int], patch_size: Sequence[int], overlap: float) -> list[list[int]]:
    """Start positions per axis: the fewest windows with step ``patch * (1 - overlap)``, spread evenly."""
    starts = []
    for n, p in zip(image_size, patch_size, strict=True):
        last = n - p
        count = math.ceil(last / max(p * (1 - overlap), 1)) + 1
        starts.append([round(i * last / (count - 1)) for i in range(count)] if count > 1 else [0])
    return starts


def mirror_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """All subsets of ``axes``, the empty one first."""
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(tuple(axes), r)]


def _mirrored(net: Network, axes: Sequence[int]) -> Network:
    """``net`` averaged over every flip of ``axes``; all flips run as one batch."""
    combos = mirror_combinations(axes)

    def forward(x: np.ndarray) -> np.ndarray:
        flips = [tuple(a + 2 for a in c) for c in combos]
        out = net(np.concatenate([np.flip(x, f) if f else x for f in flips]))
        parts = np.split(out, len(flips))
        total = parts[0]
        for f, part in zip(flips[1:], parts[1:], strict=True):
            total = total + np.flip(part, f)
        return total / np.float32(len(combos))

    return forward


def _pad(image: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    before = [max(p - n, 0) // 2 for n, p in zip(image.shape[1:], patch, strict=True)]
    after = [max(p - n, 0) - b for n, p, b in zip(image.shape[1:], patch, before, strict=True)]
    if not any(before) and not any(after):
        return image, before
    return np.pad(image, [(0, 0), *zip(before, after, strict=True)]), before


def logit_rows(
    net: Network,
    image: np.ndarray,
    patch: tuple[int, ...],
    overlap: float,
    batch_size: int,
    *,
    mirror_axes: tuple[int, ...],
    weight: np.ndarray,
) -> Iterator[np.ndarray]:
    """Averaged logits of ``image`` (C, *spatial) in consecutive blocks ``(K, n, *spatial[1:])`` along axis 0.

    ``weight`` is the ``(*patch)`` importance map; images smaller than the patch are zero-padded and the
    padding is cut off again.
    """
    padded, before = _pad(image, patch)
    size = image.shape[1:]
    rest = tuple(slice(b, b + n) for b, n in zip(before[1:], size[1:], strict=True))
    forward = _mirrored(net, mirror_axes) if mirror_axes else net
    starts = itertools.product(*window_starts(padded.shape[1:], patch, overlap))
    boxes = [tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True)) for start in starts]
    slab_start, total, weight_sum = 0, None, np.zeros((patch[0], *padded.shape[2:]), dtype=np.float32)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        out = forward(np.stack([padded[(slice(None), *box)] for box in chunk])).astype(np.float32, copy=False)
        for box, prediction in zip(chunk, out * weight, strict=True):
            if total is None:
                total = np.zeros((prediction.shape[0], *weight_sum.shape), dtype=np.float32)
            if box[0].start != slab_start:  # rows before the new start are final
                shift = box[0].start - slab_start
                yield from _finished(total[:, :shift], weight_sum[:shift], slab_start, before[0], size[0], rest)
                total = np.concatenate([total[:, shift:], np.zeros_like(total[:, :shift])], axis=1)
                weight_sum = np.concatenate([weight_sum[shift:], np.zeros_like(weight_sum[:shift])])
                slab_start = box[0].start
            total[(slice(None), slice(None), *box[1:])] += prediction
            weight_sum[(slice(None), *box[1:])] += weight
    assert total is not None
    yield from _finished(total, weight_sum, slab_start, before[0], size[0], rest)


def _finished(
    total: np.ndarray, weight_sum: np.ndarray, start: int, pad: int, size: int, rest: tuple[slice, ...]
) -> Iterator[np.ndarray]:
    """Rows ``[start, start + len)`` of the padded grid, cut to the image (``pad`` rows in front, ``size`` rows)."""
    lo, hi = max(start, pad), min(start + total.shape[1], pad + size)
    if lo < hi:
        rows = slice(lo - start, hi - start)
        yield total[(slice(None), rows, *rest)] / weight_sum[(rows, *rest)]
