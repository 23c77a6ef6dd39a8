"""Measure what a training step costs on this device, and plan a time budget from the measurements.

:func:`plan_for_budget` plans each candidate configuration of :func:`medseg.planning.budget.candidates`,
times one training step of each (:func:`measure_step_seconds`: the planned network, loss and optimiser on a
random batch of the planned shape; the fastest of two steps after a warm-up) and keeps the plan the rule of
:func:`medseg.planning.budget.choose` picks, with every measurement recorded in ``plans.budget``.

Measured in float32 on CPU (training may then choose bf16 on a CPU where it is faster, so the estimate errs
towards fewer steps) and with the planned autocast on CUDA. The measurements take seconds to a minute and
are not counted in the training budget (``plans.budget.measured_seconds`` says how long they took).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace

import torch

from medseg.config.budget import Configuration
from medseg.config.plans import Plans
from medseg.inference.network import network_for
from medseg.losses.registry import LossSettings, build_loss, loss_entry
from medseg.planning.budget import budget_choice, candidates, describe
from medseg.planning.fingerprint import Fingerprint
from medseg.planning.plans import Budget, make_plans
from medseg.training.amp import amp_dtype, cpu_bf16
from medseg.training.optim import build_optimizer

__all__ = ["example_batch", "measure_step_seconds", "plan_for_budget"]

logger = logging.getLogger(__name__)


def example_batch(plans: Plans, extras: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """A random batch of the planned shape, for measuring a training step before training."""
    labels, batch, patch = plans.data.labels, plans.train.batch_size, plans.patch_size
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, len(plans.data.channel_names), *patch, generator=generator)
    shape = (batch, labels.n_outputs if labels.overlapping else 1, *patch)
    target = (torch.rand(shape, generator=generator) > 0.5).float() if labels.overlapping else torch.zeros(shape).long()
    return image, target, {name: torch.zeros(batch, labels.n_outputs, *patch) for name in extras}


def measure_step_seconds(plans: Plans, device: torch.device, *, steps: int = 2, limit_s: float = 30.0) -> float:
    """Seconds of one training step (forward, loss, backward, optimiser) of ``plans`` on ``device``: the
    fastest of ``steps`` after a warm-up step; fewer when the steps so far took ``limit_s``."""
    cfg = plans.train
    model = network_for(plans, generator=torch.Generator().manual_seed(0)).to(device)
    overlapping = plans.data.labels.overlapping
    extras = loss_entry(cfg.loss, overlapping=overlapping).requires
    settings = LossSettings(cfg.include_background, cfg.batch_dice, cfg.loss_params)
    loss_fn = build_loss(cfg.loss, settings, overlapping=overlapping, n_outputs=plans.model.n_outputs)
    optimizer = build_optimizer(list(model.parameters()), cfg)
    image, target, extra = example_batch(plans, extras)
    image, target = image.to(device), target.to(device)
    extra = {k: v.to(device) for k, v in extra.items()}
    dtype = amp_dtype(cfg.amp, device) if device.type == "cuda" else None
    model.train()
    times: list[float] = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            loss = loss_fn(model(image), target, **extra)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
        if sum(times) > limit_s:
            break
    return min(times[1:]) if len(times) > 1 else times[0]


def plan_for_budget(fp: Fingerprint, budget: Budget, device: torch.device) -> Plans:
    """Plan every candidate of ``budget.time_budget_s``, time each on ``device``, keep the one the rule
    picks, with the measurements in ``plans.budget``."""
    started = time.perf_counter()
    planned: list[Plans] = []
    records: list[Configuration] = []
    for name, candidate in candidates(fp, budget):
        plans = make_plans(fp, candidate)
        record = describe(name, candidate, plans, fp)
        shape = (record.patch_size, record.target_spacing, record.batch_size, record.width_factor)
        if any((r.patch_size, r.target_spacing, r.batch_size, r.width_factor) == shape for r in records):
            continue  # the same configuration under another name
        if record.width_factor != 1.0 and plans.model == planned[0].model:
            continue  # the model has no width to narrow (not a U-Net of medseg's own)
        seconds = measure_step_seconds(plans, device)
        logger.info(
            "budget candidate %s: patch %s, spacing %s, batch %d, width x%g: %.3f s per step", name, *shape, seconds
        )
        planned.append(plans)
        records.append(replace(record, step_seconds=round(seconds, 4)))
    choice = budget_choice(records, budget.time_budget_s, _device_name(device), time.perf_counter() - started)
    chosen = choice.configurations[choice.chosen]
    logger.info(
        "time budget %.0f s: %s (patch %s, batch %d, about %d steps of %.3f s)",
        budget.time_budget_s,
        chosen.name,
        chosen.patch_size,
        chosen.batch_size,
        chosen.steps,
        chosen.step_seconds,
    )
    return replace(planned[choice.chosen], budget=choice)


def _device_name(device: torch.device) -> str:
    """'cpu: AMD EPYC 7B13' or 'cuda:0: NVIDIA H200', written next to the measurements."""
    if device.type == "cuda":
        return f"{device}: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_bf16().model}"
