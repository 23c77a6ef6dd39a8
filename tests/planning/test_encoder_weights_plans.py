"""Planning with pretrained encoder weights: the file is checked and recorded, and the inputs are planned
to be normalised as ImageNet's weights expect."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.config.plans import ChannelNorm, DataConfig
from medseg.errors import ConfigError
from medseg.labels import LabelSpec
from medseg.planning.fingerprint import Fingerprint, IntensityStats
from medseg.planning.plans import Budget, make_plans
from medseg.preprocessing.forward import imagenet_normalize, normalize
from tests.models.test_resnet_unet import torchvision_like_state

LABELS = LabelSpec({0: "bg", 1: "a"}, (0, 1))
CT = IntensityStats(40.0, 300.0, -1000.0, 1500.0)


def fingerprint(names: tuple[str, ...], stats: IntensityStats, file_ending: str = ".nii.gz") -> Fingerprint:
    n = len(names)
    return Fingerprint(
        "t", ((64, 64),) * 2, ((1.0, 1.0),) * 2, ((64, 64),) * 2, names, LABELS, (stats,) * n, file_ending
    )


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-layout ResNet-18 at ImageNet's width (64), random weights, as the plan for 2D needs."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision_like_state(18, width=64), path)
    return path


def test_the_file_is_recorded_with_its_digest_and_the_input_is_planned_as_imagenets(resnet18_file: Path) -> None:
    budget = Budget(model="resnet18-unet", encoder_weights=str(resnet18_file), frozen_stages=2)
    plans = make_plans(fingerprint(("CT",), CT), budget)
    model = plans.model
    assert model.name == "resnet18-unet" and model.encoder_weights == str(resnet18_file.resolve())
    assert model.encoder_weights_sha256 == hashlib.sha256(resnet18_file.read_bytes()).hexdigest()
    assert model.frozen_stages == 2
    # CT: the foreground window (as the ct scheme) becomes [0, 1], then timm's grey ImageNet statistics
    assert plans.data.normalization == (ChannelNorm("imagenet", -1000.0, 1500.0, 0.449, 0.226),)


def test_without_weights_the_resnet_unet_keeps_medsegs_normalisation() -> None:
    plans = make_plans(fingerprint(("CT",), CT), Budget(model="resnet34-unet"))
    assert plans.model.encoder_weights == "" and plans.data.normalization[0].scheme == "ct"


def test_rgb_8_bit_images_map_0_255_with_the_rgb_statistics(resnet18_file: Path) -> None:
    stats = IntensityStats(120.0, 40.0, 3.0, 250.0)
    fp = fingerprint(("R", "G", "B"), stats, ".png")
    budget = Budget(model="resnet18-unet", encoder_weights=str(resnet18_file))
    norms = make_plans(fp, budget).data.normalization
    assert [(n.scheme, n.clip_low, n.clip_high) for n in norms] == [("imagenet", 0.0, 255.0)] * 3
    assert [n.mean for n in norms] == [0.485, 0.456, 0.406] and [n.std for n in norms] == [0.229, 0.224, 0.225]


def test_arbitrary_units_take_each_cases_own_percentiles(resnet18_file: Path) -> None:
    fp = fingerprint(("T2",), IntensityStats(800.0, 50.0, 600.0, 1000.0))
    norms = make_plans(fp, Budget(model="resnet18-unet", encoder_weights=str(resnet18_file))).data.normalization
    assert norms == (ChannelNorm("imagenet", 0.0, 0.0, 0.449, 0.226),)


def test_weights_for_a_model_without_a_pretrained_encoder_name_the_ones_with(resnet18_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model 'segresnet' has no pretrained encoder .*resnet18-unet, resnet34"):
        make_plans(fingerprint(("CT",), CT), Budget(model="segresnet", encoder_weights=str(resnet18_file)))
    with pytest.raises(ConfigError, match=r"^--frozen-stages freezes pretrained layers: give their file"):
        make_plans(fingerprint(("CT",), CT), Budget(model="resnet18-unet", frozen_stages=1))


def test_a_file_of_another_depth_is_refused_at_plan_time(resnet18_file: Path) -> None:
    budget = Budget(model="resnet50-unet", encoder_weights=str(resnet18_file))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(resnet18_file))}: lacks 165 tensor"):
        make_plans(fingerprint(("CT",), CT), budget)


def test_imagenet_normalisation_by_hand() -> None:
    channel = np.array([[-10.0, 0.0, 127.5], [255.0, 300.0, 51.0]], dtype=np.float32)
    out = imagenet_normalize(channel, ChannelNorm("imagenet", 0.0, 255.0, 0.5, 0.25))
    want = (np.clip(channel, 0, 255) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert out.dtype == np.float32 and out[0, 2] == pytest.approx(0.0) and out[1, 0] == pytest.approx(2.0)


def test_equal_clip_bounds_use_the_cases_own_percentiles() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(100, 10, (32, 32)), rng.normal(5000, 800, (32, 32))
    data = DataConfig(2, ("T2",), LABELS, (1.0, 1.0), (ChannelNorm("imagenet", 0.0, 0.0, 0.449, 0.226),))
    for image in (small, large):
        out = normalize(image[None].astype(np.float32), data)[0]
        low, high = np.percentile(image, (0.5, 99.5))
        want = (np.clip(image, low, high) - low) / (high - low)
        np.testing.assert_allclose(out, (want - 0.449) / 0.226, rtol=1e-4, atol=1e-4)
        assert out.min() == pytest.approx(-0.449 / 0.226, abs=1e-4)
        assert out.max() == pytest.approx((1 - 0.449) / 0.226, abs=1e-4)
