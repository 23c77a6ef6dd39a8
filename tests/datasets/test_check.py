"""Every problem `medseg check` claims to find, built as real broken files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.apps.cli.app import app
from medseg.datasets.check import check_dataset, lossy_mask_threshold
from medseg.datasets.dataset import load_dataset
from medseg.io.images import Geometry, read_image, read_label, write_image
from tests.conftest import shared_dataset


def _problems(root: Path) -> list[str]:
    return [str(p) for p in check_dataset(load_dataset(root)).problems]


def test_clean_dataset_has_no_problems(msd_3d: Path) -> None:
    report = check_dataset(load_dataset(msd_3d))
    assert report.ok
    assert len(report.cases) == 4
    assert set(report.label_totals()) == {0, 1, 2, 3}
    assert report.cases[0].shape == (8, 48, 48)


def test_truncated_nifti(msd_3d: Path) -> None:
    path = msd_3d / "imagesTr" / "case_001.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    assert any("case_001.nii.gz" in p for p in _problems(msd_3d))


def test_label_outside_declared_set(msd_3d: Path) -> None:
    path = msd_3d / "labelsTr" / "case_002.nii.gz"
    label, geometry = read_label(path)
    label[0, 0, 0] = 7
    write_image(path, label, geometry)
    assert any("case_002.nii.gz" in p and "[7]" in p and "not declared" in p for p in _problems(msd_3d))


def test_shape_mismatch(msd_3d: Path) -> None:
    path = msd_3d / "labelsTr" / "case_000.nii.gz"
    label, geometry = read_label(path)
    write_image(path, label[:, :40], geometry)
    assert any("case_000.nii.gz" in p and "label shape (8, 40, 48) differs" in p for p in _problems(msd_3d))


def test_geometry_mismatch(msd_3d: Path) -> None:
    path = msd_3d / "labelsTr" / "case_003.nii.gz"
    label, geometry = read_label(path)
    write_image(path, label, Geometry(tuple(s * 2 for s in geometry.spacing), geometry.origin, geometry.direction))
    assert any("case_003.nii.gz" in p and "geometry differs" in p for p in _problems(msd_3d))


@pytest.mark.parametrize(("value", "expected"), [(np.nan, "NaN/Inf"), (np.inf, "NaN/Inf")])
def test_nan_inf_voxels(msd_3d: Path, value: float, expected: str) -> None:
    path = msd_3d / "imagesTr" / "case_000.nii.gz"
    image, geometry = read_image(path)
    image = image[0].astype(np.float32)
    image[1, 2, 3] = value
    write_image(path, image, geometry)
    assert any("case_000.nii.gz" in p and expected in p for p in _problems(msd_3d))


def test_constant_image(msd_3d: Path) -> None:
    path = msd_3d / "imagesTr" / "case_001.nii.gz"
    _, geometry = read_image(path)
    write_image(path, np.zeros((8, 48, 48), np.float32), geometry)
    assert any("case_001.nii.gz" in p and "constant" in p for p in _problems(msd_3d))


def test_text_file_named_nifti_and_missing_label(msd_3d: Path) -> None:
    (msd_3d / "imagesTr" / "case_002.nii.gz").write_text("this is not an image")
    (msd_3d / "labelsTr" / "case_003.nii.gz").unlink()
    problems = _problems(msd_3d)
    assert any("case_002.nii.gz" in p for p in problems)
    assert any("case_003.nii.gz" in p and "missing" in p for p in problems)


def test_non_binary_structure_mask(tmp_path: Path) -> None:
    from medseg.synthetic import write_dataset
    from tests.conftest import SPEC_2D

    root = write_dataset(tmp_path / "ml", SPEC_2D, n_cases=2, seed=0, layout="nnunet", overlapping=True)
    path = root / "labelsTr" / "heart" / "case_000.nii.gz"
    mask, geometry = read_label(path)
    mask[0, :3] = 2
    write_image(path, mask, geometry)
    assert any("heart" in p and "not binary" in p for p in _problems(root))


def test_cli_check_broken_folder_names_each_file(msd_3d: Path) -> None:
    """The issue's example: a truncated .nii.gz, a label with value 7 and a shape mismatch."""
    image = msd_3d / "imagesTr" / "case_000.nii.gz"
    raw = gzip.decompress(image.read_bytes())
    image.write_bytes(gzip.compress(raw[:1000]))
    label7 = msd_3d / "labelsTr" / "case_001.nii.gz"
    label, geometry = read_label(label7)
    label[2, 2, 2] = 7
    write_image(label7, label, geometry)
    small = msd_3d / "labelsTr" / "case_002.nii.gz"
    label, geometry = read_label(small)
    write_image(small, label[:4], geometry)
    result = CliRunner().invoke(app, ["check", str(msd_3d)], terminal_width=300)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "case_000.nii.gz" in out and "truncated" in out.lower()
    assert "case_001.nii.gz: label values [7] are not declared" in out
    assert "case_002.nii.gz: label shape (4, 48, 48) differs from image shape (8, 48, 48)" in out
    assert "Traceback" not in result.output


def test_cli_check_clean_exit_zero(msd_2d: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(msd_2d), "--summary"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output


def test_cli_bad_dataset_json_is_one_line_exit_2(msd_3d: Path) -> None:
    import subprocess
    import sys

    (msd_3d / "dataset.json").write_text(json.dumps({"name": "x"}))
    proc = subprocess.run(
        [sys.executable, "-m", "medseg.apps.cli.app", "check", str(msd_3d)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "dataset.json" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_real_hippocampus_three_labels_one_channel() -> None:
    root = shared_dataset("msd-hippocampus")
    result = CliRunner().invoke(app, ["check", str(root), "--summary"], terminal_width=200)
    assert result.exit_code == 0, result.output
    ds = load_dataset(root)
    assert len(ds.labels.names) == 3 and len(ds.channel_names) == 1
    assert "3: 0=background" in result.output and "1: MRI" in result.output


def test_lossy_jpeg_masks_are_recognised(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for name in ("a", "b", "c"):
        write_image(
            tmp_path / "images" / f"{name}.png", rng.integers(0, 200, (48, 48), dtype=np.uint8), Geometry.identity(2)
        )
        mask = np.zeros((48, 48), np.uint8)
        mask[8:30, 10:33] = 255
        write_image(tmp_path / "masks" / f"{name}.jpg", mask, Geometry.identity(2))
    problems = _problems(tmp_path)
    assert any("masks look lossy" in p and "--mask-threshold 128" in p for p in problems), problems


def test_lossy_rule_spares_class_indices_and_clean_masks() -> None:
    assert lossy_mask_threshold({0: 9000, 1: 500, 2: 300, 3: 20, 4: 5, 5: 2}) is None  # 0..K class indices
    assert lossy_mask_threshold({0: 9000, 255: 1000}) is None  # clean 0/255
    assert lossy_mask_threshold({0: 9000, 1: 30, 2: 9, 3: 4, 253: 5, 254: 12, 255: 1000}) == 128
    assert lossy_mask_threshold({0: 9000, 100: 800, 5: 30, 98: 9, 103: 4, 60: 2}) is None  # 60 is not near a level
    voc = {0: 6000, **{k: 300 for k in range(1, 21)}, 255: 400}  # 20 classes and an "ignore" value
    assert lossy_mask_threshold(voc) is None


def test_check_summary_counts_the_channels_the_files_hold(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        rgb = rng.integers(0, 255, (3, 32, 32), dtype=np.uint8)
        write_image(tmp_path / "images" / f"{name}.png", rgb, Geometry.identity(2))
        mask = np.zeros((32, 32), np.uint8)
        mask[4:20, 4:20] = 1
        write_image(tmp_path / "masks" / f"{name}.png", mask, Geometry.identity(2))
    result = CliRunner().invoke(app, ["check", str(tmp_path), "--summary"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "3 per case: R, G, B" in result.output and "1: image" not in result.output


def test_check_output_scales_and_is_plain_when_piped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medseg.apps.cli import views

    long_name = "cju0qkwl35piu0993l0dewei2_a_very_long_case_name"
    for i in range(4):
        write_image(
            tmp_path / "images" / f"{long_name}_{i}.png",
            np.arange(256, dtype=np.uint8).reshape(16, 16),
            Geometry.identity(2),
        )
        mask = np.zeros((16, 16), np.uint8)
        mask[2:6, 2:6] = 1
        write_image(tmp_path / "masks" / f"{long_name}_{i}.png", mask, Geometry.identity(2))
    runner = CliRunner()  # not a terminal: plain tab-separated lines, full case names
    result = runner.invoke(app, ["check", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith(long_name)]
    assert len(rows) == 4 and all("\t" in r for r in rows) and "┃" not in result.output
    assert "distances are in voxels, not mm" in result.output  # PNG files carry no spacing
    monkeypatch.setattr(views, "PER_CASE_ROWS", 3)  # more cases than rows: the summary only, rows on request
    result = runner.invoke(app, ["check", str(tmp_path)])
    assert not any(line.startswith(long_name) for line in result.output.splitlines())
    assert "4 cases: `--per-case` lists one row each" in result.output
    result = runner.invoke(app, ["check", str(tmp_path), "--per-case"])
    assert sum(line.startswith(long_name) for line in result.output.splitlines()) == 4


@pytest.mark.slow
def test_kvasir_jpeg_masks_are_called_lossy_and_the_fix_gives_two_labels(tmp_path: Path) -> None:
    root = shared_dataset("kvasir-seg")
    report = check_dataset(load_dataset(root))
    lossy = [p for p in report.problems if "masks look lossy" in p.message]
    assert len(lossy) == 1 and "--mask-threshold 128" in lossy[0].message
    from medseg.datasets.convert import ConvertOptions, convert_dataset

    out = convert_dataset(load_dataset(root), tmp_path / "kvasir", ConvertOptions(mask_threshold=128))
    assert json.loads((out / "dataset.json").read_text())["labels"] == {"background": 0, "foreground": 1}
