"""Sliding-window inference for 2D and 3D images (one code path for both), as in nnU-Net.

The image is cut into overlapping patches (:func:`window_starts`), the net runs on batches of patches, and
each prediction is weighted by an importance map (a Gaussian that trusts the patch centre more than its
border, :func:`gaussian_importance_map`) and accumulated. The result is the weighted average of the net's
outputs.

Aggregation, defined once for every function here: the net's raw outputs (**logits**) are averaged with the
importance weights; labels are ``argmax`` of the averaged logits (softmax models) or
``averaged logits > logit(threshold)``, i.e. ``sigmoid(averaged logits) > threshold`` (sigmoid models).
Note that the argmax of averaged logits can differ from the argmax of averaged probabilities.

:func:`sliding_window_labels` returns the same labels as ``argmax(sliding_window_logits(...))`` but never
holds a full-resolution float ``(K, *spatial)`` accumulator: it works in slabs along the first spatial axis.

Example:
    >>> import torch
    >>> config = SlidingWindowConfig(patch_size=(8, 8), overlap=0.5)
    >>> net = lambda x: torch.cat([x, -x], dim=1)  # (B, 1, 8, 8) -> (B, 2, 8, 8)
    >>> sliding_window_logits(net, torch.randn(1, 20, 13), config).shape
    torch.Size([2, 20, 13])
    >>> sliding_window_labels(net, torch.randn(1, 20, 13), config).shape
    torch.Size([20, 13])
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError
from medseg.inference.tta import mirror_axes_combinations, mirrored

__all__ = [
    "SlidingWindowConfig",
    "gaussian_importance_map",
    "pad_to_patch",
    "sliding_window_labels",
    "sliding_window_logits",
    "window_starts",
]

logger = logging.getLogger(__name__)

Net = Callable[[Tensor], Tensor]
Progress = Callable[[int, int], None]
Box = tuple[slice, ...]


def _check_patch_overlap(patch_size: Sequence[int], overlap: float) -> None:
    if len(patch_size) == 0 or any(int(p) != p or p < 1 for p in patch_size):
        raise ConfigError(f"patch_size {tuple(patch_size)} must be positive integers, e.g. (128, 128, 128)")
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap {overlap} must be in [0, 1); 0.5 is the usual choice")


@dataclass(frozen=True)
class SlidingWindowConfig:
    """How to tile an image: patch size, overlap, batch size, weighting and mirroring TTA.

    Example:
        >>> SlidingWindowConfig(patch_size=(64, 64, 64), mirror_axes=(0, 1, 2)).overlap
        0.5
    """

    patch_size: tuple[int, ...]
    overlap: float = 0.5  # fraction of a patch shared with its neighbour, 0 <= overlap < 1
    batch_size: int = 4  # windows per forward call
    gaussian: bool = True  # Gaussian importance weighting, else uniform
    mirror_axes: tuple[int, ...] = ()  # spatial axes for mirroring TTA (empty = off)

    def __post_init__(self) -> None:
        _check_patch_overlap(self.patch_size, self.overlap)
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "mirror_axes", tuple(int(a) for a in self.mirror_axes))
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size} must be a positive integer, e.g. 4")
        mirror_axes_combinations(self.mirror_axes)  # validates: distinct, >= 0
        if any(a >= len(self.patch_size) for a in self.mirror_axes):
            raise ConfigError(
                f"mirror_axes {self.mirror_axes} name axes beyond the {len(self.patch_size)}D patch; "
                f"use axes in 0..{len(self.patch_size) - 1}"
            )


def gaussian_importance_map(
    patch_size: Sequence[int],
    sigma_scale: float = 1 / 8,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Gaussian weights ``(*patch)`` centred on the patch, sigma = size * sigma_scale per axis.

    Normalised to a maximum of 1; zeros (underflow) are replaced by the smallest non-zero value so that no
    voxel gets zero weight. Unlike nnU-Net (which centres at ``size // 2``) the centre is ``(size - 1) / 2``,
    so the map is symmetric under flips also for even sizes.
    """
    _check_patch_overlap(patch_size, 0.0)
    if not sigma_scale > 0:
        raise ConfigError(f"sigma_scale {sigma_scale} must be > 0; nnU-Net uses 1/8")
    weights = torch.ones((), dtype=torch.float64)
    for size in patch_size:
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        weights = weights[..., None] * torch.exp(-0.5 * (x / (size * sigma_scale)) ** 2)
    weights = (weights / weights.max()).to(dtype)
    nonzero = weights > 0
    if not nonzero.all():
        weights[~nonzero] = weights[nonzero].min()
    return weights.to(device)


def window_starts(image_size: Sequence[int], patch_size: Sequence[int], overlap: float) -> list[list[int]]:
    """Start positions of the windows along each axis.

    Along an axis of size ``n`` with patch ``p``, the target step is ``max(p * (1 - overlap), 1)`` voxels;
    the number of windows is the fewest with that step that reach the border, and the starts are spread
    evenly (rounded) from 0 to ``n - p`` so the last window ends exactly at the border (nnU-Net's rule).
    Example: ``window_starts([10], [4], 0.5) == [[0, 2, 4, 6]]``. The caller pads images smaller than the
    patch.
    """
    _check_patch_overlap(patch_size, overlap)
    if len(image_size) != len(patch_size) or any(n < p for n, p in zip(image_size, patch_size, strict=True)):
        raise ValueError(f"image {tuple(image_size)} smaller than patch {tuple(patch_size)}; pad it first")
    starts = []
    for n, p in zip(image_size, patch_size, strict=True):
        last = n - p
        count = math.ceil(last / max(p * (1 - overlap), 1)) + 1
        starts.append([round(i * last / (count - 1)) for i in range(count)] if count > 1 else [0])
    return starts


def _check_image(image: Tensor, config: SlidingWindowConfig) -> None:
    if image.ndim - 1 != len(config.patch_size):
        raise ValueError(
            f"image of shape {tuple(image.shape)} has {image.ndim - 1} spatial axes but patch_size "
            f"{config.patch_size} has {len(config.patch_size)}; pass (C, *spatial) with a matching model"
        )


def pad_to_patch(image: Tensor, patch_size: Sequence[int]) -> tuple[Tensor, list[int]]:
    """Zero-pad ``(C, *spatial)`` symmetrically to at least the patch size; return it and the front pads."""
    before = [max(p - n, 0) // 2 for n, p in zip(image.shape[1:], patch_size, strict=True)]
    after = [max(p - n, 0) - b for n, p, b in zip(image.shape[1:], patch_size, before, strict=True)]
    if not any(before) and not any(after):
        return image, before
    # F.pad lists (front, back) pairs from the last axis to the first
    pads = [v for b, a in zip(reversed(before), reversed(after), strict=True) for v in (b, a)]
    return F.pad(image, pads), before


def _importance(image: Tensor, config: SlidingWindowConfig) -> Tensor:
    """Weight map ``(*patch)`` of one window on the image's device."""
    if config.gaussian:
        return gaussian_importance_map(config.patch_size, device=image.device)
    return torch.ones(config.patch_size, device=image.device)


def _windows(
    net: Net, image: Tensor, config: SlidingWindowConfig, weight: Tensor, progress: Progress | None
) -> Iterator[tuple[Box, Tensor]]:
    """Yield ``(box, weight * net(image[box]))`` for every window, row by row along axis 0.

    ``image`` is ``(C, *spatial)`` and at least the patch size, ``weight`` is ``(*patch)``; each prediction
    is ``(K, *patch)`` float32. Both public functions consume this one generator, so they see the same
    windows, batches and order of summation.
    """
    patch = config.patch_size
    starts = itertools.product(*window_starts(image.shape[1:], patch, config.overlap))
    boxes = [tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True)) for start in starts]
    forward = mirrored(net, config.mirror_axes) if config.mirror_axes else net
    logger.debug("%d windows of %s over %s", len(boxes), patch, tuple(image.shape[1:]))
    for first in range(0, len(boxes), config.batch_size):
        chunk = boxes[first : first + config.batch_size]
        with torch.inference_mode():
            out = forward(torch.stack([image[(slice(None), *box)] for box in chunk]))
        if out.ndim != len(patch) + 2 or out.shape[0] != len(chunk) or tuple(out.shape[2:]) != patch:
            raise ValueError(f"net returned {tuple(out.shape)} for {len(chunk)} patches of {patch}")
        weighted = out.float() * weight
        yield from zip(chunk, weighted, strict=True)
        if progress is not None:
            progress(first + len(chunk), len(boxes))


def sliding_window_logits(
    net: Net, image: Tensor, config: SlidingWindowConfig, *, progress: Progress | None = None
) -> Tensor:
    """Importance-weighted average of the net's outputs over overlapping windows.

    ``image`` is ``(C, *spatial)`` on the net's device; ``net`` maps ``(B, C, *patch)`` to ``(B, K, *patch)``
    (put a module in eval mode first). Returns ``(K, *spatial)`` float32 averaged logits; for sigmoid models
    the caller applies the sigmoid. Images smaller than the patch are zero-padded and cropped back.
    ``progress(done, total)`` is called after each batch of windows.
    """
    _check_image(image, config)
    padded, before = pad_to_patch(image, config.patch_size)
    weight = _importance(padded, config)
    weight_sum = torch.zeros(padded.shape[1:], device=image.device)
    total: Tensor | None = None
    for box, prediction in _windows(net, padded, config, weight, progress):
        if total is None:
            total = torch.zeros((prediction.shape[0], *padded.shape[1:]), device=image.device)
        total[(slice(None), *box)] += prediction
        weight_sum[box] += weight
    assert total is not None  # at least one window always exists
    total /= weight_sum
    crop = (slice(b, b + n) for b, n in zip(before, image.shape[1:], strict=True))
    return total[(slice(None), *crop)].contiguous()


@dataclass
class _Slab:
    """Accumulators for padded rows ``[start, start + patch_size[0])`` of axis 0."""

    start: int
    total: Tensor  # (K, patch0, *spatial[1:])
    weight_sum: Tensor  # (patch0, *spatial[1:])

    def shifted(self, start: int) -> _Slab:
        """The slab beginning at ``start``, keeping the rows this one shares with it."""
        shift = start - self.start
        keep = max(self.total.shape[1] - shift, 0)
        total, weight_sum = torch.zeros_like(self.total), torch.zeros_like(self.weight_sum)
        total[:, :keep] = self.total[:, shift:]
        weight_sum[:keep] = self.weight_sum[shift:]
        return _Slab(start, total, weight_sum)


@dataclass(frozen=True)
class _Finaliser:
    """Turns finished rows of a slab into labels and writes them into the cropped output."""

    activation: str
    cutoff: float  # logit(threshold) for sigmoid
    before: list[int]  # zero padding in front of each spatial axis
    size: tuple[int, ...]  # spatial size of the unpadded image

    def __call__(self, slab: _Slab, end: int, out: Tensor | None) -> Tensor:
        """Finalise padded rows ``[slab.start, end)`` into ``out`` (allocated when None); return ``out``."""
        lo, hi = max(slab.start, self.before[0]), min(end, self.before[0] + self.size[0])
        if out is None:
            shape = self.size if self.activation == "softmax" else (slab.total.shape[0], *self.size)
            dtype = torch.int64 if self.activation == "softmax" else torch.bool
            out = torch.empty(shape, dtype=dtype, device=slab.total.device)
        if lo >= hi:
            return out
        rows = slice(lo - slab.start, hi - slab.start)
        rest = tuple(slice(b, b + n) for b, n in zip(self.before[1:], self.size[1:], strict=True))
        logits = slab.total[(slice(None), rows, *rest)] / slab.weight_sum[(rows, *rest)]
        target = slice(lo - self.before[0], hi - self.before[0])
        if self.activation == "softmax":
            out[target] = logits.argmax(dim=0)
        else:
            out[:, target] = logits > self.cutoff
        return out


def sliding_window_labels(
    net: Net,
    image: Tensor,
    config: SlidingWindowConfig,
    *,
    activation: str = "softmax",
    threshold: float = 0.5,
    progress: Progress | None = None,
) -> Tensor:
    """Labels of :func:`sliding_window_logits` without a full-resolution float accumulator.

    ``image`` is ``(C, *spatial)``. Returns ``(*spatial)`` int64 ``argmax`` labels for
    ``activation='softmax'`` or ``(K, *spatial)`` bool masks ``sigmoid(logits) > threshold`` for
    ``'sigmoid'``. Windows are processed row by row along the first spatial axis; rows of the slab that no
    later window touches are finalised, so at most two ``(K, patch0, *spatial[1:])`` slabs are held.
    Equal to labelling the output of :func:`sliding_window_logits` (same windows, batches and summation
    order, so no float differences).
    """
    _check_image(image, config)
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"activation {activation!r} is unknown; use 'softmax' or 'sigmoid'")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold {threshold} must be in (0, 1); 0.5 is the usual choice")
    padded, before = pad_to_patch(image, config.patch_size)
    cutoff = math.log(threshold / (1 - threshold))
    finalise = _Finaliser(activation, cutoff, before, tuple(image.shape[1:]))
    weight = _importance(padded, config)
    rest_shape = padded.shape[2:]
    slab: _Slab | None = None
    out: Tensor | None = None
    for box, prediction in _windows(net, padded, config, weight, progress):
        row = box[0].start
        if slab is None:
            slab = _Slab(
                row,
                torch.zeros((prediction.shape[0], config.patch_size[0], *rest_shape), device=image.device),
                torch.zeros((config.patch_size[0], *rest_shape), device=image.device),
            )
        elif row != slab.start:
            out = finalise(slab, row, out)
            slab = slab.shifted(row)
        # the window spans the whole slab along axis 0
        slab.total[(slice(None), slice(None), *box[1:])] += prediction
        slab.weight_sum[(slice(None), *box[1:])] += weight
    assert slab is not None  # at least one window always exists
    return finalise(slab, slab.start + config.patch_size[0], out)
