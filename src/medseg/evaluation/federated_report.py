"""The report of a federated run: each site's validation Dice per round beside the global (case-weighted) Dice.

It reads plain data, the content of a federation's ``federated.json`` (``rounds``: per round the sites'
``evaluation`` and the ``failures``, the ``global`` Dice), so evaluation knows nothing of Flower or of the
federated package. The page is the usual self-contained ``report.html``: the round × site table, a line plot
of the sites' and the global Dice over rounds, the training curves of ``log.jsonl`` and the plans.

Example:
    >>> rows = federation_rows({"sites": ["a"], "rounds": [{"round": 1, "global": {"dice": 0.5},
    ...     "evaluation": {"sites": {"a": {"dice": 0.5, "examples": 2}}, "failures": []}, "failures": []}]})
    >>> rows[0].sites["a"], rows[0].global_dice, rows[0].failed
    ((0.5, 2), 0.5, ())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medseg.evaluation.html_page import config_parts, esc, fmt, img, mpl_text, new_figure, num, write_document
from medseg.evaluation.report import CLASS_COLOURS, dice_axis_range, training_curves

__all__ = ["RoundRow", "federation_rows", "federation_section", "write_federated_report"]

_FAILED = "failed"


@dataclass(frozen=True)
class RoundRow:
    """One round: per site ``(validation Dice, validation cases)`` or None when it was not evaluated,
    the global case-weighted Dice (NaN when none), and the sites (or errors) that failed in the round."""

    round: int
    sites: Mapping[str, tuple[float, int] | None]
    global_dice: float
    failed: tuple[str, ...]


def federation_rows(record: Mapping[str, Any]) -> list[RoundRow]:
    """The rounds of a ``federated.json`` record as :class:`RoundRow`, sites in the record's order."""
    names = [str(n) for n in record.get("sites") or []]
    rows: list[RoundRow] = []
    for entry in record.get("rounds") or []:
        evaluation = entry.get("evaluation") or {}
        evaluated = evaluation.get("sites") or {}
        sites = {
            name: (num(evaluated[name].get("dice")), int(evaluated[name].get("examples") or 0))
            if name in evaluated
            else None
            for name in names + sorted(set(evaluated) - set(names))
        }
        failed = dict.fromkeys(str(f) for f in [*(entry.get("failures") or []), *(evaluation.get("failures") or [])])
        global_dice = num((entry.get("global") or {}).get("dice"))
        rows.append(RoundRow(int(entry.get("round", len(rows) + 1)), sites, global_dice, tuple(failed)))
    return rows


def federation_section(record: Mapping[str, Any]) -> str:
    """The HTML of the per-site section: the round × site table and, with any Dice, the plot over rounds."""
    rows = federation_rows(record)
    if not rows:
        return '<p class="note">No round was recorded.</p>'
    return _round_table(rows) + (img(_dice_over_rounds(rows)) if _has_dice(rows) else "")


def write_federated_report(
    path: Path,
    record: Mapping[str, Any],
    *,
    title: str,
    log_records: Sequence[dict] = (),
    config: dict | None = None,
) -> Path:
    """Write the federated run's ``report.html`` to ``path`` (atomically) and return ``path``."""
    strategy = record.get("strategy", "?")
    best = fmt(record.get("best_dice"), 4)
    parts = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">Federated training ({esc(strategy)}), {len(record.get("rounds") or [])} round(s). '
        "Each round every site evaluates the global weights on its own validation cases; the global Dice is "
        f"the mean weighted by validation cases. Best global Dice {esc(best)}.</p>",
        "<h2>Validation Dice per site and round</h2>",
        federation_section(record),
    ]
    if log_records:
        parts += ["<h2>Training curves (global, one epoch = one round)</h2>", img(training_curves(log_records))]
    if config is not None:
        parts += config_parts(config)
    return write_document(Path(path), title, parts)


def _round_table(rows: list[RoundRow]) -> str:
    names = list(rows[0].sites) if rows else []
    for row in rows[1:]:
        names += [n for n in row.sites if n not in names]
    head = "".join(f"<th>{esc(name)}</th>" for name in names)
    lines = []
    for row in rows:
        cells = "".join(f"<td>{esc(_site_cell(row.sites.get(name), name in row.failed))}</td>" for name in names)
        failed = ", ".join(row.failed) or "–"
        lines.append(
            f"<tr><td>{row.round}</td>{cells}<td><b>{fmt(row.global_dice, 4)}</b></td><td>{esc(failed)}</td></tr>"
        )
    note = '<p class="note">Dice (validation cases); "failed": the site failed or left in that round.</p>'
    return f"{note}<table><tr><th>Round</th>{head}<th>Global</th><th>Failed</th></tr>{''.join(lines)}</table>"


def _site_cell(value: tuple[float, int] | None, failed: bool) -> str:
    if value is None:
        return _FAILED if failed else "–"
    dice, n = value
    return f"{fmt(dice, 4)} (n={n})" + (f" {_FAILED}" if failed else "")


def _has_dice(rows: list[RoundRow]) -> bool:
    values = [row.global_dice for row in rows] + [v[0] for row in rows for v in row.sites.values() if v is not None]
    return bool(np.isfinite(np.array(values, dtype=float)).any())


def _dice_over_rounds(rows: list[RoundRow]) -> Figure:
    """Each site's validation Dice (thin) and the global Dice (thick, black) over rounds; gaps where missing."""
    figure = new_figure(8.0, 4.0)
    axes = figure.add_subplot()
    rounds = np.array([row.round for row in rows], dtype=float)
    names = list(dict.fromkeys(n for row in rows for n in row.sites))
    finite: list[float] = []
    for index, name in enumerate(names):
        values = np.array([(row.sites.get(name) or (np.nan, 0))[0] for row in rows], dtype=float)
        axes.plot(rounds, values, marker=".", color=CLASS_COLOURS[index % len(CLASS_COLOURS)], label=mpl_text(name))
        finite += values[np.isfinite(values)].tolist()
    overall = np.array([row.global_dice for row in rows], dtype=float)
    axes.plot(rounds, overall, marker="o", color="black", linewidth=2.0, label="global")
    finite += overall[np.isfinite(overall)].tolist()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(*dice_axis_range(np.array(finite)))
    axes.set_xlabel("round")
    axes.set_ylabel("validation Dice")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    return figure
