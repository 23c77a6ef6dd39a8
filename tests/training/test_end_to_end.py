"""A tiny train -> predict -> evaluate run on synthetic data, and resume == uninterrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medseg.apps.cli.app import app
from medseg.io.images import read_image, read_label
from medseg.run import load_checkpoint
from medseg.workflow import Callbacks, TrainOptions, train_run

FAST = TrainOptions(epochs=2, iterations_per_epoch=2, val_every=1, device="cpu", folds=3, deterministic=True)


def test_train_predict_evaluate(msd_2d: Path, tmp_path: Path) -> None:
    run = train_run(msd_2d, tmp_path / "run", FAST)
    for name in (
        "plans.json",
        "dataset.json",
        "checkpoint_best.pt",
        "checkpoint_last.pt",
        "metrics.json",
        "metrics.csv",
        "report.html",
    ):
        assert (run / name).is_file(), name
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and "val_dice" in log[-1]
    split = json.loads((run / "dataset.json").read_text())
    assert sorted(p.name for p in (run / "validation").iterdir()) == sorted(f"{c}.nii.gz" for c in split["validation"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["classes"].values()) == {"lung", "heart", "aorta"}
    assert len(metrics["cases"]) == len(split["validation"])

    test_image = msd_2d / "imagesTs" / "case_006.nii.gz"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(run),
            str(msd_2d / "imagesTs"),
            str(tmp_path / "pred"),
            "--device",
            "cpu",
            "--largest-component",
        ],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred" / "case_006.nii.gz"  # named exactly like its input
    labels, geometry = read_label(out)
    image, image_geometry = read_image(test_image)
    assert labels.shape == image.shape[1:] and geometry.matches(image_geometry)
    assert set(labels.ravel().tolist()) <= {0, 1, 2, 3}


class _Stop(Exception):
    pass


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint_last.pt")["model"]


def test_resume_equals_uninterrupted(msd_2d: Path, tmp_path: Path) -> None:
    options = TrainOptions(epochs=3, iterations_per_epoch=2, val_every=5, device="cpu", folds=3, deterministic=True)
    whole = train_run(msd_2d, tmp_path / "whole", options)

    def stop_after_two(result) -> None:  # type: ignore[no-untyped-def]
        if result.epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train_run(msd_2d, tmp_path / "cut", options, Callbacks(on_epoch=stop_after_two))
    assert load_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["epoch"] == 2
    resumed = train_run(msd_2d, tmp_path / "cut", TrainOptions(**{**options.__dict__, "resume": True}))
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = (resumed / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_existing_run_folder_is_refused(msd_2d: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    result = CliRunner().invoke(app, ["train", str(msd_2d), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "pass --resume" in str(result.exception)


def test_should_stop_ends_training_cleanly_after_the_current_step(msd_2d: Path, tmp_path: Path) -> None:
    """A GUI's Cancel: training stops at the next step, keeps its checkpoints, and the run is still evaluated."""
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= 3  # the third step of epoch 2

    options = TrainOptions(epochs=5, iterations_per_epoch=2, val_every=5, device="cpu", folds=3, deterministic=True)
    run = train_run(msd_2d, tmp_path / "run", options, Callbacks(should_stop=stop))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and "val_dice" in log[-1]  # the stopped epoch is validated
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 2
    assert (run / "metrics.json").is_file() and len(asked) == 3
