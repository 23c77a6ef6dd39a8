"""Reliability with bad input: every command meets a corpus of broken files and must answer with ONE line
naming the file and the problem, the documented exit code, no traceback and nothing half-written.

The corpus is built here from a clean synthetic dataset (no committed binaries). Most commands run through
``medseg.apps.cli.app.main()`` in-process (exact exit code and stderr, fast); a representative subset runs as a real
subprocess. docs/reliability.md lists every case with the message the user sees.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.apps.cli.app import main
from medseg.io.images import Geometry, read_image, read_label, write_image
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import TrainOptions, train_run

SPEC_3D = SyntheticSpec(ndim=3, shape=(8, 48, 48))
SPEC_2D = SyntheticSpec(ndim=2, shape=(64, 64))
TINY = TrainOptions(epochs=1, iterations_per_epoch=1, val_every=1, device="cpu", folds=2, amp="off")
CPU = ["--device", "cpu"]


# ------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_main(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Result:
    """``medseg ARGS`` through the console entry point, in-process: exit code, stdout and stderr."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["medseg", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    code = exc.value.code
    return Result(code if isinstance(code, int) else (0 if code is None else 1), captured.out, captured.err)


def run_process(args: list[str]) -> Result:
    """``python -m medseg.apps.cli.app ARGS`` as a real process (start-up costs ~1.5 s: used for a subset)."""
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.apps.cli.app", *args],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit code 2, exactly one non-empty stderr line ``error: ...`` holding every needle, no traceback."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2, (result.code, result.out, result.err)
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.err + result.out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------------------------------- the corpus


def truncate_gzip(path: Path) -> None:
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def text_file(path: Path) -> None:
    path.write_text("this is a text file, not an image\n")


def nan_voxels(path: Path, value: float = np.nan) -> None:
    image, geometry = read_image(path)
    image = image[0].astype(np.float32)
    image[1, 2, 3] = value
    write_image(path, image, geometry)


def inf_voxels(path: Path) -> None:
    nan_voxels(path, np.inf)


def constant(path: Path) -> None:
    image, geometry = read_image(path)
    write_image(path, np.zeros(image.shape[1:], np.float32), geometry)


def two_channels(path: Path) -> None:
    """A 4D NIfTI ``(x, y, z, 2)``: two different volumes where one is expected."""
    image, geometry = read_image(path)
    write_image(path, np.concatenate([image, image[:, ::-1] + 1]), geometry)


def cropped(path: Path) -> None:
    label, geometry = read_label(path)
    write_image(path, label[:, :40], geometry)


def double_spacing(path: Path) -> None:
    label, geometry = read_label(path)
    write_image(path, label, Geometry(tuple(2 * s for s in geometry.spacing), geometry.origin, geometry.direction))


def flipped_direction(path: Path) -> None:
    label, geometry = read_label(path)
    direction = tuple(-v if i == 0 else v for i, v in enumerate(geometry.direction))
    write_image(path, label, Geometry(geometry.spacing, geometry.origin, direction))


def label_seven(path: Path) -> None:
    label, geometry = read_label(path)
    label[2, 2, 2] = 7
    write_image(path, label, geometry)


def absurd_nifti(path: Path) -> None:
    """A NIfTI header claiming 30000³ voxels (int16 is NIfTI-1's limit) over a few bytes of data."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape((30000, 30000, 30000))
    raw = header.binaryblock + b"\0" * 4 + b"\0" * 64
    path.write_bytes(gzip.compress(raw))


def absurd_nrrd(path: Path) -> None:
    """A NRRD header claiming 100000³ voxels."""
    path.write_bytes(
        b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\nendian: little\n\n"
        + b"\0" * 64
    )


def rgb_mask(path: Path) -> None:
    """A PNG mask saved in colour with channels that disagree."""
    from PIL import Image

    label, _ = read_label(path)
    rgb = np.stack([label, np.zeros_like(label), label * 0 + 255], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(path)


def symlink_loop(path: Path) -> None:
    """``ln -s NAME NAME``: a symbolic link that points at itself (opening it fails with ELOOP)."""
    path.unlink()
    path.symlink_to(path.name)


def dangling_symlink(path: Path) -> None:
    """A symbolic link to a file that is not there (a moved or unmounted original)."""
    path.unlink()
    path.symlink_to(f"gone_{path.name}")


def dicom_scan(folder: Path, source: Path) -> Path:
    """``source`` (a NIfTI scan) written as a DICOM series folder."""
    image, geometry = read_image(source)
    return write_image(folder, np.round(image[0]).astype(np.int16), geometry)


def dicom_missing_slice(folder: Path, source: Path) -> None:
    dicom_scan(folder, source)
    files = sorted(folder.iterdir())
    files[len(files) // 2].unlink()


def dicom_two_series(folder: Path, source: Path) -> None:
    dicom_scan(folder, source)
    other = dicom_scan(folder.with_name("other"), source)
    for f in other.iterdir():
        f.rename(folder / f"b{f.name}")
    other.rmdir()


# One labelled 3D MSD dataset (case_000..case_003); each broken input names the file it breaks
# (relative to the dataset) and how; check reports readable-data problems with exit code 1.
@dataclass(frozen=True)
class Broken:
    file: str
    make: Callable[[Path], None]
    shows: str  # a piece of the message


DATASET_CORPUS: dict[str, Broken] = {
    "truncated-nifti": Broken("imagesTr/case_001.nii.gz", truncate_gzip, "truncated"),
    "zero-byte-nifti": Broken("imagesTr/case_001.nii.gz", zero_bytes, "file is empty (0 bytes)"),
    "text-named-nifti": Broken("imagesTr/case_001.nii.gz", text_file, "cannot be read as NIfTI"),
    "4d-label": Broken("labelsTr/case_001.nii.gz", two_channels, "2"),
    "nan-voxels": Broken("imagesTr/case_001.nii.gz", nan_voxels, "1 NaN/Inf voxels"),
    "inf-voxels": Broken("imagesTr/case_001.nii.gz", inf_voxels, "1 NaN/Inf voxels"),
    "constant-image": Broken("imagesTr/case_001.nii.gz", constant, "image is constant"),
    "shape-mismatch": Broken("labelsTr/case_001.nii.gz", cropped, "label shape (8, 40, 48) differs"),
    "spacing-mismatch": Broken("labelsTr/case_001.nii.gz", double_spacing, "label geometry differs"),
    "direction-mismatch": Broken("labelsTr/case_001.nii.gz", flipped_direction, "label geometry differs"),
    "undeclared-label": Broken("labelsTr/case_001.nii.gz", label_seven, "label values [7] are not declared"),
    "absurd-dimensions": Broken("imagesTr/case_001.nii.gz", absurd_nifti, "voxels, over the limit"),
    "symlink-loop": Broken("imagesTr/case_001.nii.gz", symlink_loop, "is a symbolic link loop"),
    "dangling-symlink": Broken(
        "labelsTr/case_001.nii.gz", dangling_symlink, "is a broken symbolic link (to gone_case_001.nii.gz)"
    ),
}


def _json_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))

    return edit


# dataset.json problems make the dataset unreadable: check exits 2 like every other command.
DATASET_JSON_CORPUS: dict[str, Broken] = {
    "json-missing-labels": Broken("dataset.json", _json_edit(lambda m: m.pop("labels")), "missing key 'labels'"),
    "json-training-not-list": Broken(
        "dataset.json", _json_edit(lambda m: m.update(training="imagesTr")), "'training' must be a list"
    ),
    "json-no-known-keys": Broken("dataset.json", lambda p: p.write_text('{"name": "x"}'), "neither nnU-Net keys"),
    "json-invalid": Broken("dataset.json", lambda p: p.write_text('{"labels": '), "invalid JSON at line 1"),
    "json-path-escapes": Broken(
        "dataset.json",
        _json_edit(lambda m: m["training"][0].update(image="../../etc/passwd.nii.gz")),
        "points outside the dataset folder",
    ),
}


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "msd3d"
    return write_dataset(root, SPEC_3D, n_cases=4, seed=0, layout="msd", n_test=1)


@pytest.fixture
def dataset(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the clean dataset, free to break."""
    return Path(shutil.copytree(pristine, tmp_path / "dataset"))


@pytest.fixture(scope="module")
def trained(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run for every predict test."""
    return train_run(pristine, tmp_path_factory.mktemp("trained") / "run", TINY)


def broken_copy(dataset: Path, name: str) -> tuple[Path, Broken]:
    broken = {**DATASET_CORPUS, **DATASET_JSON_CORPUS}[name]
    broken.make(dataset / broken.file)
    return dataset / broken.file, broken


# ------------------------------------------------------------------------------- check, plan, train


@pytest.mark.parametrize("name", sorted(DATASET_CORPUS))
def test_check_lists_the_broken_file_exit_1(name: str, dataset: Path, capsys, monkeypatch) -> None:
    path, broken = broken_copy(dataset, name)
    result = run_main(["check", str(dataset), "--summary"], capsys, monkeypatch)
    assert result.code == 1, result
    out = " ".join(result.out.split())  # undo rich's wrapping
    assert f"{path}: " in out and broken.shows in out, out
    assert "Traceback" not in result.out + result.err


@pytest.mark.parametrize("name", sorted(DATASET_JSON_CORPUS))
def test_check_unreadable_dataset_exit_2(name: str, dataset: Path, capsys, monkeypatch) -> None:
    path, broken = broken_copy(dataset, name)
    assert_one_line_error(run_main(["check", str(dataset)], capsys, monkeypatch), f"{path}: ", broken.shows)


@pytest.mark.parametrize("command", ["plan", "train"])
@pytest.mark.parametrize("name", sorted(DATASET_CORPUS) + sorted(DATASET_JSON_CORPUS))
def test_plan_and_train_refuse_before_writing(name: str, command: str, dataset: Path, tmp_path, capsys, monkeypatch):
    path, broken = broken_copy(dataset, name)
    run = tmp_path / "run"
    result = run_main([command, str(dataset), "--out", str(run), *CPU], capsys, monkeypatch)
    assert_one_line_error(result, f"{path}: ", broken.shows)
    assert not run.exists()


def test_direction_mismatch_message_shows_the_directions(dataset: Path) -> None:
    from medseg.datasets.check import check_dataset
    from medseg.datasets.dataset import load_dataset

    path, _ = broken_copy(dataset, "direction-mismatch")
    messages = [p.message for p in check_dataset(load_dataset(dataset)).problems if p.path == path]
    assert messages and "direction (-1, 0, 0, 0, 1, 0, 0, 0, 1) vs" in messages[0], messages


# ---------------------------------------------------------------------------------------- preprocess

PREPROCESS_CORPUS = [
    "truncated-nifti",
    "zero-byte-nifti",
    "text-named-nifti",
    "4d-label",
    "nan-voxels",
    "shape-mismatch",
    "spacing-mismatch",
    "direction-mismatch",
    "undeclared-label",
    "absurd-dimensions",
    "symlink-loop",
]


@pytest.mark.parametrize("name", PREPROCESS_CORPUS)
def test_preprocess_of_a_run_whose_data_broke_after_planning(name: str, dataset: Path, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert run_main(["plan", str(dataset), "--out", str(run), *CPU], capsys, monkeypatch).code == 0
    path, _ = broken_copy(dataset, name)
    assert_one_line_error(run_main(["preprocess", str(run)], capsys, monkeypatch), f"{path}: ")
    # the cache holds only complete cases: each .npz with its .json, no temporary files
    cache = files_under(run / "preprocessed")
    assert not [f for f in cache if ".tmp-" in f]
    assert sorted(f[:-4] for f in cache if f.endswith(".npz")) == sorted(f[:-5] for f in cache if f.endswith(".json"))
    assert "case_001.npz" not in cache


# ------------------------------------------------------------------------------------------- predict


def _scan(pristine: Path, tmp_path: Path, make: Callable[..., None]) -> Path:
    source = pristine / "imagesTs" / "case_004.nii.gz"
    if make in (dicom_missing_slice, dicom_two_series):
        folder = tmp_path / "scans" / "ct"
        make(folder, source)
        return folder
    if make is absurd_nrrd:
        path = tmp_path / "scans" / "case_004.nrrd"
        path.parent.mkdir()
        make(path)
        return path
    path = tmp_path / "scans" / "case_004.nii.gz"
    path.parent.mkdir()
    shutil.copy(source, path)
    make(path)
    return path


PREDICT_CORPUS: dict[str, tuple[Callable[..., None], str]] = {
    "truncated-nifti": (truncate_gzip, "file is truncated"),
    "zero-byte-nifti": (zero_bytes, "file is empty (0 bytes)"),
    "text-named-nifti": (text_file, "cannot be read as NIfTI"),
    "2-channel-scan": (two_channels, "has 2 channel(s), the model expects 1"),
    "nan-voxels": (nan_voxels, "1 NaN/Inf voxels"),
    "inf-voxels": (inf_voxels, "1 NaN/Inf voxels"),
    "absurd-dimensions-nrrd": (absurd_nrrd, "1,000,000,000,000,000 voxels, over the limit"),
    "dicom-missing-slice": (dicom_missing_slice, "missing"),
    "dicom-two-series": (dicom_two_series, "holds 2 DICOM series"),
    "symlink-loop": (symlink_loop, "is a symbolic link loop"),
    "dangling-symlink": (dangling_symlink, "is a broken symbolic link (to gone_case_004.nii.gz)"),
}


@pytest.mark.parametrize("name", sorted(PREDICT_CORPUS))
def test_predict_refuses_a_bad_scan(name: str, trained: Path, pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    make, shows = PREDICT_CORPUS[name]
    scan = _scan(pristine, tmp_path, make)
    out = tmp_path / "pred"
    result = run_main(["predict", str(trained), str(scan), str(out), *CPU], capsys, monkeypatch)
    assert_one_line_error(result, f"{scan}: ", shows)
    assert files_under(out) == []


def test_predict_segments_a_constant_scan(trained: Path, pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    """A blank scan is odd but readable: it is segmented (no crash, no NaN), not refused."""
    scan = _scan(pristine, tmp_path, constant)
    out = tmp_path / "pred"
    result = run_main(["predict", str(trained), str(scan), str(out), *CPU, "--no-tta"], capsys, monkeypatch)
    assert result.code == 0, result
    labels, _ = read_label(out / scan.name)
    assert labels.shape == read_image(scan)[0].shape[1:]


def test_predict_continue_skips_finished_cases(trained: Path, pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    """A batch stopped by a bad scan leaves only complete files; ``--continue`` keeps them and does the rest."""
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a_case.nii.gz", "b_case.nii.gz"):
        shutil.copy(pristine / "imagesTs" / "case_004.nii.gz", scans / name)
    truncate_gzip(scans / "b_case.nii.gz")
    out = tmp_path / "pred"
    args = ["predict", str(trained), str(scans), str(out), *CPU, "--no-tta"]
    assert_one_line_error(run_main(args, capsys, monkeypatch), "b_case.nii.gz: ", "truncated")
    assert files_under(out) == ["a_case.nii.gz"]  # complete (atomic), nothing half-written
    first = (out / "a_case.nii.gz").stat()
    shutil.copy(pristine / "imagesTs" / "case_004.nii.gz", scans / "b_case.nii.gz")
    result = run_main([*args, "--continue"], capsys, monkeypatch)
    assert result.code == 0, result
    assert files_under(out) == ["a_case.nii.gz", "b_case.nii.gz"]
    again = (out / "a_case.nii.gz").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not rewritten
    assert read_label(out / "b_case.nii.gz")[0].shape == read_image(scans / "b_case.nii.gz")[0].shape[1:]


# ---------------------------------------------------------------------- a scan of another kind than the run's


@pytest.fixture(scope="module")
def trained_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run on 2D grey PNG slices (images/ + masks/)."""
    root = tmp_path_factory.mktemp("trained2d")
    dataset = write_dataset(root / "f2d", SPEC_2D, n_cases=4, seed=5, layout="folder")
    return train_run(dataset, root / "run", TINY)


def _rgb_png(path: Path, source: Path) -> Path:
    from PIL import Image

    grey = np.asarray(Image.open(source).convert("L"))
    Image.fromarray(np.stack([grey, grey[::-1], 255 - grey], axis=-1), mode="RGB").save(path)
    return path


@pytest.mark.parametrize(
    ("run", "scan", "shows"),
    [
        ("3d", "png", "is a 2D image (64×64), the run was trained on 3D volumes"),
        ("2d", "nifti", "is a 3D volume (8×48×48), the run was trained on 2D images"),
        ("2d", "rgb-png", "has 3 channel(s), the model expects 1"),  # 3D: "2-channel-scan" above
    ],
    ids=["2d-png-into-3d-run", "3d-nifti-into-2d-run", "rgb-png-into-grey-2d-run"],
)
def test_predict_refuses_a_scan_the_run_was_not_trained_for(
    run: str, scan: str, shows: str, trained: Path, trained_2d: Path, pristine: Path, tmp_path, capsys, monkeypatch
) -> None:
    """Dimensionality and channels are checked once, where a scan meets a run (preprocessing/checks.check_scan)."""
    png = trained_2d.parent / "f2d" / "images" / "case_000.png"
    path = {
        "png": lambda: png,
        "rgb-png": lambda: _rgb_png(tmp_path / "colour.png", png),
        "nifti": lambda: pristine / "imagesTs" / "case_004.nii.gz",
    }[scan]()
    out = tmp_path / "pred"
    run_dir = trained if run == "3d" else trained_2d
    result = run_main(["predict", str(run_dir), str(path), str(out), *CPU, "--no-tta"], capsys, monkeypatch)
    assert_one_line_error(result, f"{path}: {shows} (pass ")
    assert files_under(out) == []


# ------------------------------------------------------------------------------------- untrusted files


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("plans.json", "checkpoint_best.pt"):
        shutil.copy(trained / name, run / name)
    return run


def test_plans_with_an_unknown_key_are_refused(trained: Path, pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    run = _copy_run(trained, tmp_path)
    plans = json.loads((run / "plans.json").read_text())
    plans["train"]["learning_rat"] = 0.1
    (run / "plans.json").write_text(json.dumps(plans))
    scan = pristine / "imagesTs" / "case_004.nii.gz"
    result = run_main(["predict", str(run), str(scan), str(tmp_path / "pred"), *CPU], capsys, monkeypatch)
    assert_one_line_error(result, "plans.json", "unknown key(s) ['learning_rat']")
    assert not (tmp_path / "pred").exists()


class _Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("code ran while loading",))


def test_checkpoint_with_code_is_refused(trained: Path, pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    run = _copy_run(trained, tmp_path)
    torch.save({"model": {}, "payload": _Payload()}, run / "checkpoint_best.pt")
    scan = pristine / "imagesTs" / "case_004.nii.gz"
    result = run_main(["predict", str(run), str(scan), str(tmp_path / "pred"), *CPU], capsys, monkeypatch)
    assert_one_line_error(result, f"{run / 'checkpoint_best.pt'}: ", "refused")
    assert "code ran" not in result.out + result.err


def damage_weights(path: Path) -> None:
    """Zero 4 KiB in the middle of the checkpoint's largest tensor (torch stores zip entries uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    middle = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
    assert info.file_size >= 8192
    data[middle - 2048 : middle + 2048] = bytes(4096)
    path.write_bytes(bytes(data))


def test_damaged_checkpoint_is_refused(trained: Path, pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    """Zeroed bytes inside the weights load fine with torch alone; the checkpoint's checksum refuses them."""
    run = _copy_run(trained, tmp_path)
    damage_weights(run / "checkpoint_best.pt")
    torch.load(run / "checkpoint_best.pt", weights_only=True)  # torch notices nothing
    scan = pristine / "imagesTs" / "case_004.nii.gz"
    result = run_main(["predict", str(run), str(scan), str(tmp_path / "pred"), *CPU], capsys, monkeypatch)
    assert_one_line_error(result, f"{run / 'checkpoint_best.pt'}: checksum mismatch: the file is damaged")
    assert not (tmp_path / "pred").exists()


# ------------------------------------------------------------------------------------------ evaluate

EVALUATE_CORPUS = [
    "truncated-nifti",
    "zero-byte-nifti",
    "text-named-nifti",
    "4d-label",
    "shape-mismatch",
    "absurd-dimensions",
    "symlink-loop",
    "dangling-symlink",
]


def test_evaluate_names_a_missing_reference_folder(pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    result = run_main(["evaluate", str(pristine / "labelsTr"), str(tmp_path / "nowhere")], capsys, monkeypatch)
    assert_one_line_error(result, f"{tmp_path / 'nowhere'}: folder not found")


@pytest.mark.parametrize("role", ["prediction", "reference"])
@pytest.mark.parametrize("name", EVALUATE_CORPUS)
def test_evaluate_refuses_a_bad_file(name: str, role: str, pristine: Path, tmp_path, capsys, monkeypatch) -> None:
    pred = Path(shutil.copytree(pristine / "labelsTr", tmp_path / "pred"))
    ref = Path(shutil.copytree(pristine / "labelsTr", tmp_path / "ref"))
    broken = DATASET_CORPUS[name]
    path = (pred if role == "prediction" else ref) / "case_001.nii.gz"
    broken.make(path)
    result = run_main(["evaluate", str(pred), str(ref)], capsys, monkeypatch)
    named = pred / "case_001.nii.gz" if name == "shape-mismatch" else path  # a mismatch names the prediction
    assert_one_line_error(result, f"{named}: ")
    assert not [f for f in files_under(pred) if "metrics" in f]


# ------------------------------------------------------------------------------- 2D colour PNG masks


@pytest.fixture
def folder_2d(tmp_path: Path) -> Path:
    root = write_dataset(tmp_path / "folder2d", SPEC_2D, n_cases=3, seed=3, layout="folder")
    rgb_mask(root / "masks" / "case_001.png")
    return root


def test_rgb_mask_in_check_plan_and_evaluate(folder_2d: Path, tmp_path, capsys, monkeypatch) -> None:
    mask = folder_2d / "masks" / "case_001.png"
    shows = "mask has 3 different colour channels"
    result = run_main(["check", str(folder_2d), "--summary"], capsys, monkeypatch)
    assert result.code == 1 and f"{mask}: {shows}" in " ".join(result.out.split()), result
    run = tmp_path / "run"
    assert_one_line_error(run_main(["plan", str(folder_2d), "--out", str(run), *CPU], capsys, monkeypatch), shows)
    assert not run.exists()
    result = run_main(["evaluate", str(folder_2d / "masks"), str(folder_2d / "masks")], capsys, monkeypatch)
    assert_one_line_error(result, f"{mask}: ", shows)
    assert not (folder_2d / "masks" / "metrics.json").exists()


# --------------------------------------------------------------------- symbolic links in a folder dataset


@pytest.mark.parametrize(
    ("make", "shows"),
    [(symlink_loop, "is a symbolic link loop"), (dangling_symlink, "is a broken symbolic link (to gone_case_001.png)")],
    ids=["loop", "dangling"],
)
def test_symlinks_in_an_images_folder(make, shows: str, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``images/case_001.png`` a link loop or a dangling link: a problem of that case, not a skipped file."""
    root = write_dataset(tmp_path / "f2d", SPEC_2D, n_cases=3, seed=3, layout="folder")
    image = root / "images" / "case_001.png"
    make(image)
    result = run_main(["check", str(root), "--summary"], capsys, monkeypatch)
    out = " ".join(result.out.split())
    assert result.code == 1 and f"{image}: {shows}" in out and "Traceback" not in result.out + result.err, result
    assert "mask without an image" not in out
    for command in ("plan", "train"):
        run = tmp_path / "run"
        result = run_main([command, str(root), "--out", str(run), *CPU], capsys, monkeypatch)
        assert_one_line_error(result, f"{image}: {shows}", "run `medseg check`")
        assert not run.exists()


# --------------------------------------------------------------------------- an output path under a file


def _output_under_a_file(command: str, blocker: Path, pristine: Path, request: pytest.FixtureRequest) -> list[str]:
    scan = pristine / "imagesTs" / "case_004.nii.gz"
    labels = pristine / "labelsTr"
    return {
        "predict": lambda: ["predict", str(request.getfixturevalue("trained")), str(scan), str(blocker / "out"), *CPU],
        "predict-nested": lambda: [
            "predict", str(request.getfixturevalue("trained")), str(scan), str(blocker / "a" / "b"), *CPU
        ],
        "evaluate": lambda: ["evaluate", str(labels), str(labels), "--out", str(blocker / "x")],
        "plan": lambda: ["plan", str(pristine), "--out", str(blocker / "run"), *CPU],
        "train": lambda: ["train", str(pristine), "--out", str(blocker / "run"), *CPU],
        "convert": lambda: ["convert", str(pristine), str(blocker / "new")],
        "generate": lambda: ["generate", str(blocker / "new"), "--cases", "2"],
    }[command]()  # fmt: skip


@pytest.mark.parametrize("command", ["predict", "predict-nested", "evaluate", "plan", "train", "convert", "generate"])
def test_an_output_path_under_a_file(command: str, pristine: Path, tmp_path, capsys, monkeypatch, request) -> None:
    """``medseg predict RUN scan some_file/out`` and the like: every output folder is made by
    ``fileutil.make_dirs``, which names the file in the way; nothing is written anywhere."""
    blocker = tmp_path / "some_file"
    blocker.write_text("a file, not a folder\n")
    result = run_main(_output_under_a_file(command, blocker, pristine, request), capsys, monkeypatch)
    assert_one_line_error(result, f"{blocker}: is a file, not a folder (an output folder is needed there")
    assert blocker.read_text() == "a file, not a folder\n"
    assert files_under(tmp_path) == ["some_file"]
    assert not [f for f in files_under(pristine) if "metrics" in f or ".tmp-" in f]


# ------------------------------------------------------------------------ real processes (a subset)


def test_real_process_check_plan_predict_evaluate(dataset: Path, trained: Path, pristine: Path, tmp_path) -> None:
    """The console entry point as a user meets it: exit codes and a single stderr line, no traceback."""
    path, _ = broken_copy(dataset, "truncated-nifti")
    check = run_process(["check", str(dataset), "--summary"])
    assert check.code == 1 and str(path) in " ".join(check.out.split()) and "Traceback" not in check.err
    assert_one_line_error(run_process(["plan", str(dataset), "--out", str(tmp_path / "run")]), f"{path}: ")
    assert not (tmp_path / "run").exists()
    scan = _scan(pristine, tmp_path, nan_voxels)
    predicted = run_process(["predict", str(trained), str(scan), str(tmp_path / "pred"), *CPU])
    assert_one_line_error(predicted, f"{scan}: ", "NaN/Inf")
    assert files_under(tmp_path / "pred") == []
    zero_bytes(dataset / "labelsTr" / "case_002.nii.gz")
    evaluated = run_process(["evaluate", str(dataset / "labelsTr"), str(pristine / "labelsTr")])
    assert_one_line_error(evaluated, f"{dataset / 'labelsTr' / 'case_002.nii.gz'}: ", "file is empty")
    assert not (dataset / "labelsTr" / "metrics.json").exists()
