"""Uncertainty per voxel and per case, from what medseg already runs: TTA, ensembles and Monte-Carlo dropout.

Each *sample* is one probability map ``(K, *spatial)`` in the scan's own grid: one network (a fold, a
configuration) under one mirroring of the input (each flip of test-time augmentation is its own sample, not
averaged away), and, for networks with dropout when asked, one of several passes with dropout left active
(Monte-Carlo dropout, Gal & Ghahramani 2016). The samples of a network weigh equally; networks weigh as the
ensemble weighs them (the mean over folds, then over configurations).

From the samples, streamed (memory: two ``(K, *spatial)`` float maps and three scalar maps):

- **entropy**: predictive entropy of the mean probabilities, normalised to [0, 1] by ``log K`` (structures:
  the largest binary entropy of any structure) — total uncertainty;
- **mutual information**: entropy of the mean minus the mean entropy of the samples — the part that comes
  from the samples disagreeing (epistemic), normalised the same way;
- **disagreement**: voxels whose label is not the same in every sample.

:func:`case_scores` reduces them to a few numbers per case (the inputs of the failure flag,
:mod:`medseg.evaluation.failure`). Labels are taken from the mean probabilities (as an ensemble does), so with
TTA they are the argmax of averaged probabilities rather than of averaged logits: a few boundary voxels can
differ from ``medseg predict`` without ``--uncertainty``.

Example:
    >>> estimator = UncertaintyEstimator(load_predictor(Path("runs/hippocampus")))   # doctest: +SKIP
    >>> result = estimator.estimate(image, geometry)                                 # doctest: +SKIP
    >>> result.scores["entropy"], result.maps.entropy.shape                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.evaluation.calibration import apply_temperature
from medseg.inference.ensemble import EnsemblePredictor
from medseg.inference.predictor import FileSegmenter, Predictor, labels_from_probabilities
from medseg.inference.sliding_window import sliding_window_logits
from medseg.inference.tta import mirror_axes_combinations
from medseg.io.geometry import Geometry
from medseg.preprocessing.checks import check_scan
from medseg.preprocessing.forward import preprocess_image
from medseg.preprocessing.inverse import logits_to_probabilities

__all__ = [
    "CaseUncertainty",
    "SampleAccumulator",
    "UncertaintyEstimator",
    "UncertaintyMaps",
    "UncertaintyOptions",
    "case_scores",
    "entropy_map",
    "has_dropout",
]

_EPS = 1e-7
UNCERTAIN = 0.5  # a voxel with normalised entropy above this counts as uncertain (uncertain_fraction)


@dataclass(frozen=True)
class UncertaintyOptions:
    """Which samples to draw. ``dropout_samples`` > 0 runs that many dropout passes per flip of every network
    that has dropout (an error for one that has none); ``temperature`` rescales the mean probabilities
    (fitted by ``medseg trust``)."""

    tta: bool = True
    dropout_samples: int = 0
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dropout_samples < 0 or self.dropout_samples == 1:
            raise ConfigError(f"dropout samples {self.dropout_samples}: use 0 (off) or at least 2, e.g. 8")
        if not self.temperature > 0:
            raise ConfigError(f"temperature {self.temperature} must be > 0")


@dataclass
class UncertaintyMaps:
    """Per-voxel results in the scan's grid: mean probabilities ``(K, *spatial)`` and ``(*spatial)`` maps."""

    probabilities: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    disagreement: np.ndarray
    n_samples: int


@dataclass
class CaseUncertainty:
    """One case: post-processed labels, the maps, and the per-case scores (:func:`case_scores`)."""

    labels: np.ndarray
    maps: UncertaintyMaps
    scores: dict[str, float] = field(default_factory=dict)


def entropy_map(probabilities: np.ndarray, *, overlapping: bool) -> np.ndarray:
    """Normalised entropy ``(*spatial)`` in [0, 1] of ``(K, *spatial)`` probabilities: softmax classes by
    ``log K``; overlapping structures: the largest binary entropy (by ``log 2``) of any structure."""
    p = np.clip(probabilities.astype(np.float64, copy=False), _EPS, 1 - _EPS)
    if overlapping:
        binary = -(p * np.log(p) + (1 - p) * np.log1p(-p)) / math.log(2)
        return binary.max(axis=0).astype(np.float32)
    k = max(probabilities.shape[0], 2)
    return (-(p * np.log(p)).sum(axis=0) / math.log(k)).astype(np.float32)


class SampleAccumulator:
    """Streams weighted samples ``(K, *spatial)`` into the statistics of :class:`UncertaintyMaps`."""

    def __init__(self, *, overlapping: bool) -> None:
        self.overlapping = overlapping
        self.total_weight = 0.0
        self.n = 0
        self.sum_p: np.ndarray | None = None
        self.sum_entropy: np.ndarray | None = None
        self.first: np.ndarray | None = None
        self.disagree: np.ndarray | None = None

    def add(self, probabilities: np.ndarray, weight: float = 1.0) -> None:
        labels = labels_from_probabilities(probabilities, overlapping=self.overlapping)
        entropy = entropy_map(probabilities, overlapping=self.overlapping)
        if self.sum_p is None:
            self.sum_p = probabilities.astype(np.float32) * weight
            self.sum_entropy = entropy * weight
            self.first, self.disagree = labels, np.zeros(entropy.shape, dtype=bool)
        else:
            assert self.sum_entropy is not None and self.first is not None and self.disagree is not None
            self.sum_p += probabilities * weight
            self.sum_entropy += entropy * weight
            differs = labels != self.first
            self.disagree |= differs.any(axis=0) if self.overlapping else differs
        self.total_weight += weight
        self.n += 1

    def finish(self, temperature: float = 1.0) -> UncertaintyMaps:
        if self.sum_p is None or self.sum_entropy is None or self.disagree is None:
            raise ValueError("no samples were added")
        mean = self.sum_p / self.total_weight
        if temperature != 1.0:
            mean = apply_temperature(mean, temperature, overlapping=self.overlapping)
        entropy = entropy_map(mean, overlapping=self.overlapping)
        mutual = np.clip(entropy - self.sum_entropy / self.total_weight, 0.0, 1.0).astype(np.float32)
        return UncertaintyMaps(mean.astype(np.float32), entropy, mutual, self.disagree, self.n)


def case_scores(
    maps: UncertaintyMaps, labels: np.ndarray, geometry: Geometry, *, overlapping: bool
) -> dict[str, float]:
    """Per-case scores. The *region* is the predicted structure(s) ∪ the disagreement voxels.

    ``entropy``, ``mutual_information``: their means over the region (0 when it is empty);
    ``disagreement_ratio``: disagreement voxels / predicted foreground voxels; ``uncertain_fraction``: share of
    the region with entropy > 0.5; ``low_confidence``: 1 - the mean top-label probability over the predicted
    foreground; ``volume_ml``, ``disagreement_ml``: volumes (voxel counts × voxel volume; in voxels when the
    geometry is 1 mm by default)."""
    foreground = np.asarray(labels.any(axis=0) if overlapping else labels > 0)
    region = foreground | maps.disagreement
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    n_fg, n_region = int(foreground.sum()), int(region.sum())
    top = maps.probabilities.max(axis=0)

    def mean_in(values: np.ndarray, mask: np.ndarray, count: int) -> float:
        return float(values[mask].mean()) if count else 0.0

    return {
        "entropy": mean_in(maps.entropy, region, n_region),
        "mutual_information": mean_in(maps.mutual_information, region, n_region),
        "disagreement_ratio": float(maps.disagreement.sum()) / max(n_fg, 1),
        "uncertain_fraction": mean_in((maps.entropy > UNCERTAIN).astype(np.float32), region, n_region),
        "low_confidence": 1.0 - mean_in(top, foreground, n_fg) if n_fg else 0.0,
        "volume_ml": n_fg * voxel_ml,
        "disagreement_ml": float(maps.disagreement.sum()) * voxel_ml,
        "n_samples": float(maps.n_samples),
    }


def has_dropout(model: nn.Module) -> bool:
    """Whether ``model`` has a dropout layer with p > 0 (Monte-Carlo dropout is possible)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


@contextlib.contextmanager
def _dropout_active(model: nn.Module, seed: int) -> Iterator[None]:
    """Dropout layers in training mode (the rest stays in eval), torch's RNG seeded and restored after."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in layers:
            layer.train()
        try:
            yield
        finally:
            for layer in layers:
                layer.eval()


def _flipped(model: nn.Module, dims: list[int]) -> nn.Module | object:
    if not dims:
        return model
    return lambda x: model(x.flip(dims)).flip(dims)


@dataclass
class UncertaintyEstimator:
    """Draws the samples of a :class:`Predictor` or :class:`EnsemblePredictor` and summarises them."""

    predictor: FileSegmenter
    options: UncertaintyOptions = field(default_factory=UncertaintyOptions)

    def members(self) -> list[tuple[Predictor, float]]:
        """Each network with its weight in the ensemble (1 for a single run)."""
        if isinstance(self.predictor, Predictor):
            return [(self.predictor, 1.0)]
        if isinstance(self.predictor, EnsemblePredictor):
            groups = self.predictor.configurations
            return [(p, 1.0 / (len(groups) * len(group))) for group in groups for p in group]
        raise TypeError(f"cannot draw samples from {type(self.predictor).__name__}")

    def flips(self, member: Predictor) -> list[tuple[int, ...]]:
        """The mirrorings sampled: every subset of the planned TTA axes (all spatial axes when none are planned),
        or only the identity without TTA."""
        axes = member.window_config().mirror_axes or tuple(range(len(member.plans.patch_size)))
        return mirror_axes_combinations(axes) if self.options.tta else [()]

    def n_samples(self, member: Predictor) -> int:
        return len(self.flips(member)) * max(self.options.dropout_samples, 1)

    def samples(self, member: Predictor, image: np.ndarray, geometry: Geometry) -> Iterator[np.ndarray]:
        """The member's probability samples ``(K, *spatial)`` in the scan's grid."""
        plans = member.plans
        array, props = preprocess_image(image, geometry, plans.data)
        tensor = torch.from_numpy(array).to(member.device)
        config = replace(member.window_config(), mirror_axes=())
        flips = self.flips(member)
        passes = self.options.dropout_samples
        if passes and not has_dropout(member.model):
            raise ConfigError(
                f"the network of {plans.dataset_name} has no dropout, so Monte-Carlo dropout has nothing to sample; "
                "train with --dropout 0.2 or leave --mc-dropout out"
            )
        for i, flip in enumerate(flips):
            net = _flipped(member.model, [a + 2 for a in flip])
            for j in range(max(passes, 1)):
                seed = self.options.seed + 1000 * i + j
                with _dropout_active(member.model, seed) if passes else contextlib.nullcontext():
                    logits = sliding_window_logits(net, tensor, config)  # type: ignore[arg-type]
                yield logits_to_probabilities(logits.float().cpu(), props, overlapping=plans.data.labels.overlapping)

    def estimate(self, image: np.ndarray, geometry: Geometry) -> CaseUncertainty:
        """Labels (post-processed as the predictor does), maps and scores of one case ``(C, *spatial)``."""
        overlapping = self.predictor.plans.data.labels.overlapping
        check_scan(image, geometry, self.predictor.plans.data)
        accumulator = SampleAccumulator(overlapping=overlapping)
        for member, weight in self.members():
            count = self.n_samples(member)
            for probabilities in self.samples(member, image, geometry):
                accumulator.add(probabilities, weight / count)
        maps = accumulator.finish(self.options.temperature)
        labels = labels_from_probabilities(maps.probabilities, overlapping=overlapping)
        labels = self.predictor.postprocess(labels, self.predictor.steps)  # type: ignore[attr-defined]
        return CaseUncertainty(labels, maps, case_scores(maps, labels, geometry, overlapping=overlapping))
