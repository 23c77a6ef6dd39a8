"""Several trained networks predicting together, and the one loader for anything ``medseg predict`` accepts.

An ensemble averages probabilities in each scan's own grid, so its members may have been planned differently
(2D and 3D, other spacings, other networks): per configuration the mean over its folds, then the mean over
configurations (nnU-Net's ensembling), then argmax (or > 0.5 for overlapping structures) and the
post-processing chosen on the out-of-fold predictions.

:func:`load_predictor` takes a run folder (one network), a cross-validation folder (the ensemble of its
trained folds, with the post-processing its ``crossval.json`` records) or a folder written by
``medseg find-best`` (its ``ensemble.json``: the winning configurations and their post-processing).

Memory: one float map per class for the running sum and one for the member being added.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from medseg.config.plans import Plans
from medseg.config.postprocessing import PostProcessing
from medseg.errors import DataError
from medseg.inference.predictor import FileSegmenter, PredictOptions, Predictor, labels_from_probabilities
from medseg.io.images import Geometry
from medseg.preprocessing.checks import check_scan
from medseg.run import ENSEMBLE_JSON, CrossValDir, EnsembleRecord, RunDir

__all__ = ["EnsemblePredictor", "configuration_folds", "load_predictor"]

logger = logging.getLogger(__name__)


@dataclass
class EnsemblePredictor(FileSegmenter):
    """Configurations (each a list of fold predictors) whose probabilities are averaged, then post-processed.

    Example:
        >>> ensemble = load_predictor(Path("runs/best"))                     # doctest: +SKIP
        >>> labels, geometry = ensemble.predict([Path("case_001.nii.gz")])   # doctest: +SKIP
    """

    configurations: list[list[Predictor]]
    postprocessing: tuple[PostProcessing, ...] = ()
    options: PredictOptions = field(default_factory=PredictOptions)

    def __post_init__(self) -> None:
        members = [p for group in self.configurations for p in group]
        if not members:
            raise DataError(Path("."), "an ensemble needs at least one trained network")
        first = members[0].plans.data
        for member in members[1:]:
            data = member.plans.data
            if data.labels != first.labels or data.channel_names != first.channel_names:
                raise DataError(
                    Path("."),
                    "ensemble members predict different classes or read different channels",
                    "ensemble only runs trained on the same dataset",
                )

    @property
    def plans(self) -> Plans:  # type: ignore[override]
        """The first member's plans: labels, channels and the output format are the same for all."""
        return self.configurations[0][0].plans

    @property
    def steps(self) -> tuple[PostProcessing, ...]:
        """Post-processing: the one asked for at prediction, else the one chosen on out-of-fold data."""
        return (self.options.postprocessing,) if self.options.postprocessing is not None else self.postprocessing

    @property
    def resample_channels(self) -> bool:
        return any(p.resample_channels for group in self.configurations for p in group)

    def probabilities_array(self, image: np.ndarray, geometry: Geometry) -> np.ndarray:
        """Mean probabilities (K, *spatial) over folds, then over configurations, in the original grid."""
        total: np.ndarray | None = None
        for group in self.configurations:
            mean: np.ndarray | None = None
            for member in group:
                probs = member.probabilities_array(image, geometry) / len(group)
                mean = probs if mean is None else mean + probs
            assert mean is not None
            mean /= len(self.configurations)
            total = mean if total is None else total + mean
        assert total is not None
        return total

    def labels_and_probabilities(self, image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
        check_scan(image, geometry, self.plans.data)
        probs = self.probabilities_array(image, geometry)
        labels = labels_from_probabilities(probs, overlapping=self.plans.data.labels.overlapping)
        return self.postprocess(labels, self.steps), probs

    def predict_array(self, image: np.ndarray, geometry: Geometry) -> np.ndarray:
        return self.labels_and_probabilities(image, geometry)[0]


def configuration_folds(folder: Path) -> list[RunDir]:
    """The trained networks of one configuration: a run folder's own, or a cross-validation's trained folds."""
    folder = Path(folder)
    if CrossValDir.holds(folder):
        folds = CrossValDir(folder).trained_folds()
        if not folds:
            raise DataError(folder, "no fold of this cross-validation has a best checkpoint", "train it first")
        return folds
    RunDir(folder).load_plans()  # a folder that is neither: one clear error
    return [RunDir(folder)]


def load_predictor(
    folder: Path, device: str | torch.device = "cpu", options: PredictOptions | None = None
) -> Predictor | EnsemblePredictor:
    """What ``medseg predict FOLDER`` uses: a :class:`Predictor` for a run folder, an
    :class:`EnsemblePredictor` for a cross-validation folder or a ``medseg find-best`` output."""
    folder, options = Path(folder), options or PredictOptions()
    if (folder / ENSEMBLE_JSON).is_file():
        record = EnsembleRecord.load(folder / ENSEMBLE_JSON)
        configurations = [configuration_folds(p) for p in record.member_paths(folder)]
        postprocessing = record.postprocessing
    elif CrossValDir.holds(folder):
        cv = CrossValDir(folder)
        configurations = [configuration_folds(folder)]
        postprocessing = EnsembleRecord.load(cv.summary_path).postprocessing if cv.summary_path.is_file() else ()
    else:
        return Predictor.from_run(folder, device, options)
    member_options = replace(options, postprocessing=None, save_probabilities=False, skip_existing=False)
    groups = [[Predictor.from_run(r.path, device, member_options) for r in folds] for folds in configurations]
    n = sum(len(g) for g in groups)
    logger.info("ensemble of %d network(s) in %d configuration(s) from %s", n, len(groups), folder)
    return EnsemblePredictor(groups, tuple(postprocessing), options)
