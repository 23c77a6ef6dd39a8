"""The desktop window driven offscreen (pytest-qt): open a synthetic CT volume, segment it with a tiny trained run,
check the overlay pixels and the structure table, paint a correction, undo it, save and read the mask back in
the scan's geometry; cancel a running segmentation; errors as dialogs with the CLI's one line.

Skipped, with the reason, where PySide6 or the system libraries it needs (libEGL, libGL, libxkbcommon,
libfontconfig, libdbus) are missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before the QApplication exists: no screen needed
_REASON = "PySide6 or its system libraries (libEGL, libGL, libxkbcommon, libfontconfig) are missing"
pytest.importorskip("PySide6.QtWidgets", reason=_REASON, exc_type=ImportError)
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")
pytest.importorskip("skimage", reason="scikit-image (the 'gui' extra) is not installed")

import torch  # noqa: E402
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

import medseg  # noqa: E402
from medseg.apps.gui.display import Window, blend_overlay, to_rgb  # noqa: E402
from medseg.apps.gui.window import MainWindow  # noqa: E402
from tests.training.tiny_runs import plan_tiny_run  # noqa: E402

TINY = medseg.TrainOptions(epochs=2, iterations_per_epoch=3, val_every=2, device="cpu", folds=2, amp="off")
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, dataset) of one tiny 3D run shared by this module's tests."""
    root = tmp_path_factory.mktemp("gui")
    spec = medseg.SyntheticSpec(ndim=3, shape=(8, 48, 48))
    dataset = medseg.write_dataset(root / "data", spec, n_cases=4, seed=1, layout="msd")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: a second thread only waits for time slices on a busy machine
    try:
        plan_tiny_run(dataset, root / "run", TINY)
        medseg.train(dataset, root / "run", TINY)
    finally:
        torch.set_num_threads(threads)
    return root / "run", dataset


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Iterator[MainWindow]:
    w = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.worker is not None:
        w.worker.cancel()
        w.worker.wait()
    w.dirty = False  # closing must not wait on the unsaved-changes question


def _scan(trained: tuple[Path, Path]) -> Path:
    return sorted((trained[1] / "imagesTr").iterdir())[0]


def _segment(window: MainWindow, qtbot: Any) -> None:
    window.segment()
    qtbot.waitUntil(lambda: window.worker is None, timeout=WAIT_MS)


def _click_pixel(qtbot: Any, window: MainWindow, plane: str, row: int, col: int) -> None:
    view = window.viewer.views[plane]
    point = view.mapFromScene(view.pixmap.mapToScene(QPointF(col + 0.5, row + 0.5)))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_open_segment_inspect_correct_save(window: MainWindow, qtbot: Any, trained: Any, tmp_path: Path) -> None:
    run, _ = trained
    source = _scan(trained)
    assert window.open_path(source)
    image, geometry = medseg.read_image(source)
    assert "48 × 48 × 8 voxels" in window.info.text() and "mm" in window.info.text() and "CT" in window.info.text()
    window.set_model(run)
    _segment(window, qtbot)
    assert window.last_error == "" and window.progress.format() == "segmented"

    # the labels and probabilities are the run's own prediction
    labels, probabilities = medseg.load_predictor(run).labels_and_probabilities(image, geometry)
    seg = window.segmentation
    assert seg is not None
    np.testing.assert_array_equal(seg.labels, labels)

    # overlay: the axial slice at the crosshair, windowed soft-tissue and blended at 50 %, is what the view shows
    z = window.viewer.crosshair[0]
    base = to_rgb(image[0, z], Window.preset("soft-tissue"))
    expected = blend_overlay(base, labels[z], window.viewer.colours, 0.5)
    np.testing.assert_array_equal(window.viewer.slice_rgb("axial"), expected)
    shown = window.viewer.views["axial"].image
    for row, col in [(0, 0), (24, 24), (10, 40), *zip(*np.nonzero(labels[z][:5, :5]), strict=True)]:
        colour = shown.pixelColor(int(col), int(row))
        assert [colour.red(), colour.green(), colour.blue()] == expected[row, col].tolist()
    if labels[z].any():  # a class pixel is its colour blended half and half with the grey value
        row, col = np.argwhere(labels[z] > 0)[0]
        k = labels[z][row, col]
        blend = np.rint(0.5 * base[row, col] + 0.5 * window.viewer.colours[k]).astype(int)
        assert expected[row, col].tolist() == blend.tolist()

    # the class table: volume in ml from the spacing, confidence = mean probability inside
    voxel_ml = float(np.prod(geometry.spacing)) / 1000
    names = seg.spec.names
    assert window.table.rowCount() == len(names) - 1
    for i, k in enumerate(sorted(k for k in names if k)):
        assert window.table.cell_text(i, 0) == names[k]
        assert window.table.cell_text(i, 1) == f"{(labels == k).sum() * voxel_ml:.2f}"
        assert window.table.cell_text(i, 2) == "ml"
        mean = probabilities[k][labels == k].mean() if (labels == k).any() else None
        assert window.table.cell_text(i, 3) == ("—" if mean is None else f"{mean:.2f}")

    # paint a disk of heart (class 2) at (row 20, col 20), radius 2: 21 pixels of slice z
    before = seg.labels.copy()
    window.controls.set_tool("brush")
    window.controls.structure.setCurrentIndex(window.controls.structure.findData(2))
    window.controls.brush_size.setValue(2)
    _click_pixel(qtbot, window, "axial", 20, 20)
    assert (seg.labels[z, 18:23, 18:23] == 2).sum() == 21 and (seg.labels[z, 20, 18:23] == 2).all()
    disk = np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2) <= 6  # the 5 x 5 square less its corners
    changed = np.zeros(before.shape, bool)
    changed[z, 18:23, 18:23] = disk & (before[z, 18:23, 18:23] != 2)
    np.testing.assert_array_equal(seg.labels != before, changed)
    assert window.table.cell_text(1, 1) == f"{(seg.labels == 2).sum() * voxel_ml:.2f}"
    assert window.dirty and window.undo_stack.count() == 1
    painted = seg.labels.copy()
    window.undo_stack.undo()
    np.testing.assert_array_equal(seg.labels, before)
    window.undo_stack.redo()
    np.testing.assert_array_equal(seg.labels, painted)

    # save and read back in the scan's geometry, as the dataset's label values
    assert window.save_to(tmp_path / "corrected.nii.gz") and not window.dirty
    back, back_geometry = medseg.read_label(tmp_path / "corrected.nii.gz")
    assert back_geometry.matches(geometry) and back.shape == image.shape[1:]
    np.testing.assert_array_equal(back, seg.spec.to_values(painted))

    # the 3D view drew the surfaces, and they export as STL (one per structure) and OBJ
    assert window.surfaces.drawn_faces > 0
    stls = window.export_surfaces(tmp_path / "mesh.stl")
    assert [p.name for p in stls] == [f"mesh_{s.name}.stl" for s in window.surface_list()]
    assert window.export_surfaces(tmp_path / "mesh.obj")[0].read_text().count("\no ") == len(stls)


def test_cancel_stops_a_running_segmentation(window: MainWindow, qtbot: Any, trained: Any, tmp_path: Path) -> None:
    image, geometry = medseg.read_image(_scan(trained))
    big = np.tile(image, (1, 1, 3, 3))  # 25 windows of 48 x 48: a dozen network passes
    window.open_path(medseg.write_image(tmp_path / "big.nii.gz", big, geometry))
    window.set_model(trained[0])
    passes: list[int] = []

    def cancel_on_first_pass(worker: Any) -> None:  # runs in the worker thread at its first pass
        assert window.cancel_button.isEnabled()
        worker.progress.connect(lambda n: (passes.append(n), worker.cancel()), Qt.ConnectionType.DirectConnection)

    window.segmentation_started.connect(cancel_on_first_pass)
    _segment(window, qtbot)
    assert passes == [1] and window.segmentation is None
    assert window.progress.format() == "cancelled" and window.segment_button.isEnabled()
    assert not window.cancel_button.isEnabled() and window.last_error == ""


def test_errors_are_dialogs_with_the_clis_line(window: MainWindow, qtbot: Any, trained: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    with pytest.raises(medseg.MedsegError) as expected:
        medseg.read_image(broken)
    assert not window.open_path(broken)
    assert window.last_error == str(expected.value) and window.error_box.isVisible()
    assert "\n" not in window.last_error
    window.error_box.close()

    # a 2D picture and a 3D model: the run's check says why, in one line
    picture = medseg.write_image(tmp_path / "photo.png", np.zeros((1, 40, 50), np.uint8), medseg.Geometry.identity(2))
    assert window.open_path(picture)
    assert not window.viewer.views["coronal"].isVisible() and window.viewer.views["axial"].isVisible()
    image, geometry = medseg.read_image(picture)
    with pytest.raises(medseg.MedsegError) as expected:
        medseg.load_predictor(trained[0]).labels_and_probabilities(image, geometry)
    window.set_model(trained[0])
    _segment(window, qtbot)
    assert window.last_error == str(expected.value) and window.progress.format() == "failed"


def test_recent_files_and_model_are_remembered(qtbot: Any, trained: Any, tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    first = MainWindow(settings)
    qtbot.addWidget(first)
    first.open_path(_scan(trained))
    first.set_model(trained[0])
    second = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    assert second.model_path == trained[0]
    assert second.recent_files() == [str(_scan(trained).resolve())]
    assert [a.text() for a in second.recent_menu.actions()] == second.recent_files()


def test_unsaved_changes_are_not_lost_silently(window: MainWindow, qtbot: Any, trained: Any) -> None:
    window.open_path(_scan(trained))
    window.set_model(trained[0])
    _segment(window, qtbot)
    assert window.dirty
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard]
    asked: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        asked.append(box.text())
        box.button(answers.pop(0)).click()

    QTimer.singleShot(0, answer)
    assert not window.close() and window.isVisible()  # Cancel: the window stays
    QTimer.singleShot(0, answer)
    assert window.close()  # Discard: it closes
    assert len(asked) == 2 and "unsaved" in asked[0]


def test_dicom_series_mask_is_saved_as_nifti_beside(
    window: MainWindow, qtbot: Any, trained: Any, tmp_path: Path
) -> None:
    image, geometry = medseg.read_image(_scan(trained))
    series = medseg.write_image(tmp_path / "series", np.rint(image[0]).astype(np.int16), geometry)
    assert window.open_path(series) and "CT" in window.info.text()
    window.set_model(trained[0])
    _segment(window, qtbot)
    assert window.save()
    assert "DICOM-SEG" in window.statusBar().currentMessage()
    back, back_geometry = medseg.read_label(tmp_path / "series_seg.nii.gz")
    assert back_geometry.matches(medseg.read_image(series)[1]) and back.shape == image.shape[1:]


def _wheel(view: Any, steps: int, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    centre = QPointF(view.viewport().rect().center())
    event = QWheelEvent(
        centre,
        view.viewport().mapToGlobal(centre),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), event)


def test_views_scroll_zoom_and_share_the_crosshair(window: MainWindow, qtbot: Any, trained: Any) -> None:
    window.open_path(_scan(trained))
    viewer = window.viewer
    assert viewer.crosshair == (4, 24, 24)
    _wheel(viewer.views["axial"], -2)  # two slices down
    assert viewer.crosshair == (2, 24, 24)
    _wheel(viewer.views["axial"], -9)  # clamped at the first slice
    assert viewer.crosshair == (0, 24, 24)
    scale = viewer.views["sagittal"].transform().m11()
    _wheel(viewer.views["sagittal"], 1, Qt.KeyboardModifier.ControlModifier)
    assert viewer.views["sagittal"].transform().m11() == pytest.approx(1.25 * scale)
    assert viewer.crosshair == (0, 24, 24)  # zooming does not scroll
    # a click in the coronal view (rows are z from the top slice down) moves the other planes there
    _click_pixel(qtbot, window, "coronal", 1, 30)
    assert viewer.crosshair == (6, 24, 30)
    axial = window.viewer.slice_rgb("axial")
    np.testing.assert_array_equal(
        axial, to_rgb(medseg.read_image(_scan(trained))[0][0, 6], Window.preset("soft-tissue"))
    )


def test_drop_a_file_opens_it(window: MainWindow, trained: Any) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(_scan(trained)))])
    event = QDropEvent(
        QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    assert window.scan is not None and window.scan.path == _scan(trained)


def test_rgb_image_is_shown_as_it_is_in_one_view(window: MainWindow, tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (3, 20, 30), dtype=np.uint8)
    path = medseg.write_image(tmp_path / "slide.png", rgb, medseg.Geometry.identity(2))
    assert window.open_path(path) and window.scan is not None and window.scan.is_rgb
    assert "RGB" in window.info.text() and "no physical spacing" in window.info.text()
    assert not window.controls.window_choice.isEnabled()  # no window/level for colour pictures
    np.testing.assert_array_equal(window.viewer.slice_rgb("axial"), np.moveaxis(rgb, 0, -1))
    assert [plane for plane, view in window.viewer.views.items() if view.isVisible()] == ["axial"]
