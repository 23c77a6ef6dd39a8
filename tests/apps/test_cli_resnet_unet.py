"""`medseg train --model resnet34-unet --encoder-weights W`: the file is checked at plan time, loaded at the
start of training, and prediction needs only the run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from medseg.apps.cli.app import main
from medseg.inference.predictor import Predictor
from medseg.io.images import read_label
from tests.models.test_resnet_unet import torchvision_like_state


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_train_with_frozen_pretrained_encoder_then_predict_without_the_file(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "resnet34.pth"
    state = torchvision_like_state(34, width=64)  # torchvision's layout and ImageNet's width, random values
    torch.save({f"module.{k}": v for k, v in state.items()}, weights)
    run, pred = tmp_path / "run", tmp_path / "pred"
    argv = ["train", str(msd_2d), "--out", str(run), "--model", "resnet34-unet", "--encoder-weights", str(weights)]
    flags = ["--frozen-stages", "5", "--epochs", "1", "--iterations", "2", "--folds", "3", "--deterministic"]
    assert _medseg([*argv, *flags, "--device", "cpu"], monkeypatch) == 0

    plans = json.loads((run / "plans.json").read_text())
    assert plans["model"]["encoder_weights"] == str(weights.resolve()) and plans["model"]["frozen_stages"] == 5
    assert plans["data"]["normalization"][0]["scheme"] == "imagenet"
    # the whole encoder was frozen: the checkpoint holds the file's tensors, running statistics included
    checkpoint = torch.load(run / "checkpoint_best.pt", map_location="cpu", weights_only=True)
    rgb_to_grey = {"conv1.weight": state["conv1.weight"].sum(dim=1, keepdim=True)}  # 1-channel CT
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(checkpoint["model"][f"encoder.{key}"], rgb_to_grey.get(key, value)), key
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert math.isfinite(log[0]["train_loss"])

    weights.unlink()  # prediction reads the run folder only
    assert type(Predictor.from_run(run).model).__name__ == "ResNetUNet"
    image = msd_2d / "imagesTs" / "case_006.nii.gz"
    assert _medseg(["predict", str(run), str(image), str(pred), "--device", "cpu"], monkeypatch) == 0
    labels, _ = read_label(pred / "case_006.nii.gz")
    assert set(labels.ravel().tolist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize("command", ["train", "plan"])
def test_a_weights_file_that_does_not_fit_is_one_line_exit_2_and_no_run_folder(
    command: str, msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, run = tmp_path / "wrong.pth", tmp_path / "run"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, weights)
    argv = [command, str(msd_2d), "--out", str(run), "--device", "cpu", "--model", "resnet34-unet"]
    assert _medseg([*argv, "--encoder-weights", str(weights)], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {weights}: lacks 179 tensor(s) of the encoder, the first 'bn1.weight'"
    assert not run.exists()


def test_encoder_weights_for_a_network_without_one_is_refused(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights, run = tmp_path / "w.pth", tmp_path / "run"
    torch.save({"conv1.weight": torch.zeros(1)}, weights)
    argv = ["plan", str(msd_2d), "--out", str(run), "--device", "cpu", "--encoder-weights", str(weights)]
    assert _medseg([*argv, "--model", "segresnet"], monkeypatch) == 2  # MONAI's networks take no encoder weights
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model 'segresnet' has no pretrained encoder") and "resnet34-unet" in err
    assert "\n" not in err and not run.exists()
