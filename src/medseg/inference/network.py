"""The network a run's plans describe, built the same way for training, timing and prediction."""

from __future__ import annotations

import torch
from torch import nn

from medseg.config.plans import Plans
from medseg.models.fusion import build_network
from medseg.models.slices import SliceWise

__all__ = ["network_for"]


def network_for(plans: Plans, *, generator: torch.Generator | None = None) -> nn.Module:
    """The model of ``plans`` with its fusion (:func:`medseg.models.fusion.build_network`), applied slice by
    slice (:class:`medseg.models.slices.SliceWise`) in the ``2d`` configuration of 3D data."""
    net = build_network(plans.model, plans.fusion, generator=generator)
    return SliceWise(net) if plans.configuration == "2d" else net
