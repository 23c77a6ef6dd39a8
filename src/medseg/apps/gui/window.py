"""The main window: open a scan, choose a model, segment in the background, look, correct, save.

File > Open (a file, or a DICOM series folder), drag and drop, and Open Recent (kept in ``QSettings`` with the
last model); the side panel shows the scan's geometry, the model, the display and editing controls and the
structure table; Segment runs :class:`~medseg.apps.gui.worker.SegmentWorker` with a progress bar and Cancel.
Errors a user can cause (``medseg.MedsegError``) show in a dialog with the one line the CLI prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

import medseg
from medseg.apps.gui.display import Window
from medseg.apps.gui.editing import StrokeCommand
from medseg.apps.gui.panels import AUTO, ClassTable, Controls
from medseg.apps.gui.scan import Scan, load_scan
from medseg.apps.gui.session import Segmentation, default_mask_path, export_surfaces, save_mask
from medseg.apps.gui.surface_view import SurfaceView
from medseg.apps.gui.viewer import Viewer
from medseg.apps.gui.worker import SegmentWorker

__all__ = ["MainWindow"]

logger = logging.getLogger(__name__)
MAX_RECENT = 8


class MainWindow(QMainWindow):
    """medseg's desktop window. ``settings`` (recent files, last model) defaults to the user's QSettings.

    ``segmentation_started(worker)`` is emitted with each :class:`SegmentWorker` just before it starts."""

    segmentation_started = Signal(object)

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings("medseg", "medseg-gui")
        self.setWindowTitle("medseg")
        self.setAcceptDrops(True)
        self.scan: Scan | None = None
        self.segmentation: Segmentation | None = None
        self.model_path: Path | None = None
        self.predictor: Any = None
        self.worker: SegmentWorker | None = None
        self.mask_path: Path | None = None
        self.dirty = False
        self.last_error = ""
        self.undo_stack = QUndoStack(self)
        self._build()
        saved = str(self.settings.value("model", "") or "")
        if saved and Path(saved).exists():
            self.set_model(Path(saved))

    # ----------------------------------------------------------------------------------------- layout

    def _build(self) -> None:
        self.viewer = Viewer()
        self.surfaces = SurfaceView()
        self.viewer.grid.addWidget(self.surfaces, 1, 1)  # the fourth quarter, beside the three planes
        side = QWidget()
        column = QVBoxLayout(side)
        self.info = QLabel("Open a scan: File > Open, or drop a file or DICOM folder here.")
        self.model_label = QLabel("model: none (File > Choose model)")
        for label in (self.info, self.model_label):
            label.setWordWrap(True)
            column.addWidget(label)
        self.segment_button = QPushButton("Segment")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress.setRange(0, 1)
        self.segment_button.clicked.connect(self.segment)
        self.cancel_button.clicked.connect(self.cancel)
        self.controls = Controls()
        self.table = ClassTable()
        self.update_3d = QPushButton("Update 3D view")
        self.update_3d.clicked.connect(self.show_surfaces)
        for widget in (self.segment_button, self.cancel_button, self.progress, self.controls, self.table):
            column.addWidget(widget)
        column.addWidget(self.update_3d)
        splitter = QSplitter()
        splitter.addWidget(self.viewer)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        self.setCentralWidget(splitter)
        self.controls.window_changed.connect(self.choose_window)
        self.controls.opacity_changed.connect(self.viewer.set_opacity)
        self.controls.tool_changed.connect(self._set_tool)
        self.viewer.brush = lambda: (self.controls.structure_index, self.controls.brush_size.value())
        self.viewer.stroke_done.connect(self._stroke_done)
        self._menus()
        self.statusBar().showMessage("ready")
        self.resize(1200, 800)

    def _menus(self) -> None:
        file = self.menuBar().addMenu("&File")
        self._action(file, "&Open…", self._open_dialog, QKeySequence.StandardKey.Open)
        self._action(file, "Open &DICOM folder…", self._open_folder_dialog)
        self.recent_menu = file.addMenu("Open &recent")
        self._action(file, "Choose &model…", self._model_dialog)
        file.addSeparator()
        self._action(file, "&Save mask", self.save, QKeySequence.StandardKey.Save)
        self._action(file, "Save mask &as…", self._save_dialog, QKeySequence.StandardKey.SaveAs)
        self._action(file, "&Export surfaces (STL/OBJ)…", self._export_dialog)
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit = self.menuBar().addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcut(QKeySequence.StandardKey.Redo)
        edit.addActions([undo, redo])
        self._fill_recent()

    def _action(self, menu: Any, text: str, slot: Any, shortcut: Any = None) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(shortcut)
        return action

    # ------------------------------------------------------------------------------------------ opening

    def open_path(self, path: Path) -> bool:
        """Open a scan (file or DICOM folder); an unreadable one shows its one-line error and returns False."""
        if not self._may_discard():
            return False
        try:
            scan = load_scan(Path(path))
        except medseg.MedsegError as exc:
            self.show_error(str(exc))
            return False
        self.scan, self.segmentation, self.mask_path, self.dirty = scan, None, None, False
        self.undo_stack.clear()
        self.info.setText(scan.describe())
        self.controls.window_choice.setEnabled(not scan.is_rgb)
        self.controls.window_choice.blockSignals(True)
        self.controls.window_choice.setCurrentText("soft-tissue" if scan.modality == "CT" else AUTO)
        self.controls.window_choice.blockSignals(False)
        self.viewer.set_scan(scan, scan.window)
        self.surfaces.setVisible(len(scan.shape) == 3)
        self.table.setRowCount(0)
        self.surfaces.show_surfaces([], self.viewer.colours)
        self._remember_recent(scan.path)
        self.setWindowTitle(f"medseg — {scan.path.name}")
        return True

    def choose_window(self, name: str) -> None:
        """A CT preset by name, or auto-contrast (percentiles of the scan)."""
        if self.scan is None or self.scan.is_rgb:
            return
        self.viewer.set_window(Window.auto(self.scan.image[0]) if name == AUTO else Window.preset(name))

    def _remember_recent(self, path: Path) -> None:
        recent = [str(path.resolve()), *(p for p in self.recent_files() if p != str(path.resolve()))]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):  # an INI file gives a one-item list back as a string
            return [value]
        return [str(v) for v in value] if isinstance(value, list) else []

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            self._action(self.recent_menu, path, lambda _=False, p=path: self.open_path(Path(p)))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_path(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    def _open_dialog(self) -> None:
        suffixes = " ".join(f"*{s}" for s in medseg.SUPPORTED_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Open a scan", "", f"Images ({suffixes});;All files (*)")
        if path:
            self.open_path(Path(path))

    def _open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a DICOM series folder")
        if path:
            self.open_path(Path(path))

    # ------------------------------------------------------------------------------------ model, segment

    def set_model(self, path: Path) -> None:
        """Use the model in ``path`` (loaded when segmenting) and remember it for the next start."""
        self.model_path, self.predictor = Path(path), None
        self.settings.setValue("model", str(self.model_path))
        self.model_label.setText(f"model: {self.model_path}")

    def _model_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a run folder (medseg train --out)")
        if path:
            self.set_model(Path(path))

    def segment(self) -> None:
        """Segment the open scan with the chosen model in a worker thread."""
        if self.scan is None or self.worker is not None:
            return
        if self.model_path is None:
            self.show_error("no model chosen: File > Choose model… (a folder written by `medseg train --out`)")
            return
        if not self._may_discard():
            return
        self.worker = SegmentWorker(self.predictor or self.model_path, self.scan.image, self.scan.geometry, self)
        self.worker.loaded.connect(self._loaded)
        self.worker.progress.connect(lambda n: self.progress.setFormat(f"segmenting: {n} network passes"))
        self.worker.succeeded.connect(self._segmented)
        self.worker.failed.connect(self._segment_failed)
        self.worker.cancelled.connect(lambda: self._segment_ended("cancelled"))
        self.progress.setRange(0, 0)  # busy: the number of passes is known only as they happen
        self.progress.setFormat("loading the model…")
        self.segment_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.segmentation_started.emit(self.worker)
        self.worker.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.progress.setFormat("cancelling…")

    def _loaded(self, predictor: Any) -> None:
        self.predictor = predictor
        self.model_label.setText(f"model: {self.model_path}")
        if self.scan is not None and self.scan.modality == "unknown":  # the file does not say; the model does
            channels = ", ".join(predictor.plans.data.channel_names)
            self.info.setText(self.scan.describe().replace(", unknown", f", {channels} (the model's input)"))

    def _segmented(self, labels: Any, probabilities: Any) -> None:
        assert self.predictor is not None
        self.segmentation = Segmentation(labels, self.predictor.plans.data.labels, probabilities)
        self.dirty = True
        self.undo_stack.clear()
        self.controls.set_structures(self.segmentation.structures)
        self.viewer.set_segmentation(self.segmentation)
        self.refresh_table()
        self.show_surfaces()
        self._segment_ended("segmented")

    def _segment_failed(self, message: str) -> None:
        self._segment_ended("failed")
        self.show_error(message)

    def _segment_ended(self, state: str) -> None:
        if self.worker is not None:
            self.worker.wait()
            self.worker.deleteLater()
        self.worker = None
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if state == "segmented" else 0)
        self.progress.setFormat(state)
        self.segment_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.statusBar().showMessage(state)

    # ------------------------------------------------------------------------------ table, 3D, editing

    def refresh_table(self) -> None:
        if self.scan is not None and self.segmentation is not None:
            self.table.fill(self.segmentation.sizes(self.scan), self.viewer.colours, self.viewer.colour_offset)

    def surface_list(self, step: int = 1) -> list[medseg.Surface]:
        """The structures' surfaces, full resolution at ``step`` 1 (none for 2D images or before segmenting)."""
        if self.scan is None or self.segmentation is None or len(self.scan.shape) != 3:
            return []
        seg = self.segmentation
        return medseg.structure_surfaces(
            seg.labels, self.scan.geometry.spacing, seg.spec.names, overlapping=seg.overlapping, step=step
        )

    def show_surfaces(self) -> None:
        """Draw the surfaces; a large volume's with a coarser step, so the window does not wait (export: full)."""
        step = (
            1 if self.scan is None else 1 + int(np.prod(self.scan.shape) > 8e6) + int(np.prod(self.scan.shape) > 64e6)
        )
        self.surfaces.show_surfaces(self.surface_list(step), self.viewer.colours, self.viewer.colour_offset)

    def _set_tool(self, name: str) -> None:
        self.viewer.tool = name

    def _stroke_done(self, stroke: Any) -> None:
        assert self.segmentation is not None
        text = "erase" if self.viewer.tool == "eraser" else "paint"
        self.undo_stack.push(StrokeCommand(text, self.segmentation.labels, stroke, self._edited))
        self._edited()

    def _edited(self) -> None:
        self.dirty = True
        self.viewer.refresh()
        self.refresh_table()

    # ------------------------------------------------------------------------------------ saving, errors

    def save(self) -> bool:
        """Save the mask where it was saved before, or beside the scan (``NAME_seg``); True when saved."""
        if self.scan is None or self.segmentation is None:
            return False
        path, note = (self.mask_path, "") if self.mask_path else default_mask_path(self.scan.path)
        return self.save_to(path, note)

    def save_to(self, path: Path, note: str = "") -> bool:
        """Write the mask to ``path`` in the scan's geometry; an error shows its one line."""
        if self.scan is None or self.segmentation is None:
            return False
        try:
            written = save_mask(Path(path), self.segmentation, self.scan)
        except medseg.MedsegError as exc:
            self.show_error(str(exc))
            return False
        self.mask_path, self.dirty = Path(path), False
        self.statusBar().showMessage(f"saved {', '.join(str(p) for p in written)}" + (f" — {note}" if note else ""))
        return True

    def _save_dialog(self) -> None:
        if self.scan is None or self.segmentation is None:
            return
        suggested, note = default_mask_path(self.scan.path)
        path, _ = QFileDialog.getSaveFileName(self, "Save the mask", str(suggested))
        if path:
            self.save_to(Path(path), note)

    def export_surfaces(self, path: Path) -> list[Path]:
        """Write the surfaces: ``.obj`` one file, ``.stl`` one file per structure (``NAME_<structure>.stl``)."""
        surfaces, path = self.surface_list(), Path(path)
        if not surfaces:
            self.show_error("no 3D structure to export: segment a 3D scan first")
            return []
        try:
            return export_surfaces(path, surfaces)
        except medseg.MedsegError as exc:
            self.show_error(str(exc))
            return []

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export surfaces", "", "STL (*.stl);;OBJ (*.obj)")
        if path:
            written = self.export_surfaces(Path(path))
            self.statusBar().showMessage(f"exported {len(written)} file(s)")

    def show_error(self, message: str) -> None:
        """The one-line message in a dialog (window-modal, not blocking the event loop)."""
        self.last_error = message
        logger.info("error shown: %s", message)
        box = QMessageBox(QMessageBox.Icon.Critical, "medseg", message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.error_box = box

    def _may_discard(self) -> bool:
        """True when nothing unsaved would be lost, or the user saved or chose to discard it."""
        if not self.dirty:
            return True
        answer = QMessageBox.question(
            self,
            "Unsaved changes",
            "The segmentation has unsaved changes. Save them?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait()
        if self._may_discard():
            event.accept()
        else:
            event.ignore()
