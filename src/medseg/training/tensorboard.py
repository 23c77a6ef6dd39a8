"""Training curves for TensorBoard, live, beside ``log.jsonl`` (``medseg train --tensorboard``).

TensorBoard is an optional dependency (``pip install 'medseg[tensorboard]'``); without it ``--tensorboard``
is a one-line error before anything is planned or trained. Each run folder gets ``tensorboard/`` with one
scalar per epoch: ``loss/train``, ``lr``, ``dice/validation`` (mean) and ``dice/<class>``, and the epoch's
``time/epoch_s``, ``time/data_s`` and ``time/step_s``; ``tensorboard --logdir RUN`` shows a run, or every fold
of a cross-validation side by side. A resumed run appends to the same curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.errors import ConfigError
from medseg.training.loop import EpochResult

__all__ = ["TensorBoardLog", "require_tensorboard"]

FOLDER = "tensorboard"


def require_tensorboard() -> Any:
    """TensorBoard's ``SummaryWriter``; a :class:`ConfigError` saying what to install when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch raises ImportError when the tensorboard package is absent
        raise ConfigError(
            "--tensorboard needs the tensorboard package (pip install 'medseg[tensorboard]'); "
            "log.jsonl and report.html need nothing"
        ) from exc
    return SummaryWriter


class TensorBoardLog:
    """An ``on_epoch`` hook writing each :class:`EpochResult` to ``run_dir/tensorboard/``; call :meth:`close`
    at the end (or use it as a context manager)."""

    def __init__(self, run_dir: Path) -> None:
        self.folder = Path(run_dir) / FOLDER
        self._writer = require_tensorboard()(log_dir=str(self.folder))

    def __call__(self, result: EpochResult) -> None:
        w, step = self._writer, result.epoch
        w.add_scalar("loss/train", result.train_loss, step)
        w.add_scalar("lr", result.lr, step)
        if result.val_dice is not None:
            w.add_scalar("dice/validation", result.val_dice, step)
        for name, value in (result.val_dice_per_class or {}).items():
            w.add_scalar(f"dice/{name}", value, step)
        w.add_scalar("time/epoch_s", result.seconds, step)
        w.add_scalar("time/data_s", result.data_seconds, step)
        w.add_scalar("time/step_s", result.step_seconds, step)
        w.flush()  # live: visible in TensorBoard as soon as the epoch ends

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
