"""Screenshot an HTML page (a run's report.html) with headless Chromium, for the pictures in docs/.

    python benchmarks/screenshot.py /tmp/bench-hip2/run/report.html docs/images/report-hippocampus.png
    python benchmarks/screenshot.py REPORT.html OUT.png --width 1280 --height 2600

Needs a Chromium binary (Debian: ``apt-get install chromium``; found as chromium, chromium-browser or
google-chrome on PATH, or given with --chromium). Not a test: it only makes pictures. The page is rendered
from a copy in a temporary folder, so nothing is written beside the report.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path, help="HTML file to render")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument(
        "--chromium", default="", help=f"browser binary (default: the first of {', '.join(BROWSERS)} on PATH)"
    )
    args = parser.parse_args()
    browser = args.chromium or next((b for b in BROWSERS if shutil.which(b)), "")
    if not browser:
        print(f"no Chromium found (tried {', '.join(BROWSERS)}): apt-get install chromium", file=sys.stderr)
        return 2
    if not args.page.is_file():
        print(f"{args.page}: not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        shutil.copyfile(args.page, page)
        shot = Path(tmp) / "shot.png"
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={args.width},{args.height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
