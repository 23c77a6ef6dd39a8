"""Checkpoints: written atomically, read with ``weights_only=True``.

A PyTorch checkpoint is a pickle, and unpickling a file from elsewhere can run arbitrary code. medseg
writes only tensors, numbers, strings, lists and dicts, and reads with ``torch.load(weights_only=True)``,
which refuses anything else; such a file is reported as untrusted instead of being executed.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from medseg.errors import DataError
from medseg.fileutil import atomic_path

__all__ = ["load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file, fsync'd before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found", "train first, or pass the run folder that holds it")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise DataError(
            path,
            f"refused: the checkpoint holds objects other than weights ({first[:160]})",
            "only load checkpoints written by medseg or convert it to plain tensors",
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise DataError(path, f"unreadable or truncated checkpoint ({str(exc).splitlines()[0][:160]})") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise DataError(path, "not a medseg checkpoint (no 'model' entry)")
    return state
