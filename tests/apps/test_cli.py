"""CLI choices that reach plans.json: --model and --loss pick registry entries by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.apps.cli.app import main


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


@pytest.mark.parametrize(("model", "loss"), [("classic-unet", "dice+ce"), ("unet", "")])
def test_model_and_loss_flags_are_recorded_in_the_plans(
    model: str, loss: str, msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["plan", str(msd_2d), "--out", str(tmp_path / "run"), "--device", "cpu", "--model", model]
    assert _medseg([*argv, "--loss", loss] if loss else argv, monkeypatch) == 0
    plans = json.loads((tmp_path / "run" / "plans.json").read_text())
    assert plans["model"]["name"] == model and plans["train"]["loss"] == "dice+ce"
    if model == "classic-unet":
        assert plans["model"]["features"][0] == 64 and plans["model"]["norm"] == "batch"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "vnet"], "error: unknown model 'vnet'; choose one of classic-unet, unet"),
        (
            ["--loss", "dice+bce"],
            "error: loss 'dice+bce' does not fit a dataset of exclusive classes; use one of dice+ce",
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
