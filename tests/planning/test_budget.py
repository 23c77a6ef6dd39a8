"""Budget-aware planning: the candidates, the rule on made-up step times (pure), and the timed plan recorded
in plans.json on real measurements."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medseg.apps.cli.app import main
from medseg.config.budget import Configuration
from medseg.config.plans import load_plans
from medseg.labels import LabelSpec
from medseg.planning.budget import (
    FULL_WIDTH_STEPS,
    MIN_STEPS,
    MIN_THICKNESS,
    STEP_FRACTION,
    candidates,
    choose,
    coverage,
    thickness_voxels,
)
from medseg.planning.fingerprint import Fingerprint, IntensityStats
from medseg.planning.plans import Budget, make_plans
from medseg.synthetic import SyntheticSpec, write_dataset


def _fp(shape: tuple[int, ...], spacing: tuple[float, ...], n: int = 5) -> Fingerprint:
    return Fingerprint(
        name="t",
        shapes=(shape,) * n,
        spacings=(spacing,) * n,
        cropped_shapes=(shape,) * n,
        channel_names=("CT",),
        labels=LabelSpec({0: "bg", 1: "lung", 2: "heart"}, (0, 1, 2)),
        foreground_intensity=(IntensityStats(10.0, 5.0, -100.0, 300.0),),
        file_ending=".png",
    )


def _config(
    name: str, cover: float, spacing: float, step_s: float, width: float = 1.0, thickness: float = 0.0
) -> Configuration:
    return Configuration(
        name, 1.0, 0, 2, (256, 256), (spacing, spacing), cover, step_s, width_factor=width, thickness=thickness
    )


SECONDS = 900.0  # a 15-minute budget: MIN_STEPS steps need steps of at most 0.765 s
AFFORDABLE = STEP_FRACTION * SECONDS / MIN_STEPS


def test_the_largest_affordable_coverage_wins() -> None:
    configs = [
        _config("patches, full resolution", 0.25, 1.0, 0.3),
        _config("whole image, coarse", 1.0, 2.0, 0.3),
        _config("whole image, full resolution", 1.0, 1.0, AFFORDABLE * 2),  # buys 500 steps: not affordable
    ]
    chosen, timed = choose(configs, SECONDS)
    assert chosen == 1
    assert [c.steps for c in timed] == [int(STEP_FRACTION * SECONDS / c.step_seconds) for c in configs]
    assert timed[2].steps < MIN_STEPS <= timed[1].steps


def test_equal_coverage_prefers_the_finer_spacing_then_more_steps() -> None:
    configs = [
        _config("coarse", 1.0, 2.0, 0.1),
        _config("fine", 0.98, 1.0, 0.5),
        _config("fine, faster", 1.0, 1.0, 0.4),
    ]
    assert choose(configs, SECONDS)[0] == 2  # 0.98 and 1.0 round to the same coverage; finer; then more steps


FULL_WIDTH_S = STEP_FRACTION * SECONDS / FULL_WIDTH_STEPS  # the slowest step that still buys full width


def test_the_narrower_network_wins_only_when_full_width_buys_too_few_steps() -> None:
    slow = [_config("default", 1.0, 1.0, FULL_WIDTH_S * 2), _config("narrower", 1.0, 1.0, FULL_WIDTH_S, 0.5)]
    assert choose(slow, SECONDS)[0] == 1  # full width: 1500 steps, below FULL_WIDTH_STEPS
    fast = [_config("default", 1.0, 1.0, FULL_WIDTH_S * 0.9), _config("narrower", 1.0, 1.0, FULL_WIDTH_S / 2, 0.5)]
    assert choose(fast, SECONDS)[0] == 0  # full width buys enough steps: kept although narrower buys more


def test_a_narrower_network_never_trades_away_context() -> None:
    configs = [
        _config("whole image", 1.0, 2.0, FULL_WIDTH_S * 2),  # affordable, too few steps for full width
        _config("narrower, patches", 0.25, 2.0, FULL_WIDTH_S / 4, 0.5),
    ]
    assert choose(configs, SECONDS)[0] == 0  # coverage first: the narrow candidate sees less


def test_width_factor_narrows_the_unet_only() -> None:
    fp = _fp((36, 50, 35), (1.0, 1.0, 1.0))
    full = make_plans(fp, Budget(device="cpu"))
    narrow = make_plans(fp, Budget(device="cpu", width_factor=0.5))
    assert narrow.model.features == tuple(f // 2 for f in full.model.features)  # type: ignore[attr-defined]
    assert narrow.patch_size == full.patch_size and narrow.model.strides == full.model.strides  # type: ignore[attr-defined]
    segresnet = make_plans(fp, Budget(device="cpu", model="segresnet", width_factor=0.5))
    assert segresnet.model == make_plans(fp, Budget(device="cpu", model="segresnet")).model


def test_when_nothing_is_affordable_the_most_steps_win() -> None:
    configs = [_config("big", 1.0, 1.0, 5.0), _config("small", 0.1, 1.0, 2.0)]
    chosen, timed = choose(configs, SECONDS)
    assert chosen == 1 and max(c.steps for c in timed) < MIN_STEPS


def test_a_large_2d_image_gets_a_whole_image_candidate_that_covers_it() -> None:
    fp = _fp((1024, 1024), (0.35, 0.35))
    named = dict(candidates(fp, Budget(device="cpu", time_budget_s=SECONDS)))
    assert next(iter(named)) == "default" and {"larger patch", "whole image, coarser", "half-way coarser"} <= set(named)
    whole = make_plans(fp, named["whole image, coarser"])
    assert coverage(whole, fp) == pytest.approx(1.0, abs=0.02)
    assert whole.data.target_spacing[0] == pytest.approx(0.35 * 4, rel=0.01)  # 1024² -> 256²
    default = make_plans(fp, named["default"])
    assert coverage(default, fp) < coverage(whole, fp)


def test_a_small_3d_image_gets_no_coarser_candidate() -> None:
    fp = _fp((36, 50, 35), (1.0, 1.0, 1.0))  # hippocampus-sized: already inside one patch
    names = [name for name, _ in candidates(fp, Budget(device="cpu", time_budget_s=SECONDS))]
    assert names == ["default", "larger patch", "smaller patch, larger batch", "narrower network"]


def test_budget_fields_steer_make_plans() -> None:
    fp = _fp((512, 512), (1.0, 1.0))
    base = make_plans(fp, Budget(device="cpu"))
    coarse = make_plans(fp, Budget(device="cpu", spacing_factor=2.0, batch_size=6, patch_voxels=128**2))
    assert coarse.data.target_spacing == (2.0, 2.0) and coarse.train.batch_size == 6
    assert np.prod(coarse.patch_size) <= np.prod(base.patch_size)


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_plan_with_a_time_budget_records_the_measured_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 192² images: the default patch covers them; the smaller-patch candidate differs (on 64² images every
    # candidate plans the same and only one is timed)
    data = write_dataset(tmp_path / "data", SyntheticSpec(ndim=2, shape=(192, 192)), n_cases=3, seed=0)
    monkeypatch.setenv("COLUMNS", "200")  # rich: one line per table row
    run = tmp_path / "run"
    argv = ["plan", str(data), "--out", str(run), "--device", "cpu", "--time-budget", "20m"]
    assert _medseg(argv, monkeypatch) == 0
    plans = load_plans(run / "plans.json")
    assert plans.budget is not None and plans.budget.time_budget_s == 1200 and plans.budget.device.startswith("cpu: ")
    configs = plans.budget.configurations
    assert len(configs) >= 2 and all(c.step_seconds > 0 for c in configs)
    chosen, _ = choose([replace(c, steps=0) for c in configs], 1200)
    assert chosen == plans.budget.chosen  # the recorded choice is the rule's on the recorded times
    picked = configs[plans.budget.chosen]
    assert tuple(plans.patch_size) == picked.patch_size and plans.train.batch_size == picked.batch_size
    assert plans.train.time_budget_s == 1200
    shown = capsys.readouterr().out
    assert "← chosen" in shown and picked.name in shown  # `medseg plan` shows the table before training


def test_no_budget_plan_keeps_the_default_plan(msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed, none = tmp_path / "fixed", tmp_path / "none"
    base = ["plan", str(msd_2d), "--device", "cpu"]
    assert _medseg([*base, "--out", str(fixed), "--time-budget", "5m", "--no-budget-plan"], monkeypatch) == 0
    assert _medseg([*base, "--out", str(none)], monkeypatch) == 0
    a, b = json.loads((fixed / "plans.json").read_text()), json.loads((none / "plans.json").read_text())
    assert a["budget"] is None and b["budget"] is None and a["patch_size"] == b["patch_size"]
    assert a["train"]["time_budget_s"] == 300 and b["train"]["time_budget_s"] == 0


@pytest.mark.parametrize(("shape", "spacing"), [((1024, 1024), (0.35, 0.35)), ((96, 160, 160), (1.0, 0.8, 0.8))])
def test_the_smaller_patch_candidate_keeps_the_voxels_per_step(shape, spacing) -> None:  # type: ignore[no-untyped-def]
    fp = _fp(shape, spacing)
    named = dict(candidates(fp, Budget(device="cpu", time_budget_s=SECONDS)))
    default, small = make_plans(fp, named["default"]), make_plans(fp, named["smaller patch, larger batch"])
    assert np.prod(small.patch_size) < np.prod(default.patch_size)
    assert small.train.batch_size > default.train.batch_size
    per_step = [np.prod(p.patch_size) * p.train.batch_size for p in (default, small)]
    assert per_step[1] == pytest.approx(per_step[0], rel=0.5)


def test_a_small_image_times_one_configuration(msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    argv = ["plan", str(msd_2d), "--out", str(run), "--device", "cpu", "--time-budget", "5m"]
    assert _medseg(argv, monkeypatch) == 0
    budget = load_plans(run / "plans.json").budget
    assert budget is not None  # 64²: every patch candidate plans alike; the half-width network differs
    assert [c.name for c in budget.configurations] == ["default", "narrower network"]
    default, narrow = budget.configurations
    assert narrow.width_factor == 0.5 and narrow.patch_size == default.patch_size


def test_coarsening_stops_where_the_thinnest_class_would_vanish() -> None:
    # DRIVE-like: vessels 3.3 px thick at spacing 1; the whole image fits at spacing 2.24 (1.5 px: gone)
    configs = [
        _config("default", 0.25, 1.12, 0.3, thickness=3.3 / 1.12),
        _config("half-way", 0.6, 1.5, 0.3, thickness=3.3 / 1.5),
        _config("whole image", 1.0, 2.24, 0.3, thickness=3.3 / 2.24),
    ]
    assert all(c.thickness < MIN_THICKNESS for c in configs)
    assert choose(configs, SECONDS)[0] == 0  # none keeps the vessels: the finest affordable spacing
    # ISBI-like: membranes 5 px; half-way keeps them (3.5 px), the whole image at spacing 2 does not (2.5)
    isbi = [
        _config("default", 0.25, 1.0, 0.3, thickness=5.0),
        _config("half-way", 0.62, 1.41, 0.3, thickness=5.0 / 1.41),
        _config("whole image", 1.0, 2.0, 0.3, thickness=2.5),
    ]
    assert choose(isbi, SECONDS)[0] == 1
    thick = [replace(c, thickness=c.thickness * 10) for c in isbi]  # clavicle-like: thick enough everywhere
    assert choose(thick, SECONDS)[0] == 2
    unknown = [replace(c, thickness=0.0) for c in isbi]  # not measured: coverage first, as before
    assert choose(unknown, SECONDS)[0] == 2


def test_thickness_in_voxels_uses_the_thinnest_class() -> None:
    fp = replace(_fp((64, 64), (1.0, 1.0)), thickness_mm=(30.0, float("nan"), 4.0))
    assert thickness_voxels(fp, (2.0, 2.0)) == pytest.approx(2.0)
    assert thickness_voxels(_fp((64, 64), (1.0, 1.0)), (1.0, 1.0)) == 0.0
