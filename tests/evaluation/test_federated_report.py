"""The federated run's report: each site's validation Dice and cases per round, the global Dice, failures."""

from __future__ import annotations

import math
from pathlib import Path

from medseg.evaluation.federated_report import federation_rows, write_federated_report


def _round(number: int, evaluated: dict[str, tuple[float, int]], failures: list[str]) -> dict:
    sites = {name: {"dice": dice, "examples": n, "loss": 0.1} for name, (dice, n) in evaluated.items()}
    total = sum(n for _, n in evaluated.values())
    dice = sum(d * n for d, n in evaluated.values()) / total if total else None
    return {
        "round": number,
        "sites": {name: {"examples": 5} for name in evaluated},
        "failures": failures,
        "global": {"dice": dice},
        "evaluation": {"sites": sites, "failures": []},
    }


RECORD = {
    "strategy": "fedprox",
    "sites": ["hospital-a", "<b>site</b>"],
    "best_dice": 0.7625,
    "rounds": [
        _round(1, {"hospital-a": (0.6123, 3), "<b>site</b>": (0.4567, 1)}, []),
        _round(2, {"hospital-a": (0.7625, 3)}, ["<b>site</b>"]),
        _round(3, {}, ["hospital-a", "<b>site</b>"]),
    ],
}


def test_rows_hold_each_sites_dice_cases_and_the_weighted_global_dice() -> None:
    rows = federation_rows(RECORD)
    assert [r.round for r in rows] == [1, 2, 3]
    assert rows[0].sites == {"hospital-a": (0.6123, 3), "<b>site</b>": (0.4567, 1)}
    assert math.isclose(rows[0].global_dice, (0.6123 * 3 + 0.4567) / 4)
    assert rows[1].sites["<b>site</b>"] is None and rows[1].failed == ("<b>site</b>",)
    assert math.isnan(rows[2].global_dice) and rows[2].failed == ("hospital-a", "<b>site</b>")


def test_report_shows_every_site_its_dice_and_the_global_dice(tmp_path: Path) -> None:
    log = [{"epoch": 1, "train_loss": 0.9, "val_dice": 0.5734}, {"epoch": 2, "train_loss": 0.7, "val_dice": 0.7625}]
    path = write_federated_report(tmp_path / "report.html", RECORD, title="Fed", log_records=log)
    text = path.read_text(encoding="utf-8")
    assert "<th>hospital-a</th>" in text and "<th>&lt;b&gt;site&lt;/b&gt;</th>" in text  # names, escaped
    assert "<b>site</b>" not in text
    assert "0.6123 (n=3)" in text and "0.4567 (n=1)" in text and "0.7625 (n=3)" in text
    assert "<b>0.5734</b>" in text and "<b>0.7625</b>" in text  # the global (case-weighted) Dice per round
    round2 = text.split("<tr><td>2</td>")[1].split("</tr>")[0]
    assert "<td>failed</td>" in round2 and round2.endswith("<td>&lt;b&gt;site&lt;/b&gt;</td>")
    assert text.count("data:image/png;base64,") == 2  # Dice over rounds, training curves
