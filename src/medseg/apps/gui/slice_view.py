"""One plane of the scan on screen: the slice picture (scan + overlay, drawn by the window), the crosshair, and
the mouse: wheel scrolls slices, Ctrl+wheel zooms, middle or right drag pans, left click moves the crosshair
(or paints, when a brush is active).

The view knows pixels and signals; what a slice shows and what a click does are the window's business.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPixmap, QTransform, QWheelEvent
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

__all__ = ["SliceView", "rgb_to_qimage"]


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An (H, W, 3) uint8 array as a QImage (copied: the array may change afterwards)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class SliceView(QGraphicsView):
    """A zoomable, pannable view of one plane's slice.

    Signals: ``scrolled(plane, steps)`` (wheel without Ctrl), ``pressed(plane, row, col)`` on a left press and
    ``dragged(plane, row, col)`` while the left button moves, ``released(plane)`` when it lets go.
    """

    scrolled = Signal(str, int)
    pressed = Signal(str, int, int)
    dragged = Signal(str, int, int)
    released = Signal(str)

    def __init__(self, plane: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plane = plane
        self.setScene(QGraphicsScene(self))
        self.pixmap = QGraphicsPixmapItem()
        self.pixmap.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self.scene().addItem(self.pixmap)
        pen = QPen(QColor(255, 255, 0, 160), 0)
        self.lines = (QGraphicsLineItem(), QGraphicsLineItem())
        for line in self.lines:
            line.setPen(pen)
            self.scene().addItem(line)
        self.setBackgroundBrush(QColor(0, 0, 0))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setMinimumSize(160, 160)
        self._pan_from: QPointF | None = None
        self._drawing = False
        self._fitted = False

    def show_slice(self, rgb: np.ndarray, pixel_size: tuple[float, float]) -> None:
        """Show an (H, W, 3) uint8 picture whose pixels are ``pixel_size`` (row, col) mm."""
        self.image = rgb_to_qimage(rgb)
        self.pixmap.setPixmap(QPixmap.fromImage(self.image))
        self.pixmap.setTransform(QTransform.fromScale(pixel_size[1], pixel_size[0]))
        self.scene().setSceneRect(self.pixmap.sceneBoundingRect())
        if not self._fitted:
            self.fit()

    def fit(self) -> None:
        """Zoom so the whole slice is visible."""
        self.fitInView(self.pixmap, Qt.AspectRatioMode.KeepAspectRatio)
        self._fitted = True

    def set_crosshair(self, row: int, col: int) -> None:
        """Put the crosshair through the centre of pixel ``(row, col)``."""
        rect = self.pixmap.sceneBoundingRect()
        point = self.pixmap.mapToScene(QPointF(col + 0.5, row + 0.5))
        self.lines[0].setLine(rect.left(), point.y(), rect.right(), point.y())
        self.lines[1].setLine(point.x(), rect.top(), point.x(), rect.bottom())

    def zoom(self, factor: float) -> None:
        self.scale(factor, factor)

    def pixel_at(self, event: QMouseEvent) -> tuple[int, int]:
        """(row, col) of the slice pixel under the mouse (may lie outside the slice)."""
        point = self.pixmap.mapFromScene(self.mapToScene(event.position().toPoint()))
        return int(np.floor(point.y())), int(np.floor(point.x()))

    # ------------------------------------------------------------------------------------------ mouse

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() // 120 or (1 if event.angleDelta().y() > 0 else -1)
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.25**steps)
        else:
            self.scrolled.emit(self.plane, int(steps))
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton):
            self._pan_from = event.position()
        elif event.button() == Qt.MouseButton.LeftButton:
            self._drawing = True
            self.pressed.emit(self.plane, *self.pixel_at(event))
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            for bar, step in ((self.horizontalScrollBar(), delta.x()), (self.verticalScrollBar(), delta.y())):
                bar.setValue(bar.value() - int(step))
        elif self._drawing:
            self.dragged.emit(self.plane, *self.pixel_at(event))
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drawing and event.button() == Qt.MouseButton.LeftButton:
            self._drawing = False
            self.released.emit(self.plane)
        self._pan_from = None
        event.accept()
