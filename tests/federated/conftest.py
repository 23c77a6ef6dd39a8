"""Tiny federations: synthetic 2D sites and a tiny shared plans.json (a fraction of a second per epoch)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medseg.config.plans import save_plans
from medseg.federated.options import SiteConfig
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import TrainOptions
from tests.training.tiny_runs import plan_tiny_run

SPEC = SyntheticSpec(ndim=2, shape=(64, 64))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # sites train in threads on a busy machine: one OpenMP thread each


@pytest.fixture
def sites(tmp_path: Path) -> list[SiteConfig]:
    """Three sites of 4, 4 and 3 synthetic cases (different seeds: different patients)."""
    out = []
    for i, n in enumerate([4, 4, 3]):
        dataset = write_dataset(tmp_path / f"data{i}", SPEC, n_cases=n, seed=10 + i, layout="msd")
        out.append(SiteConfig(f"site{i}", dataset, tmp_path / f"work{i}", device="cpu", folds=3))
    return out


@pytest.fixture
def tiny_plans(tmp_path: Path, sites: list[SiteConfig]) -> Path:
    """A plans.json every site shares: tiny U-Net, 2 iterations of batch 4 per epoch, no AMP probe."""
    plans = plan_tiny_run(sites[0].dataset, tmp_path / "planned", TrainOptions(device="cpu", amp="off"))
    train = replace(plans.train, epochs=2, iterations_per_epoch=2, num_workers=0, val_every=1)
    path = tmp_path / "plans.json"
    save_plans(replace(plans, train=train), path)
    return path
