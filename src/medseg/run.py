"""A run folder: every file name it holds, its split record, and its checkpoints.

A run folder describes itself; prediction needs nothing else::

    plans.json          every decision (spacing, normalisation, patch, network, optimiser)
    dataset.json        where the data came from and which cases are in which split (:class:`RunRecord`)
    preprocessed/       the preprocessing cache (safe to delete)
      unlabeled/        the unlabelled scans of a semi-supervised run (``--unlabeled``)
    checkpoint_last.pt  checkpoint_best.pt  log.jsonl
    validation/         held-out predictions in the scans' own format and geometry
    metrics.json  metrics.csv  report.html
    trust.json  trust/  the failure flag, temperature and uncertainty maps of ``medseg trust`` (optional)

Checkpoints are written atomically and read with ``torch.load(weights_only=True)``. A PyTorch checkpoint
is a pickle, and unpickling a file from elsewhere can run arbitrary code: medseg writes only tensors,
numbers, strings, lists and dicts, and ``weights_only`` refuses anything else, so such a file is reported as
untrusted instead of being executed. Each checkpoint also carries a SHA-256 checksum of its content, checked
on load, so a damaged file is refused instead of predicting garbage.

Example:
    >>> run = RunDir(Path("runs/hippocampus"))          # doctest: +SKIP
    >>> plans = run.load_plans(); state = run.load_checkpoint("best")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from medseg.config.plans import Plans, load_plans, save_plans
from medseg.config.postprocessing import PostProcessing
from medseg.errors import ConfigError, DataError
from medseg.evaluation.evaluate import METRICS_JSON
from medseg.fileutil import atomic_path, atomic_write_json, path_problem
from medseg.serial import from_dict, to_dict
from medseg.splits import SPLITS_JSON

__all__ = [
    "CROSSVAL_JSON",
    "ENSEMBLE_JSON",
    "TRUST_DIR",
    "TRUST_JSON",
    "Candidate",
    "CrossValDir",
    "EnsembleRecord",
    "RunDir",
    "RunRecord",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

Checkpoint = Literal["best", "last"]
_CHECKPOINTS: dict[str, str] = {"best": "checkpoint_best.pt", "last": "checkpoint_last.pt"}
_CHECKSUM = "sha256"  # checkpoint key of the content's digest
CROSSVAL_JSON, ENSEMBLE_JSON = "crossval.json", "ensemble.json"
# written by `medseg trust` in a run or cross-validation folder: the failure-flag model, the temperature, the
# per-case table (TRUST_JSON), and the held-out cases' uncertainty maps (TRUST_DIR)
TRUST_JSON, TRUST_DIR = "trust.json", "trust"


@dataclass(frozen=True)
class RunRecord:
    """What ``dataset.json`` of a run says: the dataset folder, its layout and the split (case ids).

    ``cache`` is the preprocessing folder relative to the run folder when it is shared (a fold of a
    cross-validation uses ``../preprocessed``); empty: the run's own ``preprocessed/``.
    """

    root: Path
    layout: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    cache: str = ""


@dataclass(frozen=True)
class RunDir:
    """A run folder; owns the name of every file in it (see the module docstring)."""

    path: Path

    @property
    def plans_path(self) -> Path:
        return self.path / "plans.json"

    @property
    def record_path(self) -> Path:
        return self.path / "dataset.json"

    @property
    def preprocessed(self) -> Path:
        """The preprocessing cache: the run's own folder, or the shared one its record names."""
        if self.record_path.is_file():
            cache = self.load_record().cache
            if cache:
                return (self.path / cache).resolve()
        return self.path / "preprocessed"

    @property
    def preprocessed_unlabeled(self) -> Path:
        """The preprocessed unlabelled scans of a semi-supervised run (their ids may repeat labelled ones)."""
        return self.preprocessed / "unlabeled"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def validation(self) -> Path:
        return self.path / "validation"

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_JSON

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def checkpoint(self, which: str) -> Path:
        """Path of checkpoint ``which`` ('best' or 'last')."""
        if which not in _CHECKPOINTS:
            raise DataError(self.path, f"unknown checkpoint '{which}'", "use best or last")
        return self.path / _CHECKPOINTS[which]

    def remove_partial_checkpoints(self) -> list[Path]:
        """Delete temporary checkpoint files a killed process left behind (``.checkpoint_*.tmp-*``, written
        by :func:`save_checkpoint` before its rename); returns them. The checkpoints themselves are whole."""
        partial = sorted(self.path.glob(".checkpoint_*.tmp-*"))
        for path in partial:
            path.unlink(missing_ok=True)
        if partial:
            logger.info("removed %d partial checkpoint file(s) of an interrupted run", len(partial))
        return partial

    @property
    def started(self) -> bool:
        """Whether training has written a checkpoint (a run to resume, not to plan again)."""
        return self.checkpoint("last").exists()

    def load_plans(self) -> Plans:
        return load_plans(self.plans_path)

    def load_record(self) -> RunRecord:
        """Read ``dataset.json``; a missing or damaged file is a one-line :class:`DataError`."""
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
            return RunRecord(
                Path(data["root"]),
                str(data["layout"]),
                tuple(data["train"]),
                tuple(data["validation"]),
                str(data.get("cache", "")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(self.record_path, f"missing or damaged run record ({exc})", "plan the run again") from exc

    def require_new(self) -> None:
        """Refuse a folder that exists and is not empty (a run is never planned over another)."""
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise DataError(
                self.path, "run folder exists and is not empty", "pass --resume to continue it, or a new folder"
            )

    def create(self, plans: Plans, record: RunRecord) -> None:
        """Write ``plans.json`` and ``dataset.json`` into a new (or empty) folder: both appear, or neither."""
        self.require_new()
        if self.path.is_dir():
            self.path.rmdir()  # empty, checked above
        data = {
            "root": str(record.root),
            "layout": record.layout,
            "train": list(record.train),
            "validation": list(record.validation),
            **({"cache": record.cache} if record.cache else {}),
        }
        with atomic_path(self.path) as tmp:
            tmp.mkdir(parents=True)
            atomic_write_json(tmp / self.record_path.name, data)
            save_plans(plans, tmp / self.plans_path.name)

    def save_checkpoint(self, state: dict[str, Any], which: Checkpoint) -> Path:
        path = self.checkpoint(which)
        save_checkpoint(state, path)
        return path

    def load_checkpoint(self, which: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.checkpoint(which), map_location)


@dataclass(frozen=True)
class Candidate:
    """One configuration or ensemble compared by ``medseg find-best``: its members and out-of-fold Dice."""

    members: tuple[str, ...]
    dice: float


@dataclass(frozen=True)
class EnsembleRecord:
    """What predicts together and how it scored out of fold: ``crossval.json`` of a cross-validation (members:
    its fold folders) and ``ensemble.json`` written by ``medseg find-best`` (members: cross-validation folders).

    Member paths are relative to the record's folder or absolute. ``postprocessing`` is the sequence of steps
    chosen on the out-of-fold predictions (empty: none raised Dice); ``dice`` and ``dice_postprocessed`` are
    the mean foreground Dice over out-of-fold cases and classes before and after it.
    """

    members: tuple[str, ...]
    postprocessing: tuple[PostProcessing, ...] = ()
    dice: float | None = None
    dice_postprocessed: float | None = None
    candidates: tuple[Candidate, ...] = ()
    version: int = 1

    def member_paths(self, folder: Path) -> list[Path]:
        return [(Path(folder) / m).resolve() for m in self.members]

    def save(self, path: Path) -> None:
        atomic_write_json(path, to_dict(self))

    @classmethod
    def load(cls, path: Path) -> EnsembleRecord:
        """Read a record; a missing or damaged file is one :class:`DataError`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return from_dict(cls, data, Path(path).name)
        except (OSError, ValueError) as exc:
            raise DataError(path, f"missing or damaged record ({exc})") from exc
        except ConfigError as exc:
            raise DataError(path, str(exc)) from exc


@dataclass(frozen=True)
class CrossValDir:
    """A cross-validation folder: the plans every fold trains with, the split, one run folder per fold::

    plans.json  dataset.json   the plans (fold aside) and every labelled case, as in a run folder
    splits.json                the folds (nnU-Net's format; edit it before training)
    preprocessed/              the preprocessing cache all folds share
    fold_0/ fold_1/ ...        ordinary run folders; their validation/ holds the out-of-fold predictions
    crossval/                  metrics.json, metrics.csv over every out-of-fold case
    crossval.json              the folds that finished, out-of-fold Dice, the post-processing chosen
    """

    path: Path

    @staticmethod
    def holds(path: Path) -> bool:
        """Whether ``path`` is a cross-validation folder (it has a ``splits.json``)."""
        return (Path(path) / SPLITS_JSON).is_file()

    @property
    def root(self) -> RunDir:
        """The folder as a run folder: its plans.json, dataset.json and preprocessed/."""
        return RunDir(self.path)

    @property
    def splits_path(self) -> Path:
        return self.path / SPLITS_JSON

    @property
    def summary_path(self) -> Path:
        return self.path / CROSSVAL_JSON

    @property
    def out_of_fold(self) -> Path:
        return self.path / "crossval"

    def fold(self, k: int) -> RunDir:
        return RunDir(self.path / f"fold_{k}")

    def trained_folds(self) -> list[RunDir]:
        """Fold folders with a best checkpoint, in fold order."""
        folds = [RunDir(p) for p in self.path.glob("fold_*") if p.is_dir() and p.name[5:].isdigit()]
        return sorted((f for f in folds if f.checkpoint("best").is_file()), key=lambda f: int(f.path.name[5:]))


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file, fsync'd before the rename.

    The file carries the SHA-256 digest of its content under the key ``sha256`` (see :func:`_digest`), which
    :func:`load_checkpoint` verifies: torch's zip container has no checksum of its own, so damaged weights
    would otherwise load without complaint and predict garbage.
    """
    content = {k: v for k, v in state.items() if k != _CHECKSUM}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save({**content, _CHECKSUM: _digest(content)}, handle)
        handle.flush()
        os.fsync(handle.fileno())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain containers only) and verify its checksum."""
    path = Path(path)
    problem = path_problem(path)
    if problem is not None and problem[0] != "no such file or folder":  # a broken link, a link loop, ...
        raise DataError(path, *problem)
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
    _verify(path, state)
    return state


def _verify(path: Path, state: dict[str, Any]) -> None:
    """Compare the stored checksum with the content's (and remove it from ``state``); a checkpoint written
    before checksums existed (medseg 0.1.0) loads with a warning."""
    if _CHECKSUM not in state:
        logger.warning("%s: the checkpoint has no checksum (written by medseg 0.1.0), so it cannot be verified", path)
        return
    stored = state.pop(_CHECKSUM)
    if not isinstance(stored, str) or stored != _digest(state):
        raise DataError(
            path,
            "checksum mismatch: the file is damaged; its content differs from what was saved",
            "restore it from a copy, use the run's other checkpoint, or train again",
        )


def _digest(state: Any) -> str:
    """SHA-256 of a checkpoint's content, deterministic and independent of the file's layout: dict entries in
    sorted key order, tensors as dtype + shape + raw bytes (on CPU), numbers and strings by ``repr``."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        # viewed as bytes: numpy has no bfloat16, and a 0-d tensor (an optimiser's step) needs a 1-d view
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)}\n".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            digest.update(f"key {type(key).__name__} {key!r}\n".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)}\n".encode())
        for item in value:
            _feed(digest, item)
    else:  # str, int, float, bool, None: repr is exact (floats round-trip)
        digest.update(f"{type(value).__name__} {value!r}\n".encode())


def _reason(exc: BaseException) -> str:
    """The informative line of a torch.load error (torch puts a generic paragraph first)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    specific = [ln for ln in lines if "GLOBAL" in ln or "nsupported" in ln]
    if specific:
        return specific[0][:160]
    first = lines[0].split(". ")[0] if lines else ""
    return f"{type(exc).__name__}: {first}"[:160] if first else type(exc).__name__
