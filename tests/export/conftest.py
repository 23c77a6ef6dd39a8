"""Tiny trained runs (3D and 2D synthetic data) shared by the export tests, trained once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import TrainOptions, train_run
from tests.training.tiny_runs import plan_tiny_run

OPTIONS = TrainOptions(epochs=3, iterations_per_epoch=4, val_every=3, device="cpu", folds=3, deterministic=True)
SPECS = {3: SyntheticSpec(ndim=3, shape=(8, 48, 48)), 2: SyntheticSpec(ndim=2, shape=(64, 64))}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """``{"run3", "data3", "run2", "data2"}``: a tiny trained run per dimensionality and its dataset."""
    root = tmp_path_factory.mktemp("export-runs")
    before, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: a second thread only waits for time slices on a busy machine
    try:
        folders = {}
        for ndim, spec in SPECS.items():
            data = write_dataset(root / f"data{ndim}", spec, n_cases=6, seed=ndim, layout="msd", n_test=1)
            plan_tiny_run(data, root / f"run{ndim}", OPTIONS)
            folders[f"run{ndim}"] = train_run(data, root / f"run{ndim}", OPTIONS)
            folders[f"data{ndim}"] = data
    finally:
        torch.use_deterministic_algorithms(before)
        torch.set_num_threads(threads)
    yield folders


@pytest.fixture(scope="session")
def bundles(tiny_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bundles of the tiny runs, exported once: ``onnx3``, ``onnx2`` (float32 ONNX) and ``ts2`` (TorchScript)."""
    from medseg.export.bundle import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("bundles")
    made = {"onnx3": ("run3", ExportOptions()), "onnx2": ("run2", ExportOptions())}
    made["ts2"] = ("run2", ExportOptions(format="torchscript"))
    for name, (run, options) in made.items():
        export_bundle(tiny_runs[run], root / f"{name}.medseg", options)
    return {name: root / f"{name}.medseg" for name in made}
