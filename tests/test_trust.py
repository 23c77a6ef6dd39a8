"""Trust in each prediction, end to end on a small trained 2D run: uncertainty, the failure flag, calibration,
explanations, the report and the command line."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import medseg
from medseg.apps.cli.app import main
from medseg.config.plans import save_plans
from medseg.io.images import read_channels, read_image, read_label, write_image
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import plan_run, train_run

OPTIONS = medseg.TrainOptions(epochs=15, iterations_per_epoch=10, val_every=100, device="cpu", amp="off", folds=3)
HEART = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic 2D chest slices (5-6 held out), a small U-Net (8 -> 64 features) trained for 150 steps."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trust")
    dataset = write_dataset(root / "data", SyntheticSpec(ndim=2, shape=(48, 48)), n_cases=16, seed=0, layout="msd")
    plans = plan_run(dataset, root / "run", OPTIONS)
    model = replace(plans.model, features=tuple(min(8 * 2**i, 64) for i in range(len(plans.model.features))))
    save_plans(replace(plans, model=model, train=replace(plans.train, batch_size=8)), root / "run" / "plans.json")
    return train_run(dataset, root / "run", OPTIONS)


@pytest.fixture(scope="module")
def assessed(trained: Path) -> dict:
    return medseg.assess_trust(trained, medseg.TrustOptions(voxels_per_case=5_000))


def _dataset(run: Path) -> Path:
    return Path(json.loads((run / "dataset.json").read_text(encoding="utf-8"))["root"])


def _broken(scan: Path, out: Path) -> Path:
    """The scan with heavy noise and a shifted intensity scale, as from a failing scanner."""
    image, geometry = read_image(scan)
    rng = np.random.default_rng(0)
    broken = image[0] * 0.5 + 400 + rng.normal(0, 3 * image.std(), image.shape[1:])
    return write_image(out / scan.name, broken.astype(np.float32), geometry)


def test_an_artefact_case_is_more_uncertain_than_the_clean_one(trained: Path, tmp_path: Path) -> None:
    scan = sorted((_dataset(trained) / "imagesTr").iterdir())[0]
    estimator = medseg.UncertaintyEstimator(medseg.load_predictor(trained))
    clean = estimator.estimate(*read_channels([scan]))
    noisy = estimator.estimate(*read_channels([_broken(scan, tmp_path)]))
    assert clean.maps.n_samples == 4  # every flip of both axes
    assert noisy.scores["entropy"] > clean.scores["entropy"] + 0.05
    assert noisy.scores["disagreement_ratio"] > clean.scores["disagreement_ratio"]
    assert noisy.maps.entropy.mean() > clean.maps.entropy.mean()


def test_trust_record_calibration_and_ranking(trained: Path, assessed: dict) -> None:
    held_out = json.loads((trained / "dataset.json").read_text(encoding="utf-8"))["validation"]
    assert [row["case"] for row in assessed["cases"]] == held_out and len(held_out) >= 5
    assert json.loads((trained / "trust.json").read_text(encoding="utf-8"))["version"] == 1
    assert assessed["quality"]["predicted_by"] == "leave-one-out"
    assert set(assessed["quality"]) >= {"spearman", "pearson", "catch_rate"}
    before, after = assessed["calibration"]["before"]["ece"], assessed["calibration"]["after"]["ece"]
    assert assessed["temperature"] > 0 and after <= before + 1e-3  # fitted on these voxels: never worse
    for row in assessed["cases"]:
        assert 0 <= row["predicted_dice"] <= 1 and 0 <= row["dice"] <= 1
        scan = _dataset(trained) / "imagesTr" / f"{row['case']}.nii.gz"
        uncertainty, geometry = read_image(trained / "trust" / row["map"])
        assert uncertainty.shape[1:] == read_image(scan)[0].shape[1:] and geometry.matches(read_image(scan)[1])
        assert uncertainty.min() >= 0 and uncertainty.max() <= 1
    report = (trained / "report.html").read_text(encoding="utf-8")
    for heading in ("Failure flag", "Calibration", "Uncertainty", "Dice per case"):
        assert f"<h2>{heading}</h2>" in report


def test_a_broken_case_is_flagged_and_a_clean_one_is_not(trained: Path, assessed: dict, tmp_path: Path) -> None:
    dataset = _dataset(trained)
    train_case = json.loads((trained / "dataset.json").read_text(encoding="utf-8"))["train"][0]
    clean = dataset / "imagesTr" / f"{train_case}.nii.gz"
    broken = _broken(clean, tmp_path / "in")
    cases = [("clean", [clean]), ("broken", [broken])]
    rows = medseg.predict_with_uncertainty(trained, cases, tmp_path / "out")
    by_case = {row["case"]: row for row in rows}
    assert by_case["broken"]["flagged"] and by_case["broken"]["reasons"]
    assert not by_case["clean"]["flagged"], by_case["clean"]
    assert by_case["broken"]["predicted_dice"] < by_case["clean"]["predicted_dice"]
    written = json.loads((tmp_path / "out" / "uncertainty.json").read_text(encoding="utf-8"))
    assert written["temperature"] == pytest.approx(assessed["temperature"])
    assert (tmp_path / "out" / "uncertainty.csv").read_text().startswith("case,mask,map,")
    labels, geometry = read_label(tmp_path / "out" / clean.name)
    assert geometry.matches(read_image(clean)[1]) and labels.shape == read_image(clean)[0].shape[1:]


@pytest.mark.parametrize("method", ["hirescam", "occlusion"])
def test_explanation_has_the_scans_geometry_and_peaks_inside_the_heart(
    trained: Path, tmp_path: Path, method: str
) -> None:
    dataset = _dataset(trained)
    case = json.loads((trained / "dataset.json").read_text(encoding="utf-8"))["validation"][0]
    scan = dataset / "imagesTr" / f"{case}.nii.gz"
    map_path, png = medseg.explain(trained, scan, "heart", tmp_path, method=method)
    heat, geometry = read_image(map_path)
    image, scan_geometry = read_image(scan)
    assert heat.shape == image.shape and geometry.matches(scan_geometry) and png.stat().st_size > 1000
    reference = read_label(dataset / "labelsTr" / scan.name)[0]
    peak = np.unravel_index(int(np.argmax(heat[0])), heat.shape[1:])
    assert reference[peak] == HEART
    assert heat[0][reference == HEART].mean() > 3 * heat[0][reference != HEART].mean()


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), " ".join((captured.out + captured.err).split())


def test_command_line(trained: Path, assessed: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    scan = sorted((_dataset(trained) / "imagesTr").iterdir())[0]
    code, out = _medseg(
        ["predict", str(trained), str(scan), str(tmp_path / "p"), "--uncertainty", "--device", "cpu"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and "predicted Dice" in out, out
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        scan.name,
        scan.name.replace(".nii.gz", "_uncertainty.nii.gz"),
        "uncertainty.csv",
        "uncertainty.json",
    ]
    code, out = _medseg(
        ["explain", str(trained), str(scan), "--class", "heart", "--out", str(tmp_path / "e")], monkeypatch, capsys
    )
    assert code == 0 and (tmp_path / "e" / scan.name.replace(".nii.gz", "_hirescam_heart.nii.gz")).is_file(), out


@pytest.mark.parametrize(
    ("argv", "shows"),
    [
        (
            ["explain", "{run}", "{scan}", "--class", "liver"],
            "class 'liver' is not one of this run's classes: lung, heart, aorta",
        ),
        (
            ["explain", "{run}", "{scan}", "--class", "heart", "--method", "lime"],
            "explanation method 'lime' is unknown",
        ),
        (["explain", "{run}", "{scan}", "--class", "heart", "--layer", "nope"], "layer 'nope' is not a module"),
        (["predict", "{run}", "{scan}", "{out}", "--uncertainty", "--mc-dropout", "4"], "has no dropout"),
        (["predict", "{run}", "{scan}", "{out}", "--mc-dropout", "4"], "add --uncertainty"),
        (["trust", "{out}"], "plans.json: not found"),
    ],
    ids=[
        "unknown-class",
        "unknown-method",
        "unknown-layer",
        "mc-dropout-without-dropout",
        "mc-dropout-alone",
        "not-a-run",
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], shows: str, trained: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    scan = sorted((_dataset(trained) / "imagesTr").iterdir())[0]
    (tmp_path / "empty").mkdir()
    values = {"run": str(trained), "scan": str(scan), "out": str(tmp_path / "empty")}
    code, out = _medseg([a.format(**values) for a in argv], monkeypatch, capsys)
    assert code == 2 and shows in out and "Traceback" not in out, out
