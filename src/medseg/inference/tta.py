"""Mirroring test-time augmentation, as in nnU-Net: average the net over every flip of the chosen axes.

Example:
    >>> import torch
    >>> net = mirrored(lambda x: x * 2, axes=(0, 1))
    >>> net(torch.ones(1, 1, 4, 4)).shape
    torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from torch import Tensor

from medseg.errors import ConfigError

__all__ = ["mirror_axes_combinations", "mirrored"]


def mirror_axes_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """All subsets of ``axes``, the empty one first: ``(0, 1)`` -> ``[(), (0,), (1,), (0, 1)]``."""
    axes = tuple(axes)
    if len(set(axes)) != len(axes) or any(a < 0 for a in axes):
        raise ConfigError(f"mirror axes {axes} must be distinct spatial axes >= 0 (e.g. (0, 1, 2) for 3D)")
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def mirrored(net: Callable[[Tensor], Tensor], axes: Sequence[int]) -> Callable[[Tensor], Tensor]:
    """Wrap ``net`` so that it returns the average of ``flip(net(flip(x, a)), a)`` over all subsets ``a``.

    ``x`` is ``(B, C, *spatial)``; spatial axis ``i`` is tensor dim ``i + 2``. With ``k`` axes the net runs
    ``2**k`` times. Outputs are averaged as returned (logits), ``(B, K, *spatial)``.
    """
    combinations = mirror_axes_combinations(axes)

    def forward(x: Tensor) -> Tensor:
        if any(a + 2 >= x.ndim for a in axes):
            raise ValueError(f"mirror axes {tuple(axes)} do not exist in a {x.ndim - 2}D input; drop them")
        total = net(x)
        for combo in combinations[1:]:
            dims = [a + 2 for a in combo]
            total = total + net(x.flip(dims)).flip(dims)
        return total / len(combinations)

    return forward
