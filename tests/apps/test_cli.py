"""CLI choices that reach plans.json: --model and --loss pick registry entries by name; combined losses train."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from medseg.apps.cli.app import main
from medseg.inference.predictor import Predictor
from medseg.io.images import read_image, read_label
from medseg.models.attention_unet import AttentionUNet
from medseg.models.monai_nets import UNETR
from medseg.models.registry import MODELS
from medseg.models.residual_unet import ResidualUNet

EXCLUSIVE_TERMS = "boundary, ce, dice, focal, focal-tversky, hausdorff, tversky"


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


@pytest.mark.parametrize(
    ("model", "loss"),
    [("classic-unet", "dice+ce"), ("unet", ""), ("residual-unet", ""), ("attention-unet", "dice+ce")],
)
def test_model_and_loss_flags_are_recorded_in_the_plans(
    model: str, loss: str, msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["plan", str(msd_2d), "--out", str(tmp_path / "run"), "--device", "cpu", "--model", model]
    assert _medseg([*argv, "--loss", loss] if loss else argv, monkeypatch) == 0
    plans = json.loads((tmp_path / "run" / "plans.json").read_text())
    assert plans["model"]["name"] == model and plans["train"]["loss"] == "dice+ce"
    if model == "classic-unet":
        assert plans["model"]["features"][0] == 64 and plans["model"]["norm"] == "batch"
    if model == "residual-unet":
        assert plans["model"]["blocks_per_level"][:2] == [1, 2]  # planned for the CPU


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--model", "no-such-net"],
            f"error: unknown model 'no-such-net'; choose one of {', '.join(sorted(MODELS))}",
        ),
        (["--model", "vnet"], "error: model 'vnet' supports 3D data only; this data is 2D"),
        (
            ["--loss", "dice+bce"],
            "error: loss 'dice+bce' does not fit a dataset of exclusive classes ('bce' is for overlapping "
            f"structures); join with '+' any of {EXCLUSIVE_TERMS} (the terms for exclusive classes; e.g. dice+ce)",
        ),
        (
            ["--loss", "nonsense"],
            f"error: unknown loss term 'nonsense' in loss 'nonsense'; join with '+' any of {EXCLUSIVE_TERMS} "
            "(the terms for exclusive classes; e.g. dice+ce)",
        ),
    ],
)
def test_unknown_model_or_unfitting_loss_is_one_line_and_writes_nothing(
    flags: list[str], message: str, msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert _medseg(["train", str(msd_2d), "--out", str(run), "--device", "cpu", *flags], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err == message and not run.exists()


# unetr: MONAI's network behind an adapter, whose fixed img_size the sliding window's patch-sized windows fit
@pytest.mark.parametrize(
    ("model", "network"), [("residual-unet", ResidualUNet), ("attention-unet", AttentionUNet), ("unetr", UNETR)]
)
def test_train_and_predict_with_each_new_model(
    model: str, network: type[torch.nn.Module], msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny run through the CLI: plans.json records the model, prediction rebuilds the same class."""
    run, pred = tmp_path / "run", tmp_path / "pred"
    train = ["train", str(msd_2d), "--out", str(run), "--model", model, "--epochs", "1", "--iterations", "2"]
    assert _medseg([*train, "--deterministic", "--device", "cpu", "--folds", "3"], monkeypatch) == 0
    assert json.loads((run / "plans.json").read_text())["model"]["name"] == model
    predictor = Predictor.from_run(run)
    assert type(predictor.model) is network and predictor.plans.model.name == model

    image = msd_2d / "imagesTs" / "case_006.nii.gz"
    assert _medseg(["predict", str(run), str(image), str(pred), "--device", "cpu"], monkeypatch) == 0
    labels, geometry = read_label(pred / "case_006.nii.gz")
    scan, scan_geometry = read_image(image)
    assert labels.shape == scan.shape[1:] and geometry.matches(scan_geometry)
    assert set(labels.ravel().tolist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize("loss", ["dice+focal", "dice+boundary"])
def test_train_with_a_combined_loss_runs_end_to_end(
    loss: str, msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``medseg train --loss`` with a combination (dice+boundary: the loader adds distance maps, the ramp runs)."""
    run = tmp_path / "run"
    argv = ["train", str(msd_2d), "--out", str(run), "--device", "cpu", "--epochs", "1", "--iterations", "2"]
    assert _medseg([*argv, "--folds", "3", "--deterministic", "--loss", loss], monkeypatch) == 0
    assert json.loads((run / "plans.json").read_text())["train"]["loss"] == loss
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1] and math.isfinite(log[0]["train_loss"])
    assert (run / "checkpoint_best.pt").is_file() and (run / "metrics.json").is_file()
