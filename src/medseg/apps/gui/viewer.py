"""The views of one scan together: axial, coronal and sagittal :class:`SliceView` s sharing one crosshair
(a click in one moves the other two to that voxel), the overlay drawn over each, and brush strokes.

A 2D image shows in the axial view alone. The 3D surfaces live beside, in the window.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from medseg.apps.gui.brush import Dab, Stroke, paint
from medseg.apps.gui.display import Window, blend_overlay, class_colours, to_rgb
from medseg.apps.gui.scan import PLANES, Scan, pixel_of, plane_shape, plane_slice, plane_spacing, voxel_of
from medseg.apps.gui.session import Segmentation
from medseg.apps.gui.slice_view import SliceView

__all__ = ["Viewer"]

_FIXED = {"axial": 0, "coronal": 1, "sagittal": 2}


class Viewer(QWidget):
    """Three linked slice views of a scan and its segmentation.

    Signals: ``stroke_done(stroke)`` when a brush drag ends (the stroke is applied already),
    ``cursor_moved(voxel)`` when the crosshair moves.
    """

    stroke_done = Signal(object)
    cursor_moved = Signal(tuple)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.views = {plane: SliceView(plane) for plane in PLANES}
        for view, cell in zip(self.views.values(), ((0, 0), (0, 1), (1, 0)), strict=True):
            grid.addWidget(view, *cell)
            view.scrolled.connect(self.scroll_slice)
            view.pressed.connect(self._press)
            view.dragged.connect(self._drag)
            view.released.connect(self._release)
        self.grid = grid
        self.scan: Scan | None = None
        self.segmentation: Segmentation | None = None
        self.display_window: Window | None = None
        self.opacity = 0.5
        self.crosshair: tuple[int, ...] = ()
        self.tool = "navigate"
        self.brush: Callable[[], tuple[int | None, int]] = lambda: (None, 0)  # (structure, radius) of the panel
        self._stroke: Stroke | None = None

    @property
    def colours(self) -> np.ndarray:
        """Colour per class index (overlapping structures: structure k is row k + 1)."""
        n = len(self.segmentation.spec.names) if self.segmentation is not None else 1
        return class_colours(n + 1)

    @property
    def colour_offset(self) -> int:
        return int(self.segmentation is not None and self.segmentation.overlapping)

    def set_scan(self, scan: Scan, window: Window | None) -> None:
        """Show a newly opened scan (no segmentation), crosshair at its centre."""
        self.scan, self.segmentation, self.display_window = scan, None, window
        self.crosshair = tuple(s // 2 for s in scan.shape)
        for plane, view in self.views.items():
            view.setVisible(plane in scan.planes)
            view._fitted = False
        self.refresh()

    def set_segmentation(self, segmentation: Segmentation | None) -> None:
        self.segmentation = segmentation
        self.refresh()

    def set_window(self, window: Window | None) -> None:
        self.display_window = window
        self.refresh()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        self.refresh()

    def slice_rgb(self, plane: str) -> np.ndarray:
        """The (H, W, 3) picture of ``plane`` at the crosshair: the scan windowed, the overlay blended."""
        assert self.scan is not None
        scan, ndim = self.scan, len(self.scan.shape)
        index = self.crosshair[_FIXED[plane]] if ndim == 3 else 0
        image = scan.image if scan.is_rgb else scan.image[0]
        base = to_rgb(plane_slice(image, plane, index, ndim), self.display_window)
        if self.segmentation is None or self.opacity <= 0:
            return base
        labels = plane_slice(self.segmentation.labels, plane, index, ndim)
        return blend_overlay(base, labels, self.colours, self.opacity, overlapping=self.segmentation.overlapping)

    def refresh(self) -> None:
        """Redraw every visible plane and its crosshair."""
        if self.scan is None:
            return
        for plane in self.scan.planes:
            view = self.views[plane]
            view.show_slice(self.slice_rgb(plane), plane_spacing(self.scan.geometry.spacing, plane))
            view.set_crosshair(*pixel_of(plane, self.crosshair, self.scan.shape))

    def scroll_slice(self, plane: str, steps: int) -> None:
        """Move ``plane``'s slice by ``steps`` (the crosshair follows)."""
        if self.scan is None or len(self.scan.shape) == 2:
            return
        axis = _FIXED[plane]
        cursor = list(self.crosshair)
        cursor[axis] = int(np.clip(cursor[axis] + steps, 0, self.scan.shape[axis] - 1))
        self.move_cursor(tuple(cursor))

    def move_cursor(self, voxel: tuple[int, ...]) -> None:
        self.crosshair = voxel
        self.refresh()
        self.cursor_moved.emit(voxel)

    # -------------------------------------------------------------------------------- mouse on a view

    def _inside(self, plane: str, row: int, col: int) -> bool:
        assert self.scan is not None
        rows, cols = plane_shape(self.scan.shape, plane)
        return 0 <= row < rows and 0 <= col < cols

    def _press(self, plane: str, row: int, col: int) -> None:
        self._stroke = None
        self._drag(plane, row, col)

    def _drag(self, plane: str, row: int, col: int) -> None:
        if self.scan is None:
            return
        if self.tool == "navigate" or self.segmentation is None:
            if self._inside(plane, row, col):
                index = self.crosshair[_FIXED[plane]] if len(self.scan.shape) == 3 else 0
                self.move_cursor(voxel_of(plane, index, (row, col), self.scan.shape))
            return
        self.dab(plane, row, col)

    def dab(self, plane: str, row: int, col: int) -> None:
        """One brush (or eraser) touch at slice pixel ``(row, col)`` of ``plane`` at the crosshair's slice."""
        assert self.scan is not None and self.segmentation is not None
        structure, radius = self.brush()
        if structure is None:
            return
        index = self.crosshair[_FIXED[plane]] if len(self.scan.shape) == 3 else 0
        dab = Dab(plane, index, (row, col), radius)
        erase = self.tool == "eraser"
        if self.segmentation.overlapping:
            stroke = paint(self.segmentation.labels, dab, 0 if erase else 1, structure)
        else:
            stroke = paint(self.segmentation.labels, dab, 0 if erase else structure, only=structure if erase else None)
        if self._stroke is None:
            self._stroke = stroke
        else:
            self._stroke.extend(stroke)
        self.refresh()

    def _release(self, plane: str) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke is not None and len(stroke.indices):
            self.stroke_done.emit(stroke)
