from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config.plans import ChannelNorm, DataConfig, InferConfig, Plans, TrainConfig, load_plans, save_plans
from medseg.errors import ConfigError
from medseg.labels import LabelSpec
from medseg.models.unet_config import nnunet_config


def _plans() -> Plans:
    data = DataConfig(
        ndim=2,
        channel_names=("CT",),
        labels=LabelSpec({0: "background", 1: "lung"}, (0, 255)),
        target_spacing=(0.8, 0.8),
        normalization=(ChannelNorm("ct", -1000, 400, -300, 200),),
    )
    model = nnunet_config(2, 1, 2, (64, 64), (0.8, 0.8), base_features=4, max_features=16)
    return Plans("toy", data, model, TrainConfig(patch_size=(64, 64)), InferConfig(patch_size=(64, 64)))


def test_round_trip(tmp_path: Path) -> None:
    plans = _plans()
    save_plans(plans, tmp_path / "plans.json")
    loaded = load_plans(tmp_path / "plans.json")
    assert loaded == plans
    assert isinstance(loaded.train.patch_size, tuple)
    assert loaded.data.labels.names == {0: "background", 1: "lung"}  # int keys restored from JSON strings


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["train"].update(learning_rat=0.1), r"plans\.train: unknown key\(s\) \['learning_rat'\]"),
        (lambda d: d["train"].update(optimizer="adam"), "'adam' is not one of"),
        (lambda d: d["data"].pop("ndim"), "missing key 'ndim'"),
        (lambda d: d.update(version=99), "plans version 99"),
        (lambda d: d["train"].update(batch_size="two"), "expected int"),
    ],
)
def test_invalid_plans_are_refused(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    save_plans(_plans(), tmp_path / "plans.json")
    data = json.loads((tmp_path / "plans.json").read_text())
    edit(data)
    (tmp_path / "plans.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message) as info:
        load_plans(tmp_path / "plans.json")
    assert "plans.json" in str(info.value)


def test_missing_and_broken_plans(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_plans(tmp_path / "plans.json")
    (tmp_path / "plans.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_plans(tmp_path / "plans.json")
