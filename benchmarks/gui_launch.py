"""How long from starting ``medseg gui`` to a visible window? (issue #11's target: under 3 s on 2 cores)

    python benchmarks/gui_launch.py [--repeats 5] [--scan FILE]

Each repeat starts a fresh Python process that runs the console entry point (``medseg.apps.cli.app:main``
with ``gui [FILE]``, as the ``medseg`` script does) under Qt's offscreen platform, with ``QApplication.exec``
replaced by a function that waits until the main window is shown and exposed, writes the time and returns. The
figure is that time minus the parent's clock just before starting the process: interpreter start, imports,
window construction, and with ``--scan`` reading the scan and drawing its planes. Prints each repeat and the
median; settings go to a temporary folder (``XDG_CONFIG_HOME``), not the user's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time
from PySide6.QtWidgets import QApplication

def shown_then_quit(*_args):
    app = QApplication.instance()
    while True:
        app.processEvents()
        windows = [w for w in app.topLevelWidgets() if w.isVisible() and w.windowHandle() is not None]
        if any(w.windowHandle().isExposed() for w in windows):
            print(f"VISIBLE {time.time():.6f}", flush=True)
            return 0
        time.sleep(0.001)

QApplication.exec = shown_then_quit
sys.argv = ["medseg", "gui", *sys.argv[1:]]
from medseg.apps.cli.app import main
main()
"""


def launch_seconds(scan: Path | None) -> float:
    """One cold launch to a visible window, in seconds."""
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": config}
        args = [sys.executable, "-c", CHILD, *([str(scan)] if scan else [])]
        start = time.time()
        out = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    visible = [line for line in out.stdout.splitlines() if line.startswith("VISIBLE ")]
    if not visible:
        raise RuntimeError(f"the window never became visible:\n{out.stdout}\n{out.stderr}")
    return float(visible[0].split()[1]) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scan", type=Path, default=None, help="also open this scan at launch")
    args = parser.parse_args()
    times = []
    for i in range(args.repeats):
        times.append(launch_seconds(args.scan))
        print(f"launch {i + 1}: {times[-1]:.2f} s")
    print(f"median of {len(times)}: {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()
