"""Segmentation off the GUI thread: a ``QThread`` that runs the predictor and reports through signals, so the
window keeps drawing and answering while the network works.

Progress counts the network's forward passes (sliding windows, mirrored copies, ensemble members) through a
forward pre-hook on each network; the same hook makes Cancel work: once asked, the next pass raises
:class:`Cancelled`, which unwinds the prediction and ends the thread with ``cancelled``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal

import medseg
from medseg.apps.gui.models import load_model, networks

__all__ = ["Cancelled", "SegmentWorker"]

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a forward pass once Cancel was pressed."""


class SegmentWorker(QThread):
    """Runs ``predictor.labels_and_probabilities(image, geometry)`` once; ``model`` is a predictor, or a path
    that :func:`~medseg.apps.gui.models.load_model` loads first (importing torch and reading a checkpoint take
    seconds: not on the GUI thread).

    Signals: ``loaded(predictor)`` once a path is loaded, ``progress(passes)`` after each forward pass, then
    exactly one of ``succeeded(labels, probabilities)``, ``failed(message)`` (the one-line ``str(MedsegError)``
    the CLI prints) or ``cancelled()``.
    """

    loaded = Signal(object)
    progress = Signal(int)
    succeeded = Signal(object, object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, model: Any, image: np.ndarray, geometry: medseg.Geometry, parent: QObject | None = None):
        super().__init__(parent)
        self.model, self.image, self.geometry = model, image, geometry
        self._stop = threading.Event()
        self._passes = 0

    def cancel(self) -> None:
        """Ask the running segmentation to stop at its next forward pass (thread-safe)."""
        self._stop.set()

    def _before_forward(self, module: Any, args: Any) -> None:
        if self._stop.is_set():
            raise Cancelled
        self._passes += 1
        self.progress.emit(self._passes)

    def run(self) -> None:
        hooks: list[Any] = []
        try:
            predictor = self.model
            if isinstance(predictor, Path):
                predictor = load_model(predictor)
                self.loaded.emit(predictor)
            hooks = [net.register_forward_pre_hook(self._before_forward) for net in networks(predictor)]
            if self._stop.is_set():
                raise Cancelled
            labels, probabilities = predictor.labels_and_probabilities(self.image, self.geometry)
        except Cancelled:
            self.cancelled.emit()
        except medseg.MedsegError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # a bug, or a model that cannot run this scan: said, logged, never a crash
            logger.exception("segmentation failed")
            self.failed.emit(f"segmentation failed: {type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(labels, probabilities)
        finally:
            for hook in hooks:
                hook.remove()
