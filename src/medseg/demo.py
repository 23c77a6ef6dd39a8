"""``medseg demo``: the whole system on built-in synthetic data, in a few minutes on a laptop CPU.

Generates a 2D CT-like dataset (lungs, heart, aorta) in the MSD layout plus held-out test scans with
their reference masks, trains a small U-Net, predicts the test scans, evaluates and writes the report.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.device import resolve_device
from medseg.errors import DataError
from medseg.evaluation.evaluate import EvalPair, evaluate_pairs, write_metrics
from medseg.evaluation.run_report import write_run_report
from medseg.fileutil import make_dirs
from medseg.inference.predictor import Predictor
from medseg.io.images import Geometry, write_image
from medseg.run import RunDir
from medseg.synthetic import SyntheticSpec, make_cases, write_dataset
from medseg.workflow import Callbacks, TrainOptions, train_run

__all__ = ["DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

_MARKER = ".medseg-demo"
DEMO_SPEC = SyntheticSpec(ndim=2, shape=(128, 128))


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    run_dir: Path
    predictions: Path
    report: Path
    metrics: dict[str, Any]
    metrics_path: Path

    @property
    def mean_dice(self) -> float:
        summary = self.metrics["summary"]
        return float(np.mean([summary[k]["dice"]["mean"] for k in summary]))


def run_demo(
    out: Path,
    *,
    train_cases: int = 40,
    test_cases: int = 10,
    epochs: int = 8,
    seed: int = 0,
    device: str = "auto",
    callbacks: Callbacks | None = None,
) -> DemoResult:
    """Run the demo into ``out`` (replaced if it holds an earlier demo; refused if it holds anything else)."""
    _prepare(out)
    dataset = write_dataset(out / "dataset", DEMO_SPEC, n_cases=train_cases, seed=seed, layout="msd")
    test_images, test_labels = out / "test" / "images", out / "test" / "labels"
    for i, case in enumerate(make_cases(DEMO_SPEC, test_cases, seed=seed + 1)):
        geometry = Geometry.identity(2, case.spacing)
        write_image(test_images / f"test_{i:03d}.nii.gz", case.image, geometry)
        write_image(test_labels / f"test_{i:03d}.nii.gz", case.label, geometry)
    run_dir = out / "run"
    options = TrainOptions(epochs=epochs, iterations_per_epoch=25, seed=seed, device=device, val_every=4)
    train_run(dataset, run_dir, options, callbacks)
    predictor = Predictor.from_run(run_dir, resolve_device(device))
    cases = [(p.name, (p,)) for p in sorted(test_images.iterdir())]
    predictions = out / "predictions"
    predictor.predict_files(cases, predictions, (callbacks or Callbacks()).step("predict test", len(cases)))
    pairs = [
        EvalPair(p.name.removesuffix(".nii.gz"), (predictions / p.name,), (test_labels / p.name,))
        for p in sorted(test_images.iterdir())
    ]
    metrics = evaluate_pairs(pairs, predictor.plans.data.labels)
    evaluation = out / "evaluation"
    make_dirs(evaluation)
    metrics_path, _ = write_metrics(metrics, evaluation)
    images = {p.case_id: [test_images / f"{p.case_id}.nii.gz"] for p in pairs}
    report = write_run_report(
        evaluation / "report.html",
        metrics,
        pairs,
        predictor.plans,
        RunDir(run_dir).log,
        images,
        title="medseg demo: synthetic chest CT, held-out test cases",
    )
    return DemoResult(out, run_dir, predictions, report, metrics, metrics_path)


def _prepare(out: Path) -> None:
    if out.is_dir():
        if not (out / _MARKER).exists() and any(out.iterdir()):
            raise DataError(out, "folder exists and was not made by `medseg demo`", "pass another --out folder")
        shutil.rmtree(out)
    make_dirs(out)  # a file at ``out`` or above it is a one-line error
    (out / _MARKER).write_text("made by medseg demo; safe to delete\n")
