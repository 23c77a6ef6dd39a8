"""Forward preprocessing: a case read in its own geometry becomes network input.

It is cropped to its non-zero region (if planned), resampled to the planned spacing (images linearly;
label maps per class with a running argmax, :mod:`medseg.preprocessing.resample`) and normalised per
channel. :class:`CaseProperties` records what :mod:`medseg.preprocessing.inverse` needs to put a
prediction back into the original grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from medseg.config.plans import ChannelNorm, DataConfig
from medseg.datasets.records import Case
from medseg.errors import DataError
from medseg.io.images import Geometry, read_channels, read_label
from medseg.preprocessing.checks import check_scan
from medseg.preprocessing.histogram import match_histogram
from medseg.preprocessing.resample import resample, resample_label

__all__ = [
    "CaseProperties",
    "PreprocessedCase",
    "imagenet_normalize",
    "nonzero_bbox",
    "normalize",
    "preprocess_case",
    "preprocess_image",
    "unit_range",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseProperties:
    """Where a preprocessed case came from: enough to write its prediction in the original geometry."""

    case_id: str
    original_shape: tuple[int, ...]
    geometry: Geometry
    bbox_start: tuple[int, ...]
    bbox_stop: tuple[int, ...]
    resampled_shape: tuple[int, ...]


def normalize(image: np.ndarray, data: DataConfig) -> np.ndarray:
    """Normalise each channel of ``image`` (C, *spatial) as planned; returns float32."""
    out = np.empty(image.shape, dtype=np.float32)
    for c, norm in enumerate(data.normalization):
        channel = image[c].astype(np.float32)
        if norm.scheme == "ct":
            channel = (np.clip(channel, norm.clip_low, norm.clip_high) - norm.mean) / norm.std
        elif norm.scheme == "imagenet":
            channel = imagenet_normalize(channel, norm)
        elif norm.scheme in ("window", "rescale"):
            channel = unit_range(channel, norm)
        elif norm.scheme == "histogram":
            channel = match_histogram(channel, norm.landmarks)
        else:
            channel = (channel - channel.mean()) / max(float(channel.std()), 1e-8)
        out[c] = channel
    return out


def unit_range(channel: np.ndarray, norm: ChannelNorm) -> np.ndarray:
    """``window``: ``[clip_low, clip_high]`` mapped to [0, 1]; ``rescale``: the channel's own 0.5/99.5
    percentiles mapped to [0, 1]; clipped, float32."""
    if norm.scheme == "window":
        low, high = norm.clip_low, norm.clip_high
    else:
        low, high = (float(v) for v in np.percentile(channel, (0.5, 99.5)))
    return ((np.clip(channel, low, high) - low) / max(high - low, 1e-8)).astype(np.float32)


def imagenet_normalize(channel: np.ndarray, norm: ChannelNorm) -> np.ndarray:
    """A pretrained encoder's input (float32): clip to ``[clip_low, clip_high]`` (equal: to the channel's
    own 0.5/99.5 percentiles), map that range to [0, 1], then ``(x - mean) / std`` (ImageNet's)."""
    low, high = norm.clip_low, norm.clip_high
    if low == high:
        low, high = (float(v) for v in np.percentile(channel, (0.5, 99.5)))
    unit = (np.clip(channel, low, high) - low) / max(high - low, 1e-8)
    return ((unit - norm.mean) / norm.std).astype(np.float32)


def preprocess_image(image: np.ndarray, geometry: Geometry, data: DataConfig) -> tuple[np.ndarray, CaseProperties]:
    """Crop, resample and normalise ``image`` (C, *spatial); the properties name no case (``case_id`` '')."""
    shape = tuple(image.shape[1:])
    start, stop = nonzero_bbox(image) if data.crop_to_nonzero else ((0,) * len(shape), shape)
    cropped = image[(slice(None), *(slice(a, b) for a, b in zip(start, stop, strict=True)))]
    cropped_shape = cropped.shape[1:]
    new_shape = tuple(
        max(1, round(n * s / t)) for n, s, t in zip(cropped_shape, geometry.spacing, data.target_spacing, strict=True)
    )
    normalised = resample(normalize(cropped, data), new_shape)
    props = CaseProperties("", shape, geometry, tuple(start), tuple(stop), new_shape)
    return np.ascontiguousarray(normalised, dtype=np.float32), props


def preprocess_case(case: Case, data: DataConfig) -> PreprocessedCase:
    """Read and preprocess one case (image and, if present, label)."""
    image, geometry = read_channels(list(case.channels), resample=data.resample_channels)
    check_scan(image, geometry, data, case.channels)  # the file may have changed since `medseg plan` checked it
    array, props = preprocess_image(image, geometry, data)
    props = CaseProperties(
        case.case_id, props.original_shape, props.geometry, props.bbox_start, props.bbox_stop, props.resampled_shape
    )
    crop = tuple(slice(a, b) for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))
    label = None
    if case.label:
        read = [read_label(p) for p in case.label]
        labels = [lab for lab, _ in read]
        for path, (lab, label_geometry) in zip(case.label, read, strict=True):
            if lab.shape != props.original_shape:
                raise DataError(
                    path,
                    f"label shape {lab.shape} differs from image shape {props.original_shape}",
                    "run `medseg check`",
                )
            if not label_geometry.matches(geometry):
                raise DataError(path, "label geometry differs from the image", "run `medseg check`")
        if data.labels.overlapping:
            label = np.stack(
                [resample_label((lab[crop] > 0).astype(np.uint8), 2, props.resampled_shape) for lab in labels]
            )
        else:
            label = resample_label(
                data.labels.to_indices(labels[0][crop], case.label[0]),
                len(data.labels.names),
                props.resampled_shape,
            )
    return PreprocessedCase(array, label, props)


def nonzero_bbox(image: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bounding box (start, stop) of voxels non-zero in any channel of ``image`` (C, *spatial)."""
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return tuple(0 for _ in mask.shape), tuple(mask.shape)
    lo, hi = [], []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        lo.append(int(hits[0]))
        hi.append(int(hits[-1]) + 1)
    return tuple(lo), tuple(hi)


@dataclass(frozen=True, eq=False)
class PreprocessedCase:
    """``image`` (C, *spatial) float32; ``label`` (*spatial) uint8 class indices, (K, *spatial) uint8 masks, or None."""

    image: np.ndarray
    label: np.ndarray | None
    properties: CaseProperties
