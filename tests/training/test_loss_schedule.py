"""fit() tells the loss how far training has got (the boundary loss's weight ramp), once per epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

import medseg.training.loop as loop
from medseg.losses.boundary import BoundaryLoss
from medseg.workflow import TrainOptions, train_run


def test_fit_sets_the_progress_of_the_loss_each_epoch(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[nn.Module] = []
    seen: list[float] = []
    real_build = loop.build_loss

    def recording_build(*args, **kwargs) -> nn.Module:  # type: ignore[no-untyped-def]
        loss = real_build(*args, **kwargs)
        forward = loss.set_progress  # type: ignore[union-attr]

        def set_progress(progress: float) -> None:
            seen.append(progress)
            forward(progress)

        loss.set_progress = set_progress  # type: ignore[assignment,method-assign]
        built.append(loss)
        return loss

    monkeypatch.setattr(loop, "build_loss", recording_build)
    options = TrainOptions(
        epochs=4, iterations_per_epoch=1, val_every=10, device="cpu", folds=3, deterministic=True, loss="dice+boundary"
    )
    train_run(msd_2d, tmp_path / "run", options)
    assert seen == [0.0, 0.25, 0.5, 0.75]  # epoch / epochs at the start of each epoch
    boundary = built[0].loss.terms["boundary"]  # type: ignore[union-attr,index]
    assert isinstance(boundary, BoundaryLoss) and boundary.weight == pytest.approx(0.75)
