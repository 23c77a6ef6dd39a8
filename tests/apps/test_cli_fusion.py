"""`medseg train --fusion intermediate|late` on tiny 2-channel 2D data, then `medseg predict`; a case lacking a
modality at prediction is one line, exit 2, nothing written; one channel is refused at plan time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medseg.apps.cli.app import main
from medseg.inference.predictor import Predictor
from medseg.io.images import Geometry, read_image, read_label, write_image
from medseg.models.fusion import IntermediateFusion, LateFusion
from medseg.synthetic import SyntheticSpec, write_dataset

SPEC = SyntheticSpec(ndim=2, shape=(48, 48))


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


@pytest.fixture
def two_channels(tmp_path: Path) -> Path:
    """CT + an MR-like channel, nnU-Net layout (one file per channel), 4 labelled cases and 1 test case."""
    return write_dataset(tmp_path / "mm", SPEC, n_cases=4, seed=0, layout="nnunet", n_test=1, n_channels=2)


@pytest.mark.parametrize(("fusion", "network"), [("intermediate", IntermediateFusion), ("late", LateFusion)])
def test_train_with_fusion_then_predict(
    fusion: str, network: type, two_channels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, pred = tmp_path / "run", tmp_path / "pred"
    train = ["train", str(two_channels), "--out", str(run), "--fusion", fusion, "--epochs", "1", "--iterations", "2"]
    assert _medseg([*train, "--deterministic", "--device", "cpu", "--folds", "2"], monkeypatch) == 0
    assert json.loads((run / "plans.json").read_text())["fusion"] == fusion
    predictor = Predictor.from_run(run)
    assert type(predictor.model) is network and predictor.plans.model.in_channels == 2
    assert (run / "metrics.json").is_file()

    scans = two_channels / "imagesTs"
    assert _medseg(["predict", str(run), str(scans), str(pred), "--device", "cpu"], monkeypatch) == 0
    labels, geometry = read_label(pred / "case_004.nii.gz")
    scan, scan_geometry = read_image(scans / "case_004_0000.nii.gz")
    assert labels.shape == scan.shape[1:] and geometry.matches(scan_geometry)
    assert set(labels.ravel().tolist()) <= {0, 1, 2, 3}
    assert sorted(p.name for p in pred.iterdir()) == ["case_004.nii.gz"]


def test_a_case_lacking_a_modality_is_one_line_and_nothing_is_written(
    two_channels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run, pred, scans = tmp_path / "run", tmp_path / "pred", tmp_path / "scans"
    train = ["train", str(two_channels), "--out", str(run), "--fusion", "late", "--epochs", "1", "--iterations", "1"]
    assert _medseg([*train, "--deterministic", "--device", "cpu", "--folds", "2"], monkeypatch) == 0
    scans.mkdir()
    for name in ("case_000_0000.nii.gz", "case_000_0001.nii.gz", "case_001_0000.nii.gz"):  # case_001 lacks MR1
        shutil.copy(two_channels / "imagesTr" / name, scans / name)
    capsys.readouterr()
    assert _medseg(["predict", str(run), str(scans), str(pred), "--device", "cpu"], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {scans / 'case_001_0001.nii.gz'}: not found: case 'case_001' lacks its 'MR1' (_0001) channel "
        "(the run's channels are 'CT' (_0000), 'MR1' (_0001)) (add the file)"
    )
    assert not pred.exists()  # not even the complete case_000 was predicted

    # a second channel on a coarser grid: refused naming the flag, predicted with it (as the run was not so planned)
    channel, geometry = read_image(two_channels / "imagesTr" / "case_000_0001.nii.gz")
    coarse = Geometry(tuple(2 * s for s in geometry.spacing), geometry.origin, geometry.direction)
    write_image(scans / "case_001_0001.nii.gz", channel[0, ::2, ::2], coarse)
    assert _medseg(["predict", str(run), str(scans), str(pred), "--device", "cpu"], monkeypatch) == 2
    assert "case_001_0001.nii.gz: shape (24, 24) differs from (48, 48)" in capsys.readouterr().err
    argv = ["predict", str(run), str(scans), str(pred), "--device", "cpu", "--resample-channels"]
    assert _medseg(argv, monkeypatch) == 0
    labels, label_geometry = read_label(pred / "case_001.nii.gz")
    assert labels.shape == (48, 48) and label_geometry.matches(read_image(scans / "case_001_0000.nii.gz")[1])


@pytest.mark.parametrize("fusion", ["intermediate", "late"])
def test_one_channel_is_refused_at_plan_time(
    fusion: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "ct", SPEC, n_cases=3, seed=0, layout="nnunet")
    run = tmp_path / "run"
    assert _medseg(["plan", str(data), "--out", str(run), "--device", "cpu", "--fusion", fusion], monkeypatch) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: fusion '{fusion}' needs at least 2 channels (modalities); this data has 1: use --fusion early"
    )
    assert not run.exists()
