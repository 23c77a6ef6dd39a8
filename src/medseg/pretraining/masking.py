"""Masked-volume reconstruction maths (pure): which voxels are hidden, and the loss on them.

A patch is cut into a grid of blocks (``block`` voxels per axis); a fixed fraction of the blocks, chosen
at random, is masked (set to 0, the mean of z-scored intensities) and the network must reconstruct the
hidden voxels from the visible ones. The loss is the mean squared error over the masked voxels only
(SimMIM, Xie et al. 2022; the dense-CNN variant of the masked autoencoder of Wald et al. 2024): a visible
voxel is a copy of the input and teaches nothing.

Example:
    >>> rng = np.random.default_rng(0)
    >>> mask = block_mask((8, 8), (4, 4), 0.5, rng)
    >>> mask.shape, int(mask.sum())     # 2 of the 4 blocks of 4 x 4 voxels
    ((8, 8), 32)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["MAX_BLOCK", "block_mask", "block_shape", "hide", "masked_blocks", "masked_mse"]

MAX_BLOCK = 16  # voxels per axis of a masked block, at most (Wald et al. mask 16^3 blocks)


def block_shape(divisor: Sequence[int], size: int = 0) -> tuple[int, ...]:
    """The masked block per axis: ``size`` when given (0: automatic), else the network's total stride on
    that axis (``divisor``: what the bottleneck sees as one voxel) capped at :data:`MAX_BLOCK`; an axis the
    network never pools (stride 1, e.g. the slice axis of the ``2d`` configuration) gets 1."""
    if size:
        return tuple(size if d > 1 else 1 for d in divisor)
    return tuple(max(1, min(int(d), MAX_BLOCK)) for d in divisor)


def masked_blocks(n_blocks: int, ratio: float) -> int:
    """How many of ``n_blocks`` blocks a ``ratio`` masks: ``round(ratio * n)``, at least one masked and one
    visible block when there are two or more (a patch all visible or all hidden teaches nothing)."""
    k = round(ratio * n_blocks)
    return min(max(k, 1), n_blocks - 1) if n_blocks >= 2 else n_blocks


def block_mask(patch: Sequence[int], block: Sequence[int], ratio: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of shape ``patch`` (True: hidden): the patch's grid of ``ceil(patch / block)`` blocks,
    exactly :func:`masked_blocks` of them chosen by ``rng`` and masked whole (edge blocks cropped to the
    patch, so the voxel fraction is the block fraction when ``block`` divides ``patch``)."""
    grid = tuple(math.ceil(p / b) for p, b in zip(patch, block, strict=True))
    n = math.prod(grid)
    flat = np.zeros(n, dtype=bool)
    flat[rng.permutation(n)[: masked_blocks(n, ratio)]] = True
    mask = flat.reshape(grid)
    for axis, b in enumerate(block):
        mask = np.repeat(mask, b, axis=axis)
    return np.ascontiguousarray(mask[tuple(slice(0, p) for p in patch)])


def masked_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``(prediction - target) ** 2`` over the masked voxels of every channel.

    ``prediction`` and ``target`` are ``(B, C, *spatial)``; ``mask`` is ``(B, 1, *spatial)`` (True / 1:
    masked), shared by the channels. Voxels outside the mask do not count; 0 when nothing is masked.
    """
    weight = mask.to(prediction.dtype).expand_as(prediction)
    squared = (prediction.float() - target.float()) ** 2
    return (squared * weight).sum() / weight.sum().clamp_min(1.0)


def hide(image: Tensor, mask: Tensor) -> Tensor:
    """``image`` ``(B, C, *spatial)`` with the voxels of ``mask`` ``(B, 1, *spatial)`` set to 0."""
    return torch.where(mask, torch.zeros((), dtype=image.dtype, device=image.device), image)
