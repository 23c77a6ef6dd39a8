"""Prediction with a bundle: preprocess, sliding window, back to the scan's grid, post-process, write.

One network: the window's logits arrive row block by row block and are resampled to the scan's grid and
turned into labels on the fly (:class:`~medseg_runtime.resample.RowResampler`), so memory holds the image,
its preprocessed copy, the label map and a few slabs, never a ``(K, *spatial)`` float map. Several networks
(an ensemble, medseg's rule: mean probabilities over folds, then over configurations) hold one
``(K, *spatial)`` float32 map per configuration for the running means.

Example:
    >>> predictor = BundlePredictor.load(Path("hippocampus.medseg"))          # doctest: +SKIP
    >>> predictor.predict_files(Path("scans/"), Path("masks/"))                # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg_runtime.bundle import Bundle, read_bundle
from medseg_runtime.dicom_seg import SEG_SUFFIX, series_files, write_dicom_seg
from medseg_runtime.errors import BundleError
from medseg_runtime.images import find_cases, output_name, read_scan, write_mask
from medseg_runtime.manifest import Configuration
from medseg_runtime.postprocess import apply_steps, apply_steps_masks
from medseg_runtime.preprocess import Grid, preprocess
from medseg_runtime.resample import RowResampler
from medseg_runtime.sessions import onnx_network
from medseg_runtime.window import Network, logit_rows

__all__ = ["BundlePredictor", "CaseResult"]

logger = logging.getLogger(__name__)

NetworkLoader = Callable[[bytes], Network]


@dataclass
class BundlePredictor:
    """A verified bundle with its networks loaded (``networks[i]``: configuration ``i``'s folds)."""

    bundle: Bundle
    networks: list[list[Network]]

    @classmethod
    def load(
        cls, path: Path, *, providers: Sequence[str] | None = None, loader: NetworkLoader | None = None
    ) -> BundlePredictor:
        """Read and verify ``path``; ONNX networks run on onnxruntime (``providers``: the best available by
        default); TorchScript bundles need a ``loader`` (medseg passes one; this runtime has no torch)."""
        bundle = read_bundle(Path(path))
        if loader is None:
            if bundle.manifest.format != "onnx":
                raise BundleError(
                    f"{path}: holds {bundle.manifest.format} networks, which need torch; predict it with "
                    "`medseg predict`, or export with --format onnx"
                )
            loader = lambda data: onnx_network(data, providers)  # noqa: E731
        nets = [[loader(bundle.member(n)) for n in c.networks] for c in bundle.manifest.configurations]
        return cls(bundle, nets)

    @property
    def n_classes(self) -> int:
        return len(self.bundle.manifest.labels.names)

    def predict_array(self, image: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        """Labels of ``image`` (C, *spatial): (*spatial) class indices, or (K, *spatial) uint8 masks for
        overlapping structures; post-processing applied."""
        self._check(image)
        manifest = self.bundle.manifest
        if len(self.networks) == 1 and len(self.networks[0]) == 1:
            labels = self._labels_streamed(image, spacing)
        else:
            labels = self._labels_ensemble(image, spacing)
        steps = manifest.postprocessing
        return apply_steps_masks(labels, steps) if manifest.labels.overlapping else apply_steps(labels, steps)

    def _check(self, image: np.ndarray) -> None:
        config, channels = self.bundle.manifest.configurations[0], self.bundle.manifest.channel_names
        if image.ndim - 1 != config.ndim:
            raise BundleError(f"the scan is {image.ndim - 1}D; this model segments {config.ndim}D scans")
        if image.shape[0] != len(channels):
            raise BundleError(f"the scan has {image.shape[0]} channel(s); this model reads {len(channels)}: {channels}")
        if not np.isfinite(image).all():
            raise BundleError("the scan holds NaN or infinite values; fix or mask them first")

    def _rows(
        self, config: Configuration, net: Network, image: np.ndarray, spacing: tuple[float, ...]
    ) -> tuple[Iterator[tuple[int, np.ndarray]], Grid]:
        """Logit rows ``(start, (K, n, *cropped[1:]))`` of one network in the crop of the scan's grid."""
        array, grid = preprocess(image, spacing, config)
        weight = self.bundle.array(config.importance)
        rows = logit_rows(
            net,
            array,
            config.patch_size,
            config.overlap,
            config.batch_size,
            mirror_axes=config.mirror_axes,
            weight=weight,
        )
        return _to_grid(rows, grid), grid

    def _labels_streamed(self, image: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        config, overlapping = self.bundle.manifest.configurations[0], self.bundle.manifest.labels.overlapping
        rows, grid = self._rows(config, self.networks[0][0], image, spacing)
        shape = (self.n_classes, *grid.original_shape) if overlapping else grid.original_shape
        out = np.zeros(shape, dtype=np.uint8)
        offset, rest = grid.start[0], grid.crop[1:]
        for start, block in rows:
            target = slice(offset + start, offset + start + block.shape[1])
            if overlapping:
                out[(slice(None), target, *rest)] = block > 0
            else:
                out[(target, *rest)] = np.argmax(block, axis=0)
        return out

    def _probabilities(
        self, config: Configuration, net: Network, image: np.ndarray, spacing: tuple[float, ...]
    ) -> np.ndarray:
        overlapping = self.bundle.manifest.labels.overlapping
        rows, grid = self._rows(config, net, image, spacing)
        out = np.zeros((self.n_classes, *grid.original_shape), dtype=np.float32)
        if not overlapping:
            out[0] = 1.0  # outside the crop: background
        offset, rest = grid.start[0], grid.crop[1:]
        for start, block in rows:
            target = slice(offset + start, offset + start + block.shape[1])
            if overlapping:
                probs = 1 / (1 + np.exp(-block))
            else:
                e = np.exp(block - block.max(axis=0, keepdims=True))
                probs = e / e.sum(axis=0, keepdims=True)
            out[(slice(None), target, *rest)] = probs
        return out

    def _labels_ensemble(self, image: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        total: np.ndarray | None = None
        configs = self.bundle.manifest.configurations
        for config, nets in zip(configs, self.networks, strict=True):
            mean: np.ndarray | None = None
            for net in nets:
                probs = self._probabilities(config, net, image, spacing) / np.float32(len(nets))
                mean = probs if mean is None else mean + probs
            assert mean is not None
            mean /= np.float32(len(configs))
            total = mean if total is None else total + mean
        assert total is not None
        if self.bundle.manifest.labels.overlapping:
            return (total > 0.5).astype(np.uint8)
        return np.argmax(total, axis=0).astype(np.uint8)

    def predict_files(self, inputs: Path, out_dir: Path, *, dicom_seg: bool = False) -> list[Path]:
        """Predict every case under ``inputs`` into ``out_dir`` (named like the inputs); the written files.

        ``dicom_seg``: a DICOM series input gives a DICOM-SEG (``NAME.dcm``) instead of a NIfTI mask."""
        written: list[Path] = []
        for channels in find_cases(Path(inputs)):
            written += self.predict_case(channels, out_dir, dicom_seg=dicom_seg).written
        return written

    def predict_case(self, channels: list[Path], out_dir: Path, *, dicom_seg: bool = False) -> CaseResult:
        """Predict one case (its channel files, or a DICOM folder) and write its mask(s) into ``out_dir``."""
        labels = self.bundle.manifest.labels
        source = channels[0]
        sources = series_files(source) if dicom_seg and source.is_dir() else None
        scan = read_scan(channels)
        try:
            mask = self.predict_array(scan.array, scan.spacing)
        except BundleError as exc:
            raise BundleError(f"{source}: {exc}") from exc
        name = output_name(source)
        written: list[Path] = []
        if sources is not None:
            from medseg_runtime import __version__  # the package is initialised by now

            path = out_dir / (source.name + SEG_SUFFIX)
            written.append(write_dicom_seg(path, mask, sources, labels, version=__version__))
        elif labels.overlapping:
            written += [
                write_mask(out_dir / s / name, m, scan.frame) for s, m in zip(labels.names.values(), mask, strict=True)
            ]
        else:
            values = np.asarray(labels.values)
            values = values.astype(np.uint8 if values.max() < 256 else np.uint16)
            written.append(write_mask(out_dir / name, values[mask], scan.frame))
        logger.info("wrote %s", written[-1])
        return CaseResult(written, mask, scan.spacing)


@dataclass(frozen=True)
class CaseResult:
    """One predicted case: the files written, its labels (class indices ``(*spatial)``, or ``(K, *spatial)``
    masks for overlapping classes) and its spacing in mm (array order)."""

    written: list[Path]
    labels: np.ndarray
    spacing: tuple[float, ...]


def _to_grid(rows: Iterator[np.ndarray], grid: Grid) -> Iterator[tuple[int, np.ndarray]]:
    """Network-grid logit blocks -> ``(start, block)`` in the crop of the scan's grid (resampled if needed)."""
    if grid.resampled_shape == grid.cropped_shape:
        start = 0
        for block in rows:
            yield start, block
            start += block.shape[1]
        return
    resampler = RowResampler(grid.resampled_shape[0], grid.cropped_shape)
    for block in rows:
        yield from resampler.feed(block)
    yield from resampler.finish()
