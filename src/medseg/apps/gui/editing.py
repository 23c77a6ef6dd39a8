"""Undoable corrections: a brush stroke (a whole drag, already applied to the labels) as a ``QUndoCommand`` on
the window's ``QUndoStack``, so Edit > Undo / Redo (Ctrl+Z, Ctrl+Shift+Z) take it back and do it again.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtGui import QUndoCommand

from medseg.apps.gui.brush import Stroke

__all__ = ["StrokeCommand"]


class StrokeCommand(QUndoCommand):
    """One stroke on ``labels``; ``changed()`` is called after undo and redo so the window redraws."""

    def __init__(self, text: str, labels: np.ndarray, stroke: Stroke, changed: Callable[[], None]) -> None:
        super().__init__(text)
        self.labels, self.stroke, self.changed = labels, stroke, changed
        self._applied = True  # pushed after painting: the first redo() (QUndoStack.push calls it) does nothing

    def redo(self) -> None:
        if self._applied:
            self._applied = False
            return
        self.stroke.redo(self.labels)
        self.changed()

    def undo(self) -> None:
        self.stroke.undo(self.labels)
        self.changed()
