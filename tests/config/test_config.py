from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from medseg.config.plans import ChannelNorm, DataConfig, InferConfig, Plans, TrainConfig, load_plans, save_plans
from medseg.errors import ConfigError
from medseg.labels import LabelSpec
from medseg.models.configs import ModelInputs
from medseg.models.registry import MODELS
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
    return Plans("toy", data, (64, 64), model, TrainConfig(), InferConfig())


def test_round_trip(tmp_path: Path) -> None:
    plans = _plans()
    save_plans(plans, tmp_path / "plans.json")
    loaded = load_plans(tmp_path / "plans.json")
    assert loaded == plans
    assert isinstance(loaded.patch_size, tuple)
    assert loaded.data.labels.names == {0: "background", 1: "lung"}  # int keys restored from JSON strings


# 2D plans: the 3D-only networks (vnet) round-trip in tests/models/test_monai_nets.py
@pytest.mark.parametrize("name", sorted(name for name, entry in MODELS.items() if 2 in entry.ndims))
def test_plans_with_each_model_config_round_trip(name: str, tmp_path: Path) -> None:
    """plans.json records the model's name and reading it picks the config class that serves it."""
    model = MODELS[name].plan(ModelInputs(2, 1, 2, (64, 64), (0.8, 0.8)))
    plans = dataclasses.replace(_plans(), model=model)
    save_plans(plans, tmp_path / "plans.json")
    assert json.loads((tmp_path / "plans.json").read_text())["model"]["name"] == name
    loaded = load_plans(tmp_path / "plans.json")
    assert loaded == plans and type(loaded.model) is MODELS[name].config


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


def test_plans_json_names_the_model_and_holds_one_patch_size(tmp_path: Path) -> None:
    save_plans(_plans(), tmp_path / "plans.json")
    data = json.loads((tmp_path / "plans.json").read_text())
    assert data["version"] == 2
    assert data["model"]["name"] == "unet"
    assert data["patch_size"] == [64, 64]
    assert "patch_size" not in data["train"] and "patch_size" not in data["infer"] and "model_name" not in data
    assert data["data"]["labels"] == {
        "names": {"0": "background", "1": "lung"},
        "values": [0, 255],
        "overlapping": False,
    }


FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "plans_v1.json"


def test_plans_written_by_medseg_0_1_0_still_load(tmp_path: Path) -> None:
    """tests/fixtures/plans_v1.json was written by ``medseg plan`` of release 0.1.0 (commit b0a4697)."""
    old = json.loads(FIXTURE_V1.read_text())
    plans = load_plans(FIXTURE_V1)
    assert plans.version == 2
    assert plans.model.name == "unet" and plans.model.features == tuple(old["model"]["features"])
    assert plans.patch_size == tuple(old["train"]["patch_size"]) == tuple(old["infer"]["patch_size"])
    assert plans.data.labels.names == {int(k): v for k, v in old["data"]["label_names"].items()}
    assert plans.data.labels.values == tuple(old["data"]["label_values"])
    assert plans.data.labels.overlapping is False
    assert plans.train.loss == "dice+ce"
    assert plans.train.learning_rate == old["train"]["learning_rate"]
    save_plans(plans, tmp_path / "plans.json")  # written back as version 2, which loads to the same plans
    assert load_plans(tmp_path / "plans.json") == plans


def test_a_v1_file_with_two_patch_sizes_says_what_to_do(tmp_path: Path) -> None:
    old = json.loads(FIXTURE_V1.read_text())
    old["infer"]["patch_size"] = [32, 32]
    (tmp_path / "plans.json").write_text(json.dumps(old))
    with pytest.raises(
        ConfigError, match=r"plans.json: .*train.patch_size \[64, 64\] and infer.patch_size \[32, 32\].*make them equal"
    ):
        load_plans(tmp_path / "plans.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["model"].update(name="no-such-net"),
            re.escape(f"plans.model.name: 'no-such-net' is not one of {sorted(MODELS)}"),
        ),
        (lambda d: d.update(patch_size=[64]), r"patch_size \(64,\) must have 2 positive sizes"),
        (lambda d: d.update(version=2.5), r"plans version 2.5 is unknown"),
    ],
)
def test_bad_model_name_patch_or_version_is_one_clear_line(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    save_plans(_plans(), tmp_path / "plans.json")
    data = json.loads((tmp_path / "plans.json").read_text())
    edit(data)
    (tmp_path / "plans.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_plans(tmp_path / "plans.json")
