"""The browser viewer, end to end in headless Chromium (Playwright driving Debian's ``chromium``) against a real
uvicorn on 127.0.0.1: upload or pick an example → segment → the overlay is drawn where the CLI's mask is, in
the class colours and at the chosen opacity → scroll, window/level → the download equals `medseg predict`'s.

Skips, saying why, without the ``playwright`` package or a ``chromium`` executable (``apt-get install
chromium``; `.ci/run` installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

for _module in ("fastapi", "uvicorn", "multipart", "highdicom"):
    pytest.importorskip(_module, reason=f"medseg serve needs {_module}: pip install 'medseg[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the viewer test needs playwright: pip install playwright")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
if CHROMIUM is None:
    pytest.skip("the viewer test needs Chromium: apt-get install chromium", allow_module_level=True)

from medseg.apps.server import ServerConfig  # noqa: E402
from tests.apps.server.conftest import KEY, Server, running  # noqa: E402
from tests.apps.server.test_server import _cli_predict, _scan  # noqa: E402

COLOURS = {1: (230, 25, 75), 2: (60, 180, 75), 3: (255, 225, 25)}  # the viewer's first palette entries


@pytest.fixture(scope="module")
def examples(tiny_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("examples")
    _, png = _scan("png", tiny_runs, folder / "made")
    shutil.copy(png, folder / "slice.png")
    (folder / "notes.txt").write_text("not a scan: not offered")
    return folder


@pytest.fixture(scope="module")
def viewer_server(
    bundles: dict[str, Path], examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = ServerConfig(
        models=(bundles["onnx3"], bundles["onnx2"]),
        api_keys=frozenset({KEY}),
        workers=1,
        timeout_s=120,
        temp_dir=tmp_path_factory.mktemp("viewer-temp"),
        examples=examples,
    )
    with running(config) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, viewer_server: Server) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1600, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.goto(f"http://127.0.0.1:{viewer_server.port}/")
    opened.locator("#key-form").wait_for(state="visible")  # the server asks for a key: 401 without one
    opened.fill("#key", KEY)
    opened.click("#key-form button")
    opened.wait_for_function("document.querySelectorAll('#model option').length === 2")
    yield opened
    context.close()
    assert errors == [], errors  # no uncaught error in the page's script
    viewer_server.wait_idle()
    assert list(viewer_server.temp.iterdir()) == []


def _pixels(page: Any, plane: str) -> np.ndarray:
    """The RGB pixels of a view's image canvas (its own resolution: one pixel a voxel)."""
    got = page.evaluate(
        """plane => { const c = document.querySelector(`.view[data-plane="${plane}"] canvas.image`);
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
                   return [c.width, c.height, Array.from(d.data)]; }""",
        plane,
    )
    width, height, data = got
    return np.asarray(data, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def _coloured(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., 0] != pixels[..., 1]) | (pixels[..., 1] != pixels[..., 2])


def _slice(page: Any, plane: str) -> int:
    text = page.inner_text(f'.view[data-plane="{plane}"] .slice')  # "slice K / N"
    return int(text.split()[1]) - 1


def _download(page: Any, folder: Path) -> Path:
    with page.expect_download() as info:
        page.click("#download")
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def _same_image(got: Path, want: Path) -> None:
    a, b = sitk.ReadImage(str(got)), sitk.ReadImage(str(want))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()


def test_upload_a_3d_scan_see_the_overlay_in_three_planes_and_download_the_cli_mask(
    page: Any, bundles: dict[str, Path], tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    _, scan = _scan("nii.gz", tiny_runs, tmp_path / "in")
    want = _cli_predict(bundles["onnx3"], scan, tmp_path / "cli")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(want)))  # (z, y, x)
    page.select_option("#model", "onnx3")
    page.set_input_files("#file", str(scan))
    page.click("#run")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.locator(".view canvas.image").count() == 3  # axial, coronal, sagittal

    # opacity 1: the axial view shows each class in its colour exactly where the CLI's mask has it
    page.fill("#opacity", "1")
    z = _slice(page, "axial")
    assert np.count_nonzero(mask[z]), "the viewer opens on the structures"
    pixels = _pixels(page, "axial")
    for k, colour in COLOURS.items():
        np.testing.assert_array_equal(np.all(pixels == colour, axis=-1), mask[z] == k)
    sizes = page.locator("#classes tbody tr").all_inner_texts()
    assert len(sizes) == 3 and all("ml" in row for row in sizes)

    page.fill("#opacity", "0")  # opacity 0: only the grey scan
    assert not _coloured(_pixels(page, "axial")).any()
    grey = _pixels(page, "axial")
    page.fill("#window", page.get_attribute("#window", "max"))  # the widest window: a flatter grey
    assert not np.array_equal(_pixels(page, "axial"), grey)

    page.fill("#opacity", "0.5")  # a colour picked for class 1 and class 2 hidden
    page.fill('#classes tr[data-index="1"] input[type=color]', "#0000ff")
    page.uncheck('#classes tr[data-index="2"] input[type=checkbox]')
    pixels = _pixels(page, "axial")
    blue = (pixels[..., 2] > pixels[..., 0]) & (pixels[..., 2] > pixels[..., 1])
    np.testing.assert_array_equal(blue, mask[z] == 1)
    assert not _coloured(pixels)[mask[z] == 2].any()

    page.hover('.view[data-plane="axial"] canvas.crosshair')  # scroll one slice
    page.mouse.wheel(0, 120 if z < mask.shape[0] - 1 else -120)
    page.wait_for_function(
        "z => !document.querySelector('.view[data-plane=\"axial\"] .slice').textContent.startsWith(`slice ${z + 1} `)",
        arg=z,
    )
    assert abs(_slice(page, "axial") - z) == 1

    _same_image(_download(page, tmp_path / "downloads"), want)


def test_pick_an_example_2d_image_and_download_the_cli_mask(
    page: Any, bundles: dict[str, Path], examples: Path, tmp_path: Path
) -> None:
    page.wait_for_function("document.querySelectorAll('#example option').length > 0")  # asked after the models
    assert page.locator("#example option").all_inner_texts() == ["—", "slice.png"]  # only scans are offered
    page.select_option("#model", "onnx2")
    page.select_option("#example", "slice.png")
    page.click("#run")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.locator(".view canvas.image").count() == 1
    want = _cli_predict(bundles["onnx2"], examples / "slice.png", tmp_path / "cli")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(want)))
    page.fill("#opacity", "1")
    pixels = _pixels(page, "image")
    np.testing.assert_array_equal(_coloured(pixels), mask > 0)
    got = _download(page, tmp_path / "downloads")
    assert got.name == "slice.png"
    assert got.read_bytes() == want.read_bytes()


def test_a_bad_upload_shows_the_servers_one_line_error(page: Any, tmp_path: Path) -> None:
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    page.select_option("#model", "onnx3")
    page.set_input_files("#file", str(bad))
    page.click("#run")
    page.wait_for_selector("body[data-state=error]", timeout=60_000)
    status = page.inner_text("#status")
    assert status.startswith("422: ") and "\n" not in status and str(tmp_path) not in status
