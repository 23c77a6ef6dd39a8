"""The whole method, step by step: dataset -> check -> fingerprint -> plans -> split -> preprocess -> train
-> predict the held-out cases -> evaluate -> report. Each step is a library call; this module only wires
them. Where things go in the run folder is :class:`medseg.run.RunDir`'s business.

Long steps report progress and can be cancelled through :class:`Callbacks`, so the CLI, a server or a GUI
drive the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from medseg.config.plans import Plans
from medseg.config.semi_supervised import SemiSupervisedConfig
from medseg.datasets.check import check_dataset
from medseg.datasets.dataset import load_dataset
from medseg.datasets.records import Case, Dataset
from medseg.device import resolve_device
from medseg.distributed import Dist, init_distributed
from medseg.errors import DataError
from medseg.evaluation.evaluate import EvalPair, evaluate_pairs, write_metrics
from medseg.evaluation.run_report import write_run_report
from medseg.inference.predictor import PredictOptions, Predictor
from medseg.models.fusion import check_fusion_channels
from medseg.planning.fingerprint import fingerprint
from medseg.planning.plans import Budget, make_plans
from medseg.preprocessing.cache import load_preprocessed, preprocess_dataset
from medseg.preprocessing.forward import PreprocessedCase
from medseg.run import CrossValDir, RunDir, RunRecord
from medseg.splits import split_cases
from medseg.training.loop import EpochResult, TrainCallbacks, fit
from medseg.training.speed import plan_for_budget
from medseg.training.tensorboard import TensorBoardLog, require_tensorboard
from medseg.training.unlabeled import find_unlabeled, preprocess_unlabeled

__all__ = [
    "Callbacks",
    "TrainOptions",
    "checked_plans",
    "evaluate_run",
    "join",
    "plan_run",
    "preprocess_cases",
    "preprocess_run",
    "require_clean",
    "split_cases",
    "train_run",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Choices for planning and training (the CLI's ``medseg train`` flags); zero / empty means 'as planned'.

    ``model`` is a name in :data:`medseg.models.registry.MODELS`, ``loss`` terms of
    :data:`medseg.losses.registry.LOSSES` joined by ``+`` (empty: ``dice+ce``, or ``dice+bce`` for overlapping
    structures). ``weight_decay``, ``dropout`` and ``batch_dice`` are ``None`` for 'as planned';
    ``class_weights`` (one per network output) go to ``train.loss_params``.
    """

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
    weight_decay: float | None = None
    dropout: float | None = None
    class_weights: tuple[float, ...] = ()
    batch_dice: bool | None = None
    model: str = "unet"
    encoder_weights: str = ""  # a pretrained encoder's .pth / .pt / .safetensors file ("": none)
    frozen_stages: int = 0  # encoder stages kept frozen in training (0: none; 1: stem; ... 5: all)
    loss: str = ""
    fusion: str = "early"  # how the channels meet in the network: early, intermediate, late (models/fusion.py)
    resample_channels: bool = False  # channel files of a case on other grids: resampled onto the first's
    all_folds: bool = False  # train every fold of a `folds`-fold cross-validation (medseg.crossval)
    tensorboard: bool = False  # also write training curves to RUN/tensorboard (optional dependency)
    distributed: bool = False  # one of the processes torchrun started (medseg.distributed)
    budget_plan: bool = True  # with a time budget: choose patch, batch and spacing by timing candidates
    normalization: str = "auto"  # intensity normalisation by name (medseg.config.windows), e.g. window:lung
    configuration: str = "native"  # "2d": a 2D network on the slices of 3D data (nnU-Net's 2d); "3d": native
    unlabeled: str = ""  # a folder of unlabelled scans: Mean Teacher semi-supervised training ("": supervised)


@dataclass(frozen=True)
class Callbacks:
    """Progress and cancellation hooks for a user interface; all optional.

    ``on_step(name, total)`` announces a step ('check', 'fingerprint', 'preprocess', 'predict validation',
    ...) of ``total`` items and returns a function called once per item (or None); ``on_iteration`` and
    ``on_epoch`` follow training; ``should_stop()`` is asked after every training step and ends training
    cleanly (with checkpoints) when it returns True.
    """

    on_step: Callable[[str, int], Callable[[], None] | None] | None = None
    on_iteration: Callable[[int, int, float], None] | None = None
    on_epoch: Callable[[EpochResult], None] | None = None
    should_stop: Callable[[], bool] | None = None

    def step(self, name: str, total: int) -> Callable[[], None] | None:
        """The per-item progress function of step ``name`` (None without an ``on_step`` hook)."""
        return self.on_step(name, total) if self.on_step is not None else None

    def training(self, *also: Callable[[EpochResult], None]) -> TrainCallbacks:
        """The training hooks, with ``also`` called after each epoch too (a TensorBoard log)."""
        hooks = [h for h in (self.on_epoch, *also) if h is not None]

        def on_epoch(result: EpochResult) -> None:
            for hook in hooks:
                hook(result)

        return TrainCallbacks(self.on_iteration, on_epoch if hooks else None, self.should_stop)


def _plan(dataset: Dataset, options: TrainOptions, device: torch.device, advance: Any) -> Plans:
    fp = fingerprint(dataset, seed=options.seed, progress=advance, resample_channels=options.resample_channels)
    budget = Budget(
        device=device.type,
        time_budget_s=options.time_budget_s,
        epochs=options.epochs,
        model=options.model,
        encoder_weights=options.encoder_weights,
        frozen_stages=options.frozen_stages,
        loss=options.loss,
        fusion=options.fusion,
        resample_channels=options.resample_channels,
        dropout=options.dropout,
        normalization=options.normalization,
        configuration=options.configuration,
    )
    # with a time budget the plan is chosen among candidates timed on this device (training/speed.py)
    timed = options.time_budget_s > 0 and options.budget_plan
    plans = plan_for_budget(fp, budget, device) if timed else make_plans(fp, budget)
    flags = {
        "iterations_per_epoch": options.iterations_per_epoch,
        "optimizer": options.optimizer,
        "schedule": options.schedule,
        "amp": options.amp,
        "val_every": options.val_every,
    }
    changes: dict[str, Any] = {k: v for k, v in flags.items() if v}
    if options.optimizer:
        changes["learning_rate"] = {"sgd": 1e-2, "adamw": 3e-3}.get(options.optimizer, plans.train.learning_rate)
    if options.weight_decay is not None:
        changes["weight_decay"] = options.weight_decay
    if options.batch_dice is not None:
        changes["batch_dice"] = options.batch_dice
    if options.class_weights:
        params = replace(plans.train.loss_params, class_weights=options.class_weights)
        params.check_classes(plans.data.labels.n_outputs)
        changes["loss_params"] = params
    if options.unlabeled:  # a plan field: stored absolute, so that a resumed run finds the same folder
        unlabeled = str(Path(options.unlabeled).expanduser().absolute())
        changes["semi_supervised"] = SemiSupervisedConfig(unlabeled=unlabeled, batch_size=plans.train.batch_size)
    train = replace(
        plans.train,
        seed=options.seed,
        deterministic=options.deterministic,
        fold=options.fold,
        folds=options.folds,
        **changes,
    )
    return replace(plans, train=train)


def require_clean(
    dataset: Dataset, advance: Callable[[], None] | None = None, *, resample_channels: bool = False
) -> None:
    """Read every case first and refuse a dataset with problems, before anything is written or trained:
    one bad scan must cost one clear line, not a traceback an hour into training. ``resample_channels``
    accepts channel files on different grids (they will be resampled onto the first channel's)."""
    report = check_dataset(dataset, progress=advance, resample_channels=resample_channels)
    if report.problems:
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
        raise DataError(first.path, first.message + more, "run `medseg check` on the dataset to list them all")


def checked_plans(
    dataset_root: Path, options: TrainOptions, callbacks: Callbacks | None = None
) -> tuple[Dataset, Plans]:
    """Load and check the dataset, fingerprint it and plan (nothing is written)."""
    cb = callbacks or Callbacks()
    dataset = load_dataset(dataset_root)
    check_fusion_channels(options.fusion, len(dataset.channel_names))  # before reading every case
    checking = cb.step("check", len(dataset.cases) + len(dataset.test_cases))
    require_clean(dataset, checking, resample_channels=options.resample_channels)
    device = resolve_device(options.device)
    plans = _plan(dataset, options, device, cb.step("fingerprint", len(dataset.labelled_cases)))
    if plans.train.semi_supervised is not None:  # the unlabelled folder checked before anything is written
        find_unlabeled(Path(plans.train.semi_supervised.unlabeled), plans.data)
    return dataset, plans


def plan_run(dataset_root: Path, run_dir: Path, options: TrainOptions, callbacks: Callbacks | None = None) -> Plans:
    """Check the dataset, fingerprint it, plan, split; write ``plans.json`` and ``dataset.json`` into a new
    ``run_dir`` (nothing is written when any step fails)."""
    run = RunDir(Path(run_dir))
    run.require_new()
    dataset, plans = checked_plans(dataset_root, options, callbacks)
    ids = [c.case_id for c in dataset.labelled_cases]
    train_ids, val_ids = split_cases(ids, options.folds, options.fold, options.seed)
    run.create(plans, RunRecord(Path(dataset_root).resolve(), dataset.layout, tuple(train_ids), tuple(val_ids)))
    return plans


def preprocess_run(run_dir: Path, callbacks: Callbacks | None = None) -> dict[str, PreprocessedCase]:
    """Fill (or reuse) the run's preprocessing cache; return the preprocessed cases by id."""
    run = RunDir(Path(run_dir))
    record = run.load_record()
    dataset = load_dataset(record.root)
    return preprocess_cases(run, run.load_plans(), dataset, [*record.train, *record.validation], callbacks)


def preprocess_cases(
    run: RunDir, plans: Plans, dataset: Dataset, ids: list[str], callbacks: Callbacks | None
) -> dict[str, PreprocessedCase]:
    """Fill (or reuse) ``run``'s preprocessing cache with the cases ``ids``; return them by id."""
    by_id = {c.case_id: c for c in dataset.labelled_cases}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DataError(dataset.root, f"case(s) {missing[:3]} of the run's split are gone from the dataset")
    cases = [by_id[i] for i in ids]
    advance = (callbacks or Callbacks()).step("preprocess", len(cases))
    paths = preprocess_dataset(cases, plans.data, run.preprocessed, advance)
    return {p.stem: load_preprocessed(p) for p in paths}


def train_run(
    dataset_root: Path,
    run_dir: Path,
    options: TrainOptions,
    callbacks: Callbacks | None = None,
    *,
    save_probabilities: bool = False,
    dist: Dist | None = None,
) -> Path:
    """Plan (unless ``run_dir`` holds plans already, from ``medseg plan`` or an interrupted run), preprocess,
    train, then predict and evaluate the validation split (with ``save_probabilities`` also writing the
    validation cases' probabilities, as a cross-validation needs).

    ``options.distributed`` (started by torchrun): this process joins the group (:mod:`medseg.distributed`);
    rank 0 plans, preprocesses, logs, writes checkpoints and evaluates, every rank trains. A caller that
    joined already passes its ``dist`` (and closes it)."""
    run = RunDir(Path(run_dir))
    if CrossValDir.holds(run.path):
        raise DataError(run.path, "this is a cross-validation folder", "train it with --folds all")
    cb = callbacks or Callbacks()
    if dist is not None:
        return _train(dataset_root, run, options, cb, save_probabilities, dist)
    own, device = join(options)
    try:
        return _train(dataset_root, run, replace(options, device=str(device)), cb, save_probabilities, own)
    finally:
        own.close()


def join(options: TrainOptions) -> tuple[Dist, torch.device]:
    """This process's place and device: a process group when ``options.distributed``, else alone."""
    if options.distributed:
        return init_distributed(options.device)
    return Dist.single(), resolve_device(options.device)


def _train(
    dataset_root: Path, run: RunDir, options: TrainOptions, cb: Callbacks, save_probabilities: bool, dist: Dist
) -> Path:
    device = resolve_device(options.device)
    if options.tensorboard and dist.is_main:
        require_tensorboard()  # before anything is written
    started = run.started
    if started and not options.resume:
        raise DataError(run.path, "run folder holds a started run", "pass --resume to continue it, or a new folder")
    if not run.plans_path.exists():
        if options.resume:
            raise DataError(run.path, "nothing to resume: no plans.json in the run folder")
        dist.main_first(lambda: plan_run(dataset_root, run.path, options, cb))
    plans, record = run.load_plans(), run.load_record()
    _require_same_unlabeled(run, plans, options)
    dataset = load_dataset(record.root)  # one dataset scan for preprocessing and evaluation
    ids = [*record.train, *record.validation]
    dist.main_first(lambda: preprocess_cases(run, plans, dataset, ids, cb))
    loaded = preprocess_cases(run, plans, dataset, ids, None)  # the cache is complete: loads only
    train = [loaded[i] for i in record.train]
    by_id = {c.case_id: c for c in dataset.labelled_cases}
    held_out = [path for i in record.validation for path in by_id[i].channels]  # never among the unlabelled
    dist.main_first(lambda: preprocess_unlabeled(run, plans, held_out, cb.step))  # [] if supervised
    unlabeled = preprocess_unlabeled(run, plans, held_out)  # the cache is complete: loads only
    tensorboard = options.tensorboard and dist.is_main
    with TensorBoardLog(run.path) if tensorboard else nullcontext() as board:
        fit(
            plans,
            train,
            [loaded[i] for i in record.validation],
            run.path,
            device=device,
            resume=started,
            callbacks=cb.training(*([board] if board is not None else [])),
            dist=dist,
            unlabeled=unlabeled,
        )
    cases = [by_id[i] for i in record.validation]
    probabilities = save_probabilities
    dist.main_first(
        lambda: evaluate_run(run.path, cases, device=device, callbacks=cb, save_probabilities=probabilities)
    )
    return run.path


def _require_same_unlabeled(run: RunDir, plans: Plans, options: TrainOptions) -> None:
    """``--unlabeled`` is a plan field: given for a run planned already, it must be the plans' folder."""
    if not options.unlabeled:
        return
    wanted = str(Path(options.unlabeled).expanduser().absolute())
    semi = plans.train.semi_supervised
    if semi is None or semi.unlabeled != wanted:
        planned = f"plans {semi.unlabeled}" if semi is not None else "it was planned without --unlabeled"
        raise DataError(
            run.plans_path,
            f"--unlabeled {wanted} differs from the run's plans ({planned})",
            "set train.semi_supervised in plans.json, leave out --unlabeled, or train a new run folder",
        )


def evaluate_run(
    run_dir: Path,
    cases: Sequence[Case],
    *,
    device: torch.device,
    callbacks: Callbacks | None = None,
    save_probabilities: bool = False,
) -> dict[str, Any]:
    """Predict ``cases`` with the best checkpoint into the run's ``validation/``, evaluate, write the report."""
    cb, run = callbacks or Callbacks(), RunDir(Path(run_dir))
    predictor = Predictor.from_run(run.path, device, PredictOptions(save_probabilities=save_probabilities))
    predictor.predict_files(
        [(c.case_id, c.channels) for c in cases], run.validation, cb.step("predict validation", len(cases))
    )
    pairs = [EvalPair(c.case_id, tuple(predictor.output_paths(c.channels[0], run.validation)), c.label) for c in cases]
    metrics = evaluate_pairs(pairs, predictor.plans.data.labels, progress=cb.step("evaluate", len(pairs)))
    write_metrics(metrics, run.path)
    images = {c.case_id: c.channels for c in cases}
    title = f"{predictor.plans.dataset_name}: held-out cases, run {run.path.name}"
    write_run_report(run.report, metrics, pairs, predictor.plans, run.log, images, title=title)
    return metrics
