"""Cross-validation: plan once, train every fold, score the out-of-fold predictions, choose post-processing.

``medseg train DATA --out RUN --folds all`` (:func:`train_crossval`) fingerprints and plans the dataset once,
writes ``RUN/splits.json`` (5 folds by default; ``medseg plan --folds all`` stops there so the split can be
edited), preprocesses every case once into the shared ``RUN/preprocessed/``, then trains ``RUN/fold_K/`` one
after the other as ordinary run folders (each predicts and evaluates the cases it held out, and keeps their
probabilities). When all folds are done, the out-of-fold predictions are evaluated together
(``RUN/crossval/metrics.json``) and post-processing is chosen on them (``RUN/crossval.json``).
``medseg predict RUN`` then averages the folds and applies that post-processing.

An interrupted cross-validation continues with ``--resume``: finished folds are kept, a started fold resumes
from its last checkpoint. The folder layout is :class:`medseg.run.CrossValDir`'s.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

from medseg.config.plans import Plans
from medseg.datasets.dataset import load_dataset
from medseg.distributed import Dist
from medseg.errors import DataError
from medseg.evaluation.evaluate import EvalPair, evaluate_pairs, write_metrics
from medseg.fileutil import atomic_path, make_dirs
from medseg.inference.predictor import output_paths
from medseg.model_selection import choose_for, out_of_fold_cases
from medseg.run import CrossValDir, EnsembleRecord, RunDir, RunRecord
from medseg.splits import Fold, load_splits, make_splits, save_splits
from medseg.training.tensorboard import require_tensorboard
from medseg.workflow import Callbacks, TrainOptions, checked_plans, join, preprocess_cases, train_run

__all__ = ["plan_crossval", "summarise_crossval", "train_crossval"]

logger = logging.getLogger(__name__)

SHARED_CACHE = "../preprocessed"  # a fold's cache, relative to its folder


def plan_crossval(
    dataset_root: Path, run_dir: Path, options: TrainOptions, callbacks: Callbacks | None = None
) -> Plans:
    """Check, fingerprint and plan the dataset once; write ``plans.json``, ``dataset.json`` and
    ``splits.json`` (``options.folds`` folds) into a new ``run_dir`` (all three, or nothing)."""
    cv = CrossValDir(Path(run_dir))
    cv.root.require_new()
    dataset, plans = checked_plans(dataset_root, options, callbacks)
    ids = sorted(c.case_id for c in dataset.labelled_cases)
    folds = make_splits(ids, options.folds, options.seed)
    record = RunRecord(Path(dataset_root).resolve(), dataset.layout, tuple(ids), ())
    if cv.path.is_dir():
        cv.path.rmdir()  # empty, checked above
    with atomic_path(cv.path) as tmp:
        RunDir(tmp).create(plans, record)
        save_splits(folds, tmp / cv.splits_path.name)
    return plans


def train_crossval(
    dataset_root: Path, run_dir: Path, options: TrainOptions, callbacks: Callbacks | None = None
) -> Path:
    """Plan (unless ``run_dir`` holds a planned cross-validation), then train and evaluate every fold of
    ``splits.json`` and summarise them (:func:`summarise_crossval`). With ``options.distributed`` every
    fold trains on all processes; rank 0 plans, preprocesses, evaluates and summarises."""
    dist, device = join(options)
    try:
        options = replace(options, device=str(device))
        return _train_folds(dataset_root, CrossValDir(Path(run_dir)), options, callbacks or Callbacks(), dist)
    finally:
        dist.close()


def _train_folds(dataset_root: Path, cv: CrossValDir, options: TrainOptions, cb: Callbacks, dist: Dist) -> Path:
    if options.tensorboard and dist.is_main:
        require_tensorboard()  # before anything is written
    if not cv.root.plans_path.exists():
        if options.resume:
            raise DataError(cv.path, "nothing to resume: no plans.json in the run folder")
        dist.main_first(lambda: plan_crossval(dataset_root, cv.path, options, cb))
    elif not CrossValDir.holds(cv.path):
        raise DataError(cv.path, "this run folder holds a single run, not a cross-validation", "give a new folder")
    plans, record = cv.root.load_plans(), cv.root.load_record()
    dataset = load_dataset(record.root)
    folds = load_splits(cv.splits_path, [c.case_id for c in dataset.labelled_cases])
    started = [k for k in range(len(folds)) if cv.fold(k).started]
    if started and not options.resume:
        raise DataError(
            cv.path, f"fold {started[0]} of this cross-validation has started", "pass --resume to continue it"
        )
    ids = sorted({i for f in folds for i in (*f.train, *f.validation)})
    dist.main_first(lambda: preprocess_cases(cv.root, plans, dataset, ids, cb))  # once, for every fold
    for k, fold in enumerate(folds):
        dist.main_first(functools.partial(_fold_run, cv, k, fold, plans, record, len(folds)))
        run = cv.fold(k)
        if run.metrics.is_file():
            logger.info("fold %d is done already (%s)", k, run.metrics)
            continue
        logger.info("training fold %d of %d", k, len(folds))
        fold_options = replace(options, resume=run.started)
        train_run(dataset_root, run.path, fold_options, cb, save_probabilities=True, dist=dist)
    dist.main_first(lambda: summarise_crossval(cv.path, cb))
    return cv.path


def _fold_run(cv: CrossValDir, k: int, fold: Fold, plans: Plans, record: RunRecord, n_folds: int) -> RunDir:
    """Fold ``k``'s run folder, created from the cross-validation's plans on first use; refused when
    ``splits.json`` was edited after the fold was created."""
    run = cv.fold(k)
    if run.plans_path.exists():
        have = run.load_record()
        if (set(have.train), set(have.validation)) != (set(fold.train), set(fold.validation)):
            raise DataError(
                cv.splits_path,
                f"fold {k} differs from the split fold_{k} was created with",
                f"restore splits.json, or delete {run.path} to train it again on the new split",
            )
        return run
    fold_plans = replace(plans, train=replace(plans.train, fold=k, folds=n_folds))
    run.create(fold_plans, RunRecord(record.root, record.layout, fold.train, fold.validation, cache=SHARED_CACHE))
    return run


def summarise_crossval(run_dir: Path, callbacks: Callbacks | None = None) -> EnsembleRecord:
    """Evaluate every fold's out-of-fold predictions together into ``crossval/`` and choose post-processing
    on them; write and return ``crossval.json``."""
    cb, cv = callbacks or Callbacks(), CrossValDir(Path(run_dir))
    plans, cases = out_of_fold_cases(cv.path)
    dataset = load_dataset(cv.root.load_record().root)
    by_id = {c.case_id: c for c in dataset.labelled_cases}
    folds = load_splits(cv.splits_path)
    owner = {i: cv.fold(k) for k, f in enumerate(folds) for i in f.validation}
    labels = plans.data.labels
    pairs = []
    for c in cases:
        predicted = output_paths(by_id[c.case_id].channels[0], owner[c.case_id].validation, labels)
        pairs.append(EvalPair(c.case_id, tuple(predicted), c.reference))
    metrics = evaluate_pairs(pairs, labels, progress=cb.step("evaluate out-of-fold", len(pairs)))
    write_metrics(metrics, make_dirs(cv.out_of_fold))
    choice = choose_for([cases], labels)
    record = EnsembleRecord(
        members=tuple(f"fold_{k}" for k in range(len(folds))),
        postprocessing=choice.steps,
        dice=choice.dice,
        dice_postprocessed=choice.dice_postprocessed,
    )
    record.save(cv.summary_path)
    logger.info(
        "cross-validation: out-of-fold Dice %.4f, %.4f after post-processing (%d step(s))",
        choice.dice,
        choice.dice_postprocessed,
        len(choice.steps),
    )
    return record
