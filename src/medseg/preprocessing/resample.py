"""Resampling between the scan's grid and the planned (network) grid.

Images are resampled linearly (``align_corners=False``, ITK's voxel-centre convention). Class maps are
resampled per class with a running maximum (:func:`running_argmax`): each class's map (one-hot for a label
map, logits for a prediction) is interpolated on its own and the class with the highest value wins. This
is smoother than nearest-neighbour (nnU-Net's choice) and holds two float maps of the target size at a time,
never one per class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["resample", "resample_channel", "resample_label", "running_argmax"]


def resample(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linearly resample ``array`` (C, *spatial) float to ``shape`` (align_corners=False, as ITK's grid)."""
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return F.interpolate(tensor, size=shape, mode=mode, align_corners=False)[0].numpy()


def resample_channel(channel: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Linearly resample one ``(*spatial)`` map to ``shape``; float32 tensor."""
    tensor = torch.as_tensor(channel, dtype=torch.float32)
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(tensor[None, None], size=shape, mode=mode, align_corners=False)[0, 0]


def running_argmax(
    score: Callable[[int], np.ndarray | torch.Tensor], n_classes: int, shape: tuple[int, ...]
) -> torch.Tensor:
    """uint8 ``(*shape)`` index of the class whose resampled ``score(k)`` is highest (ties: the lower index)."""
    best = torch.full(shape, -torch.inf)
    out = torch.zeros(shape, dtype=torch.uint8)
    for k in range(n_classes):
        value = resample_channel(score(k), shape)
        better = value > best
        out[better] = k
        best = torch.where(better, value, best)
    return out


def resample_label(label: np.ndarray, n_classes: int, shape: tuple[int, ...]) -> np.ndarray:
    """Resample a label map of class indices by interpolating each class's one-hot map and taking the argmax."""
    if tuple(label.shape) == tuple(shape):
        return label.astype(np.uint8)
    return running_argmax(lambda k: (label == k).astype(np.float32), n_classes, shape).numpy()
