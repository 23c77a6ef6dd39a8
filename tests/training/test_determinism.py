"""``--deterministic`` on CPU: the same seed gives bit-identical weights and predictions; another seed does not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.apps.cli.app import app
from medseg.io.images import read_label
from medseg.run import load_checkpoint
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import TrainOptions, train_run
from tests.training.tiny_runs import plan_tiny_run

OPTIONS = TrainOptions(epochs=2, iterations_per_epoch=2, val_every=2, device="cpu", folds=3, deterministic=True)
SEEDS = {"first": 0, "again": 0, "other": 1}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Three tiny runs (planned, then trained by train_run) on one dataset: seed 0 twice, seed 1 once; the
    dataset under 'data'."""
    root = tmp_path_factory.mktemp("determinism")
    spec = SyntheticSpec(ndim=2, shape=(48, 48))
    dataset = write_dataset(root / "data", spec, n_cases=6, seed=0, layout="msd", n_test=1)
    before, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network; a second thread only waits for time slices on a busy machine
    try:  # fit() switches deterministic algorithms on for the whole process; hand the setting back afterwards
        folders = {}
        for name, seed in SEEDS.items():
            plan_tiny_run(dataset, root / name, replace(OPTIONS, seed=seed))
            folders[name] = train_run(dataset, root / name, replace(OPTIONS, seed=seed))
    finally:
        torch.use_deterministic_algorithms(before)
        torch.set_num_threads(threads)
    yield {**folders, "data": dataset}


def _tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a (nested) checkpoint entry, by its path of keys."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, value in enumerate(state) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {}


@pytest.mark.parametrize("name", ["checkpoint_last.pt", "checkpoint_best.pt"])
def test_same_seed_gives_bit_identical_checkpoints(runs: dict[str, Path], name: str) -> None:
    a, b = load_checkpoint(runs["first"] / name), load_checkpoint(runs["again"] / name)
    for entry in ("model", "optimizer"):
        ta, tb = _tensors(a[entry]), _tensors(b[entry])
        assert ta.keys() == tb.keys() and len(ta) > 0
        for key in ta:
            assert ta[key].dtype == tb[key].dtype and torch.equal(ta[key], tb[key]), f"{entry}{key}"
    assert (a["epoch"], a["best_dice"]) == (b["epoch"], b["best_dice"])


def test_same_seed_gives_identical_log_and_metrics(runs: dict[str, Path]) -> None:
    def losses(run: Path) -> list[tuple]:
        records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        return [(r["epoch"], r["train_loss"], r["lr"], r.get("val_dice_per_class")) for r in records]

    assert losses(runs["first"]) == losses(runs["again"])
    cases = [json.loads((runs[n] / "metrics.json").read_text())["cases"] for n in ("first", "again")]
    assert cases[0] == cases[1]


def _predict(run: Path, inputs: Path, out: Path) -> None:
    args = ["predict", str(run), str(inputs), str(out), "--device", "cpu", "--save-probabilities"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_same_seed_gives_bit_identical_predictions(runs: dict[str, Path], tmp_path: Path) -> None:
    inputs = runs["data"] / "imagesTs"
    for name in ("first", "again"):
        _predict(runs[name], inputs, tmp_path / name)
    files = sorted(p.name for p in (tmp_path / "first").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "again").iterdir())
    assert any(f.endswith(".nii.gz") for f in files) and any(f.endswith("_probabilities.npz") for f in files)
    for f in files:
        if f.endswith(".nii.gz"):
            assert np.array_equal(read_label(tmp_path / "first" / f)[0], read_label(tmp_path / "again" / f)[0])
        else:
            with np.load(tmp_path / "first" / f) as a, np.load(tmp_path / "again" / f) as b:
                assert a["probabilities"].dtype == b["probabilities"].dtype
                assert np.array_equal(a["probabilities"], b["probabilities"]), f
    for case in (runs["first"] / "validation").iterdir():  # the held-out predictions of train_run as well
        assert np.array_equal(read_label(case)[0], read_label(runs["again"] / "validation" / case.name)[0])


def test_other_seed_gives_other_weights(runs: dict[str, Path]) -> None:
    a = _tensors(load_checkpoint(runs["first"] / "checkpoint_last.pt")["model"])
    c = _tensors(load_checkpoint(runs["other"] / "checkpoint_last.pt")["model"])
    assert a.keys() == c.keys()
    differing = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], c[k])]
    assert len(differing) > len(a) // 2, differing
