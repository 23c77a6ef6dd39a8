"""Screenshot the browser viewer of `medseg serve` on a real scan, for the README (docs/images/viewer.png).

    python benchmarks/viewer_screenshot.py hippocampus.medseg \\
        ../shared/data/msd-hippocampus/imagesTr/hippocampus_004.nii.gz docs/images/viewer.png

Starts `medseg serve BUNDLE --no-auth` on a free loopback port (its own process), opens the viewer in
headless Chromium (Playwright driving the system's ``chromium``: ``apt-get install chromium``), uploads the
scan, waits for the overlay and writes the PNG. Not a test: tests/apps/server/test_viewer.py checks the viewer.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("scan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--opacity", default="0.45")
    args = parser.parse_args()
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if chromium is None:
        print("no chromium on PATH: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    medseg = str(Path(sys.executable).with_name("medseg"))
    with tempfile.TemporaryDirectory() as temp:
        command = [medseg, "serve", str(args.bundle), "--no-auth", "--port", str(port), "--temp-dir", temp]
        server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > end or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.3)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
                )
                page = browser.new_page(viewport={"width": 1560, "height": 560})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("document.querySelectorAll('#model option').length > 0")
                page.set_input_files("#file", str(args.scan))
                page.click("#run")
                page.wait_for_selector("body[data-state=done]", timeout=300_000)
                page.fill("#opacity", args.opacity)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
