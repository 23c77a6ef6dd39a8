"""Checkpoints: written atomically, read with ``weights_only=True``.

A PyTorch checkpoint is a pickle, and unpickling a file from elsewhere can run arbitrary code. medseg
writes only tensors, numbers, strings, lists and dicts, and reads with ``torch.load(weights_only=True)``,
which refuses anything else; such a file is reported as untrusted instead of being executed.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
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
        with warnings.catch_warnings():
            # a plain (non-torch) pickle of protocol > 2 makes torch warn before refusing it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(
            path,
            f"refused: the checkpoint holds objects other than weights ({_reason(exc)})",
            "only load checkpoints written by medseg or convert it to plain tensors",
        ) from exc
    except Exception as exc:  # any parse failure of a foreign file: KeyError, EOFError, ...
        raise DataError(path, f"unreadable or truncated checkpoint ({_reason(exc)})") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise DataError(path, "not a medseg checkpoint (no 'model' entry)")
    return state


def _reason(exc: BaseException) -> str:
    """The informative line of a torch.load error (torch puts a generic paragraph first)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    specific = [ln for ln in lines if "GLOBAL" in ln or "nsupported" in ln]
    if specific:
        return specific[0][:160]
    first = lines[0].split(". ")[0] if lines else ""
    return f"{type(exc).__name__}: {first}"[:160] if first else type(exc).__name__
