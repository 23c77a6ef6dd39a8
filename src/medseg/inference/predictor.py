"""Prediction from a run folder: read a scan in its own geometry, preprocess as planned, sliding window,
back to the original grid, post-process, write in the input's format and geometry under the input's name.

Memory: when the planned spacing equals the scan's (and nothing is cropped), labels come straight from
:func:`~medseg.inference.sliding_window.sliding_window_labels`, which never holds a per-class float map of
the volume. Otherwise the network-grid logits are resampled one class at a time
(:func:`~medseg.preprocessing.forward.logits_to_labels`), so the full-resolution memory is two float maps and
the label map; only ``save_probabilities`` keeps one float map per class, as asked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medseg.config.plans import Plans
from medseg.config.postprocessing import PostProcessing
from medseg.errors import DataError
from medseg.fileutil import atomic_path, make_dirs
from medseg.inference.network import network_for
from medseg.inference.postprocessing import apply_steps, apply_steps_masks
from medseg.inference.sliding_window import SlidingWindowConfig, sliding_window_labels, sliding_window_logits
from medseg.io.images import Geometry, case_stem, read_channels, write_image
from medseg.io.naming import split_channel_suffix
from medseg.labels import LabelSpec
from medseg.preprocessing.checks import check_scan
from medseg.preprocessing.forward import CaseProperties, preprocess_image
from medseg.preprocessing.inverse import logits_to_labels, logits_to_probabilities
from medseg.run import RunDir

__all__ = [
    "FileSegmenter",
    "PredictOptions",
    "Predictor",
    "labels_from_probabilities",
    "load_probabilities",
    "output_paths",
    "probabilities_path",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """Choices at prediction time; ``None`` fields take the run's planned value."""

    checkpoint: str = "best"  # 'best' or 'last'
    overlap: float | None = None
    batch_size: int | None = None
    tta: bool | None = None
    save_probabilities: bool = False
    postprocessing: PostProcessing | None = None
    skip_existing: bool = False
    # resample channel files on other grids onto the first's even if the run was not planned so (--resample-channels)
    resample_channels: bool = False


class FileSegmenter:
    """What every predictor does with files, given ``plans``, ``options``, :meth:`predict_array` and
    :meth:`labels_and_probabilities`: read a case, predict, write in the input's format under its name."""

    plans: Plans
    options: PredictOptions

    @property
    def resample_channels(self) -> bool:
        """Whether channel files on other grids are resampled onto the first's: as planned, or as asked."""
        return self.plans.data.resample_channels or self.options.resample_channels

    def predict_array(self, image: np.ndarray, geometry: Geometry) -> np.ndarray:
        raise NotImplementedError

    def labels_and_probabilities(self, image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def predict(self, channels: Sequence[Path]) -> tuple[np.ndarray, Geometry]:
        """Read a case (one path per channel, or one multi-channel file) and predict it."""
        image, geometry = self.read(channels)
        return self.predict_array(image, geometry), geometry

    def read(self, channels: Sequence[Path]) -> tuple[np.ndarray, Geometry]:
        """Read and check a case's channels for these plans."""
        image, geometry = read_channels(list(channels), resample=self.resample_channels)
        check_scan(image, geometry, self.plans.data, channels)
        return image, geometry

    def output_paths(self, source: Path, out_dir: Path) -> list[Path]:
        """Where the prediction of ``source`` goes: ``out_dir`` / the input's name (an nnU-Net channel file
        ``CASE_0000.nii.gz`` gives ``CASE.nii.gz``; a lossy JPEG input gives ``NAME.png``), or one file per
        structure in ``out_dir/<structure>/``."""
        return output_paths(source, out_dir, self.plans.data.labels)

    def write(self, labels: np.ndarray, geometry: Geometry, source: Path, out_dir: Path) -> list[Path]:
        """Write labels to :meth:`output_paths` in the input's format and geometry; class indices become the
        dataset's label values."""
        paths = self.output_paths(source, out_dir)
        spec = self.plans.data.labels
        if spec.overlapping:
            return [write_image(path, labels[k], geometry, reference=source) for k, path in enumerate(paths)]
        return [write_image(paths[0], spec.to_values(labels), geometry, reference=source)]

    def predict_files(
        self, cases: Sequence[tuple[str, Sequence[Path]]], out_dir: Path, progress: Callable[[], None] | None = None
    ) -> list[Path]:
        """Predict each (case id, channel paths) into ``out_dir``; returns the written files.

        With ``skip_existing`` cases whose output exists already are skipped (outputs are written atomically,
        so an existing file is complete)."""
        make_dirs(out_dir)  # a bad output path fails before the first case is computed, not after
        written: list[Path] = []
        for _case_id, channels in cases:
            targets = self.output_paths(channels[0], out_dir)
            if self.options.skip_existing and all(p.exists() for p in targets):
                logger.info("skipping %s (already predicted)", targets[0].name)
            else:
                written += self._predict_one(channels, out_dir)
            if progress is not None:
                progress()
        return written

    def _predict_one(self, channels: Sequence[Path], out_dir: Path) -> list[Path]:
        """Read, predict and write one case; with ``save_probabilities`` labels and probabilities come from
        the same network pass (one read, one pass)."""
        if not self.options.save_probabilities:
            labels, geometry = self.predict(channels)
            return self.write(labels, geometry, channels[0], out_dir)
        image, geometry = self.read(channels)
        labels, probs = self.labels_and_probabilities(image, geometry)
        written = self.write(labels, geometry, channels[0], out_dir)
        path = probabilities_path(channels[0], out_dir)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, probabilities=probs, classes=json.dumps(self.plans.data.labels.names))
        return [*written, path]

    def postprocess(self, labels: np.ndarray, steps: Sequence[PostProcessing]) -> np.ndarray:
        """``steps`` applied to a label map, or to the masks of overlapping structures."""
        if self.plans.data.labels.overlapping:
            return apply_steps_masks(labels, steps)
        return apply_steps(labels, steps)


def output_paths(source: Path, out_dir: Path, labels: LabelSpec) -> list[Path]:
    """Where the prediction of ``source`` goes (see :meth:`FileSegmenter.output_paths`)."""
    name = _output_name(source)
    if labels.overlapping:
        return [out_dir / structure / name for structure in labels.names.values()]
    return [out_dir / name]


def probabilities_path(source: Path, out_dir: Path) -> Path:
    """Where ``save_probabilities`` puts the probabilities of ``source``: ``out_dir/<case>_probabilities.npz``."""
    return out_dir / f"{case_stem(source)}_probabilities.npz"


def load_probabilities(path: Path) -> np.ndarray:
    """The (K, *spatial) float probabilities of a ``*_probabilities.npz`` file."""
    try:
        with np.load(path) as data:
            return np.asarray(data["probabilities"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(path, f"unreadable probabilities file ({type(exc).__name__}: {exc})") from exc


def labels_from_probabilities(probabilities: np.ndarray, *, overlapping: bool) -> np.ndarray:
    """Class indices (argmax) of (K, *spatial) probabilities, or uint8 masks (> 0.5) for overlapping structures."""
    if overlapping:
        return (probabilities > 0.5).astype(np.uint8)
    return np.argmax(probabilities, axis=0).astype(np.uint8)


@dataclass
class Predictor(FileSegmenter):
    """A trained network with its plans, ready to segment scans.

    Example:
        >>> predictor = Predictor.from_run(Path("runs/hippocampus"))          # doctest: +SKIP
        >>> labels, geometry = predictor.predict([Path("case_001.nii.gz")])   # doctest: +SKIP
    """

    plans: Plans
    model: torch.nn.Module
    device: torch.device
    options: PredictOptions = field(default_factory=PredictOptions)

    @classmethod
    def from_run(
        cls, run_dir: Path, device: str | torch.device = "cpu", options: PredictOptions | None = None
    ) -> Predictor:
        """Load the plans and the chosen checkpoint (verified) of a run folder."""
        options = options or PredictOptions()
        run = RunDir(Path(run_dir))
        plans = run.load_plans()
        state = run.load_checkpoint(options.checkpoint, map_location="cpu")
        model = network_for(plans)
        model.load_state_dict(state["model"])
        device = torch.device(device)
        return cls(plans, model.to(device).eval(), device, options)

    def window_config(self) -> SlidingWindowConfig:
        infer, o = self.plans.infer, self.options
        tta = infer.mirror_axes if o.tta is None else (tuple(range(self.plans.data.ndim)) if o.tta else ())
        return SlidingWindowConfig(
            patch_size=self.plans.patch_size,
            overlap=infer.overlap if o.overlap is None else o.overlap,
            batch_size=o.batch_size or infer.batch_size,
            mirror_axes=tta,
        )

    @property
    def steps(self) -> tuple[PostProcessing, ...]:
        """The post-processing applied: the one asked for at prediction, else the planned one."""
        return (self.options.postprocessing or self.plans.infer.postprocessing,)

    @torch.inference_mode()
    def logits(self, image: np.ndarray, geometry: Geometry) -> tuple[torch.Tensor, CaseProperties]:
        """Network-grid logits (K, *spatial) of ``image`` (C, *spatial) and the properties to invert them."""
        array, props = preprocess_image(image, geometry, self.plans.data)
        tensor = torch.from_numpy(array).to(self.device)
        return sliding_window_logits(self.model, tensor, self.window_config()).float().cpu(), props

    @torch.inference_mode()
    def predict_array(self, image: np.ndarray, geometry: Geometry) -> np.ndarray:
        """Labels in the original grid: (*spatial) class indices, or (K, *spatial) uint8 masks for
        overlapping structures; post-processing applied."""
        data = self.plans.data
        check_scan(image, geometry, data)
        array, props = preprocess_image(image, geometry, data)
        same_grid = tuple(props.resampled_shape) == tuple(props.original_shape)
        tensor = torch.from_numpy(array).to(self.device)
        if same_grid:
            activation = "sigmoid" if data.labels.overlapping else "softmax"
            labels = sliding_window_labels(self.model, tensor, self.window_config(), activation=activation)
            out = labels.cpu().numpy().astype(np.uint8)
        else:
            logits = sliding_window_logits(self.model, tensor, self.window_config()).float().cpu()
            out = logits_to_labels(logits, props, overlapping=data.labels.overlapping)
        return self.postprocess(out, self.steps)

    def probabilities_array(self, image: np.ndarray, geometry: Geometry) -> np.ndarray:
        """Per-class probabilities (K, *spatial) float32 in the original grid (no post-processing)."""
        check_scan(image, geometry, self.plans.data)
        logits, props = self.logits(image, geometry)
        return logits_to_probabilities(logits, props, overlapping=self.plans.data.labels.overlapping)

    def labels_and_probabilities(self, image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """Post-processed labels and the probabilities, from one network pass."""
        check_scan(image, geometry, self.plans.data)
        logits, props = self.logits(image, geometry)
        overlapping = self.plans.data.labels.overlapping
        labels = self.postprocess(logits_to_labels(logits, props, overlapping=overlapping), self.steps)
        return labels, logits_to_probabilities(logits, props, overlapping=overlapping)


LOSSY_SUFFIXES = (".jpg", ".jpeg")  # a mask in these would get compression artefacts: written as PNG


def _output_name(source: Path) -> str:
    """Output file name: the input's name; for an nnU-Net channel file ``CASE_0000.nii.gz`` -> ``CASE.nii.gz``;
    for a JPEG input ``NAME.jpg`` -> ``NAME.png`` (a label map must survive compression unchanged)."""
    stem = case_stem(source)
    suffix = source.name[len(stem) :]
    case, channel = split_channel_suffix(stem)
    if suffix.lower() in LOSSY_SUFFIXES:
        return (case if channel is not None else stem) + ".png"
    if channel is not None and suffix:
        return case + suffix
    return source.name
