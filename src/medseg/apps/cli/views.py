"""What the CLI commands show: rich tables and progress bars around library calls (no logic of their own)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import medseg
from medseg import CheckReport, ConvertOptions

__all__ = ["check_command", "convert_command", "progress_bar"]


@contextmanager
def progress_bar(
    description: str, total: int | None, console: Console | None = None, *, quiet: bool = False
) -> Iterator[Callable[[], None]]:
    """A rich progress bar; yields a function to call once per finished item (``quiet``: no bar)."""
    if quiet:
        yield lambda: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


PER_CASE_ROWS = 50  # above this many cases `check` shows the summary only, unless --per-case


def check_command(root: Path, *, per_case: bool | None = None, resample_channels: bool = False) -> int:
    """Run ``medseg check``; return the exit code (0 clean, 1 problems). ``per_case`` None: one row per case
    up to :data:`PER_CASE_ROWS` cases. Piped (not a terminal), tables become tab-separated plain lines."""
    console = Console()
    dataset = medseg.load_dataset(root)
    with progress_bar("checking", len(dataset.cases) + len(dataset.test_cases)) as advance:
        report = medseg.check_dataset(dataset, progress=advance, resample_channels=resample_channels)
    rows = per_case if per_case is not None else len(report.cases) <= PER_CASE_ROWS
    if rows:
        _print_table(console, _case_table(report))
    summary = _summary_table(report)
    _print_table(console, summary)
    if not rows and per_case is None:
        console.print(f"{len(report.cases)} cases: `--per-case` lists one row each", highlight=False)
    if report.problems:
        console.print(f"[bold red]{len(report.problems)} problem(s) found:[/]")
        for problem in report.problems:
            console.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
        return 1
    console.print("[bold green]no problems found[/]")
    return 0


def _print_table(console: Console, table: Table) -> None:
    """A rich table on a terminal; tab-separated lines (header first, when it has one) when piped."""
    if console.is_terminal:
        console.print(table)
        return
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    lines = ["\t".join(str(c.header) for c in table.columns)] if table.show_header else []
    lines += ["\t".join(row) for row in zip(*columns, strict=True)]
    console.file.write("\n".join(lines) + "\n")  # as is: rich would expand the tabs


def _case_table(report: CheckReport) -> Table:
    names = report.dataset.labels.names
    table = Table(title=f"{report.dataset.root} ({report.dataset.layout} layout)")
    longest = max((len(c.case_id) for c in report.cases), default=4)
    table.add_column("case", no_wrap=True, min_width=min(longest, 60))  # full names: a row names its file
    for column in ("channels", "shape", "spacing", "intensity range", "label voxels"):
        table.add_column(column)
    for case in report.cases:
        labels = ", ".join(f"{names.get(k, k)}={n}" for k, n in case.label_counts.items())
        table.add_row(
            case.case_id,
            str(case.channels),
            "×".join(map(str, case.shape)),
            "×".join(f"{s:.3g}" for s in case.spacing),
            f"{case.intensity_min:.4g} … {case.intensity_max:.4g}",
            labels,
        )
    return table


def _channels_text(report: CheckReport) -> str:
    """The channels the cases hold: the declared names when the files agree with them, else what was read
    (an RGB image in a folder layout, which declares one channel named after the folder)."""
    names = report.dataset.channel_names
    read = sorted({c.channels for c in report.cases})
    if not read or read == [len(names)]:
        return f"{len(names)}: {', '.join(names)}"
    if read == [3]:
        return "3 per case: R, G, B (colour images)"
    return f"{' or '.join(map(str, read))} per case (the files differ)"


def _summary_table(report: CheckReport) -> Table:
    ds = report.dataset
    table = Table(title="dataset summary", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    labelled = len(ds.labelled_cases)
    table.add_row("layout", ds.layout)
    table.add_row("cases", f"{len(ds.cases)} training ({labelled} labelled), {len(ds.test_cases)} test")
    table.add_row("channels", _channels_text(report))
    kind = "overlapping structures" if ds.labels.overlapping else "labels"
    totals = report.label_totals()
    label_text = ", ".join(
        f"{k}={name}"
        + (f" (value {ds.labels.values[k]})" if not ds.labels.overlapping and ds.labels.values[k] != k else "")
        + f": {totals.get(k, 0)} voxels"
        for k, name in ds.labels.names.items()
    )
    table.add_row(kind, f"{len(ds.labels.names)}: {label_text}")
    if report.cases:
        shapes = np.array([c.shape for c in report.cases if len(c.shape) == len(report.cases[0].shape)])
        spacings = np.array([c.spacing for c in report.cases if len(c.spacing) == len(report.cases[0].spacing)])
        table.add_row(
            "shape min / median / max",
            " / ".join("×".join(str(int(v)) for v in f(shapes, axis=0)) for f in (np.min, np.median, np.max)),
        )
        spacing = "×".join(f"{v:.3g}" for v in np.median(spacings, axis=0))
        if ds.cases and not medseg.has_physical_spacing(ds.cases[0].channels[0]):
            note = f"none in the files ({spacing} per voxel assumed): distances are in voxels, not mm"
            table.add_row("spacing", note)
        else:
            table.add_row("spacing median (mm)", spacing)
        low = min(c.intensity_min for c in report.cases)
        high = max(c.intensity_max for c in report.cases)
        table.add_row("intensity range", f"{low:.4g} … {high:.4g}")
    table.add_row("problems", str(len(report.problems)))
    return table


def convert_command(source: Path, out: Path, options: ConvertOptions) -> None:
    dataset = medseg.load_dataset(source)
    total = len(dataset.cases) + len(dataset.test_cases)
    with progress_bar("converting", total) as advance:
        medseg.convert_dataset(dataset, out, options, progress=advance)
    Console().print(f"converted {total} cases from {source} ({dataset.layout}) to {out} ({options.layout})")


class TrainingView:
    """Rich progress for training: one bar per step (fingerprint, preprocess, ...) and one per epoch with
    loss, iterations/s and ETA; one summary line per epoch."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.epoch = 0

    def __enter__(self) -> TrainingView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def callbacks(self) -> medseg.Callbacks:
        """The library's progress hooks, drawn by this view."""
        return medseg.Callbacks(on_step=self.step, on_iteration=self.iteration, on_epoch=self.epoch_done)

    def step(self, name: str, total: int) -> Callable[[], None]:
        task = self.progress.add_task(name, total=total, info="", rate="")
        return lambda: self.progress.advance(task)

    def iteration(self, done: int, total: int, loss: float) -> None:
        if self.task is None or done == 1:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.epoch += 1
            self.task = self.progress.add_task(f"epoch {self.epoch}", total=total, info="", rate="")
            self.started = time.perf_counter()
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, completed=done, info=f"loss {loss:.4f}", rate=f"{rate:.2f} it/s")

    def epoch_done(self, result: Any) -> None:
        self.epoch = result.epoch
        dice = f"  val Dice {result.val_dice:.4f}" if result.val_dice is not None else ""
        consistency = getattr(result, "consistency_loss", None)  # semi-supervised runs (--unlabeled)
        if consistency is not None:
            dice = f"  consistency {consistency:.2e} (weight {result.consistency_weight:.3f}){dice}"
        self.console.print(
            f"epoch {result.epoch}: loss {result.train_loss:.4f}  lr {result.lr:.2e}  {result.seconds:.1f} s{dice}"
        )


def train_command(dataset: Path, out: Path, options: Any) -> None:
    if options.distributed and os.environ.get("RANK", "0") != "0":
        # one of torchrun's other processes: it trains its share and says nothing (rank 0 reports)
        logging.getLogger("medseg").setLevel(logging.WARNING)
        train = medseg.train_crossval if options.all_folds or medseg.CrossValDir.holds(out) else medseg.train
        train(dataset, out, options)
        return
    if options.all_folds or medseg.CrossValDir.holds(out):
        _train_crossval(dataset, out, options)
        return
    with TrainingView() as view:
        medseg.train(dataset, out, options, view.callbacks())
    run = medseg.RunDir(out)
    _print_metrics(run.metrics, f"validation fold {options.fold}")
    Console().print(f"run folder: {out}\nreport: {run.report}")


def _train_crossval(dataset: Path, out: Path, options: Any) -> None:
    with TrainingView() as view:
        medseg.train_crossval(dataset, out, options, view.callbacks())
    cv = medseg.CrossValDir(out)
    _print_metrics(cv.out_of_fold / "metrics.json", "cross-validation, out of fold")
    record = medseg.EnsembleRecord.load(cv.summary_path)
    Console().print(
        f"out-of-fold mean Dice {record.dice:.4f}; {_steps_text(record.postprocessing)}: "
        f"{record.dice_postprocessed:.4f}\ncross-validation folder: {out} (`medseg predict {out} ...` "
        "ensembles its folds)"
    )


def _steps_text(steps: Any) -> str:
    if not steps:
        return "no post-processing raised it"
    parts = []
    for step in steps:
        what = [
            name
            for name, on in (
                ("all-foreground largest component", step.foreground_component),
                ("largest component", step.largest_component),
                (f"components < {step.min_voxels} voxels removed", step.min_voxels > 0),
                ("holes filled", step.fill_holes),
            )
            if on
        ]
        where = f" (class {', '.join(map(str, step.classes))})" if step.classes else ""
        parts.append(" + ".join(what) + where)
    return "after " + "; ".join(parts)


def budget_table(budget: Any) -> Table:
    """The configurations a time budget was planned from (``plans.budget``), the chosen one marked."""
    table = Table(
        title=f"time budget {budget.time_budget_s:.0f} s on {budget.device}: candidates timed in "
        f"{budget.measured_seconds:.0f} s ({budget.rule}, docs/planning.md)"
    )
    for column in ("candidate", "patch", "spacing", "batch", "width", "coverage", "s/step", "steps", ""):
        table.add_column(column)
    for i, c in enumerate(budget.configurations):
        spacing = "×".join(f"{v:.3g}" for v in c.target_spacing)
        patch = "×".join(map(str, c.patch_size))
        chosen = "← chosen" if i == budget.chosen else ""
        cost = f"{c.step_seconds:.3f}"
        width = f"×{c.width_factor:g}"
        row = (c.name, patch, spacing, str(c.batch_size), width, f"{c.coverage:.2f}", cost, str(c.steps), chosen)
        table.add_row(*row)
    return table


def find_best_command(runs: list[Path], out: Path) -> None:
    with progress_bar("scoring out-of-fold cases", None) as advance:
        record = medseg.find_best(runs, out, progress=advance)
    table = Table(title="out-of-fold mean Dice")
    table.add_column("configuration(s)")
    table.add_column("Dice")
    for candidate in sorted(record.candidates, key=lambda c: -c.dice):
        mark = " ← best" if candidate.members == record.members else ""
        table.add_row(" + ".join(Path(m).name for m in candidate.members), f"{candidate.dice:.4f}{mark}")
    console = Console()
    console.print(table)
    console.print(
        f"{_steps_text(record.postprocessing)}: {record.dice_postprocessed:.4f}\n"
        f"wrote {out / 'ensemble.json'} (`medseg predict {out} ...` uses it)"
    )


def _print_metrics(path: Path, title: str) -> None:
    import json

    metrics = json.loads(path.read_text(encoding="utf-8"))
    table = Table(title=f"{title} ({len(metrics['cases'])} cases)")
    for column in ("class", "Dice", "IoU", "HD95 (mm)", "ASSD (mm)", "NSD"):
        table.add_column(column)
    for k, name in metrics["classes"].items():
        s = metrics["summary"][k]
        row = [
            f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}" if s[m]["mean"] is not None else "–"
            for m in ("dice", "iou", "hd95", "assd", "nsd")
        ]
        table.add_row(name, *row)
    Console().print(table)


def predict_command(
    run: Path, inputs: Path, output: Path, device: str, options: Any, *, distributed: bool = False
) -> None:
    """Predict every scan of ``inputs``; ``distributed``: this process predicts its share (every N-th case)."""
    files = medseg.find_scans(inputs)
    if distributed:
        dist, target = medseg.init_distributed(device)
    else:
        dist, target = medseg.Dist.single(), medseg.resolve_device(device)
    try:
        predictor = medseg.load_predictor(run, target, options)
        names = predictor.plans.data.channel_names
        groups = medseg.group_channels(files, len(names), names)  # a case lacking a channel: refused first
        mine = groups[dist.rank :: dist.world]
        with progress_bar("predicting", len(mine), quiet=not dist.is_main) as advance:
            written = predictor.predict_files(mine, output, advance)
        total = round(dist.mean(len(written)) * dist.world)
        dist.barrier()
    finally:
        dist.close()
    if dist.is_main:
        shared = f" by {dist.world} processes" if dist.active else ""
        Console().print(f"wrote {total} file(s) to {output}{shared}")


def evaluate_command(predictions: Path, references: Path, out: Path, run: Path | None, tolerance: float) -> None:
    labels = medseg.RunDir(run).load_plans().data.labels if run else medseg.labels_from_references(references)
    pairs = medseg.discover_pairs(predictions, references, labels)
    with progress_bar("evaluating", len(pairs)) as advance:
        metrics = medseg.evaluate_pairs(pairs, labels, nsd_tolerance_mm=tolerance, progress=advance)
    json_path, csv_path = medseg.write_metrics(metrics, out)
    _print_metrics(json_path, "evaluation")
    Console().print(f"metrics: {json_path}, {csv_path}")


def demo_command(out: Path, epochs: int, device: str) -> None:
    with TrainingView() as view:
        result = medseg.run_demo(out, epochs=epochs, device=device, callbacks=view.callbacks())
    _print_metrics(result.metrics_path, "demo: held-out synthetic test scans")
    console = Console()
    console.print(f"mean Dice over classes: {result.mean_dice:.4f}")
    console.print(f"dataset:     {out / 'dataset'}")
    console.print(f"run folder:  {result.run_dir} (plans.json, checkpoints, log.jsonl, validation report)")
    console.print(f"predictions: {result.predictions}")
    console.print(f"report:      {result.report}")
