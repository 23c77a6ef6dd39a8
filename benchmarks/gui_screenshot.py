"""Screenshot the desktop application with a real case segmented (the README's picture), offscreen.

    python benchmarks/gui_screenshot.py SCAN docs/images/gui.png --model RUN

Opens SCAN in the window, segments it with RUN (in the window's worker thread), puts the crosshair on the
centre of the segmented structures, and saves ``QWidget.grab()`` of the window as PNG. Not a test: it only
makes pictures. Settings go to a temporary folder, not the user's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6.QtCore import QSettings

from medseg.apps.gui.app import application
from medseg.apps.gui.window import MainWindow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    args = parser.parse_args()
    app = application()
    with tempfile.TemporaryDirectory() as folder:
        window = MainWindow(QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat))
        window.resize(1280, 800)
        window.show()
        if not window.open_path(args.scan):
            raise SystemExit(window.last_error)
        window.set_model(args.model)
        window.segment()
        while window.worker is not None:
            app.processEvents()
            time.sleep(0.01)
        if window.segmentation is None:
            raise SystemExit(window.last_error or "segmentation did not finish")
        foreground = np.argwhere(window.segmentation.labels > 0)
        if len(foreground):
            window.viewer.move_cursor(tuple(int(v) for v in np.median(foreground, axis=0)))
        for view in window.viewer.views.values():
            view.fit()
        app.processEvents()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(args.out))
        print(f"wrote {args.out}")
        window.dirty = False
        window.close()


if __name__ == "__main__":
    main()
