"""Spend a time budget well: the candidate configurations it could buy, and the rule that picks one.

A time budget used to decide only when training stops; the patch, batch and resolution were fixed voxel
budgets, which fit some machines and not others (a CPU without native bf16 runs the same plan several times
slower). With ``--time-budget T``, :func:`candidates` lists configurations that trade context, resolution
and steps differently; each is planned (:func:`medseg.planning.plans.make_plans`) and its training step timed
on the training device (:func:`medseg.training.speed.plan_for_budget`); :func:`choose` then applies the
rule below to the measurements. Everything here is pure, so the rule is tested on synthetic fingerprints
with made-up step times (tests/planning/test_budget.py).

The rule (``context-then-resolution-v3``, docs/planning.md):

1. a configuration is affordable when the budget buys it at least :data:`MIN_STEPS` optimiser steps
   (:data:`STEP_FRACTION` of the budget goes to steps, the rest to validation and data loading);
2. of those, only the ones that keep the thinnest class at least :data:`MIN_THICKNESS` voxels thick are
   considered (a vessel or a membrane coarsened below that is no longer there to learn); when none does,
   the affordable ones of the finest spacing;
3. among them, the largest coverage wins (the fraction of the median image one patch sees,
   rounded to 0.05: a patch that cannot see an organ's surroundings cannot tell it from its neighbours),
   then the finest spacing;
4. among the candidates of that coverage and spacing, the full-width network when it buys at least
   :data:`FULL_WIDTH_STEPS` steps, else the one that buys the most steps (a narrower network: fewer
   features per level, more steps in the same time);
5. if none is affordable, the one that buys the most steps.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from medseg.config.budget import BudgetChoice, Configuration
from medseg.config.plans import Plans
from medseg.planning.fingerprint import Fingerprint
from medseg.planning.plans import Budget, default_patch_voxels, median_extent, target_spacing

__all__ = [
    "FULL_WIDTH_STEPS",
    "MIN_STEPS",
    "MIN_THICKNESS",
    "RULE",
    "STEP_FRACTION",
    "budget_choice",
    "candidates",
    "choose",
    "coverage",
    "describe",
    "thickness_voxels",
]

RULE = "context-then-resolution-v3"
MIN_STEPS = 1000
FULL_WIDTH_STEPS = 3000
STEP_FRACTION = 0.85
NARROW_WIDTH = 0.5  # the narrower-network candidate's width factor
MIN_THICKNESS = 3.0  # voxels: the thinnest class must stay this thick at a candidate's spacing


def candidates(fp: Fingerprint, budget: Budget) -> list[tuple[str, Budget]]:
    """Named variations of ``budget`` to plan and time: the device's default first, then a larger patch,
    a smaller patch with a larger batch, the default patch with a network half as wide, and (when the
    median image is larger than a patch) coarser spacings at which the whole image, or half-way to it, fits
    one patch."""
    gpu = budget.device.startswith("cuda")
    slices = budget.configuration == "2d"  # a 2D network on slices: patch budgets are in-plane
    ndim = 2 if slices else fp.ndim
    voxels = default_patch_voxels(ndim, gpu)
    spacing = np.array(target_spacing(np.array(fp.spacings)))
    extent = median_extent(fp) / spacing
    median_voxels = float(np.prod(extent[1:] if slices else extent))
    whole = (median_voxels / voxels) ** (1 / ndim)  # the factor at which the median image fits one patch
    larger = 4 if ndim == 2 else 2
    out = [
        ("default", budget),
        ("larger patch", replace(budget, patch_voxels=voxels * larger)),
        # about the same voxels per step as the default: in 2D the batch rule fills the default budget with
        # smaller patches by itself (0: the rule); in 3D the batch is fixed at 2, so 4
        ("smaller patch, larger batch", replace(budget, patch_voxels=voxels // larger, batch_size=4 * (ndim - 2))),
        ("narrower network", replace(budget, width_factor=NARROW_WIDTH)),
    ]
    if whole > 1.05:
        out.append(("whole image, coarser", replace(budget, spacing_factor=float(whole))))
    if whole > 1.5:
        out.append(("half-way coarser", replace(budget, spacing_factor=float(math.sqrt(whole)))))
    return out


def coverage(plans: Plans, fp: Fingerprint) -> float:
    """The fraction of the median image's physical volume one patch sees (at most 1)."""
    patch = np.array(plans.patch_size) * np.array(plans.data.target_spacing)
    return float(min(1.0, np.prod(np.minimum(patch / median_extent(fp), 1.0))))


def describe(name: str, candidate: Budget, plans: Plans, fp: Fingerprint) -> Configuration:
    """The record of a planned candidate (before it is timed)."""
    return Configuration(
        name=name,
        spacing_factor=candidate.spacing_factor,
        patch_voxels=candidate.patch_voxels
        or default_patch_voxels(2 if plans.configuration == "2d" else fp.ndim, candidate.device.startswith("cuda")),
        batch_size=plans.train.batch_size,
        patch_size=tuple(plans.patch_size),
        target_spacing=tuple(plans.data.target_spacing),
        coverage=round(coverage(plans, fp), 4),
        width_factor=candidate.width_factor,
        thickness=round(thickness_voxels(fp, plans.data.target_spacing), 3),
    )


def thickness_voxels(fp: Fingerprint, spacing: tuple[float, ...]) -> float:
    """The thinnest class's thickness (:attr:`Fingerprint.thickness_mm`) in voxels of ``spacing`` (their
    geometric mean); 0 when the fingerprint measured none."""
    known = [t for t in fp.thickness_mm if np.isfinite(t) and t > 0]
    if not known:
        return 0.0
    return float(min(known) / np.prod(spacing) ** (1 / len(spacing)))


def choose(configurations: list[Configuration], time_budget_s: float) -> tuple[int, list[Configuration]]:
    """Apply the rule (module docstring) to timed configurations; returns the chosen index and the
    configurations with ``steps`` filled in."""
    if not configurations:
        raise ValueError("choose needs at least one configuration")
    timed = [
        replace(c, steps=int(STEP_FRACTION * time_budget_s / c.step_seconds) if c.step_seconds > 0 else 0)
        for c in configurations
    ]
    affordable = [i for i, c in enumerate(timed) if c.steps >= MIN_STEPS]
    if not affordable:
        return max(range(len(timed)), key=lambda i: (timed[i].steps, -i)), timed
    resolving = [i for i in affordable if timed[i].thickness == 0 or timed[i].thickness >= MIN_THICKNESS]
    if not resolving:  # nothing affordable keeps the thinnest class: the finest affordable spacing
        finest = min(float(np.prod(timed[i].target_spacing)) for i in affordable)
        resolving = [i for i in affordable if float(np.prod(timed[i].target_spacing)) <= finest * (1 + 1e-9)]
    affordable = resolving

    def context(i: int) -> tuple[float, float]:
        return round(timed[i].coverage * 20) / 20, -float(np.prod(timed[i].target_spacing))

    best = max(context(i) for i in affordable)
    tied = [i for i in affordable if context(i) == best]
    full = [i for i in tied if timed[i].width_factor == 1.0 and timed[i].steps >= FULL_WIDTH_STEPS]
    if full:
        return max(full, key=lambda i: (timed[i].steps, -i)), timed
    return max(tied, key=lambda i: (timed[i].steps, -i)), timed


def budget_choice(
    configurations: list[Configuration], time_budget_s: float, device: str, measured_seconds: float
) -> BudgetChoice:
    """The record for ``plans.json`` of choosing among timed ``configurations``."""
    chosen, timed = choose(configurations, time_budget_s)
    return BudgetChoice(time_budget_s, device, tuple(timed), chosen, RULE, round(measured_seconds, 2))
