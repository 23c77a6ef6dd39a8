"""`medseg serve` over real HTTP: masks equal `medseg predict MODEL.medseg`'s, and every bad request is a
one-line JSON 4xx that leaves nothing in the server's temporary folder."""

from __future__ import annotations

import base64
import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

for _module in ("fastapi", "uvicorn", "multipart", "highdicom"):
    pytest.importorskip(_module, reason=f"medseg serve needs {_module}: pip install 'medseg[serve]'")

import highdicom as hd  # noqa: E402

from medseg.apps.cli.app import app, main  # noqa: E402
from medseg.apps.server import ServerConfig  # noqa: E402
from medseg.datasets.dataset import load_dataset  # noqa: E402
from tests.apps.server.conftest import KEY, Server, multipart, running  # noqa: E402
from tests.export.ct_series import write_ct_series  # noqa: E402


@pytest.fixture
def srv(server: Server) -> Iterator[Server]:
    """The module's server; after the test, once its jobs have ended, its temporary folder must be empty."""
    yield server
    server.wait_idle()
    assert list(server.temp.iterdir()) == []


def _cli_predict(bundle: Path, scan: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(app, ["predict", str(bundle), str(scan), str(out), *extra])
    assert result.exit_code == 0, result.output
    (written,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    return written


def _scan(kind: str, tiny_runs: dict[str, Path], folder: Path) -> tuple[str, Path]:
    """A scan of the tiny datasets in ``kind``'s format and the model that segments it."""
    folder.mkdir()
    if kind == "png":  # a 2D case as a 16-bit PNG (HU + 1024), as the synthetic folder layout writes them
        source = load_dataset(tiny_runs["data2"]).cases[0].channels[0]
        pixels = np.clip(sitk.GetArrayFromImage(sitk.ReadImage(str(source))) + 1024, 0, 65535).astype(np.uint16)
        sitk.WriteImage(sitk.GetImageFromArray(pixels), str(folder / "slice.png"))
        return "onnx2", folder / "slice.png"
    source = load_dataset(tiny_runs["data3"]).cases[1].channels[0]
    path = folder / f"case.{kind}"
    sitk.WriteImage(sitk.ReadImage(str(source)), str(path))
    return "onnx3", path


@pytest.mark.parametrize("kind", ["nii.gz", "nrrd", "mha", "png"])
def test_the_mask_equals_medseg_predicts(
    kind: str, srv: Server, bundles: dict[str, Path], tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    model, scan = _scan(kind, tiny_runs, tmp_path / "in")
    body, headers = multipart(scan.name, scan.read_bytes())
    answer = srv.request("POST", f"/v1/models/{model}/predict", body, headers)
    assert answer.status == 200, answer.body[:300]
    want_file = _cli_predict(bundles[model], scan, tmp_path / "cli")
    assert answer.headers["content-disposition"] == f'attachment; filename="{want_file.name}"'
    got_file = tmp_path / want_file.name
    got_file.write_bytes(answer.body)
    got, want = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (got_file, want_file))
    np.testing.assert_array_equal(got, want)
    structures = json.loads(answer.headers["x-medseg-structures"])
    assert [s["index"] for s in structures] == [1, 2, 3]  # the synthetic data's foreground classes
    assert {s["unit"] for s in structures} == {"voxels" if kind == "png" else "ml"}
    assert sum(s["voxels"] for s in structures) == int(np.count_nonzero(want))
    assert float(answer.headers["x-medseg-seconds"]) > 0


def test_a_zipped_dicom_series_gives_a_dicom_seg_of_it(
    srv: Server, bundles: dict[str, Path], tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    case = load_dataset(tiny_runs["data3"]).cases[0]
    image = sitk.ReadImage(str(case.channels[0]))
    uids = write_ct_series(tmp_path / "ct", sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing())))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((tmp_path / "ct").iterdir()):
            z.write(f, f"export/series 1/{f.name}")  # folders in the archive do not matter
    body, headers = multipart("ct.zip", archive.getvalue())
    answer = srv.request("POST", "/v1/models/onnx3/predict", body, headers)
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["content-type"] == "application/dicom"
    assert answer.headers["content-disposition"] == 'attachment; filename="ct.dcm"'
    want = hd.seg.segread(_cli_predict(bundles["onnx3"], tmp_path / "ct", tmp_path / "cli", "--dicom-seg"))
    got = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(answer.body)))
    assert {uid for *_, uid in got.get_source_image_uids()} == set(uids)
    assert [s.SegmentLabel for s in got.SegmentSequence] == [s.SegmentLabel for s in want.SegmentSequence]
    pixels = [s.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 3]) for s in (got, want)]
    np.testing.assert_array_equal(pixels[0], pixels[1])
    assert pixels[0].any()


def test_json_answer_has_sizes_timing_and_the_same_mask(
    srv: Server, tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    _, scan = _scan("nii", tiny_runs, tmp_path / "in")
    body, headers = multipart(scan.name, scan.read_bytes())
    as_file = srv.request("POST", "/v1/models/onnx3/predict", body, headers)
    as_json = srv.request("POST", "/v1/models/onnx3/predict?format=json", body, headers)
    assert (as_file.status, as_json.status) == (200, 200)
    answer = as_json.json()
    assert answer["filename"] == "case.nii" and answer["model"] == "onnx3"
    assert base64.b64decode(answer["mask_base64"]) == as_file.body
    assert answer["structures"] == json.loads(as_file.headers["x-medseg-structures"])
    assert answer["seconds"] > 0 and answer["total_seconds"] >= answer["seconds"]


def test_the_upload_name_cannot_reach_outside_the_temporary_folder(
    srv: Server, tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    _, scan = _scan("nii.gz", tiny_runs, tmp_path / "in")
    body, headers = multipart('../../evil "name".nii.gz', scan.read_bytes())
    answer = srv.request("POST", "/v1/models/onnx3/predict", body, headers)
    assert answer.status == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="evil__name_.nii.gz"'
    assert not (srv.temp.parent / "evil__name_.nii.gz").exists()


def test_models_health_ready_and_docs(srv: Server) -> None:
    models = srv.request("GET", "/v1/models", headers={"X-API-Key": KEY}).json()["models"]
    assert [m["name"] for m in models] == ["onnx2", "onnx3"]
    assert [m["dimensions"] for m in models] == [2, 3]
    assert models[1]["card"]["medseg_version"] and models[1]["labels"]["0"] == "background"
    assert srv.request("GET", "/health").json() == {"status": "ok"}
    ready = srv.request("GET", "/ready")
    assert ready.status == 200 and ready.json()["ready"] is True
    assert "/v1/models/{name}/predict" in srv.request("GET", "/openapi.json").json()["paths"]
    assert srv.request("GET", "/docs").status == 200


def _assert_one_line_error(answer: object, status: int, starts: str, temp: Path) -> None:
    assert answer.status == status, answer.body[:300]  # type: ignore[attr-defined]
    message = answer.json()["detail"]  # type: ignore[attr-defined]
    assert message.startswith(starts), message
    assert "\n" not in message and str(temp) not in message and "/tmp" not in message, message


@pytest.mark.parametrize(
    ("headers", "starts"),
    [({}, "missing X-API-Key header"), ({"X-API-Key": "wrong-key-0123456789"}, "invalid API key")],
)
def test_a_missing_or_wrong_key_is_401(srv: Server, headers: dict[str, str], starts: str) -> None:
    body, _ = multipart("case.nii.gz", b"x")
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/models/onnx3/predict")):
        answer = srv.request(method, path, body if method == "POST" else None, headers)
        _assert_one_line_error(answer, 401, starts, srv.temp)


def test_an_unknown_model_is_404(srv: Server) -> None:
    body, headers = multipart("case.nii.gz", b"x")
    answer = srv.request("POST", "/v1/models/nope/predict", body, headers)
    _assert_one_line_error(answer, 404, "no model named 'nope'; GET /v1/models lists them", srv.temp)


@pytest.mark.parametrize("chunked", [False, True])
def test_an_upload_over_the_limit_is_413(srv: Server, chunked: bool) -> None:
    body, headers = multipart("case.nii.gz", b"\0" * (1024 * 1024 + 1))
    if chunked:  # no Content-Length (http.client sends an iterable chunked): the server counts the bytes
        parts = (body[i : i + 65536] for i in range(0, len(body), 65536))
        answer = srv.request("POST", "/v1/models/onnx3/predict", parts, headers)
    else:
        answer = srv.request("POST", "/v1/models/onnx3/predict", body, headers)
    _assert_one_line_error(answer, 413, "upload larger than 1 MB", srv.temp)


@pytest.mark.parametrize(
    ("name", "content_type", "starts"),
    [
        ("notes.txt", None, "unsupported file type .txt: send one of .nii.gz, .nii"),
        ("case.mhd", None, "unsupported file type .mhd"),
        ("case.nii.gz", "application/octet-stream", "send the scan as multipart/form-data in the field 'file'"),
    ],
)
def test_a_wrong_type_is_415(srv: Server, name: str, content_type: str | None, starts: str) -> None:
    body, headers = multipart(name, b"some bytes")
    if content_type:
        headers["Content-Type"] = content_type
    _assert_one_line_error(srv.request("POST", "/v1/models/onnx3/predict", body, headers), 415, starts, srv.temp)


@pytest.mark.parametrize("kind", ["nii.gz", "zip", "zip-no-series", "png", "field"])
def test_a_truncated_or_unsuitable_upload_is_422(
    kind: str, srv: Server, tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    _, scan = _scan("nii.gz", tiny_runs, tmp_path / "in")
    data = scan.read_bytes()
    if kind == "nii.gz":
        body, headers = multipart("case.nii.gz", data[: len(data) // 2])
        starts = "case.nii.gz: cannot be read as an image"
    elif kind == "zip":
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("a.dcm", b"\1" * 5000)
        body, headers = multipart("ct.zip", archive.getvalue()[:-30])
        starts = "not a readable zip file"
    elif kind == "zip-no-series":  # a sound zip of files that are not DICOM
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("x/a.dcm", b"\1" * 5000)
        body, headers = multipart("ct.zip", archive.getvalue())
        starts = "ct: holds no DICOM series; pass a folder with exactly one series"
    elif kind == "png":  # a 3D scan named .png: the reader finds no PNG
        body, headers = multipart("case.png", data)
        starts = "case.png: cannot be read as an image"
    else:
        body, headers = multipart("case.nii.gz", data, field="scan")
        starts = "no file in the multipart field 'file'"
    answer = srv.request("POST", "/v1/models/onnx3/predict", body, headers)
    _assert_one_line_error(answer, 422, starts, srv.temp)


def test_a_3d_scan_sent_to_a_2d_model_is_422(srv: Server, tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    _, scan = _scan("nii.gz", tiny_runs, tmp_path / "in")
    body, headers = multipart(scan.name, scan.read_bytes())
    answer = srv.request("POST", "/v1/models/onnx2/predict", body, headers)
    _assert_one_line_error(answer, 422, "case.nii.gz: the scan is 3D; this model segments 2D scans", srv.temp)


def test_a_request_beyond_the_queue_is_429(srv: Server, tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    """One place (one worker, no waiting place): a request still uploading holds it, the next gets 429."""
    _, scan = _scan("nii.gz", tiny_runs, tmp_path / "in")
    body, headers = multipart(scan.name, scan.read_bytes())
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers | {"Content-Length": str(len(body))}).items())
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as first:
        first.sendall(f"POST /v1/models/onnx3/predict HTTP/1.1\r\nHost: test\r\n{head}\r\n".encode() + body[:200])
        srv.wait_busy()
        assert srv.request("GET", "/ready").status == 503
        answer = srv.request("POST", "/v1/models/onnx3/predict", body, headers)
        _assert_one_line_error(answer, 429, "too many requests at once; try again later", srv.temp)
        assert answer.headers["retry-after"] == "5"
        first.sendall(body[200:])  # the first request completes normally
        response = first.makefile("rb").readline()
    assert response.startswith(b"HTTP/1.1 200")


def test_a_request_past_its_timeout_is_504_and_its_files_still_go(
    bundles: dict[str, Path], tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    (temp := tmp_path / "temp").mkdir()
    config = ServerConfig(models=(bundles["onnx3"],), api_keys=frozenset({KEY}), timeout_s=1e-6, temp_dir=temp)
    _, scan = _scan("nii.gz", tiny_runs, tmp_path / "in")
    body, headers = multipart(scan.name, scan.read_bytes())
    with running(config) as server:
        answer = server.request("POST", "/v1/models/onnx3/predict", body, headers)
        _assert_one_line_error(answer, 504, "no result within 1e-06 s", temp)
        server.wait_idle()  # the job was cancelled or ran to its end
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("keys", [None, "short\n"])
def test_serve_refuses_to_start_without_proper_keys(
    keys: str | None,
    bundles: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("MEDSEG_API_KEYS", raising=False)
    argv = ["medseg", "serve", str(bundles["onnx3"]), "--port", "1"]
    if keys is not None:
        (tmp_path / "keys").write_text(keys)
        argv += ["--api-keys", str(tmp_path / "keys")]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert ("API key(s) shorter than 16" if keys else "no API keys: pass --api-keys FILE or set MEDSEG_API_KEYS") in err
