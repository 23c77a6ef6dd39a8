"""``medseg export``: a run, a cross-validation or a ``find-best`` folder as one bundle file (``MODEL.medseg``).

The bundle holds every network (ONNX or TorchScript; INT8 or fp16 on request), what prediction needs from
the plans, a model card and SHA-256 checksums (layout: ``medseg_runtime.bundle``). The export checks parity
with the eager model (:mod:`medseg.export.parity`) before the file appears: it is written under a temporary
name and renamed only when parity passed, so a failed export leaves nothing behind.

Example:
    >>> report = export_bundle(Path("runs/hippocampus"), Path("hippocampus.medseg"))      # doctest: +SKIP
    >>> report.parity.label_agreement
    1.0
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medseg.config.plans import Plans
from medseg.errors import ConfigError, MedsegError
from medseg.export.onnx import export_onnx, to_fp16
from medseg.export.parity import LIMITS, Parity, check_parity, parity_cases
from medseg.export.quantize import calibration_patches, quantize_int8
from medseg.export.runtime import load_bundle_predictor, require
from medseg.export.torchscript import export_torchscript
from medseg.fileutil import atomic_path
from medseg.inference.ensemble import EnsemblePredictor, configuration_folds, load_predictor
from medseg.inference.predictor import FileSegmenter, PredictOptions, Predictor
from medseg.inference.sliding_window import gaussian_importance_map
from medseg.run import ENSEMBLE_JSON, CrossValDir, EnsembleRecord, RunDir

__all__ = ["ExportError", "ExportOptions", "ExportReport", "export_bundle"]

logger = logging.getLogger(__name__)


class ExportError(MedsegError):
    """An export that cannot be written (parity failed, an unsupported plan): one line, nothing written."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export; ``None`` limits take the precision's defaults (:data:`medseg.export.parity.LIMITS`).

    Example:
        >>> ExportOptions(precision="int8", calibration_cases=4).limits
        (inf, 0.9)
    """

    format: Literal["onnx", "torchscript"] = "onnx"
    precision: Literal["float32", "int8", "fp16"] = "float32"
    calibration_cases: int = 8  # INT8: training cases whose patches calibrate the activations
    parity_cases: int = 2  # held-out cases the parity check runs on
    max_logit_diff: float | None = None  # relative to max(1, |logits|)
    min_label_agreement: float | None = None
    checkpoint: str = "best"
    tta: bool | None = None  # mirroring TTA: None as planned, or on (every axis) / off

    def __post_init__(self) -> None:
        if self.format not in ("onnx", "torchscript") or self.precision not in LIMITS:
            raise ConfigError(
                f"format {self.format!r} / precision {self.precision!r}: use onnx|torchscript, {list(LIMITS)}"
            )
        if self.precision != "float32" and self.format != "onnx":
            raise ConfigError(f"--precision {self.precision} needs --format onnx (TorchScript bundles are float32)")
        if self.calibration_cases < 1 or self.parity_cases < 1:
            raise ConfigError("calibration and parity need at least one case each")

    @property
    def limits(self) -> tuple[float, float]:
        max_diff, agreement = LIMITS[self.precision]
        return (
            max_diff if self.max_logit_diff is None else self.max_logit_diff,
            agreement if self.min_label_agreement is None else self.min_label_agreement,
        )


@dataclass(frozen=True)
class ExportReport:
    """The bundle written, its size and the parity it passed."""

    path: Path
    size_bytes: int
    networks: int
    parity: Parity


def _run_groups(folder: Path) -> list[list[RunDir]]:
    """The run folders of each configuration, in :func:`load_predictor`'s order."""
    if (folder / ENSEMBLE_JSON).is_file():
        return [configuration_folds(p) for p in EnsembleRecord.load(folder / ENSEMBLE_JSON).member_paths(folder)]
    if CrossValDir.holds(folder):
        return [configuration_folds(folder)]
    return [[RunDir(folder)]]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _network_bytes(member: Predictor, run: RunDir, options: ExportOptions) -> bytes:
    plans = member.plans
    example = torch.zeros((1, len(plans.data.channel_names), *plans.patch_size))
    if options.format == "torchscript":
        return export_torchscript(member.model, example)
    data = export_onnx(member.model, example)
    if options.precision == "int8":
        return quantize_int8(data, calibration_patches(run, plans, options.calibration_cases))
    return to_fp16(data) if options.precision == "fp16" else data


def _configuration(runtime: Any, member: Predictor, index: int, networks: list[str]) -> Any:
    plans, window = member.plans, member.window_config()
    data = plans.data
    if any(n.scheme == "histogram" for n in data.normalization):
        raise ExportError("bundles do not support --normalization histogram-match yet; export a run planned otherwise")
    norms = tuple(runtime.Normalization(n.scheme, n.clip_low, n.clip_high, n.mean, n.std) for n in data.normalization)
    return runtime.Configuration(
        ndim=data.ndim, patch_size=tuple(plans.patch_size), target_spacing=tuple(data.target_spacing),
        normalization=norms, crop_to_nonzero=data.crop_to_nonzero, overlap=window.overlap,
        batch_size=window.batch_size, mirror_axes=tuple(window.mirror_axes), networks=tuple(networks),
        importance=f"networks/c{index}_importance.npy", fusion=plans.fusion, configuration=plans.configuration,
    )  # fmt: skip


def _card(groups: list[list[RunDir]], plans: Plans, options: ExportOptions) -> dict[str, Any]:
    """The model card: where the networks were trained, on what, how they scored, by which medseg, when."""
    members = []
    for runs in groups:
        for run in runs:
            record = run.load_record()
            metrics = json.loads(run.metrics.read_text(encoding="utf-8")) if run.metrics.is_file() else {}
            members.append({
                "run": run.path.name, "model": run.load_plans().model.name, "dataset_layout": record.layout,
                "training_cases": len(record.train), "validation_cases": len(record.validation),
                "validation_metrics": metrics.get("summary", {}), "classes": metrics.get("classes", {}),
            })  # fmt: skip
    return {
        "dataset": plans.dataset_name,
        "medseg_version": metadata.version("medseg"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "format": options.format,
        "precision": options.precision,
        "calibration_cases": options.calibration_cases if options.precision == "int8" else 0,
        "members": members,
    }


def _members(eager: FileSegmenter) -> list[list[Predictor]]:
    return eager.configurations if isinstance(eager, EnsemblePredictor) else [[eager]]  # type: ignore[list-item]


def export_bundle(folder: Path, out: Path, options: ExportOptions | None = None) -> ExportReport:
    """Export what ``medseg predict FOLDER`` would use to the bundle ``out``; parity is checked first."""
    options, folder, out = options or ExportOptions(), Path(folder), Path(out)
    runtime = require("medseg_runtime")
    eager = load_predictor(folder, "cpu", PredictOptions(checkpoint=options.checkpoint, tta=options.tta))
    groups, members = _run_groups(folder), _members(eager)
    files: dict[str, bytes] = {}
    configurations = []
    for c, (runs, predictors) in enumerate(zip(groups, members, strict=True)):
        names = []
        for f, (run, member) in enumerate(zip(runs, predictors, strict=True)):
            names.append(f"networks/c{c}_f{f}.{'onnx' if options.format == 'onnx' else 'pt'}")
            files[names[-1]] = _network_bytes(member, run, options)
        plans = predictors[0].plans
        files[f"networks/c{c}_importance.npy"] = _npy(gaussian_importance_map(plans.patch_size).numpy())
        configurations.append(_configuration(runtime, predictors[0], c, names))
    plans, labels = eager.plans, eager.plans.data.labels
    manifest = runtime.Manifest(
        format=options.format, precision=options.precision, channel_names=tuple(plans.data.channel_names),
        labels=runtime.Labels(dict(labels.names), tuple(labels.values) or tuple(range(len(labels.names))),
                              labels.overlapping),
        configurations=tuple(configurations),
        postprocessing=tuple(runtime.PostStep(**dataclasses.asdict(s)) for s in _steps(eager)),
        resample_channels=plans.data.resample_channels, card=_card(groups, plans, options),
    )  # fmt: skip
    flat = [p for group in members for p in group]
    with atomic_path(out) as tmp:
        runtime.write_bundle(tmp, manifest, files)
        cases = parity_cases(groups[0][0], plans, options.parity_cases)
        parity = check_parity(eager, flat, load_bundle_predictor(tmp), cases, options.precision, options.limits)
        if not parity.passed:
            raise ExportError(f"{out}: not written, parity with the eager model failed: {parity.summary()}")
        runtime.write_bundle(tmp, dataclasses.replace(manifest, parity=parity.to_dict()), files)
    logger.info("wrote %s (%d network(s), %s %s)", out, len(flat), options.format, options.precision)
    return ExportReport(out, out.stat().st_size, len(flat), parity)


def _steps(eager: FileSegmenter) -> tuple[Any, ...]:
    steps = eager.steps if isinstance(eager, (Predictor, EnsemblePredictor)) else ()
    return tuple(s for s in steps if s.active)
