"""Pick what predicts best on cross-validation: a configuration or an ensemble of them, then its post-processing.

``medseg find-best RUN_A RUN_B ... --out BEST`` reads each cross-validation folder's out-of-fold
probabilities (written by ``medseg train --folds all``), scores every configuration alone and every ensemble
of two or more (the mean of their probabilities; with more than four configurations, pairs only) by the mean
foreground Dice over the out-of-fold cases and classes, keeps the best (a tie keeps the smaller ensemble,
then the earlier candidate), chooses post-processing on its out-of-fold predictions
(:func:`~medseg.inference.choose_postprocessing.choose_postprocessing`) and writes ``BEST/ensemble.json``,
which ``medseg predict BEST ...`` reads.

The configurations must have been cross-validated on the same cases (their splits may differ: a case's
out-of-fold prediction comes from a network that did not train on it either way).

Memory: one case at a time; per case one probability map per configuration.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.config.plans import Plans
from medseg.datasets.dataset import load_dataset
from medseg.errors import DataError
from medseg.evaluation.metrics import dice
from medseg.fileutil import atomic_path
from medseg.inference.choose_postprocessing import PostProcessingChoice, choose_postprocessing
from medseg.inference.predictor import labels_from_probabilities, load_probabilities, probabilities_path
from medseg.io.images import read_label
from medseg.labels import LabelSpec
from medseg.run import ENSEMBLE_JSON, Candidate, CrossValDir, EnsembleRecord

__all__ = ["OutOfFoldCase", "choose_for", "find_best", "out_of_fold_cases", "read_reference"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutOfFoldCase:
    """A case's out-of-fold probabilities (from the fold that held it out) and its reference label file(s)."""

    case_id: str
    probabilities: Path
    reference: tuple[Path, ...]


def out_of_fold_cases(folder: Path) -> tuple[Plans, list[OutOfFoldCase]]:
    """The plans and the out-of-fold cases of a cross-validation folder whose every fold is trained."""
    folder = Path(folder)
    if not CrossValDir.holds(folder):
        raise DataError(folder, "not a cross-validation folder (no splits.json)", "train it with --folds all")
    cv = CrossValDir(folder)
    plans = cv.root.load_plans()
    by_id = {c.case_id: c for c in load_dataset(cv.root.load_record().root).labelled_cases}
    cases: list[OutOfFoldCase] = []
    for k in range(len(_split_sizes(cv))):
        fold = cv.fold(k)
        if not fold.metrics.is_file():
            raise DataError(fold.path, f"fold {k} has not finished", "train every fold first (--resume continues)")
        for case_id in fold.load_record().validation:
            if case_id not in by_id:
                raise DataError(fold.path, f"case {case_id} of its split is gone from the dataset")
            case = by_id[case_id]
            path = probabilities_path(case.channels[0], fold.validation)
            if not path.is_file():
                raise DataError(path, "out-of-fold probabilities missing", "evaluate the fold again")
            cases.append(OutOfFoldCase(case_id, path, case.label))
    return plans, sorted(cases, key=lambda c: c.case_id)


def _split_sizes(cv: CrossValDir) -> list[int]:
    from medseg.splits import load_splits

    return [len(f.validation) for f in load_splits(cv.splits_path)]


def read_reference(paths: Sequence[Path], labels: LabelSpec) -> np.ndarray:
    """A reference as class indices ``(*spatial)``, or ``(K, *spatial)`` uint8 masks for overlapping structures."""
    if labels.overlapping:
        return np.stack([(read_label(p)[0] > 0).astype(np.uint8) for p in paths])
    return labels.to_indices(read_label(paths[0])[0], paths[0])


def _classes(labels: LabelSpec) -> list[int]:
    """Scored classes as indices into what :func:`read_reference` returns."""
    return list(range(len(labels.names))) if labels.overlapping else labels.foreground


def _case_dice(pred: np.ndarray, ref: np.ndarray, labels: LabelSpec) -> float:
    masks = [(pred[k] > 0, ref[k] > 0) if labels.overlapping else (pred == k, ref == k) for k in _classes(labels)]
    return float(np.mean([dice(p, r) for p, r in masks]))


def _mean_probabilities(paths: Sequence[Path]) -> np.ndarray:
    total = load_probabilities(paths[0]).astype(np.float32)
    for path in paths[1:]:
        probs = load_probabilities(path)
        if probs.shape != total.shape:
            raise DataError(path, f"probabilities of shape {probs.shape} differ from {total.shape} of {paths[0]}")
        total += probs
    return total / len(paths)


def choose_for(
    members: Sequence[Sequence[OutOfFoldCase]], labels: LabelSpec, *, min_gain: float = 0.0
) -> PostProcessingChoice:
    """Post-processing chosen on the out-of-fold predictions of an ensemble (``members[i]``: configuration
    ``i``'s cases, in the same order)."""

    def cases() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for group in zip(*members, strict=True):
            probs = _mean_probabilities([c.probabilities for c in group])
            pred = labels_from_probabilities(probs, overlapping=labels.overlapping)
            yield pred, read_reference(group[0].reference, labels)

    return choose_postprocessing(cases, _classes(labels), overlapping=labels.overlapping, min_gain=min_gain)


def _ensembles(n: int) -> list[tuple[int, ...]]:
    sizes = range(2, n + 1) if n <= 4 else [2]
    return [(i,) for i in range(n)] + [c for size in sizes for c in itertools.combinations(range(n), size)]


def find_best(
    runs: Sequence[Path], out: Path, *, progress: Callable[[], None] | None = None, min_gain: float = 0.0
) -> EnsembleRecord:
    """Score the configurations ``runs`` and their ensembles out of fold, choose post-processing for the best
    and write ``out/ensemble.json`` (``out`` must be new or empty). Returns the record written."""
    runs = [Path(r).resolve() for r in runs]
    if not runs:
        raise DataError(Path(out), "no cross-validation folder given")
    if len(set(runs)) != len(runs):
        raise DataError(runs[0], "a cross-validation folder is given twice")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "output folder exists and is not empty", "give a new folder")
    loaded = [out_of_fold_cases(r) for r in runs]
    labels = loaded[0][0].data.labels
    ids = [c.case_id for c in loaded[0][1]]
    for run, (plans, cases) in zip(runs[1:], loaded[1:], strict=True):
        if plans.data.labels != labels:
            raise DataError(run, "its classes differ from the first folder's", "compare runs of the same dataset")
        if [c.case_id for c in cases] != ids:
            raise DataError(run, "its out-of-fold cases differ from the first folder's", "use the same cases")
    candidates = _ensembles(len(runs))
    totals = np.zeros(len(candidates))
    for i in range(len(ids)):  # one case at a time, every candidate
        probs = [load_probabilities(cases[i].probabilities) for _, cases in loaded]
        ref = read_reference(loaded[0][1][i].reference, labels)
        for j, members in enumerate(candidates):
            mean = np.mean([probs[m] for m in members], axis=0)
            totals[j] += _case_dice(labels_from_probabilities(mean, overlapping=labels.overlapping), ref, labels)
        if progress is not None:
            progress()
    scores = totals / len(ids)
    best = int(np.argmax(scores))  # candidates are ordered by size: ties keep the smaller ensemble
    members = candidates[best]
    logger.info("best out of fold: %s (Dice %.4f)", [runs[m].name for m in members], scores[best])
    choice = choose_for([loaded[m][1] for m in members], labels, min_gain=min_gain)
    record = EnsembleRecord(
        members=tuple(str(runs[m]) for m in members),
        postprocessing=choice.steps,
        dice=choice.dice,
        dice_postprocessed=choice.dice_postprocessed,
        candidates=tuple(
            Candidate(tuple(str(runs[m]) for m in c), float(s)) for c, s in zip(candidates, scores, strict=True)
        ),
    )
    if out.is_dir():
        out.rmdir()  # empty, checked above
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        record.save(tmp / ENSEMBLE_JSON)
    return record
