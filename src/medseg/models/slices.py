"""A 2D network applied slice by slice to 3D data: nnU-Net's ``2d`` configuration for volumes.

For strongly anisotropic scans (thick slices) or when a 3D patch would see too little of each slice, a 2D
U-Net on the axial slices can beat a 3D one, and the ensemble of both often beats either; nnU-Net plans and
cross-validates both. :class:`SliceWise` wraps any 2D network so it takes and returns 3D tensors: a batch
``(B, C, D, H, W)`` becomes ``B * D`` slices ``(C, H, W)``, and each output (a tensor, or the list of
deep-supervision outputs) comes back as ``(B, K, D, h, w)``. The patch sampler, the augmentation (rotations
in-plane only), the losses (they resize targets to each output) and the sliding window then work on 3D
arrays with ``1 x H x W`` patches, unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SliceWise"]


class SliceWise(nn.Module):
    """``net`` (2D) applied to every axis-0 slice of a 3D batch; see the module docstring."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        divisor = getattr(net, "divisor", None)
        if divisor is not None:
            self.divisor = (1, *divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"SliceWise takes (B, C, D, H, W) batches, got shape {tuple(x.shape)}")
        b, c, d, h, w = x.shape
        out = self.net(x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w))
        if isinstance(out, (list, tuple)):
            return [self._back(t, b, d) for t in out]
        return self._back(out, b, d)

    @staticmethod
    def _back(t: torch.Tensor, b: int, d: int) -> torch.Tensor:
        return t.reshape(b, d, *t.shape[1:]).permute(0, 2, 1, 3, 4)
