"""One plan for all sites from their merged fingerprints: what a centralised plan of the pooled cases gives."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.datasets.dataset import load_dataset
from medseg.errors import ConfigError
from medseg.federated.options import SiteConfig
from medseg.federated.planning import (
    fingerprint_from_json,
    fingerprint_to_json,
    merge_fingerprints,
    plan_federation,
)
from medseg.labels import LabelSpec
from medseg.planning.fingerprint import Fingerprint, IntensityStats, fingerprint
from medseg.planning.plans import target_spacing


def test_merged_fingerprint_pools_cases_and_moments(sites: list[SiteConfig]) -> None:
    fps = [fingerprint_from_json(fingerprint_to_json(fingerprint(load_dataset(s.dataset))), s.name) for s in sites]
    merged = merge_fingerprints(fps, [s.name for s in sites], "fed")
    assert merged.shapes == tuple(s for fp in fps for s in fp.shapes) and len(merged.shapes) == 11
    assert target_spacing(np.array(merged.spacings)) == target_spacing(np.array([s for fp in fps for s in fp.spacings]))
    plans = plan_federation(merged, device="cpu", epochs=6, model="unet", seed=3, changes={"iterations_per_epoch": 7})
    assert plans.train.epochs == 6 and plans.train.iterations_per_epoch == 7 and plans.train.seed == 3


def _fp(cases: int, mean: float, std: float, channels: tuple[str, ...] = ("CT",)) -> Fingerprint:
    stats = IntensityStats(mean=mean, std=std, p00_5=mean - 2, p99_5=mean + 2)
    return Fingerprint("x", ((8, 8),) * cases, ((1.0, 1.0),) * cases, ((8, 8),) * cases, channels,
                       load_labels(), (stats,), ".nii.gz")  # fmt: skip


def load_labels() -> LabelSpec:
    return LabelSpec({0: "background", 1: "a"})


def test_intensity_moments_pool_exactly() -> None:
    # site A: 1 case, mean 0, std 1; site B: 3 cases, mean 4, std 2 -> mean 3, var = (1*(1+9) + 3*(4+1)) / 4 = 6.25
    merged = merge_fingerprints([_fp(1, 0.0, 1.0), _fp(3, 4.0, 2.0)], ["a", "b"], "fed")
    stats = merged.foreground_intensity[0]
    assert stats.mean == pytest.approx(3.0) and stats.std == pytest.approx(2.5)
    assert stats.p00_5 == pytest.approx(1.0)


def test_sites_with_other_channels_are_refused() -> None:
    with pytest.raises(ConfigError, match="site b: its channels"):
        merge_fingerprints([_fp(1, 0.0, 1.0), _fp(1, 0.0, 1.0, ("MR",))], ["a", "b"], "fed")
