"""--tensorboard: the curves TensorBoard reads are the ones in log.jsonl; without the package, one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import medseg
from medseg.apps.cli.app import main


def test_tensorboard_curves_equal_the_log(msd_2d: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="optional dependency medseg[tensorboard] not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    options = medseg.TrainOptions(epochs=2, iterations_per_epoch=2, device="cpu", tensorboard=True)
    medseg.train(msd_2d, run, options)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    loss = events.Scalars("loss/train")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([r["train_loss"] for r in log], rel=1e-6)
    dice = events.Scalars("dice/validation")
    assert [e.value for e in dice] == pytest.approx([r["val_dice"] for r in log if "val_dice" in r], rel=1e-6)
    assert {"lr", "time/epoch_s", "dice/lung"} <= set(events.Tags()["scalars"])


def test_without_tensorboard_installed_it_is_one_line_and_nothing_is_written(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["medseg", "train", str(msd_2d), "--out", str(run), "--tensorboard"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and not run.exists()
    assert capsys.readouterr().err.strip() == (
        "error: --tensorboard needs the tensorboard package (pip install 'medseg[tensorboard]'); "
        "log.jsonl and report.html need nothing"
    )
