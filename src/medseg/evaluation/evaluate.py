"""Evaluation of prediction files against reference files: per case and per class, then summarised.

Pairs are matched by file name. Label maps are compared class by class (class ``k`` is the voxel value
``label_values[k]`` in both folders); overlapping structures are compared mask by mask from the
``<structure>/`` sub-folders. Distances use the reference's spacing (mm). The empty-mask policy is
:mod:`medseg.evaluation.metrics`'s, written into the output. Output: ``metrics.json`` (the shape the report reads)
and ``metrics.csv`` (one row per case and class).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.evaluation.metrics import METRIC_NAMES, binary_metrics, summarise
from medseg.fileutil import atomic_write_json, atomic_write_text, compound_suffix
from medseg.io.images import SUPPORTED_SUFFIXES, has_physical_spacing, read_label
from medseg.labels import LabelSpec

__all__ = [
    "METRICS_CSV",
    "METRICS_JSON",
    "EvalPair",
    "discover_pairs",
    "evaluate_folders",
    "evaluate_pairs",
    "write_metrics",
]

METRICS_JSON, METRICS_CSV = "metrics.json", "metrics.csv"

logger = logging.getLogger(__name__)

EMPTY_POLICY_TEXT = (
    "both masks empty: dice/iou/nsd = 1, distances = 0, sensitivity/precision undefined (NaN); "
    "one mask empty: dice/iou/nsd = 0, distances undefined (NaN); summaries skip NaN and count it in n_nan"
)


@dataclass(frozen=True)
class EvalPair:
    case_id: str
    prediction: tuple[Path, ...]  # one label map, or one mask per structure
    reference: tuple[Path, ...]


def discover_pairs(pred_dir: Path, ref_dir: Path, labels: LabelSpec) -> list[EvalPair]:
    """Match predictions to references by file name; a reference without prediction is an error."""

    def files(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise DataError(folder, "folder not found")
        return {
            p.name: p
            for p in sorted(folder.iterdir())
            # not is_dir(): a broken or looping link is kept, so that reading it names the file
            if not p.is_dir() and not p.name.startswith(".") and compound_suffix(p) in SUPPORTED_SUFFIXES
        }

    if labels.overlapping:
        structures = list(labels.names.values())
        refs = files(ref_dir / structures[0])
        pairs = [
            EvalPair(_stem(n), tuple(pred_dir / s / n for s in structures), tuple(ref_dir / s / n for s in structures))
            for n in refs
        ]
    else:
        refs = files(ref_dir)
        files(pred_dir)  # the prediction folder must exist
        pairs = [EvalPair(_stem(n), (pred_dir / n,), (p,)) for n, p in refs.items()]
    if not pairs:
        raise DataError(ref_dir, "no reference label files found")
    missing = [p for pair in pairs for p in pair.prediction if not (p.exists() or p.is_symlink())]
    if missing:
        raise DataError(
            missing[0],
            f"prediction missing ({len(missing)} of {len(pairs)} cases lack one)",
            "predict every reference case first",
        )
    return pairs


def _stem(name: str) -> str:
    return name[: -len(compound_suffix(Path(name)))] if compound_suffix(Path(name)) else name


def evaluate_pairs(
    pairs: Sequence[EvalPair],
    labels: LabelSpec,
    *,
    nsd_tolerance_mm: float = 1.0,
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Metrics per case and class, and their summary (mean/median/std/n over cases)."""
    cases: list[dict[str, Any]] = []
    for pair in pairs:
        cases.append({"case": pair.case_id, "metrics": _case_metrics(pair, labels, nsd_tolerance_mm)})
        if progress is not None:
            progress()
    summary = {str(k): summarise([c["metrics"][str(k)] for c in cases]) for k in labels.foreground}
    return {
        "classes": {str(k): labels.names[k] for k in labels.foreground},
        "cases": cases,
        "summary": summary,
        # files without physical spacing (PNG, TIFF, a NIfTI with unknown units) are measured in voxels
        "spacing_unit": "mm" if not pairs or has_physical_spacing(pairs[0].reference[0]) else "voxels",
        "nsd_tolerance_mm": nsd_tolerance_mm,
        "empty_policy": EMPTY_POLICY_TEXT,
    }


def _case_metrics(pair: EvalPair, labels: LabelSpec, tolerance: float) -> dict[str, dict[str, float]]:
    refs = [read_label(p) for p in pair.reference]
    preds = [read_label(p)[0] for p in pair.prediction]
    spacing = refs[0][1].spacing
    for pred, path, (ref, _) in zip(preds, pair.prediction, refs, strict=True):
        if pred.shape != ref.shape:
            raise DataError(
                path,
                f"prediction shape {pred.shape} differs from reference shape {ref.shape}",
                "predict in the reference's geometry",
            )
    out = {}
    for i, k in enumerate(labels.foreground):
        if labels.overlapping:
            pred_mask, ref_mask = preds[i] > 0, refs[i][0] > 0
        else:
            value = labels.values[k] if labels.values else k
            pred_mask, ref_mask = preds[0] == value, refs[0][0] == value
        out[str(k)] = binary_metrics(pred_mask, ref_mask, spacing, nsd_tolerance_mm=tolerance)
    return out


def evaluate_folders(
    pred_dir: Path,
    ref_dir: Path,
    labels: LabelSpec | None = None,
    *,
    nsd_tolerance_mm: float = 1.0,
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a folder of predictions against a folder of references (matched by file name); ``labels``
    (e.g. ``plans.data.labels``) names the classes, else they are discovered from the references."""
    labels = labels or labels_from_references(ref_dir)
    pairs = discover_pairs(pred_dir, ref_dir, labels)
    return evaluate_pairs(pairs, labels, nsd_tolerance_mm=nsd_tolerance_mm, progress=progress)


def labels_from_references(ref_dir: Path) -> LabelSpec:
    """Labels discovered from reference files when no plans or dataset.json says them (values > 0)."""
    if not ref_dir.is_dir():
        raise DataError(ref_dir, "folder not found")
    values: set[int] = {0}
    for path in sorted(ref_dir.iterdir()):
        if not path.is_dir() and not path.name.startswith(".") and compound_suffix(path) in SUPPORTED_SUFFIXES:
            values.update(int(v) for v in np.unique(read_label(path)[0]))
    ordered = tuple(sorted(values))
    return LabelSpec({i: ("background" if v == 0 else f"label_{v}") for i, v in enumerate(ordered)}, ordered)


def write_metrics(metrics: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.csv`` atomically into ``out_dir``."""
    json_path, csv_path = out_dir / METRICS_JSON, out_dir / METRICS_CSV
    atomic_write_json(json_path, _json_safe(metrics))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "class", "name", *METRIC_NAMES])
    for case in metrics["cases"]:
        for k, values in case["metrics"].items():
            writer.writerow([case["case"], k, metrics["classes"][k], *(_fmt(values[m]) for m in METRIC_NAMES)])
    atomic_write_text(csv_path, buffer.getvalue())
    return json_path, csv_path


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
