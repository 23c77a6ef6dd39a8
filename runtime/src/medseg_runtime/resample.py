"""Linear resampling in numpy, computed as PyTorch's ``interpolate(mode='(bi|tri)linear', align_corners=False)``.

medseg's preprocessing resamples with torch; to give the same masks the runtime uses the same source
positions and weights (float32, half-pixel centres, clamped at 0) and the same order of operations: the
last axis first, the first axis last. :class:`RowResampler` does the first axis row by row, so network-grid
logits can be resampled to the scan's grid while the sliding window still runs (no full-volume float map).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["AxisWeights", "RowResampler", "axis_weights", "resample", "resample_axes"]

_BLOCK = 16  # rows of the first spatial axis resampled at a time


@dataclass(frozen=True)
class AxisWeights:
    """For each output index: the two source indices and their weights."""

    low: np.ndarray
    high: np.ndarray
    w_low: np.ndarray
    w_high: np.ndarray


def axis_weights(n_in: int, n_out: int) -> AxisWeights:
    """Torch's linear weights from ``n_in`` to ``n_out`` samples (``align_corners=False``), in float32."""
    scale = np.float32(n_in) / np.float32(n_out)  # float32, as torch's; the source position in double, then float32
    src = (np.float64(scale) * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    low = src.astype(np.int64)
    lam = np.clip(src - low.astype(np.float32), 0, 1).astype(np.float32)
    high = low + (low < n_in - 1)
    return AxisWeights(low, high, np.float32(1) - lam, lam)


def _along(array: np.ndarray, axis: int, w: AxisWeights, fused_low: bool) -> np.ndarray:
    """``low * w_low + high * w_high`` along ``axis`` with torch's rounding: its CPU kernel fuses one of the
    two products into the sum (an FMA; emulated in float64, where a product of two float32 is exact)."""
    shape = [1] * array.ndim
    shape[axis] = -1
    low, high = np.take(array, w.low, axis=axis), np.take(array, w.high, axis=axis)
    if fused_low:  # fma(low, w_low, high * w_high)
        rounded = (high * w.w_high.reshape(shape)).astype(np.float64)
        return (low.astype(np.float64) * w.w_low.reshape(shape) + rounded).astype(np.float32)
    rounded = (low * w.w_low.reshape(shape)).astype(np.float64)
    return (high.astype(np.float64) * w.w_high.reshape(shape) + rounded).astype(np.float32)


def resample_axes(array: np.ndarray, shape: tuple[int, ...], first: int, ndim: int) -> np.ndarray:
    """Resample the trailing spatial axes of ``array`` (``first`` = index of the first axis resampled) to
    ``shape``, last axis first; axes whose size does not change are left alone (torch's weights are 1, 0).
    ``ndim`` is the image's: torch's 2D kernel rounds its first axis differently from every other axis."""
    out = np.asarray(array, dtype=np.float32)
    for offset in reversed(range(len(shape))):
        axis = first + offset
        if out.shape[axis] != shape[offset]:
            spatial = ndim - len(shape) + offset  # which spatial axis of the image this is
            fused_low = not (ndim == 2 and spatial == 0)
            out = _along(out, axis, axis_weights(out.shape[axis], shape[offset]), fused_low)
    return out


def resample(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linearly resample ``array`` (C, *spatial) to ``shape``; float32 (returned as is when the shape matches)."""
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    out = np.empty((array.shape[0], *shape), dtype=np.float32)
    rows = RowResampler(array.shape[1], tuple(shape))
    for start in range(0, array.shape[1], _BLOCK):  # in blocks: the float64 temporaries stay small
        for first, block in rows.feed(array[:, start : start + _BLOCK]):
            out[:, first : first + block.shape[1]] = block
    return out


class RowResampler:
    """Resamples a ``(K, *spatial)`` map arriving in blocks of rows along axis 1 (spatial axis 0).

    :meth:`feed` takes the next rows of the source, :meth:`finish` flushes; both yield ``(start, rows)`` of
    the output, ``rows`` being ``(K, n, *shape[1:])``. Only the source rows still needed are kept.
    """

    def __init__(self, n_in: int, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.weights = w = axis_weights(n_in, shape[0])
        pair = [np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64)]
        self._pair = [AxisWeights(pair[0], pair[1], w.w_low[j : j + 1], w.w_high[j : j + 1]) for j in range(shape[0])]
        self.rows: dict[int, np.ndarray] = {}  # source row -> (K, *shape[1:]) resampled on the other axes
        self.available = 0  # source rows [0, available) have arrived
        self.next = 0  # the next output row

    def feed(self, block: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """One source row at a time: the float64 temporaries and the rows kept stay a few rows large."""
        for i in range(block.shape[1]):
            row = resample_axes(block[:, i : i + 1], self.shape[1:], first=2, ndim=len(self.shape))
            self.rows[self.available] = row[:, 0]
            self.available += 1
            yield from self._emit()

    def finish(self) -> Iterator[tuple[int, np.ndarray]]:
        yield from self._emit()

    def _emit(self) -> Iterator[tuple[int, np.ndarray]]:
        w, start, out = self.weights, self.next, []
        while self.next < self.shape[0] and w.high[self.next] < self.available:
            j = self.next
            low, high = self.rows[int(w.low[j])], self.rows[int(w.high[j])]
            out.append(_along(np.stack([low, high], axis=1), 1, self._pair[j], len(self.shape) != 2)[:, 0])
            self.next += 1
        if out:
            keep = int(w.low[self.next]) if self.next < self.shape[0] else self.available
            for row in [r for r in self.rows if r < keep]:
                del self.rows[row]
            yield start, np.stack(out, axis=1)
