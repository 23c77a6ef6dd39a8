"""Brush and eraser on a label map, as pure numpy (no Qt): a :class:`Stroke` remembers the voxels it changed
and their old values, so the window's undo stack can take it back and do it again.

The brush is a disk of ``radius`` pixels in the slice being drawn on (one slice thick). On a label map
``(*spatial)`` the brush writes the class index and the eraser turns that class (only) to 0; on overlapping structures
``(K, *spatial)`` both act on the chosen structure's mask only (1 or 0).

Example:
    >>> labels = np.zeros((1, 5, 5), np.uint8)
    >>> stroke = paint(labels, Dab("axial", 0, (2, 2), radius=1), value=3)
    >>> int(labels.sum() // 3), stroke.undo(labels), int(labels.sum())
    (9, None, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.apps.gui.scan import plane_shape, voxel_of

__all__ = ["Dab", "Stroke", "disk", "paint"]


@dataclass(frozen=True)
class Dab:
    """One touch of the brush: slice ``index`` of ``plane``, centre pixel ``(row, col)``, radius in pixels
    (0: the centre pixel alone)."""

    plane: str
    index: int
    centre: tuple[int, int]
    radius: int


@dataclass
class Stroke:
    """The voxels a brush changed (flat indices into the target array), their old values and the new value;
    ``structure`` is the mask changed for overlapping structures (None for a label map)."""

    indices: np.ndarray
    old: np.ndarray
    value: int
    structure: int | None = None

    def _target(self, labels: np.ndarray) -> np.ndarray:
        return (labels if self.structure is None else labels[self.structure]).reshape(-1)

    def undo(self, labels: np.ndarray) -> None:
        """Put the old values back."""
        self._target(labels)[self.indices] = self.old

    def redo(self, labels: np.ndarray) -> None:
        """Apply the stroke again."""
        self._target(labels)[self.indices] = self.value

    def extend(self, other: Stroke) -> None:
        """Merge a later stroke on the same target into this one (one undo step for a whole drag)."""
        new = ~np.isin(other.indices, self.indices)
        self.indices = np.concatenate([self.indices, other.indices[new]])
        self.old = np.concatenate([self.old, other.old[new]])


def disk(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the pixels within ``radius`` of the centre (Euclidean)."""
    r = max(int(radius), 0)
    rows, cols = np.mgrid[-r : r + 1, -r : r + 1]
    inside = rows**2 + cols**2 <= r * r + r  # + r: a round disk rather than a diamond at small radii
    return rows[inside], cols[inside]


def paint(labels: np.ndarray, dab: Dab, value: int, structure: int | None = None, only: int | None = None) -> Stroke:
    """Write ``value`` in the disk of ``dab`` into ``labels`` (in place) and return the :class:`Stroke`.

    ``structure`` picks the mask of overlapping structures ``(K, *spatial)``; None for a label map. ``only``
    limits the change to voxels holding that value (the eraser of one class leaves the other classes alone)."""
    target = labels if structure is None else labels[structure]
    if not target.flags.c_contiguous:
        raise ValueError("paint needs a C-contiguous label array (it writes through a flat view)")
    shape = target.shape
    rows_n, cols_n = plane_shape(shape, dab.plane)
    dr, dc = disk(dab.radius)
    rows, cols = dr + dab.centre[0], dc + dab.centre[1]
    keep = (rows >= 0) & (rows < rows_n) & (cols >= 0) & (cols < cols_n)
    pixels = zip(rows[keep].tolist(), cols[keep].tolist(), strict=True)
    voxels = [voxel_of(dab.plane, dab.index, pixel, shape) for pixel in pixels]
    if not voxels:
        return Stroke(np.zeros(0, np.int64), np.zeros(0, target.dtype), value, structure)
    flat = np.ravel_multi_index(tuple(np.array(voxels).T), shape).astype(np.int64)
    view = target.reshape(-1)
    current = view[flat]
    changed = flat[(current != value) & ((current == only) if only is not None else True)]
    stroke = Stroke(changed, view[changed].copy(), value, structure)
    view[changed] = value
    return stroke
