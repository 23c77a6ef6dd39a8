"""Cross-validation splits: which cases each fold trains on and which it holds out, as ``splits.json``.

The file is nnU-Net's ``splits_final.json`` format, so a split made there can be copied here and back::

    [{"train": ["case_001", ...], "val": ["case_004", ...]}, ...]   # one entry per fold

medseg writes it when a cross-validation is planned (``medseg plan --folds all``); a user may edit it before
training (more folds, a fixed test patient, grouping the scans of one patient in one fold). It is checked
when read: every fold trains and validates on at least one case, no case is in both, and every case exists.

Example:
    >>> folds = make_splits(["a", "b", "c", "d"], n_folds=2, seed=0)
    >>> len(folds), sorted(folds[0].validation + folds[1].validation)
    (2, ['a', 'b', 'c', 'd'])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import ConfigError, DataError
from medseg.fileutil import atomic_write_json

__all__ = ["SPLITS_JSON", "Fold", "check_splits", "load_splits", "make_splits", "save_splits", "split_cases"]

SPLITS_JSON = "splits.json"


@dataclass(frozen=True)
class Fold:
    """One fold: the case ids it trains on and the ids it holds out (validation, out-of-fold predictions)."""

    train: tuple[str, ...]
    validation: tuple[str, ...]


def split_cases(case_ids: Sequence[str], folds: int, fold: int, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic k-fold split of ``case_ids``: (training ids, validation ids) of ``fold``."""
    if not 0 <= fold < folds:
        raise ConfigError(f"fold {fold} must be in 0..{folds - 1}")
    ids = sorted(case_ids)
    if len(ids) < 2:
        raise DataError(Path(ids[0] if ids else "."), "training needs at least 2 labelled cases")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[fold::folds])
    return [i for i in ids if i not in set(val)], val


def make_splits(case_ids: Sequence[str], n_folds: int, seed: int) -> tuple[Fold, ...]:
    """``n_folds`` folds whose validation sets partition ``case_ids`` (the split of :func:`split_cases`)."""
    if len(case_ids) < n_folds:
        raise ConfigError(
            f"{len(case_ids)} labelled cases cannot fill {n_folds} cross-validation folds "
            f"(use --folds {max(2, len(case_ids))} or fewer)"
        )
    folds = []
    for k in range(n_folds):
        train, val = split_cases(case_ids, n_folds, k, seed)
        folds.append(Fold(tuple(train), tuple(val)))
    return tuple(folds)


def check_splits(folds: Sequence[Fold], case_ids: Sequence[str], path: Path) -> None:
    """Refuse splits that cannot be trained: an empty fold, a case both trained on and held out, an unknown
    case. A case held out by no fold is allowed (it gets no out-of-fold prediction)."""
    if not folds:
        raise DataError(path, "no folds", "give at least one {'train': [...], 'val': [...]} entry")
    known = set(case_ids)
    for k, fold in enumerate(folds):
        if not fold.train or not fold.validation:
            raise DataError(path, f"fold {k} has an empty {'train' if not fold.train else 'val'} list")
        both = sorted(set(fold.train) & set(fold.validation))
        if both:
            raise DataError(path, f"fold {k} trains on and holds out the same case(s) {both[:3]}")
        unknown = sorted((set(fold.train) | set(fold.validation)) - known)
        if unknown:
            raise DataError(path, f"fold {k} names case(s) {unknown[:3]} that the dataset does not have")


def save_splits(folds: Sequence[Fold], path: Path) -> None:
    """Write ``folds`` as ``splits.json`` (nnU-Net's format) atomically."""
    atomic_write_json(path, [{"train": list(f.train), "val": list(f.validation)} for f in folds])


def load_splits(path: Path, case_ids: Sequence[str] | None = None) -> tuple[Fold, ...]:
    """Read ``splits.json``; a damaged file is one :class:`DataError`. With ``case_ids``, also
    :func:`check_splits` against them."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise TypeError("expected a list of folds")
        folds = tuple(Fold(_ids(entry["train"]), _ids(entry["val"])) for entry in data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            path, f"unreadable splits ({type(exc).__name__}: {exc})", "expected [{'train': [...], 'val': [...]}, ...]"
        ) from exc
    if case_ids is not None:
        check_splits(folds, case_ids, Path(path))
    return folds


def _ids(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("'train' and 'val' must be lists of case ids")
    return tuple(value)
