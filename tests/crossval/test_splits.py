"""splits.json: k-fold partitions, nnU-Net's file format, and the checks that refuse untrainable splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import ConfigError, DataError
from medseg.splits import Fold, check_splits, load_splits, make_splits, save_splits, split_cases

IDS = [f"case_{i:03d}" for i in range(11)]


def test_validation_sets_partition_the_cases_and_match_split_cases() -> None:
    folds = make_splits(IDS, n_folds=5, seed=3)
    held_out = [i for f in folds for i in f.validation]
    assert sorted(held_out) == IDS and len(held_out) == len(set(held_out))
    for k, fold in enumerate(folds):
        assert set(fold.train) == set(IDS) - set(fold.validation)
        assert (list(fold.train), list(fold.validation)) == split_cases(IDS, 5, k, 3)
    assert make_splits(IDS, 5, seed=3) == folds and make_splits(IDS, 5, seed=4) != folds


def test_too_few_cases_for_the_folds_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="3 labelled cases cannot fill 5 cross-validation folds"):
        make_splits(IDS[:3], n_folds=5, seed=0)


def test_the_file_is_nnunets_format_and_round_trips(tmp_path: Path) -> None:
    folds = make_splits(IDS, 3, seed=0)
    path = tmp_path / "splits.json"
    save_splits(folds, path)
    data = json.loads(path.read_text())
    assert [set(entry) for entry in data] == [{"train", "val"}] * 3
    assert load_splits(path, IDS) == folds


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        ([], "no folds"),
        ([Fold(("case_000",), ())], "fold 0 has an empty val list"),
        ([Fold((), ("case_000",))], "fold 0 has an empty train list"),
        (
            [Fold(("case_000", "case_001"), ("case_001",))],
            r"fold 0 trains on and holds out the same case\(s\) \['case_001'\]",
        ),
        (
            [Fold(("case_000",), ("case_001",)), Fold(("case_000",), ("nobody",))],
            r"fold 1 names case\(s\) \['nobody'\]",
        ),
    ],
)
def test_untrainable_splits_are_refused_naming_the_fold(folds: list[Fold], message: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=message):
        check_splits(folds, IDS, tmp_path / "splits.json")


@pytest.mark.parametrize(
    "text", ["", "{}", '[{"train": ["a"]}]', '[{"train": "a", "val": ["b"]}]', '[{"train": [1], "val": ["b"]}]']
)
def test_a_damaged_file_is_one_data_error_naming_it(text: str, tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    path.write_text(text)
    with pytest.raises(DataError, match=r"splits.json: unreadable splits"):
        load_splits(path)
