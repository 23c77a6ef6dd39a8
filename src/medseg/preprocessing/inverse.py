"""The inverse of preprocessing, for predictions: network-grid logits back to the scan's own grid.

:func:`logits_to_labels` resamples the logits one class at a time with a running maximum, so the
full-resolution memory is two float maps and the label map, never one map per class; voxels outside the
non-zero crop are background.
"""

from __future__ import annotations

import numpy as np
import torch

from medseg.preprocessing.forward import CaseProperties
from medseg.preprocessing.resample import resample_channel, running_argmax

__all__ = ["logits_to_labels", "logits_to_probabilities", "map_to_original"]


def _crop(props: CaseProperties) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """The crop's slices in the original grid and its shape."""
    crop = tuple(slice(a, b) for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))
    return crop, tuple(b - a for a, b in zip(props.bbox_start, props.bbox_stop, strict=True))


def logits_to_labels(logits: torch.Tensor, props: CaseProperties, *, overlapping: bool) -> np.ndarray:
    """Network-grid logits (K, *spatial) -> labels in the original grid: (*original) class indices, or
    (K, *original) uint8 masks for overlapping structures (logit > 0, i.e. sigmoid > 0.5)."""
    crop, cropped = _crop(props)
    if overlapping:
        out = np.zeros((logits.shape[0], *props.original_shape), dtype=np.uint8)
        for k in range(logits.shape[0]):
            out[k][crop] = (resample_channel(logits[k], cropped) > 0).numpy()
        return out
    full = np.zeros(props.original_shape, dtype=np.uint8)
    full[crop] = running_argmax(lambda k: logits[k], logits.shape[0], cropped).numpy()
    return full


def logits_to_probabilities(logits: torch.Tensor, props: CaseProperties, *, overlapping: bool) -> np.ndarray:
    """(K, *spatial) logits -> (K, *original) float32 probabilities (softmax, or sigmoid for structures);
    voxels outside the non-zero crop get background probability 1 (structures: 0)."""
    crop, cropped = _crop(props)
    resampled = torch.stack([resample_channel(logits[k], cropped) for k in range(logits.shape[0])])
    probs = torch.sigmoid(resampled) if overlapping else torch.softmax(resampled, dim=0)
    out = np.zeros((logits.shape[0], *props.original_shape), dtype=np.float32)
    if not overlapping:
        out[0] = 1.0
    out[(slice(None), *crop)] = probs.numpy()
    return out


def map_to_original(values: torch.Tensor, props: CaseProperties, fill: float = 0.0) -> np.ndarray:
    """A network-grid map ``(*spatial)`` (an uncertainty or explanation map) -> ``(*original)`` float32,
    resampled linearly; voxels outside the non-zero crop get ``fill``."""
    crop, cropped = _crop(props)
    out = np.full(props.original_shape, fill, dtype=np.float32)
    out[crop] = resample_channel(values.float(), cropped).numpy()
    return out
