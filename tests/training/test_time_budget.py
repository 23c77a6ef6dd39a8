"""A time budget ends training within the epoch it runs out in, not after the epoch (which may be long)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import medseg.training.loop as loop
from medseg.workflow import TrainOptions, train_run
from tests.training.tiny_runs import plan_tiny_run


def test_the_budget_stops_training_inside_a_long_epoch(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[int] = []
    real_step = loop._step

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        steps.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_step", counted)
    options = TrainOptions(
        time_budget_s=1.0, budget_plan=False, iterations_per_epoch=5000, val_every=1, device="cpu", folds=3
    )
    plan_tiny_run(msd_2d, tmp_path / "run", options)  # a tiny network: validation and prediction take little
    run = train_run(msd_2d, tmp_path / "run", options)
    epochs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(epochs) == 1 and 0 < len(steps) < 5000  # one partial epoch
    assert epochs[0]["seconds"] < 30  # the budget (1 s) plus validation, not 5000 steps
    assert (run / "checkpoint_best.pt").exists() and (run / "checkpoint_last.pt").exists()
