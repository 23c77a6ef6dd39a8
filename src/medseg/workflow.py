"""The whole method, step by step: dataset -> fingerprint -> plans -> split -> preprocess -> train ->
predict the held-out cases -> evaluate -> report. Each step is a library call; this module only wires them
and decides where in the run folder things go.

Run folder::

    plans.json          everything prediction needs (with the checkpoint)
    dataset.json        where the data came from and which cases are in which split
    preprocessed/       the cache (safe to delete)
    checkpoint_last.pt  checkpoint_best.pt  log.jsonl
    validation/         held-out predictions in the scans' own format and geometry
    metrics.json  metrics.csv  report.html
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config.plans import Plans, load_plans, save_plans
from medseg.datasets.dataset import Case, Dataset, load_dataset
from medseg.errors import ConfigError, DataError
from medseg.evaluation.evaluate import EvalPair, evaluate_pairs, write_metrics
from medseg.fileutil import atomic_path, atomic_write_json
from medseg.inference.predictor import Predictor, _output_name
from medseg.io.images import read_channels, read_label
from medseg.planning.fingerprint import fingerprint
from medseg.planning.plans import Budget, make_plans
from medseg.preprocessing.cache import load_preprocessed, preprocess_dataset
from medseg.preprocessing.forward import PreprocessedCase
from medseg.serial import to_dict
from medseg.training.loop import LOG, EpochResult, fit

__all__ = [
    "Callbacks",
    "TrainOptions",
    "evaluate_run",
    "plan_run",
    "preprocess_run",
    "require_clean",
    "resolve_device",
    "split_cases",
    "train_run",
    "write_run_report",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Command-line choices for ``medseg train``; zero / empty means 'as planned'."""

    epochs: int = 0
    time_budget_s: float = 0.0
    iterations_per_epoch: int = 0
    fold: int = 0
    folds: int = 5
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    deterministic: bool = False
    optimizer: str = ""
    schedule: str = ""
    amp: str = ""
    val_every: int = 0
    model_preset: str = "nnunet"


@dataclass(frozen=True)
class Callbacks:
    """Progress hooks for a user interface; all optional."""

    on_step: Callable[[str, int], Callable[[], None] | None] | None = None  # (step name, total) -> advance
    on_iteration: Callable[[int, int, float], None] | None = None
    on_epoch: Callable[[EpochResult], None] | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available (use --device cpu)")
    return torch.device(name)


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


def _plan(dataset: Dataset, options: TrainOptions, device: torch.device, advance: Any) -> Plans:
    fp = fingerprint(dataset, seed=options.seed, progress=advance)
    plans = make_plans(fp, Budget(device=device.type, time_budget_s=options.time_budget_s, epochs=options.epochs))
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "iterations_per_epoch": options.iterations_per_epoch,
            "optimizer": options.optimizer,
            "schedule": options.schedule,
            "amp": options.amp,
            "val_every": options.val_every,
        }.items()
        if v
    }
    if options.optimizer:
        changes["learning_rate"] = {"sgd": 1e-2, "adamw": 3e-3}.get(options.optimizer, plans.train.learning_rate)
    train = replace(
        plans.train,
        seed=options.seed,
        deterministic=options.deterministic,
        fold=options.fold,
        folds=options.folds,
        **changes,
    )
    if options.model_preset == "classic":
        from medseg.models.unet_config import classic_config

        model = classic_config(fp.ndim, len(fp.channel_names), len(fp.labels.names), depth=len(plans.model.features))
        plans = replace(plans, model=model)
    elif options.model_preset != "nnunet":
        raise ConfigError(f"unknown model preset '{options.model_preset}'; use nnunet or classic")
    return replace(plans, train=train)


def require_clean(dataset: Dataset, advance: Callable[[], None] | None = None) -> None:
    """Read every case first and refuse a dataset with problems, before anything is written or trained:
    one bad scan must cost one clear line, not a traceback an hour into training."""
    from medseg.datasets.check import check_dataset

    report = check_dataset(dataset, progress=advance)
    if report.problems:
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
        raise DataError(first.path, first.message + more, "run `medseg check` on the dataset to list them all")


def plan_run(dataset_root: Path, run_dir: Path, options: TrainOptions, callbacks: Callbacks | None = None) -> Plans:
    """Check the dataset, fingerprint it, plan, split; write ``plans.json`` and ``dataset.json`` into a new
    ``run_dir`` (nothing is written when any step fails)."""
    cb = callbacks or Callbacks()
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise DataError(run_dir, "run folder exists and is not empty", "pass --resume to continue it, or a new folder")
    dataset = load_dataset(dataset_root)
    require_clean(dataset, _step(cb, "check", len(dataset.cases) + len(dataset.test_cases)))
    device = resolve_device(options.device)
    plans = _plan(dataset, options, device, _step(cb, "fingerprint", len(dataset.labelled_cases)))
    ids = [c.case_id for c in dataset.labelled_cases]
    train_ids, val_ids = split_cases(ids, options.folds, options.fold, options.seed)
    record = {"root": str(dataset_root.resolve()), "layout": dataset.layout, "train": train_ids, "validation": val_ids}
    if run_dir.is_dir():
        run_dir.rmdir()  # empty, checked above
    with atomic_path(run_dir) as tmp:  # both files appear together, or neither
        tmp.mkdir(parents=True)
        atomic_write_json(tmp / "dataset.json", record)
        save_plans(plans, tmp / "plans.json")
    return plans


def _run_cases(run_dir: Path) -> tuple[Dataset, list[str], list[str]]:
    """The dataset a run was planned on and its split, from the run's ``dataset.json``."""
    record_path = run_dir / "dataset.json"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        root, train_ids, val_ids = Path(record["root"]), list(record["train"]), list(record["validation"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(record_path, f"missing or damaged run record ({exc})", "plan the run again") from exc
    return load_dataset(root), train_ids, val_ids


def preprocess_run(run_dir: Path, callbacks: Callbacks | None = None) -> dict[str, PreprocessedCase]:
    """Fill (or reuse) the run's preprocessing cache; return the preprocessed cases by id."""
    dataset, train_ids, val_ids = _run_cases(run_dir)
    return _preprocess(run_dir, load_plans(run_dir / "plans.json"), dataset, train_ids + val_ids, callbacks)


def _preprocess(
    run_dir: Path, plans: Plans, dataset: Dataset, ids: list[str], callbacks: Callbacks | None
) -> dict[str, PreprocessedCase]:
    by_id = {c.case_id: c for c in dataset.labelled_cases}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DataError(dataset.root, f"case(s) {missing[:3]} of the run's split are gone from the dataset")
    cases = [by_id[i] for i in ids]
    advance = _step(callbacks or Callbacks(), "preprocess", len(cases))
    paths = preprocess_dataset(cases, plans.data, run_dir / "preprocessed", advance)
    return {p.stem: load_preprocessed(p) for p in paths}


def train_run(dataset_root: Path, run_dir: Path, options: TrainOptions, callbacks: Callbacks | None = None) -> Path:
    """Plan (unless ``run_dir`` holds plans already, from ``medseg plan`` or an interrupted run), preprocess,
    train, then predict and evaluate the validation split."""
    cb = callbacks or Callbacks()
    device = resolve_device(options.device)
    has_plans = (run_dir / "plans.json").exists()
    started = (run_dir / "checkpoint_last.pt").exists()
    if started and not options.resume:
        raise DataError(run_dir, "run folder holds a started run", "pass --resume to continue it, or a new folder")
    if not has_plans:
        if options.resume:
            raise DataError(run_dir, "nothing to resume: no plans.json in the run folder")
        plan_run(dataset_root, run_dir, options, cb)
    plans = load_plans(run_dir / "plans.json")
    dataset, train_ids, val_ids = _run_cases(run_dir)  # one dataset scan for preprocessing and evaluation
    loaded = _preprocess(run_dir, plans, dataset, train_ids + val_ids, cb)
    fit(
        plans,
        [loaded[i] for i in train_ids],
        [loaded[i] for i in val_ids],
        run_dir,
        device=device,
        resume=started,
        on_iteration=cb.on_iteration,
        on_epoch=cb.on_epoch,
    )
    by_id = {c.case_id: c for c in dataset.labelled_cases}
    evaluate_run(run_dir, [by_id[i] for i in val_ids], device=device, callbacks=cb)
    return run_dir


def _step(cb: Callbacks, name: str, total: int) -> Callable[[], None] | None:
    return cb.on_step(name, total) if cb.on_step is not None else None


def evaluate_run(
    run_dir: Path, cases: Sequence[Case], *, device: torch.device, callbacks: Callbacks | None = None
) -> dict[str, Any]:
    """Predict ``cases`` with the best checkpoint into ``run_dir/validation``, evaluate, write the report."""
    cb = callbacks or Callbacks()
    predictor = Predictor.from_run(run_dir, device)
    out = run_dir / "validation"
    predictor.predict_files([(c.case_id, c.channels) for c in cases], out, _step(cb, "predict validation", len(cases)))
    labels = predictor.plans.data.labels
    pairs = [_pair(c, out, predictor.plans) for c in cases]
    metrics = evaluate_pairs(pairs, labels, progress=_step(cb, "evaluate", len(pairs)))
    write_metrics(metrics, run_dir)
    images = {c.case_id: c.channels for c in cases}
    write_run_report(
        run_dir / "report.html",
        metrics,
        pairs,
        predictor.plans,
        run_dir / LOG,
        images,
        title=f"medseg run {run_dir.name}",
    )
    return metrics


def _pair(case: Case, out: Path, plans: Plans) -> EvalPair:
    name = _output_name(case.channels[0])
    if plans.data.labels.overlapping:
        return EvalPair(case.case_id, tuple(out / s / name for s in plans.data.labels.names.values()), case.label)
    return EvalPair(case.case_id, (out / name,), case.label)


def write_run_report(
    path: Path,
    metrics: dict[str, Any],
    pairs: Sequence[EvalPair],
    plans: Plans,
    log: Path | None,
    images: Mapping[str, Sequence[Path]],
    *,
    title: str,
) -> Path:
    """The HTML report: metric tables, box plot, curves from ``log``, overlays of best/median/worst cases."""
    from medseg.evaluation.report import OverlayCase, pick_overlay_cases, write_report

    scores = {
        c["case"]: float(np.nanmean([m["dice"] if m["dice"] is not None else np.nan for m in c["metrics"].values()]))
        for c in metrics["cases"]
    }
    by_id = {p.case_id: p for p in pairs}
    overlays = []
    for _role, case_id in pick_overlay_cases(scores):
        pair = by_id[case_id]
        image, _ = read_channels(list(images[case_id]))
        ref = (
            np.stack([read_label(p)[0] for p in pair.reference])
            if plans.data.labels.overlapping
            else plans.data.labels.to_indices(read_label(pair.reference[0])[0], pair.reference[0])
        )
        pred = (
            np.stack([read_label(p)[0] for p in pair.prediction])
            if plans.data.labels.overlapping
            else plans.data.labels.to_indices(read_label(pair.prediction[0])[0], pair.prediction[0])
        )
        overlays.append(
            OverlayCase(case_id, image, ref, pred, scores[case_id], overlapping=plans.data.labels.overlapping)
        )
    lines = log.read_text(encoding="utf-8").splitlines() if log is not None and log.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    return write_report(
        path, title=title, metrics=metrics, log_records=records, overlays=overlays, config=to_dict(plans)
    )
