"""The HTML report of a run or an evaluation: metric tables, box plot, training curves from ``log.jsonl``,
and overlays of the best, median and worst cases (images and masks read back from disk)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.plans import Plans
from medseg.evaluation.evaluate import EvalPair
from medseg.evaluation.report import OverlayCase, pick_overlay_cases, write_report
from medseg.evaluation.trust_report import TrustOverlay, calibration_section, failure_section, uncertainty_section
from medseg.io.images import read_channels, read_image, read_label
from medseg.labels import LabelSpec
from medseg.serial import to_dict

__all__ = ["display_window", "write_run_report"]


def write_run_report(
    path: Path,
    metrics: dict[str, Any],
    pairs: Sequence[EvalPair],
    plans: Plans,
    log: Path | None,
    images: Mapping[str, Sequence[Path]],
    *,
    title: str,
    trust: dict[str, Any] | None = None,
    trust_dir: Path | None = None,
) -> Path:
    """The HTML report: metric tables, box plot, curves from ``log``, overlays of best/median/worst cases;
    with ``trust`` (the record of ``medseg trust``, its maps in ``trust_dir``) also the trust sections."""
    scores = {
        c["case"]: float(np.nanmean([m["dice"] if m["dice"] is not None else np.nan for m in c["metrics"].values()]))
        for c in metrics["cases"]
    }
    by_id = {p.case_id: p for p in pairs}
    labels = plans.data.labels
    overlays = []
    window = display_window(plans)
    for _role, case_id in pick_overlay_cases(scores):
        pair = by_id[case_id]
        image, _ = read_channels(list(images[case_id]), resample=plans.data.resample_channels)
        ref, pred = _masks(pair.reference, labels), _masks(pair.prediction, labels)
        overlays.append(OverlayCase(case_id, image, ref, pred, scores[case_id], labels.overlapping, window))
    lines = log.read_text(encoding="utf-8").splitlines() if log is not None and log.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    sections = []
    if trust is not None and trust_dir is not None:
        sections = [
            failure_section(trust),
            calibration_section(trust),
            uncertainty_section(_trust_overlays(trust, trust_dir, by_id, images, plans)),
        ]
    return write_report(
        path,
        title=title,
        metrics=metrics,
        log_records=records,
        overlays=overlays,
        config=to_dict(plans),
        sections=sections,
    )


def _trust_overlays(
    trust: dict[str, Any],
    trust_dir: Path,
    pairs: Mapping[str, EvalPair],
    images: Mapping[str, Sequence[Path]],
    plans: Plans,
) -> list[TrustOverlay]:
    """Best, median and worst held-out cases by true Dice, with their uncertainty maps read back."""
    rows = {r["case"]: r for r in trust["cases"]}
    overlays = []
    for role, case_id in pick_overlay_cases({c: float(r["dice"]) for c, r in rows.items()}):
        row, pair = rows[case_id], pairs[case_id]
        image, _ = read_channels(list(images[case_id]), resample=plans.data.resample_channels)
        prediction = _masks(pair.prediction, plans.data.labels)
        spec = plans.data.labels
        masks = prediction > 0 if spec.overlapping else np.stack([prediction == k for k in spec.foreground])
        entropy = read_image(trust_dir / row["map"])[0][0]
        overlay = TrustOverlay(
            case_id, role, image[0], entropy, masks, row["dice"], row["predicted_dice"], display_window(plans)
        )
        overlays.append(overlay)
    return overlays


def display_window(plans: Plans) -> tuple[float, float] | None:
    """How the report shows the first channel: through the CT window it was normalised with
    (``--normalization window:lung`` shows the lung window), through the dataset's foreground intensity range
    for a CT channel (``ct``: what the network sees), else stretched to each image's own percentiles (None)."""
    norm = plans.data.normalization[0] if plans.data.normalization else None
    if norm is not None and norm.scheme in ("window", "ct") and norm.clip_high > norm.clip_low:
        return norm.clip_low, norm.clip_high
    return None


def _masks(paths: Sequence[Path], labels: LabelSpec) -> np.ndarray:
    """Class indices (*spatial) of one label file, or (K, *spatial) masks of one file per structure."""
    if labels.overlapping:
        return np.stack([read_label(p)[0] for p in paths])
    return labels.to_indices(read_label(paths[0])[0], paths[0])
