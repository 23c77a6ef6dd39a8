"""Training choices that are plan fields with flags: weight decay, dropout, class weights, batch Dice."""

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


def test_flags_are_recorded_in_the_plans(msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    flags = ["--weight-decay", "1e-4", "--dropout", "0.3", "--class-weights", "0.5,1,2,2", "--batch-dice"]
    assert _medseg(["plan", str(msd_2d), "--out", str(run), "--device", "cpu", *flags], monkeypatch) == 0
    plans = json.loads((run / "plans.json").read_text())
    assert plans["train"]["weight_decay"] == 1e-4 and plans["train"]["batch_dice"] is True
    assert plans["train"]["loss_params"]["class_weights"] == [0.5, 1.0, 2.0, 2.0]
    assert plans["train"]["loss_params"]["focal_gamma"] == 2.0  # the other parameters are recorded too
    assert plans["model"]["dropout"] == 0.3


def test_without_flags_the_plan_keeps_its_defaults(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    assert _medseg(["plan", str(msd_2d), "--out", str(run), "--device", "cpu"], monkeypatch) == 0
    plans = json.loads((run / "plans.json").read_text())
    assert plans["train"]["weight_decay"] == 3e-5 and plans["train"]["batch_dice"] is False
    assert plans["train"]["loss_params"]["class_weights"] == [] and plans["model"]["dropout"] == 0.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--class-weights", "1,2"],
            "error: 2 class weights for 4 output channels; give one weight per class (background first) or per "
            "structure",
        ),
        (["--class-weights", "1,-2,1,1"], "error: loss_params.class_weights[1] = -2.0 must be a number >= 0"),
    ],
)
def test_bad_class_weights_are_one_line_and_write_nothing(
    flags: list[str], message: str, msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert _medseg(["train", str(msd_2d), "--out", str(run), "--device", "cpu", *flags], monkeypatch) == 2
    assert capsys.readouterr().err.strip() == message and not run.exists()


def test_unreadable_class_weights_are_a_usage_error(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    assert _medseg(["plan", str(msd_2d), "--out", str(run), "--class-weights", "one,two"], monkeypatch) == 2
    assert "cannot read --class-weights 'one,two'" in capsys.readouterr().err and not run.exists()


def test_weighted_dropout_run_trains_end_to_end(msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    argv = ["train", str(msd_2d), "--out", str(run), "--device", "cpu", "--epochs", "1", "--iterations", "2"]
    flags = ["--folds", "3", "--dropout", "0.4", "--class-weights", "0.2,1,1,1", "--weight-decay", "0.01"]
    assert _medseg([*argv, *flags], monkeypatch) == 0
    assert (run / "checkpoint_best.pt").is_file() and (run / "metrics.json").is_file()


def test_models_command_lists_every_registered_network(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from medseg.models.registry import MODELS

    assert _medseg(["models"], monkeypatch) == 0
    out = capsys.readouterr().out
    for name, entry in MODELS.items():
        assert name in out and entry.description.split()[0] in out
