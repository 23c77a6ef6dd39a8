"""``export_bundle``: what a bundle holds, its checksums, the parity gate, TorchScript, INT8 and ensembles."""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from medseg_runtime import read_bundle

from medseg.config.plans import load_plans
from medseg.datasets.dataset import load_dataset
from medseg.errors import ConfigError
from medseg.export.bundle import ExportError, ExportOptions, export_bundle
from medseg.export.runtime import BundleUnusable, load_bundle_predictor
from medseg.inference.ensemble import EnsemblePredictor, load_predictor
from medseg.io.geometry import Geometry
from medseg.io.images import read_channels
from medseg.preprocessing.cache import load_preprocessed
from medseg.run import RunDir


@pytest.fixture
def onnx_bundle(bundles: dict[str, Path]) -> Path:
    return bundles["onnx3"]


def test_bundle_holds_the_plans_card_parity_and_checksums(onnx_bundle: Path, tiny_runs: dict[str, Path]) -> None:
    plans = load_plans(tiny_runs["run3"] / "plans.json")
    manifest = read_bundle(onnx_bundle).manifest
    (config,) = manifest.configurations
    assert (manifest.format, manifest.precision) == ("onnx", "float32")
    assert manifest.labels.names == plans.data.labels.names and manifest.channel_names == plans.data.channel_names
    assert config.patch_size == plans.patch_size and config.target_spacing == plans.data.target_spacing
    assert config.mirror_axes == plans.infer.mirror_axes and config.overlap == plans.infer.overlap
    assert [n.scheme for n in config.normalization] == [n.scheme for n in plans.data.normalization]
    assert config.networks == ("networks/c0_f0.onnx",)
    card = manifest.card
    assert card["dataset"] == plans.dataset_name and card["medseg_version"] == "0.1.0" and card["created"]
    (member,) = card["members"]
    assert member["training_cases"] > 0 and "dice" in member["validation_metrics"]["1"]
    assert manifest.parity["passed"] and manifest.parity["label_agreement"] == 1.0
    assert manifest.parity["max_logit_diff"] < 1e-3
    with zipfile.ZipFile(onnx_bundle) as archive:
        listed = archive.read("checksums.sha256").decode().splitlines()
        names = set(archive.namelist())
    assert {line.split("  ")[1] for line in listed} == names - {"checksums.sha256"}


def _rewrite(bundle: Path, out: Path, change: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change.get(name, src.read(name)))
    return out


def test_a_tampered_member_is_refused_in_one_line_naming_it(onnx_bundle: Path, tmp_path: Path) -> None:
    data = bytearray(zipfile.ZipFile(onnx_bundle).read("networks/c0_f0.onnx"))
    data[len(data) // 2] ^= 0xFF
    tampered = _rewrite(onnx_bundle, tmp_path / "tampered.medseg", {"networks/c0_f0.onnx": bytes(data)})
    with pytest.raises(BundleUnusable, match=r"tampered\.medseg: member networks/c0_f0\.onnx fails its SHA-256") as err:
        load_bundle_predictor(tampered)
    assert "\n" not in str(err.value)
    extra = _rewrite(onnx_bundle, tmp_path / "extra.medseg", {})
    with zipfile.ZipFile(extra, "a") as archive:
        archive.writestr("networks/smuggled.onnx", b"x")
    with pytest.raises(BundleUnusable, match=r"member networks/smuggled\.onnx is not in checksums\.sha256"):
        load_bundle_predictor(extra)


def test_failed_parity_writes_nothing(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    """INT8 cannot meet a float32-tight logit limit: the export fails and leaves no file, not even a temporary."""
    out = tmp_path / "strict.medseg"
    options = ExportOptions(precision="int8", calibration_cases=2, max_logit_diff=1e-6)
    with pytest.raises(ExportError, match=r"strict\.medseg: not written, parity with the eager model failed: max"):
        export_bundle(tiny_runs["run3"], out, options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ndim", [3, 2])
@pytest.mark.parametrize("stretch", [1.0, 1.37])
def test_runtime_labels_equal_eager_labels(
    ndim: int, stretch: float, tiny_runs: dict[str, Path], bundles: dict[str, Path]
) -> None:
    """The runtime (numpy + onnxruntime) gives the eager predictor's labels, also when the scan's spacing
    differs from the planned one (resampling both ways) and with cropping and TTA as planned."""
    eager, runtime = load_predictor(tiny_runs[f"run{ndim}"]), load_bundle_predictor(bundles[f"onnx{ndim}"])
    for case in load_dataset(tiny_runs[f"data{ndim}"]).cases[:2]:
        image, geometry = read_channels(list(case.channels))
        geometry = replace(geometry, spacing=tuple(s * stretch for s in geometry.spacing))
        want = eager.predict_array(image, geometry)
        np.testing.assert_array_equal(runtime.predict_array(image, geometry.spacing), want)
        assert len(np.unique(want)) > 1  # a constant mask would prove little


def test_torchscript_bundle_gives_eager_labels(tiny_runs: dict[str, Path], bundles: dict[str, Path]) -> None:
    out = bundles["ts2"]
    manifest = read_bundle(out).manifest
    assert manifest.parity["max_logit_diff"] == 0.0 and manifest.configurations[0].networks[0].endswith(".pt")
    image = np.random.default_rng(0).normal(size=(1, 70, 61)).astype(np.float32)
    geometry = Geometry.identity(2, (0.9, 1.2))
    want = load_predictor(tiny_runs["run2"]).predict_array(image, geometry)
    np.testing.assert_array_equal(load_bundle_predictor(out).predict_array(image, geometry.spacing), want)


def test_int8_bundle_is_quantised_and_tracks_float32(
    tiny_runs: dict[str, Path], onnx_bundle: Path, tmp_path: Path
) -> None:
    """Static INT8 (QDQ): quantised convolutions, logits that follow float32's on training patches.

    The tiny networks are barely trained (their logits are small and close), so label agreement says little;
    the logits' correlation and relative error are what a broken calibration would ruin."""
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "int8.medseg"
    report = export_bundle(
        tiny_runs["run3"], out, ExportOptions(precision="int8", calibration_cases=3, min_label_agreement=0.8)
    )
    bundle = read_bundle(out)
    graph = onnx.load_from_string(bundle.member("networks/c0_f0.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert bundle.manifest.precision == "int8" and bundle.manifest.card["calibration_cases"] == 3
    assert report.parity.label_agreement >= 0.8
    q, f = load_bundle_predictor(out).networks[0][0], load_bundle_predictor(onnx_bundle).networks[0][0]
    patch = bundle.manifest.configurations[0].patch_size
    run = RunDir(tiny_runs["run3"])
    for case_id in run.load_record().train[:2]:
        image = load_preprocessed(run.preprocessed / f"{case_id}.npz").image
        x = np.zeros((1, image.shape[0], *patch), np.float32)
        box = tuple(slice(0, min(a, b)) for a, b in zip(image.shape[1:], patch, strict=True))
        x[(0, slice(None), *box)] = image[(slice(None), *box)]
        want, got = f(x), q(x)
        assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.95
        assert np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2)) < 0.3


def test_a_cross_validation_exports_as_one_bundle_of_its_folds(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    cv = tmp_path / "cv"
    for fold in (0, 1):
        shutil.copytree(tiny_runs["run3"], cv / f"fold_{fold}")
    (cv / "splits.json").write_text(json.dumps([]))
    eager = load_predictor(cv)
    assert isinstance(eager, EnsemblePredictor)
    out = tmp_path / "cv.medseg"
    assert export_bundle(cv, out, ExportOptions(parity_cases=1)).networks == 2
    runtime = load_bundle_predictor(out)
    assert [len(g) for g in runtime.networks] == [2]
    image, geometry = read_channels(list(load_dataset(tiny_runs["data3"]).cases[0].channels))
    np.testing.assert_array_equal(runtime.predict_array(image, geometry.spacing), eager.predict_array(image, geometry))


def test_fp16_without_a_gpu_provider_is_one_clear_line(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: fp16 is allowed")
    with pytest.raises(ConfigError, match=r"^--precision fp16 needs onnxruntime's CUDA or TensorRT execution"):
        export_bundle(tiny_runs["run2"], tmp_path / "fp16.medseg", ExportOptions(precision="fp16"))
    assert not (tmp_path / "fp16.medseg").exists()
    with pytest.raises(ConfigError, match="needs --format onnx"):
        ExportOptions(format="torchscript", precision="int8")
