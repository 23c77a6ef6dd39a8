"""Cross-validation end to end on synthetic 2D data: --folds all, an edited splits.json, out-of-fold metrics,
post-processing chosen on them, find-best across configurations, predict on an ensemble, resume, errors."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.apps.cli.app import main
from medseg.evaluation.metrics import dice
from medseg.inference.postprocessing import apply_steps
from medseg.inference.predictor import labels_from_probabilities, load_probabilities
from medseg.io.images import read_channels, read_label
from medseg.model_selection import out_of_fold_cases, read_reference
from medseg.run import CrossValDir, EnsembleRecord
from medseg.splits import Fold, load_splits, save_splits
from medseg.synthetic import SyntheticSpec, write_dataset

TINY = medseg.TrainOptions(epochs=1, iterations_per_epoch=2, device="cpu", folds=2, all_folds=True)
# an edited split: not what make_splits would give (cases 0-2 held out by fold 0)
EDITED = (
    Fold(("case_003", "case_004"), ("case_000", "case_001", "case_002")),
    Fold(("case_000", "case_001", "case_002"), ("case_003", "case_004")),
)


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), " ".join((captured.out + captured.err).split())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cv") / "msd2d"
    return write_dataset(root, SyntheticSpec(ndim=2, shape=(64, 64)), n_cases=5, seed=0, layout="msd", n_test=1)


@pytest.fixture(scope="module")
def cv_unet(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Planned, split edited by hand, then trained (the documented workflow)."""
    run = tmp_path_factory.mktemp("cv_unet") / "unet"
    medseg.plan_crossval(dataset, run, TINY)
    save_splits(EDITED, run / "splits.json")
    return medseg.train_crossval(dataset, run, TINY)


@pytest.fixture(scope="module")
def cv_mobile(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cv_mobile") / "mobile"
    return medseg.train_crossval(dataset, run, replace(TINY, model="mobilenet-unet"))


def _test_scan(dataset: Path) -> Path:
    return sorted((dataset / "imagesTs").iterdir())[0]


def _manual_ensemble(configurations: list[Path], scan: Path, steps) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Mean over folds, then over configurations, of each fold's probabilities; argmax; the steps."""
    image, geometry = read_channels([scan])
    means = []
    for folder in configurations:
        folds = CrossValDir(folder).trained_folds()
        probs = [medseg.Predictor.from_run(f.path).probabilities_array(image, geometry) for f in folds]
        means.append(np.mean(probs, axis=0))
    return apply_steps(labels_from_probabilities(np.mean(means, axis=0), overlapping=False), steps)


def test_the_folder_holds_the_edited_split_one_cache_and_out_of_fold_results(cv_unet: Path) -> None:
    assert load_splits(cv_unet / "splits.json") == EDITED
    for k, fold in enumerate(EDITED):
        record = json.loads((cv_unet / f"fold_{k}" / "dataset.json").read_text())
        assert (tuple(record["train"]), tuple(record["validation"])) == (fold.train, fold.validation)
        assert record["cache"] == "../preprocessed" and not (cv_unet / f"fold_{k}" / "preprocessed").exists()
        plans = json.loads((cv_unet / f"fold_{k}" / "plans.json").read_text())
        assert (plans["train"]["fold"], plans["train"]["folds"]) == (k, 2)
    assert len(list((cv_unet / "preprocessed").glob("*.npz"))) == 5
    metrics = json.loads((cv_unet / "crossval" / "metrics.json").read_text())
    assert sorted(c["case"] for c in metrics["cases"]) == [f"case_{i:03d}" for i in range(5)]
    record = EnsembleRecord.load(cv_unet / "crossval.json")
    assert record.members == ("fold_0", "fold_1")
    assert record.dice_postprocessed is not None and record.dice is not None
    assert record.dice_postprocessed >= record.dice


def test_out_of_fold_dice_is_recomputed_from_the_saved_probabilities(cv_unet: Path) -> None:
    plans, cases = out_of_fold_cases(cv_unet)
    labels = plans.data.labels
    per_case = []
    for case in cases:
        pred = np.argmax(load_probabilities(case.probabilities), axis=0)
        ref = labels.to_indices(read_label(case.reference[0])[0], case.reference[0])
        per_case.append([dice(pred == k, ref == k) for k in labels.foreground])
    assert EnsembleRecord.load(cv_unet / "crossval.json").dice == pytest.approx(float(np.mean(per_case)))


def test_predict_on_a_crossval_folder_averages_its_folds_and_applies_the_chosen_steps(
    cv_unet: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    scan, out = _test_scan(dataset), tmp_path / "pred"
    code, text = _medseg(["predict", str(cv_unet), str(scan), str(out), "--device", "cpu"], monkeypatch, capsys)
    assert code == 0, text
    steps = EnsembleRecord.load(cv_unet / "crossval.json").postprocessing
    expected = _manual_ensemble([cv_unet], scan, steps)
    assert np.array_equal(read_label(out / scan.name)[0], expected)


def test_postprocessing_flags_replace_the_chosen_steps(
    cv_unet: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    scan, out = _test_scan(dataset), tmp_path / "pred"
    argv = ["predict", str(cv_unet), str(scan), str(out), "--device", "cpu", "--fill-holes"]
    assert _medseg(argv, monkeypatch, capsys)[0] == 0
    expected = _manual_ensemble([cv_unet], scan, [medseg.PostProcessing(fill_holes=True)])
    assert np.array_equal(read_label(out / scan.name)[0], expected)


def test_find_best_scores_every_candidate_and_predict_uses_the_winner(
    cv_unet: Path, cv_mobile: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    best = tmp_path / "best"
    code, text = _medseg(["find-best", str(cv_unet), str(cv_mobile), "--out", str(best)], monkeypatch, capsys)
    assert code == 0, text
    record = EnsembleRecord.load(best / "ensemble.json")
    scores = {tuple(Path(m).name for m in c.members): c.dice for c in record.candidates}
    assert set(scores) == {("unet",), ("mobile",), ("unet", "mobile")}
    assert scores[tuple(Path(m).name for m in record.members)] == max(scores.values())
    # a single configuration's score is its crossval Dice (same out-of-fold probabilities)
    assert scores[("unet",)] == pytest.approx(EnsembleRecord.load(cv_unet / "crossval.json").dice)
    # the pair's score, recomputed
    (plans, a), (_, b) = out_of_fold_cases(cv_unet), out_of_fold_cases(cv_mobile)
    pair = []
    for ca, cb in zip(a, b, strict=True):
        mean = (load_probabilities(ca.probabilities) + load_probabilities(cb.probabilities)) / 2
        pred, ref = np.argmax(mean, axis=0), read_reference(ca.reference, plans.data.labels)
        pair.append(np.mean([dice(pred == k, ref == k) for k in plans.data.labels.foreground]))
    assert scores[("unet", "mobile")] == pytest.approx(float(np.mean(pair)))

    scan, out = _test_scan(dataset), tmp_path / "pred"
    assert _medseg(["predict", str(best), str(scan), str(out), "--device", "cpu"], monkeypatch, capsys)[0] == 0
    expected = _manual_ensemble([Path(m) for m in record.members], scan, record.postprocessing)
    assert np.array_equal(read_label(out / scan.name)[0], expected)

    code, text = _medseg(["find-best", str(cv_unet), "--out", str(best)], monkeypatch, capsys)
    assert code == 2 and text == f"error: {best}: output folder exists and is not empty (give a new folder)"


def test_resume_keeps_finished_folds_and_trains_the_rest(
    cv_unet: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    run = Path(shutil.copytree(cv_unet, tmp_path / "cv"))
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.json", "log.jsonl"):
        (run / "fold_1" / name).unlink()  # fold 1 was created, never trained
    shutil.rmtree(run / "fold_1" / "validation")
    kept = (run / "fold_0" / "checkpoint_best.pt").stat().st_mtime_ns
    argv = ["train", str(dataset), "--out", str(run), "--folds", "all", "--epochs", "1", "--iterations", "2"]
    code, text = _medseg([*argv, "--device", "cpu"], monkeypatch, capsys)
    assert (
        code == 2
        and text == f"error: {run}: fold 0 of this cross-validation has started (pass --resume to continue it)"
    )
    code, text = _medseg([*argv, "--device", "cpu", "--resume"], monkeypatch, capsys)
    assert code == 0, text
    assert (run / "fold_0" / "checkpoint_best.pt").stat().st_mtime_ns == kept
    assert (run / "fold_1" / "metrics.json").is_file() and "out-of-fold mean Dice" in text


def test_a_split_edited_after_a_fold_started_is_refused(
    cv_unet: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    run = Path(shutil.copytree(cv_unet, tmp_path / "cv"))
    save_splits(tuple(reversed(EDITED)), run / "splits.json")
    code, text = _medseg(["train", str(dataset), "--out", str(run), "--resume", "--device", "cpu"], monkeypatch, capsys)
    assert code == 2 and text.startswith(f"error: {run / 'splits.json'}: fold 0 differs from the split fold_0 was")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--folds", "1"], "--folds 1 is below 2"),
        (["--fold", "2", "--folds", "2"], "--fold 2 must be below --folds 2"),
        (["--folds", "some"], "cannot read --folds 'some': give a whole number or all"),
    ],
)
def test_bad_fold_flags_are_usage_errors(
    flags: list[str], message: str, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    code, text = _medseg(["plan", str(dataset), "--out", str(tmp_path / "run"), *flags], monkeypatch, capsys)
    assert code == 2 and message in text and not (tmp_path / "run").exists()


def test_too_few_cases_for_five_folds_is_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    small = write_dataset(tmp_path / "small", SyntheticSpec(ndim=2, shape=(32, 32)), n_cases=3, seed=0)
    run = tmp_path / "run"
    code, text = _medseg(
        ["plan", str(small), "--out", str(run), "--folds", "all", "--device", "cpu"], monkeypatch, capsys
    )
    assert code == 2 and text == "error: 3 labelled cases cannot fill 5 cross-validation folds (use --folds 3 or fewer)"
    assert not run.exists()


def test_find_best_on_a_single_run_is_one_line(
    cv_unet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    fold = cv_unet / "fold_0"
    code, text = _medseg(["find-best", str(fold), "--out", str(tmp_path / "b")], monkeypatch, capsys)
    assert code == 2
    assert text == f"error: {fold}: not a cross-validation folder (no splits.json) (train it with --folds all)"
    assert not (tmp_path / "b").exists()


def test_training_a_crossval_folder_as_a_single_run_is_refused(cv_unet: Path) -> None:
    with pytest.raises(medseg.DataError, match="this is a cross-validation folder"):
        medseg.train(cv_unet, cv_unet, replace(TINY, all_folds=False, resume=True))
