"""The side panel's widgets: the structure table and the display and editing controls.

Thin widgets: they show values and emit what the user changed; the window decides what follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

import medseg
from medseg.apps.gui.display import CT_PRESETS

__all__ = ["AUTO", "ClassTable", "Controls"]

AUTO = "auto-contrast"  # the window choice for MR, X-ray and microscopy


class ClassTable(QTableWidget):
    """One row per structure: colour swatch + name, size (ml, mm² or voxels) and the model's confidence."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 4, parent)
        self.setHorizontalHeaderLabels(["structure", "size", "unit", "confidence"])
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setStretchLastSection(True)

    def fill(self, rows: Sequence[medseg.StructureSize], colours: np.ndarray, offset: int = 0) -> None:
        """Show ``rows``; structure k gets ``colours[k + offset]`` as its swatch."""
        self.setRowCount(len(rows))
        for i, row in enumerate(rows):
            name = QTableWidgetItem(row.name)
            name.setData(Qt.ItemDataRole.DecorationRole, QColor(*(int(c) for c in colours[row.index + offset])))
            size = f"{row.size:.0f}" if row.unit == "voxels" else f"{row.size:.2f}"
            confidence = "—" if row.confidence is None else f"{row.confidence:.2f}"
            cells = (name, QTableWidgetItem(size), QTableWidgetItem(row.unit), QTableWidgetItem(confidence))
            for j, item in enumerate(cells):
                self.setItem(i, j, item)
        self.resizeColumnsToContents()

    def cell_text(self, row: int, column: int) -> str:
        item = self.item(row, column)
        return item.text() if item is not None else ""


class Controls(QWidget):
    """Window/level, overlay opacity, and the editing tool (navigate, brush, eraser), class and brush size.

    Signals: ``window_changed(name)`` (a CT preset or :data:`AUTO`), ``opacity_changed(0..1)``,
    ``tool_changed(name)`` ('navigate', 'brush', 'eraser').
    """

    window_changed = Signal(str)
    opacity_changed = Signal(float)
    tool_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        self.window_choice = QComboBox()
        self.window_choice.addItems([AUTO, *CT_PRESETS])
        self.window_choice.currentTextChanged.connect(self.window_changed)
        form.addRow("window", self.window_choice)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        form.addRow("overlay opacity", self.opacity)
        tools = QHBoxLayout()
        self.tools = QButtonGroup(self)
        for name in ("navigate", "brush", "eraser"):
            button = QRadioButton(name)
            button.setObjectName(name)
            button.setChecked(name == "navigate")
            self.tools.addButton(button)
            tools.addWidget(button)
        self.tools.buttonToggled.connect(self._toggled)
        form.addRow("tool", tools)
        self.structure = QComboBox()
        form.addRow("structure", self.structure)
        self.brush_size = QSpinBox()
        self.brush_size.setRange(0, 50)
        self.brush_size.setValue(3)
        self.brush_size.setSuffix(" px radius")
        form.addRow("brush", self.brush_size)
        self.hint = QLabel("wheel: slice · Ctrl+wheel: zoom · right drag: pan")
        form.addRow(self.hint)

    def _toggled(self, button: QRadioButton, on: bool) -> None:
        if on:
            self.tool_changed.emit(button.objectName())

    @property
    def tool(self) -> str:
        checked = self.tools.checkedButton()
        return checked.objectName() if checked is not None else "navigate"

    def set_tool(self, name: str) -> None:
        for button in self.tools.buttons():
            if button.objectName() == name:
                button.setChecked(True)

    def set_structures(self, structures: dict[int, str]) -> None:
        """The structures the brush can paint (index -> name)."""
        self.structure.clear()
        for k, name in structures.items():
            self.structure.addItem(name, k)

    @property
    def structure_index(self) -> int | None:
        data = self.structure.currentData()
        return None if data is None else int(data)
