"""Trust in each prediction: uncertainty on the held-out cases, a per-case failure flag, calibration.

``medseg trust RUN`` (:func:`assess_trust`) predicts every held-out case of a run (or every out-of-fold case
of a cross-validation, each with the fold that did not train on it) with uncertainty
(:mod:`medseg.inference.uncertainty`), and from the true Dice of those cases:

1. fits temperature scaling of the voxel probabilities and measures calibration before and after
   (:mod:`medseg.evaluation.calibration`; voxels sampled around the structures);
2. fits the failure-flag model that predicts a case's Dice from its uncertainty scores
   (:mod:`medseg.evaluation.failure`) and measures how well it ranks the cases with leave-one-out predictions;
3. writes ``trust.json`` (the model, the temperature, the per-case table), the held-out cases' uncertainty maps in
   ``trust/`` and the trust sections of the report.

``medseg predict RUN ... --uncertainty`` (:func:`predict_with_uncertainty`) then writes, beside each mask, its
uncertainty map, and ``uncertainty.json`` / ``uncertainty.csv`` with every case's scores, predicted Dice and flag.

Cost: each case is predicted once per sample (8 mirrorings in 3D, 4 in 2D, × folds × dropout passes), twice
when a temperature is fitted (before and after).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.datasets.dataset import load_dataset
from medseg.datasets.records import Case
from medseg.errors import ConfigError, DataError
from medseg.evaluation.calibration import (
    Reliability,
    apply_temperature,
    calibration_region,
    fit_temperature,
    reliability,
    top_label,
)
from medseg.evaluation.evaluate import METRICS_JSON, EvalPair
from medseg.evaluation.failure import FailureModel, fit_failure_model, leave_one_out, ranking_quality
from medseg.evaluation.metrics import dice
from medseg.evaluation.run_report import write_run_report
from medseg.evaluation.trust_report import write_explanation_png
from medseg.fileutil import atomic_write_json, atomic_write_text, make_dirs
from medseg.inference.ensemble import load_predictor
from medseg.inference.explain import explain_array
from medseg.inference.predictor import FileSegmenter, Predictor
from medseg.inference.uncertainty import CaseUncertainty, UncertaintyEstimator, UncertaintyOptions
from medseg.io.geometry import Geometry
from medseg.io.images import case_stem, image_format, read_label, write_image
from medseg.labels import LabelSpec
from medseg.run import TRUST_DIR, TRUST_JSON, CrossValDir, RunDir
from medseg.serial import from_dict, to_dict

__all__ = [
    "TRUST_VERSION",
    "TrustOptions",
    "assess_trust",
    "explain",
    "load_trust",
    "predict_with_uncertainty",
    "uncertainty_map_path",
]

logger = logging.getLogger(__name__)

TRUST_VERSION = 1
Progress = Callable[[], None] | None


@dataclass(frozen=True)
class TrustOptions:
    """What ``medseg trust`` does: the samples, whether a temperature is fitted, the flag threshold on the
    predicted Dice (None: the 10th percentile of the held-out cases' leave-one-out predictions, so that about
    one case in ten like them is flagged), voxels sampled per case for calibration (the same in both passes)."""

    uncertainty: UncertaintyOptions = field(default_factory=UncertaintyOptions)
    temperature: bool = True
    threshold: float | None = None
    voxels_per_case: int = 20_000
    seed: int = 0
    device: str = "cpu"


def uncertainty_map_path(source: Path, out_dir: Path) -> Path:
    """Where the uncertainty map of ``source`` goes: ``CASE_uncertainty`` + the input's suffix for the formats
    that hold float voxels with geometry (NIfTI, NRRD, MetaImage), ``.tif`` for 2D pixel formats, ``.nii.gz``
    for a DICOM series, ``.npy`` for ``.npy``."""
    stem = case_stem(source)
    fmt = image_format(source)
    suffix = source.name[len(stem) :]
    if fmt == "dicom":
        suffix = ".nii.gz"
    elif fmt in ("png", "jpeg", "bmp", "gif", "tiff"):
        suffix = ".tif"
    return out_dir / f"{stem.removesuffix('_0000')}_uncertainty{suffix}"


def _reference(case: Case, labels: LabelSpec) -> np.ndarray:
    if labels.overlapping:
        return np.stack([read_label(p)[0] > 0 for p in case.label]).astype(np.uint8)
    return labels.to_indices(read_label(case.label[0])[0], case.label[0])


def case_dice(prediction: np.ndarray, reference: np.ndarray, labels: LabelSpec) -> float:
    """Mean Dice over the foreground classes (structures), each 1 when both masks are empty."""
    if labels.overlapping:
        return float(np.mean([dice(prediction[k] > 0, reference[k] > 0) for k in range(len(labels.names))]))
    return float(np.mean([dice(prediction == k, reference == k) for k in labels.foreground]))


HeldOut = tuple[RunDir, Predictor, Case]


def _held_out(folder: Path, device: str) -> list[HeldOut]:
    """(run, the network that did not train on it, case) for every held-out case of a run or cross-validation."""
    runs = CrossValDir(folder).trained_folds() if CrossValDir.holds(folder) else [RunDir(folder)]
    pairs: list[HeldOut] = []
    for run in runs:
        predictor = load_predictor(run.path, device)
        if not isinstance(predictor, Predictor):
            raise DataError(folder, "trust needs a run or a cross-validation folder, not an ensemble of them")
        record = run.load_record()
        by_id = {c.case_id: c for c in load_dataset(record.root).labelled_cases}
        missing = [i for i in record.validation if i not in by_id]
        if missing:
            raise DataError(record.root, f"held-out cases {missing[:3]} have no label file any more")
        pairs += [(run, predictor, by_id[i]) for i in record.validation]
    if not pairs:
        raise DataError(folder, "the run holds out no case, so nothing can be measured", "train with a validation fold")
    return pairs


def _calibration_voxels(
    result: CaseUncertainty, reference: np.ndarray, labels: LabelSpec, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) probabilities and the targets of N voxels sampled around the structures."""
    fg_ref = np.asarray(reference.any(axis=0) if labels.overlapping else reference)
    fg_pred = np.asarray(result.labels.any(axis=0) if labels.overlapping else result.labels)
    region = calibration_region(fg_ref, fg_pred)
    probs = result.maps.probabilities[(slice(None), *region)].reshape(result.maps.probabilities.shape[0], -1)
    ref = reference[(slice(None), *region)] if labels.overlapping else reference[region]
    ref = ref.reshape(ref.shape[0], -1) if labels.overlapping else ref.ravel()
    pick = rng.choice(probs.shape[1], size=min(count, probs.shape[1]), replace=False)
    return probs[:, pick], (ref[:, pick] if labels.overlapping else ref[pick])


def _reliability(
    samples: Sequence[tuple[np.ndarray, np.ndarray]], temperature: float, overlapping: bool
) -> Reliability:
    confidences, correct = [], []
    for probs, target in samples:
        p = apply_temperature(probs, temperature, overlapping=overlapping) if temperature != 1.0 else probs
        c, ok = top_label(p, target, overlapping=overlapping)
        confidences.append(c)
        correct.append(ok)
    return reliability(np.concatenate(confidences), np.concatenate(correct))


def assess_trust(
    folder: Path, options: TrustOptions | None = None, progress: Callable[[str, int], Progress] | None = None
) -> dict[str, Any]:
    """Fit and measure the failure flag and calibration on the held-out cases of ``folder`` (see the module
    docstring); writes ``trust.json`` and ``trust/`` there and returns the record."""
    folder, options = Path(folder), options or TrustOptions()
    pairs = _held_out(folder, options.device)
    labels = pairs[0][1].plans.data.labels
    references = {case.case_id: _reference(case, labels) for _, _, case in pairs}
    temperature, before = 1.0, None
    if options.temperature:
        samples = []
        tick = progress("calibrate", len(pairs)) if progress else None
        for i, (_, predictor, case) in enumerate(pairs):
            result, _ = _estimate(predictor, case, options.uncertainty)
            rng = np.random.default_rng([options.seed, i])  # the same voxels in both passes
            samples.append(_calibration_voxels(result, references[case.case_id], labels, options.voxels_per_case, rng))
            if tick:
                tick()
        temperature = fit_temperature([p for p, _ in samples], [t for _, t in samples], overlapping=labels.overlapping)
        before = _reliability(samples, 1.0, labels.overlapping)
        logger.info("temperature %.3f fitted on %d held-out cases", temperature, len(pairs))
    uncertainty = replace(options.uncertainty, temperature=temperature)
    maps_dir = make_dirs(folder / TRUST_DIR)
    rows, after_samples = [], []
    tick = progress("uncertainty", len(pairs)) if progress else None
    for i, (_, predictor, case) in enumerate(pairs):
        result, geometry = _estimate(predictor, case, uncertainty)
        reference = references[case.case_id]
        rng = np.random.default_rng([options.seed, i])
        after_samples.append(_calibration_voxels(result, reference, labels, options.voxels_per_case, rng))
        source = case.channels[0]
        written = write_image(uncertainty_map_path(source, maps_dir), result.maps.entropy, geometry, source)
        true_dice = case_dice(result.labels, reference, labels)
        rows.append({"case": case.case_id, "dice": true_dice, "map": written.name, "scores": result.scores})
        if tick:
            tick()
    record = _finish(
        folder,
        options,
        rows,
        temperature,
        before,
        _reliability(after_samples, temperature, labels.overlapping),
        uncertainty,
    )
    _write_report(folder, record, pairs)
    return record


def _estimate(predictor: Predictor, case: Case, options: UncertaintyOptions) -> tuple[CaseUncertainty, Geometry]:
    image, geometry = predictor.read(case.channels)
    return UncertaintyEstimator(predictor, options).estimate(image, geometry), geometry


def _finish(
    folder: Path,
    options: TrustOptions,
    rows: list[dict[str, Any]],
    temperature: float,
    before: Reliability | None,
    after: Reliability,
    uncertainty: UncertaintyOptions,
) -> dict[str, Any]:
    scores = [r["scores"] for r in rows]
    true = [r["dice"] for r in rows]
    model = fit_failure_model(scores, true, threshold=options.threshold)
    predicted = leave_one_out(scores, true) if len(rows) > 4 else [model.predict(s) for s in scores]
    if options.threshold is None:  # flag what the held-out cases' lowest 10 % of predictions would be
        model = replace(model, threshold=float(np.percentile(predicted, 10)))
    for row, value in zip(rows, predicted, strict=True):
        row["predicted_dice"] = value
        row["flagged"] = value < model.threshold
    quality = ranking_quality(predicted, true) if len(rows) >= 3 else {}
    record = {
        "version": TRUST_VERSION,
        "uncertainty": to_dict(uncertainty),
        "temperature": temperature,
        "calibration": {"before": to_dict(before) if before else None, "after": to_dict(after)},
        "failure_model": to_dict(model),
        "quality": {**quality, "predicted_by": "leave-one-out" if len(rows) > 4 else "in-sample"},
        "cases": rows,
    }
    record = _json_safe(record)
    atomic_write_json(folder / TRUST_JSON, record)
    logger.info("wrote %s (%d cases)", folder / TRUST_JSON, len(rows))
    return record


def _write_report(folder: Path, record: dict[str, Any], held_out: Sequence[HeldOut]) -> Path | None:
    """The run's report (a cross-validation's ``crossval/report.html``) again, with the trust sections."""
    cv = CrossValDir.holds(folder)
    metrics_path = CrossValDir(folder).out_of_fold / METRICS_JSON if cv else RunDir(folder).metrics
    pairs = [
        EvalPair(case.case_id, tuple(predictor.output_paths(case.channels[0], run.validation)), case.label)
        for run, predictor, case in held_out
    ]
    if not metrics_path.is_file() or not all(p.is_file() for pair in pairs for p in pair.prediction):
        logger.warning("%s: no held-out metrics or predictions to report on; trust.json is written", folder)
        return None
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    plans = held_out[0][1].plans
    report = metrics_path.parent / "report.html" if cv else RunDir(folder).report
    images = {case.case_id: case.channels for _, _, case in held_out}
    log = None if cv else RunDir(folder).log
    title = f"{plans.dataset_name}: held-out cases, {folder.name}"
    return write_run_report(
        report, metrics, pairs, plans, log, images, title=title, trust=record, trust_dir=folder / TRUST_DIR
    )


def _json_safe(value: Any) -> Any:
    """NaN and infinities -> None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def load_trust(folder: Path) -> tuple[FailureModel, float] | None:
    """The failure model and temperature ``medseg trust`` stored in ``folder``, or None when it has not run."""
    path = Path(folder) / TRUST_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("version") != TRUST_VERSION:
            raise DataError(path, f"trust file version {record.get('version')}; run `medseg trust` again")
        return from_dict(FailureModel, record["failure_model"], str(path)), float(record["temperature"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise DataError(path, f"unreadable trust file ({exc})", "run `medseg trust` again") from exc


def predict_with_uncertainty(
    folder: Path,
    cases: Sequence[tuple[str, Sequence[Path]]],
    out_dir: Path,
    options: UncertaintyOptions | None = None,
    *,
    predictor: FileSegmenter | None = None,
    progress: Progress = None,
) -> list[dict[str, Any]]:
    """Predict ``cases`` (id, channel paths) from ``folder`` into ``out_dir`` with uncertainty: the masks, a map
    per case (:func:`uncertainty_map_path`), and ``uncertainty.json`` / ``.csv`` (scores, predicted Dice and the
    flag when ``folder`` holds a ``trust.json``). ``predictor``: already loaded from ``folder`` (device,
    options); loaded on the CPU otherwise. Returns the rows."""
    folder, options = Path(folder), options or UncertaintyOptions()
    predictor = predictor or load_predictor(folder)
    trust = load_trust(folder)
    if trust is not None:
        options = replace(options, temperature=trust[1])
    make_dirs(out_dir)
    rows = []
    for case_id, channels in cases:
        image, geometry = predictor.read(channels)
        result = UncertaintyEstimator(predictor, options).estimate(image, geometry)
        written = predictor.write(result.labels, geometry, channels[0], out_dir)
        map_path = write_image(uncertainty_map_path(channels[0], out_dir), result.maps.entropy, geometry, channels[0])
        row: dict[str, Any] = {"case": case_id, "mask": written[0].name, "map": map_path.name, **result.scores}
        if trust is not None:
            flagged, reasons = trust[0].flag(result.scores)
            row.update(predicted_dice=trust[0].predict(result.scores), flagged=flagged, reasons="; ".join(reasons))
        rows.append(row)
        if progress is not None:
            progress()
    atomic_write_json(out_dir / "uncertainty.json", {"temperature": options.temperature, "cases": rows})
    atomic_write_text(out_dir / "uncertainty.csv", _csv(rows))
    return rows


def explain(
    folder: Path, scan: Path, class_name: str, out_dir: Path, *, method: str = "hirescam", layer: str = ""
) -> tuple[Path, Path]:
    """Explanation map of class ``class_name`` for ``scan`` (one network: a run folder) written to ``out_dir``:
    the map in the scan's geometry (``CASE_<method>_<class>`` + the uncertainty map's suffix rule) and an overlay
    PNG through the slice where the map peaks. Returns both paths."""
    predictor = load_predictor(Path(folder))
    if not isinstance(predictor, Predictor):
        raise DataError(folder, "explanations need one network", "pass one run folder, e.g. a fold_K of it")
    names = predictor.plans.data.labels.names
    index = {name: k for k, name in names.items()}.get(class_name)
    if index is None or (index == 0 and not predictor.plans.data.labels.overlapping):
        choices = ", ".join(n for k, n in names.items() if k or predictor.plans.data.labels.overlapping)
        raise ConfigError(f"class {class_name!r} is not one of this run's classes: {choices}")
    channels = [scan] if not scan.is_dir() or image_format(scan) == "dicom" else []
    if not channels:
        raise DataError(scan, "pass one scan (a file or a DICOM series folder), not a folder of scans")
    image, geometry = predictor.read(channels)
    heat = explain_array(predictor, image, geometry, index, method=method, layer=layer)
    make_dirs(out_dir)
    base = uncertainty_map_path(scan, out_dir)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in class_name)
    map_path = write_image(base.with_name(base.name.replace("_uncertainty", f"_{method}_{safe}")), heat, geometry, scan)
    png = out_dir / f"{case_stem(scan).removesuffix('_0000')}_{method}_{safe}.png"
    write_explanation_png(png, image[0], heat, f"{method}: {class_name}")
    return map_path, png


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    names = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
