"""What a time budget bought: the configurations measured and the one chosen, as data for ``plans.json``.

Written by :func:`medseg.planning.budget.choose_configuration` from step times measured on the training
device (:func:`medseg.training.speed.measure_step_seconds`); ``plans.json`` keeps it so a run says why it has
its patch, batch and spacing, and on which machine that was decided.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BudgetChoice", "Configuration"]


@dataclass(frozen=True)
class Configuration:
    """One candidate: how it differs from the device's default plan, what it plans to, and what it costs.

    ``spacing_factor`` multiplies the planned target spacing (2: half the resolution), ``patch_voxels`` is the
    patch's voxel budget, ``batch_size`` the batch, ``width_factor`` multiplies the network's features per
    level (0.5: half as wide); ``thickness`` the thinnest class's thickness in voxels at the candidate's
    spacing (:func:`medseg.planning.fingerprint.thickness_mm`; 0 when the fingerprint has none).
    ``coverage`` is the fraction of the median image (by physical volume, at most 1) one patch sees;
    ``step_seconds`` the measured seconds of one training step; ``steps`` how many the budget buys.
    """

    name: str
    spacing_factor: float
    patch_voxels: int
    batch_size: int
    patch_size: tuple[int, ...] = ()
    target_spacing: tuple[float, ...] = ()
    coverage: float = 0.0
    step_seconds: float = 0.0
    steps: int = 0
    width_factor: float = 1.0
    thickness: float = 0.0  # the thinnest class's thickness in voxels at this spacing (0: not measured)


@dataclass(frozen=True)
class BudgetChoice:
    """The candidates measured for ``time_budget_s`` on ``device``, the index of the one planned, the rule's
    name (``docs/planning.md``) and the seconds the measurements took (not part of the training budget)."""

    time_budget_s: float
    device: str
    configurations: tuple[Configuration, ...]
    chosen: int
    rule: str
    measured_seconds: float = 0.0
