"""What ``medseg trust``, ``medseg explain`` and ``medseg predict --uncertainty`` print (rich tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import medseg
from medseg.apps.cli.views import progress_bar

__all__ = ["explain_command", "predict_uncertainty_command", "trust_command"]


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def predict_uncertainty_command(
    run: Path, inputs: Path, output: Path, device: str, options: Any, uncertainty: Any
) -> None:
    """Predict every scan of ``inputs`` with uncertainty maps, scores and (with a trust.json) the flag."""
    files = medseg.find_scans(inputs)
    predictor = medseg.load_predictor(run, medseg.resolve_device(device), options)
    names = predictor.plans.data.channel_names
    groups = medseg.group_channels(files, len(names), names)
    with progress_bar("predicting with uncertainty", len(groups)) as advance:
        rows = medseg.predict_with_uncertainty(run, groups, output, uncertainty, predictor=predictor, progress=advance)
    flagged = "predicted_dice" in (rows[0] if rows else {})
    table = Table(title="uncertainty per case")
    for column in ("case", "entropy", "disagreement", "volume ml", *(("predicted Dice", "flag") if flagged else ())):
        table.add_column(column, justify="left" if column in ("case", "flag") else "right")
    for row in rows:
        cells = [row["case"], _fmt(row["entropy"]), _fmt(row["disagreement_ratio"]), _fmt(row["volume_ml"], 2)]
        if flagged:
            cells += [_fmt(row["predicted_dice"]), row["reasons"] if row["flagged"] else ""]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    if not flagged:
        console.print(f"no failure flag: run `medseg trust {run}` once to fit it on the held-out cases")
    console.print(f"wrote {len(rows)} case(s), their uncertainty maps and uncertainty.json/.csv to {output}")


def trust_command(run: Path, options: Any) -> None:
    """Fit and report the failure flag and calibration on the run's held-out cases."""
    with _steps() as on_step:
        record = medseg.assess_trust(run, options, on_step)
    quality, calibration = record["quality"], record["calibration"]
    console = Console()
    table = Table(title=f"trust: {len(record['cases'])} held-out cases")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("Spearman (predicted vs true Dice)", _fmt(quality.get("spearman")))
    table.add_row("Pearson", _fmt(quality.get("pearson")))
    worst = f"catch rate of the worst {_fmt(quality.get('n_worst'), 0)} case(s)"
    table.add_row(worst, _fmt(quality.get("catch_rate"), 2))
    table.add_row("flag threshold (predicted Dice)", _fmt(record["failure_model"]["threshold"]))
    table.add_row("temperature", _fmt(record["temperature"]))
    if calibration.get("before"):
        table.add_row("ECE before", _fmt(calibration["before"]["ece"], 4))
    table.add_row("ECE after" if calibration.get("before") else "ECE", _fmt(calibration["after"]["ece"], 4))
    console.print(table)
    console.print(f"wrote {run / 'trust.json'} and the trust sections of the report")


class _steps:
    """One progress bar per step of ``assess_trust`` (its ``progress(name, total)`` hook); a new step closes
    the previous bar (rich shows one live display at a time)."""

    def __enter__(self) -> Any:
        self.bar: Any = None

        def on_step(name: str, total: int) -> Any:
            self.__exit__(None, None, None)
            self.bar = progress_bar(name, total)
            return self.bar.__enter__()

        return on_step

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.__exit__(*exc)


def explain_command(run: Path, scan: Path, class_name: str, out: Path, method: str, layer: str) -> None:
    map_path, png = medseg.explain(run, scan, class_name, out, method=method, layer=layer)
    Console().print(f"explanation map: {map_path}\noverlay:         {png}")
