from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.apps.cli.app import app
from medseg.errors import DataError
from medseg.evaluation.evaluate import discover_pairs, evaluate_pairs, write_metrics
from medseg.io.images import Geometry, write_image
from medseg.labels import LabelSpec


def _write_pair(tmp_path: Path, name: str, pred: np.ndarray, ref: np.ndarray, spacing=(1.0, 1.0)) -> None:  # type: ignore[no-untyped-def]
    write_image(tmp_path / "pred" / name, pred.astype(np.uint8), Geometry.identity(2, spacing))
    write_image(tmp_path / "ref" / name, ref.astype(np.uint8), Geometry.identity(2, spacing))


def test_hand_computed_case(tmp_path: Path) -> None:
    ref = np.zeros((10, 10))
    ref[2:5, 2:5] = 1  # 9 voxels
    pred = np.zeros((10, 10))
    pred[3:6, 2:5] = 1  # shifted by one row: 6 overlap
    pred[8, 8] = 2
    ref[8, 8] = 2
    _write_pair(tmp_path, "a.nii.gz", pred, ref, spacing=(2.0, 1.0))
    labels = LabelSpec({0: "bg", 1: "one", 2: "two"}, (0, 1, 2))
    metrics = evaluate_pairs(discover_pairs(tmp_path / "pred", tmp_path / "ref", labels), labels)
    one = metrics["cases"][0]["metrics"]["1"]
    assert one["dice"] == pytest.approx(2 * 6 / 18)
    assert one["iou"] == pytest.approx(6 / 12)
    assert one["hd"] == pytest.approx(2.0)  # one row at 2 mm spacing
    assert metrics["cases"][0]["metrics"]["2"]["dice"] == 1.0
    assert metrics["summary"]["1"]["dice"]["n"] == 1


def test_empty_policy_both_and_one_empty(tmp_path: Path) -> None:
    ref = np.zeros((6, 6))
    ref[1:3, 1:3] = 1
    _write_pair(tmp_path, "both.png", np.zeros((6, 6)), np.zeros((6, 6)))
    _write_pair(tmp_path, "missed.png", np.zeros((6, 6)), ref)
    labels = LabelSpec({0: "bg", 1: "x"}, (0, 1))
    metrics = evaluate_pairs(discover_pairs(tmp_path / "pred", tmp_path / "ref", labels), labels)
    by_case = {c["case"]: c["metrics"]["1"] for c in metrics["cases"]}
    assert by_case["both"]["dice"] == 1.0 and by_case["both"]["hd95"] == 0.0
    assert by_case["missed"]["dice"] == 0.0 and math.isnan(by_case["missed"]["hd95"])
    assert metrics["summary"]["1"]["hd95"]["n_nan"] == 1
    json_path, csv_path = write_metrics(metrics, tmp_path)
    assert json.loads(json_path.read_text())["cases"][1]["metrics"]["1"]["hd95"] is None
    assert "missed,1,x,0," in csv_path.read_text()


def test_missing_prediction_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a.png", np.zeros((4, 4)), np.zeros((4, 4)))
    write_image(tmp_path / "ref" / "b.png", np.zeros((4, 4), np.uint8), Geometry.identity(2))
    with pytest.raises(DataError, match="prediction missing"):
        discover_pairs(tmp_path / "pred", tmp_path / "ref", LabelSpec({0: "bg", 1: "x"}, (0, 1)))


def test_cli_evaluate_discovers_labels(tmp_path: Path) -> None:
    ref = np.zeros((8, 8))
    ref[2:6, 2:6] = 255
    _write_pair(tmp_path, "c.png", ref, ref)
    result = CliRunner().invoke(
        app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref"), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["classes"] == {"1": "label_255"}
    assert metrics["cases"][0]["metrics"]["1"]["dice"] == 1.0


@pytest.mark.parametrize(("name", "unit"), [("a.nii.gz", "mm"), ("a.png", "voxels")])
def test_distances_are_in_voxels_when_the_files_have_no_spacing(tmp_path: Path, name: str, unit: str) -> None:
    ref = np.zeros((10, 10))
    ref[2:5, 2:5] = 1
    _write_pair(tmp_path, name, ref, ref)
    labels = LabelSpec({0: "bg", 1: "one"}, (0, 1))
    assert evaluate_pairs(discover_pairs(tmp_path / "pred", tmp_path / "ref", labels), labels)["spacing_unit"] == unit


def test_a_nifti_without_spatial_units_has_no_physical_spacing(tmp_path: Path) -> None:
    import nibabel as nib

    from medseg.io.images import has_physical_spacing

    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    image.header.set_xyzt_units(xyz="unknown")
    nib.save(image, tmp_path / "u.nii.gz")
    image.header.set_xyzt_units(xyz="mm")
    nib.save(image, tmp_path / "mm.nii.gz")
    assert not has_physical_spacing(tmp_path / "u.nii.gz") and has_physical_spacing(tmp_path / "mm.nii.gz")
    assert not has_physical_spacing(tmp_path / "x.tif") and has_physical_spacing(tmp_path / "x.nrrd")
