"""The 2D configuration of 3D data (nnU-Net's 2d): planned on the in-plane axes, a 2D network applied slice by
slice, trained and predicted on 3D arrays, and written in the 3D scans' geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import medseg
from medseg.errors import ConfigError
from medseg.inference.network import network_for
from medseg.io.images import read_image, read_label
from medseg.labels import LabelSpec
from medseg.models.slices import SliceWise
from medseg.planning.fingerprint import Fingerprint, IntensityStats
from medseg.planning.plans import Budget, make_plans


def _fp(shape: tuple[int, ...], spacing: tuple[float, ...]) -> Fingerprint:
    return Fingerprint(
        "t", (shape,) * 3, (spacing,) * 3, (shape,) * 3, ("MRI",), LabelSpec({0: "bg", 1: "a"}, (0, 1)),
        (IntensityStats(0.0, 1.0, -3.0, 3.0),), ".nii.gz",
    )  # fmt: skip


def test_the_2d_configuration_plans_one_slice_patches_and_a_2d_network() -> None:
    fp = _fp((40, 128, 128), (5.0, 0.8, 0.8))  # thick slices
    plans = make_plans(fp, Budget(configuration="2d"))
    assert plans.configuration == "2d" and plans.data.ndim == 3 and plans.model.ndim == 2
    assert plans.patch_size[0] == 1 and len(plans.patch_size) == 3
    assert plans.data.target_spacing[0] == 5.0  # axis 0 is not resampled coarser
    assert 0 not in plans.train.augment.flip_axes and plans.train.augment.rotate_in_plane_only
    assert plans.patch_size == (1, 128, 128) and plans.train.batch_size == 8  # the 2D batch rule: 2 x 256²
    native = make_plans(fp, Budget(configuration="3d"))
    assert native.configuration == "native" and native.model.ndim == 3
    with pytest.raises(ConfigError, match="is for 3D data"):
        make_plans(_fp((64, 64), (1.0, 1.0)), Budget(configuration="2d"))
    with pytest.raises(ConfigError, match="unknown configuration"):
        make_plans(fp, Budget(configuration="2.5d"))


def test_slicewise_maps_every_slice_through_the_2d_network() -> None:
    plans = make_plans(_fp((6, 32, 32), (3.0, 1.0, 1.0)), Budget(configuration="2d"))
    net = network_for(plans, generator=torch.Generator().manual_seed(0)).eval()
    assert isinstance(net, SliceWise)
    x = torch.randn(2, 1, 3, *plans.patch_size[1:])
    with torch.no_grad():
        out = net(x)
        first = out[0] if isinstance(out, list) else out
        assert first.shape == (2, 2, 3, *plans.patch_size[1:])
        alone = net.net(x[1:2, :, 2])  # the 2D network on one slice gives that slice's output
        alone = alone[0] if isinstance(alone, list) else alone
    torch.testing.assert_close(first[1:2, :, 2], alone, rtol=1e-4, atol=1e-5)


def test_train_and_predict_in_the_2d_configuration(msd_3d: Path, tmp_path: Path) -> None:
    run = tmp_path / "run2d"
    options = medseg.TrainOptions(epochs=2, iterations_per_epoch=4, device="cpu", configuration="2d")
    medseg.train(msd_3d, run, options)
    metrics = json.loads((run / "metrics.json").read_text())
    plans = medseg.load_plans(run / "plans.json")
    assert plans.configuration == "2d" and plans.model.ndim == 2
    assert metrics["summary"] and all(np.isfinite(s["dice"]["mean"]) for s in metrics["summary"].values())
    scan = sorted((msd_3d / "imagesTr").iterdir())[0]
    out = tmp_path / "pred"
    medseg.Predictor.from_run(run).predict_files([("c", [scan])], out)
    label, geometry = read_label(out / scan.name)
    image, image_geometry = read_image(scan)
    assert label.shape == image.shape[-3:] and geometry.matches(image_geometry)


def test_cli_plan_configuration_2d(msd_3d: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medseg.apps.cli.app import app

    result = CliRunner().invoke(app, ["plan", str(msd_3d), "--out", str(tmp_path / "r"), "--configuration", "2d"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "plans.json").read_text())["configuration"] == "2d"
    bad = CliRunner().invoke(app, ["plan", str(msd_3d), "--out", str(tmp_path / "s"), "--configuration", "4d"])
    assert bad.exit_code != 0 and "unknown configuration" in str(bad.exception) and not (tmp_path / "s").exists()
