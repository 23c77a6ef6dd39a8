"""The parity check of an export: the bundle against the eager model, on a few cases.

Two figures: per network, the largest logit difference (and argmax agreement) on patches of the cases'
preprocessed images; end to end, the agreement of the bundle's labels (runtime: preprocessing, window, TTA,
inverse, post-processing) with ``medseg predict``'s on the same scans. The cases are the run's held-out
cases when its dataset is present, otherwise synthetic input (noise) of about 1.5 patches per axis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medseg.config.plans import Plans
from medseg.datasets.dataset import load_dataset
from medseg.errors import MedsegError
from medseg.inference.predictor import FileSegmenter, Predictor
from medseg.io.geometry import Geometry
from medseg.io.images import read_channels
from medseg.preprocessing.forward import preprocess_image
from medseg.run import RunDir

__all__ = ["LIMITS", "Parity", "ParityCase", "check_parity", "parity_cases"]

logger = logging.getLogger(__name__)

# precision -> (largest logit difference, relative to max(1, |logits|); least end-to-end label agreement)
LIMITS: dict[str, tuple[float, float]] = {"float32": (1e-3, 0.999), "fp16": (5e-2, 0.99), "int8": (float("inf"), 0.9)}


@dataclass(frozen=True)
class ParityCase:
    """A scan the check runs on: its name, image (C, *spatial) and geometry."""

    name: str
    image: np.ndarray
    geometry: Geometry


@dataclass(frozen=True)
class Parity:
    """What the check measured and whether it passed the limits."""

    cases: tuple[str, ...]
    max_logit_diff: float  # largest |exported - eager| over every network and patch
    logit_scale: float  # largest |eager logit| seen
    window_agreement: float  # argmax agreement of the networks on those patches
    label_agreement: float  # end to end, over every voxel of every case
    max_logit_diff_limit: float
    min_label_agreement: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in self.__dict__.items()}

    def summary(self) -> str:
        return (
            f"max logit difference {self.max_logit_diff:.3g} (limit {self.max_logit_diff_limit:.3g} x max(1, "
            f"{self.logit_scale:.3g})), label agreement {self.label_agreement:.5f} (at least "
            f"{self.min_label_agreement}) on {len(self.cases)} case(s)"
        )


def parity_cases(run: RunDir, plans: Plans, count: int) -> list[ParityCase]:
    """The first ``count`` held-out cases of ``run`` (read as ``medseg predict`` reads them), or synthetic."""
    try:
        record = run.load_record()
        dataset = load_dataset(record.root, scan_labels=False)
        wanted = [c for c in dataset.cases if c.case_id in set(record.validation)][:count]
        cases = []
        for case in wanted:
            image, geometry = read_channels(list(case.channels), resample=plans.data.resample_channels)
            cases.append(ParityCase(case.case_id, image, geometry))
        if cases:
            return cases
    except MedsegError as exc:
        logger.info("parity on synthetic input: the run's data cannot be read (%s)", exc)
    rng = np.random.default_rng(0)
    shape = tuple(max(2, int(p * 1.5)) for p in plans.patch_size)
    image = rng.normal(size=(len(plans.data.channel_names), *shape)).astype(np.float32)
    return [ParityCase("synthetic", image, Geometry.identity(len(shape), plans.data.target_spacing))]


def _patches(members: list[Predictor], cases: list[ParityCase]) -> list[np.ndarray]:
    """One centre patch (1, C, *patch) per case, preprocessed as the first member plans."""
    plans = members[0].plans
    out = []
    for case in cases:
        array, _ = preprocess_image(case.image, case.geometry, plans.data)
        pad = [(0, 0), *((0, max(p - n, 0)) for n, p in zip(array.shape[1:], plans.patch_size, strict=True))]
        array = np.pad(array, pad)
        start = [(n - p) // 2 for n, p in zip(array.shape[1:], plans.patch_size, strict=True)]
        box = tuple(slice(s, s + p) for s, p in zip(start, plans.patch_size, strict=True))
        out.append(array[(slice(None), *box)][None])
    return out


def check_parity(
    eager: FileSegmenter,
    members: list[Predictor],
    bundle: Any,
    cases: list[ParityCase],
    precision: str,
    limits: tuple[float, float],
) -> Parity:
    """Compare ``bundle`` (a ``medseg_runtime.BundlePredictor``) with ``eager`` and its ``members``
    (the eager networks in the bundle's order) on ``cases``."""
    diff = scale = 0.0
    same = total = 0
    networks = [net for group in bundle.networks for net in group]
    for member, network in zip(members, networks, strict=True):
        for patch in _patches([member], cases):
            with torch.inference_mode():
                want = member.model(torch.from_numpy(patch)).float().numpy()
            got = network(patch)
            diff, scale = max(diff, float(np.abs(got - want).max())), max(scale, float(np.abs(want).max()))
            same += int((got.argmax(1) == want.argmax(1)).sum())
            total += want[:, 0].size
    agree = voxels = 0
    for case in cases:
        want_labels = eager.predict_array(case.image, case.geometry)
        got_labels = bundle.predict_array(case.image, case.geometry.spacing)
        agree += int((want_labels == got_labels).sum())
        voxels += want_labels.size
    max_diff, min_agreement = limits
    label_agreement = agree / voxels
    passed = diff <= max_diff * max(1.0, scale) and label_agreement >= min_agreement
    result = Parity(
        tuple(c.name for c in cases), diff, scale, same / total, label_agreement, max_diff, min_agreement, passed
    )
    logger.info("parity (%s): %s", precision, result.summary())
    return result
