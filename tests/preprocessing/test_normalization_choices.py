"""--normalization: CT window presets, [0, 1] rescaling and the other named schemes, recorded in the plans
and applied by preprocessing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.apps.cli.app import main
from medseg.config.plans import ChannelNorm
from medseg.config.windows import HU_WINDOWS, parse_normalization
from medseg.errors import ConfigError
from medseg.preprocessing.forward import unit_range


def test_window_presets_are_level_and_width_in_hounsfield_units() -> None:
    for name, (level, width) in HU_WINDOWS.items():
        assert parse_normalization(f"window:{name}") == ("window", level - width / 2, level + width / 2)
    assert parse_normalization("window:40,400") == parse_normalization("window:soft-tissue") == ("window", -160, 240)
    assert parse_normalization(" Rescale ") == ("rescale", 0.0, 0.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("window:nowhere", "give a window preset"),
        ("window:40,-5", "the window width must be positive"),
        ("minmax", "is not one of auto, zscore, ct, rescale"),
    ],
)
def test_bad_names_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_normalization(text)


def test_a_window_maps_its_range_to_the_unit_interval() -> None:
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0], np.float32)
    out = unit_range(hu, ChannelNorm("window", -1350.0, 150.0))
    assert out.dtype == np.float32 and out.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_rescale_uses_the_cases_own_percentiles() -> None:
    values = np.linspace(0, 1000, 1001, dtype=np.float32)
    out = unit_range(values, ChannelNorm("rescale"))
    low, high = np.percentile(values, (0.5, 99.5))
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[500] == pytest.approx((500 - low) / (high - low))


def _plan(dataset: Path, run: Path, flag: str, monkeypatch: pytest.MonkeyPatch) -> int:
    argv = ["medseg", "plan", str(dataset), "--out", str(run), "--device", "cpu", "--normalization", flag]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_the_choice_is_recorded_in_the_plans(msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _plan(msd_2d, tmp_path / "run", "window:lung", monkeypatch) == 0
    norm = json.loads((tmp_path / "run" / "plans.json").read_text())["data"]["normalization"]
    assert norm == [
        {"scheme": "window", "clip_low": -1350.0, "clip_high": 150.0, "mean": 0.0, "std": 1.0, "landmarks": []}
    ]


def test_a_bad_choice_is_one_line_and_writes_nothing(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _plan(msd_2d, tmp_path / "run", "window:mars", monkeypatch) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the check's progress output
    assert last.startswith("error: --normalization 'window:mars': give a window preset")
    assert not (tmp_path / "run").exists()
