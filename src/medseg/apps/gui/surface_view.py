"""The 3D view: each segmented structure's surface (``medseg.structure_surfaces``, marching cubes) in its class
colour, rotatable with the mouse.

Rendered by matplotlib's mplot3d in a ``FigureCanvasQTAgg``: software rendering, so it works offscreen and
without a GPU or OpenGL (pyqtgraph's OpenGL view would need both). matplotlib loads when the first surfaces are
shown, not when the window opens. Large meshes are drawn with a coarser marching-cubes step to stay
interactive; the export (``medseg.write_stl`` / ``medseg.write_obj``) always uses full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

__all__ = ["SurfaceView"]

MAX_DRAWN_FACES = 60_000  # in all; beyond, faces are subsampled for drawing only


class SurfaceView(QWidget):
    """Shows surfaces; ``show_surfaces([])`` shows a hint instead."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hint = QLabel("3D view: segment a scan to see its structures here (drag to rotate).")
        self.hint.setWordWrap(True)
        self.column = QVBoxLayout(self)
        self.column.addWidget(self.hint)
        self.canvas: Any = None
        self.drawn_faces = 0

    def _make_canvas(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.canvas = FigureCanvasQTAgg(Figure(figsize=(4, 4), tight_layout=True))
        self.column.addWidget(self.canvas)

    def show_surfaces(self, surfaces: Sequence[Any], colours: np.ndarray, offset: int = 0) -> None:
        """Draw ``surfaces`` (``medseg.Surface``), structure k in ``colours[k + offset]`` (RGB uint8)."""
        self.hint.setVisible(not surfaces)
        if not surfaces:
            if self.canvas is not None:
                self.canvas.figure.clear()
                self.canvas.draw_idle()
            return
        if self.canvas is None:
            self._make_canvas()
        from mpl_toolkits.mplot3d.art3d import Poly3DCollection

        figure = self.canvas.figure
        figure.clear()
        axes = figure.add_subplot(projection="3d")
        total = sum(len(s.faces) for s in surfaces)
        stride = max(1, int(np.ceil(total / MAX_DRAWN_FACES)))
        self.drawn_faces = 0
        for surface in surfaces:
            faces = surface.faces[::stride]
            colour = colours[surface.index + offset] / 255.0
            axes.add_collection3d(
                Poly3DCollection(
                    surface.vertices[faces], facecolors=colour, edgecolor="none", shade=True, label=surface.name
                )
            )
            self.drawn_faces += len(faces)
        points = np.concatenate([s.vertices for s in surfaces])
        low, high = points.min(axis=0), points.max(axis=0)
        centre, half = (low + high) / 2, float((high - low).max()) / 2 or 1.0
        for setter, c in zip((axes.set_xlim, axes.set_ylim, axes.set_zlim), centre, strict=True):
            setter(c - half, c + half)
        axes.set_box_aspect((1, 1, 1))
        axes.set_xlabel("x (mm)")
        axes.set_ylabel("y (mm)")
        axes.set_zlabel("z (mm)")
        axes.legend(loc="upper left", fontsize="small")
        self.canvas.draw_idle()
