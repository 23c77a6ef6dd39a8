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

from medseg.config.plans import Plans, load_plans
from medseg.config.postprocessing import PostProcessing
from medseg.errors import DataError
from medseg.fileutil import atomic_path
from medseg.inference.postprocessing import apply_postprocessing, apply_postprocessing_mask
from medseg.inference.sliding_window import SlidingWindowConfig, sliding_window_labels, sliding_window_logits
from medseg.io.images import Geometry, case_stem, read_channels, write_image
from medseg.models.registry import build_model
from medseg.preprocessing.forward import CaseProperties, preprocess_image
from medseg.preprocessing.inverse import logits_to_labels, logits_to_probabilities
from medseg.run import load_checkpoint

__all__ = ["PredictOptions", "Predictor"]

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


@dataclass
class Predictor:
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
        options = options or PredictOptions()
        plans = load_plans(Path(run_dir) / "plans.json")
        name = {"best": "checkpoint_best.pt", "last": "checkpoint_last.pt"}.get(options.checkpoint)
        if name is None:
            raise DataError(run_dir, f"unknown checkpoint '{options.checkpoint}'", "use best or last")
        state = load_checkpoint(Path(run_dir) / name, map_location="cpu")
        model = build_model(plans.model, plans.model_name)
        model.load_state_dict(state["model"])
        device = torch.device(device)
        return cls(plans, model.to(device).eval(), device, options)

    def window_config(self) -> SlidingWindowConfig:
        infer, o = self.plans.infer, self.options
        tta = infer.mirror_axes if o.tta is None else (tuple(range(self.plans.data.ndim)) if o.tta else ())
        return SlidingWindowConfig(
            patch_size=infer.patch_size,
            overlap=infer.overlap if o.overlap is None else o.overlap,
            batch_size=o.batch_size or infer.batch_size,
            mirror_axes=tta,
        )

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
        if image.shape[0] != len(data.channel_names):
            raise DataError(
                Path("<input>"), f"has {image.shape[0]} channel(s), the model expects {len(data.channel_names)}"
            )
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
        return self._postprocess(out)

    def _postprocess(self, labels: np.ndarray) -> np.ndarray:
        config = self.options.postprocessing or self.plans.infer.postprocessing
        if self.plans.data.labels.overlapping:
            return np.stack([apply_postprocessing_mask(m.astype(bool), config).astype(np.uint8) for m in labels])
        return apply_postprocessing(labels, config)

    def predict(self, channels: Sequence[Path]) -> tuple[np.ndarray, Geometry]:
        """Read a case (one path per channel, or one multi-channel file) and predict it."""
        image, geometry = read_channels(list(channels))
        _check_input(image, channels, len(self.plans.data.channel_names))
        return self.predict_array(image, geometry), geometry

    def write(self, labels: np.ndarray, geometry: Geometry, source: Path, out_dir: Path) -> list[Path]:
        """Write labels under ``out_dir`` named exactly like ``source``; class indices become the dataset's
        label values; overlapping structures go to ``out_dir/<structure>/``."""
        name = _output_name(source)
        data = self.plans.data
        if data.labels.overlapping:
            return [
                write_image(out_dir / structure / name, labels[k], geometry, reference=source)
                for k, structure in enumerate(data.labels.names.values())
            ]
        return [write_image(out_dir / name, data.labels.to_values(labels), geometry, reference=source)]

    def predict_files(
        self, cases: Sequence[tuple[str, Sequence[Path]]], out_dir: Path, progress: Callable[[], None] | None = None
    ) -> list[Path]:
        """Predict each (case id, channel paths) into ``out_dir``; returns the written files.

        With ``skip_existing`` cases whose output exists already are skipped (outputs are written atomically,
        so an existing file is complete)."""
        written: list[Path] = []
        for _case_id, channels in cases:
            target = out_dir / _output_name(channels[0])
            if self.options.skip_existing and (
                target.exists() or (self.plans.data.labels.overlapping and _all_structures(self, out_dir, channels[0]))
            ):
                logger.info("skipping %s (already predicted)", target.name)
            else:
                written += self._predict_one(channels, out_dir)
            if progress is not None:
                progress()
        return written

    def _predict_one(self, channels: Sequence[Path], out_dir: Path) -> list[Path]:
        """Read, predict and write one case; with ``save_probabilities`` labels and probabilities come from
        the same sliding-window pass (one read, one network pass)."""
        if not self.options.save_probabilities:
            labels, geometry = self.predict(channels)
            return self.write(labels, geometry, channels[0], out_dir)
        image, geometry = read_channels(list(channels))
        _check_input(image, channels, len(self.plans.data.channel_names))
        logits, props = self.logits(image, geometry)
        overlapping = self.plans.data.labels.overlapping
        labels = self._postprocess(logits_to_labels(logits, props, overlapping=overlapping))
        written = self.write(labels, geometry, channels[0], out_dir)
        probs = logits_to_probabilities(logits, props, overlapping=overlapping)
        path = out_dir / f"{case_stem(channels[0])}_probabilities.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, probabilities=probs, classes=json.dumps(self.plans.data.labels.names))
        return [*written, path]


def _check_input(image: np.ndarray, channels: Sequence[Path], expected: int) -> None:
    """Refuse a scan the network cannot segment meaningfully, naming its file. ``image`` is (C, *spatial)."""
    if image.shape[0] != expected:
        raise DataError(
            channels[0],
            f"has {image.shape[0]} channel(s), the model expects {expected}",
            "pass a scan with the channels the run was trained on",
        )
    for c, path in enumerate(channels if len(channels) == image.shape[0] else [channels[0]] * image.shape[0]):
        if image.dtype.kind == "f" and not np.isfinite(image[c]).all():
            n_bad = int(image[c].size - np.count_nonzero(np.isfinite(image[c])))
            raise DataError(path, f"{n_bad} NaN/Inf voxels", "replace them with the background value first")


def _output_name(source: Path) -> str:
    """Output file name: the input's name; for an nnU-Net channel file ``CASE_0000.nii.gz`` -> ``CASE.nii.gz``."""
    stem = case_stem(source)
    suffix = source.name[len(stem) :]
    if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit() and suffix:
        return stem[:-5] + suffix
    return source.name


def _all_structures(predictor: Predictor, out_dir: Path, source: Path) -> bool:
    name = _output_name(source)
    return all((out_dir / s / name).exists() for s in predictor.plans.data.labels.names.values())
