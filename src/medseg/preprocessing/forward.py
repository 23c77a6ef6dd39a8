"""Preprocessing (crop, resample, normalise) and its inverse for predictions.

Forward: a case read in its own geometry is cropped to its non-zero region (if planned), resampled to the
planned spacing (images linearly; label maps by linear interpolation of each class's one-hot map and an
argmax, which is smoother than nearest-neighbour and is what nnU-Net does) and normalised per channel.
:class:`CaseProperties` records what is needed to put a prediction back into the original grid.

Inverse: :func:`logits_to_labels` resamples network logits one class at a time and keeps a running
maximum, so the full-resolution memory is two float maps and the label map, never one map per class.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medseg.config.plans import DataConfig
from medseg.datasets.dataset import Case, label_indices
from medseg.errors import DataError
from medseg.fileutil import atomic_path, atomic_write_json
from medseg.io.images import Geometry, read_channels, read_label
from medseg.planning.plans import nonzero_bbox
from medseg.serial import from_dict, to_dict

__all__ = [
    "CaseProperties",
    "PreprocessedCase",
    "load_preprocessed",
    "logits_to_labels",
    "logits_to_probabilities",
    "normalize",
    "preprocess_dataset",
    "preprocess_image",
    "resample",
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


@dataclass(frozen=True, eq=False)
class PreprocessedCase:
    """``image`` (C, *spatial) float32; ``label`` (*spatial) uint8 class indices, (K, *spatial) uint8 masks, or None."""

    image: np.ndarray
    label: np.ndarray | None
    properties: CaseProperties


def normalize(image: np.ndarray, data: DataConfig) -> np.ndarray:
    """Normalise each channel of ``image`` (C, *spatial) as planned; returns float32."""
    out = np.empty(image.shape, dtype=np.float32)
    for c, norm in enumerate(data.normalization):
        channel = image[c].astype(np.float32)
        if norm.scheme == "ct":
            channel = (np.clip(channel, norm.clip_low, norm.clip_high) - norm.mean) / norm.std
        else:
            channel = (channel - channel.mean()) / max(float(channel.std()), 1e-8)
        out[c] = channel
    return out


def resample(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linearly resample ``array`` (C, *spatial) float to ``shape`` (align_corners=False, as ITK's grid)."""
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return F.interpolate(tensor, size=shape, mode=mode, align_corners=False)[0].numpy()


def _resample_channel(channel: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    tensor = torch.as_tensor(channel, dtype=torch.float32)
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(tensor[None, None], size=shape, mode=mode, align_corners=False)[0, 0]


def _label_argmax(label: np.ndarray, n_classes: int, shape: tuple[int, ...]) -> np.ndarray:
    """Resample a label map by interpolating each class's one-hot map and taking the argmax."""
    if tuple(label.shape) == tuple(shape):
        return label.astype(np.uint8)
    best = torch.full(shape, -1.0)
    out = torch.zeros(shape, dtype=torch.uint8)
    for k in range(n_classes):
        score = _resample_channel((label == k).astype(np.float32), shape)
        better = score > best
        out[better] = k
        best = torch.where(better, score, best)
    return out.numpy()


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
    image, geometry = read_channels(list(case.channels))
    if image.shape[0] != len(data.channel_names):
        raise DataError(
            case.channels[0], f"has {image.shape[0]} channel(s), the plans expect {len(data.channel_names)}"
        )
    if image.dtype.kind == "f" and not np.isfinite(image).all():  # the file changed since `medseg plan` checked it
        n_bad = int(image.size - np.count_nonzero(np.isfinite(image)))
        raise DataError(case.channels[0], f"{n_bad} NaN/Inf voxels", "run `medseg check`")
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
        if data.multilabel:
            label = np.stack(
                [_label_argmax((lab[crop] > 0).astype(np.uint8), 2, props.resampled_shape) for lab in labels]
            )
        else:
            label = _label_argmax(
                label_indices(labels[0][crop], data.label_values, case.label[0]),
                len(data.label_names),
                props.resampled_shape,
            )
    return PreprocessedCase(array, label, props)


# --------------------------------------------------------------------------------------- on-disk cache


def _data_hash(data: DataConfig) -> str:
    return hashlib.sha256(json.dumps(to_dict(data), sort_keys=True).encode()).hexdigest()[:16]


def preprocess_dataset(
    cases: list[Case], data: DataConfig, folder: Path, progress: Callable[[], None] | None = None
) -> list[Path]:
    """Preprocess ``cases`` into ``folder`` (one ``.npz`` + ``.json`` each); cases already done with the same
    data configuration are kept. Each file is written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _data_hash(data)
    paths = []
    for case in cases:
        npz = folder / f"{case.case_id}.npz"
        meta = folder / f"{case.case_id}.json"
        if not (
            meta.exists() and npz.exists() and json.loads(meta.read_text(encoding="utf-8")).get("data_hash") == stamp
        ):
            pre = preprocess_case(case, data)
            with atomic_path(npz) as tmp:
                arrays = {"image": pre.image} if pre.label is None else {"image": pre.image, "label": pre.label}
                with open(tmp, "wb") as handle:
                    np.savez(handle, **arrays)
            atomic_write_json(meta, {"data_hash": stamp, "properties": to_dict(pre.properties)})
        paths.append(npz)
        if progress is not None:
            progress()
    return paths


def load_preprocessed(npz: Path) -> PreprocessedCase:
    """Load a case written by :func:`preprocess_dataset`."""
    meta = json.loads(npz.with_suffix(".json").read_text(encoding="utf-8"))
    with np.load(npz) as arrays:
        image = arrays["image"]
        label = arrays["label"] if "label" in arrays.files else None
    return PreprocessedCase(image, label, from_dict(CaseProperties, meta["properties"]))


# --------------------------------------------------------------------------------------------- inverse


def _paste(props: CaseProperties, fill: float | int, dtype: np.dtype) -> tuple[np.ndarray, tuple[slice, ...]]:
    full = np.full(props.original_shape, fill, dtype=dtype)
    crop = tuple(slice(a, b) for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))
    return full, crop


def logits_to_labels(logits: torch.Tensor, props: CaseProperties, *, multilabel: bool) -> np.ndarray:
    """Network-grid logits (K, *spatial) -> labels in the original grid: (*original) class indices, or
    (K, *original) uint8 masks for overlapping structures (logit > 0, i.e. sigmoid > 0.5)."""
    cropped = tuple(b - a for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))
    if multilabel:
        out = np.zeros((logits.shape[0], *props.original_shape), dtype=np.uint8)
        crop = tuple(slice(a, b) for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))
        for k in range(logits.shape[0]):
            out[(k, *crop)] = (_resample_channel(logits[k], cropped) > 0).numpy()
        return out
    best = torch.full(cropped, -torch.inf)
    labels = torch.zeros(cropped, dtype=torch.uint8)
    for k in range(logits.shape[0]):
        score = _resample_channel(logits[k], cropped)
        better = score > best
        labels[better] = k
        best = torch.where(better, score, best)
    full, crop = _paste(props, 0, np.dtype(np.uint8))
    full[crop] = labels.numpy()
    return full


def logits_to_probabilities(logits: torch.Tensor, props: CaseProperties, *, multilabel: bool) -> np.ndarray:
    """(K, *spatial) logits -> (K, *original) float32 probabilities (softmax, or sigmoid for structures);
    voxels outside the non-zero crop get background probability 1 (structures: 0)."""
    cropped = tuple(b - a for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))
    resampled = torch.stack([_resample_channel(logits[k], cropped) for k in range(logits.shape[0])])
    probs = torch.sigmoid(resampled) if multilabel else torch.softmax(resampled, dim=0)
    out = np.zeros((logits.shape[0], *props.original_shape), dtype=np.float32)
    if not multilabel:
        out[0] = 1.0
    crop = tuple(slice(a, b) for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))
    out[(slice(None), *crop)] = probs.numpy()
    return out
