"""Starting the desktop application: ``medseg gui [PATH] [--model RUN]`` calls :func:`run`.

Example:
    >>> run(Path("case_01.nii.gz"), model=Path("runs/hippocampus"))   # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication

from medseg.apps.gui.window import MainWindow

__all__ = ["application", "run"]

if importlib.util.find_spec("skimage") is None:  # the 3D view's marching cubes; checked at start, not at first use
    raise ImportError("No module named 'skimage'")


def application() -> QApplication:
    """The process's QApplication (created once)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName("medseg")
        app.setApplicationName("medseg-gui")
    assert isinstance(app, QApplication)
    return app


def run(path: Path | None = None, model: Path | None = None) -> int:
    """Show the window (with ``path`` opened and ``model`` chosen, when given) until it is closed."""
    app = application()
    window = MainWindow()
    window.show()
    if model is not None:
        window.set_model(model)
    if path is not None:
        window.open_path(path)
    return app.exec()
