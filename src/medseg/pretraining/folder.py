"""A pre-training folder: every file name it holds, and the encoder weights it ends with.

::

    plans.json          the plans pre-trained for (a copy; the weights fit the network they describe)
    preprocessed/       the unlabelled scans, preprocessed as training data (safe to delete)
    checkpoint_last.pt  network, optimiser, epoch, elapsed time, loss curve (``--resume`` continues from it)
    log.jsonl           one line per epoch
    encoder.pth         the encoder's tensors (what ``medseg train --encoder-weights`` loads)
    encoder.json        their sidecar: method, epochs, loss curve, scan folders, plans fingerprint

``encoder.pth`` is ``{"state_dict": {key: tensor}, "medseg_pretrain": {...}}``: tensors and plain values
only (``torch.load(weights_only=True)`` reads it), keys as in the network's ``encoder`` module. The small
``medseg_pretrain`` entry tells planning that these weights were pre-trained by medseg on the plans'
normalisation (not ImageNet's). Every file is written atomically.

Example:
    >>> folder = PretrainDir(Path("runs/pretrain"))                     # doctest: +SKIP
    >>> folder.weights                                                  # doctest: +SKIP
    PosixPath('runs/pretrain/encoder.pth')
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from medseg.config.plans import Plans
from medseg.fileutil import atomic_path, atomic_write_json
from medseg.models.encoder_weights import PRETRAIN_KEY
from medseg.serial import to_dict

__all__ = ["METADATA_KEY", "PretrainDir", "plans_fingerprint", "save_encoder"]

METADATA_KEY = PRETRAIN_KEY  # the weights file's metadata entry (medseg.models.encoder_weights reads it)
_TOPOLOGY = ("data", "patch_size", "model", "fusion", "configuration")  # what the weights depend on


@dataclass(frozen=True)
class PretrainDir:
    """A pre-training folder; owns the name of every file in it (see the module docstring)."""

    path: Path

    @property
    def plans_path(self) -> Path:
        return self.path / "plans.json"

    @property
    def preprocessed(self) -> Path:
        return self.path / "preprocessed"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint_last.pt"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def weights(self) -> Path:
        return self.path / "encoder.pth"

    @property
    def sidecar(self) -> Path:
        return self.path / "encoder.json"


def plans_fingerprint(plans: Plans) -> str:
    """SHA-256 of the plans' parts the weights depend on (data, patch, network, fusion, configuration); two
    plans with the same fingerprint build the same network for the same preprocessed data."""
    full = to_dict(plans)
    part = {key: full.get(key) for key in _TOPOLOGY}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def save_encoder(
    folder: PretrainDir, state: dict[str, Tensor], metadata: dict[str, Any], sidecar: dict[str, Any]
) -> Path:
    """Write ``state`` (the encoder's tensors) with ``metadata`` to ``folder.weights``, then ``sidecar`` to
    ``folder.sidecar``, both atomically; return the weights' path."""
    tensors = {key: value.detach().cpu().clone() for key, value in state.items()}
    with atomic_path(folder.weights) as tmp, open(tmp, "wb") as handle:
        torch.save({"state_dict": tensors, METADATA_KEY: metadata}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    atomic_write_json(folder.sidecar, sidecar)
    return folder.weights
