"""Shared fixtures: tiny synthetic datasets written by the package itself (no network, no committed data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medseg.synthetic import SyntheticSpec, write_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEC_2D = SyntheticSpec(ndim=2, shape=(64, 64))
SPEC_3D = SyntheticSpec(ndim=3, shape=(8, 48, 48))


def _qt_usable() -> bool:
    """Whether PySide6's widgets load here (it and pytest-qt installed, and the system libraries it needs)."""
    if importlib.util.find_spec("pytestqt") is None or importlib.util.find_spec("PySide6") is None:
        return False
    try:
        import PySide6.QtWidgets  # noqa: F401
    except ImportError:  # e.g. libEGL.so.1 missing: tests/apps/gui skip with the reason instead
        return False
    return True


# pytest-qt's own loading (-p no:pytest-qt in pyproject.toml) would stop the whole run where Qt cannot load
pytest_plugins = ["pytestqt.plugin"] if _qt_usable() else []


def shared_dataset(name: str) -> Path:
    """Path of a real dataset beside the project; skips the test when it is absent (a user's clone)."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name} not available at {path}")
    return path


@pytest.fixture
def msd_2d(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "msd2d", SPEC_2D, n_cases=6, seed=0, layout="msd", n_test=1)


@pytest.fixture
def msd_3d(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "msd3d", SPEC_3D, n_cases=4, seed=1, layout="msd")


@pytest.fixture
def nnunet_3d(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "nnunet3d", SPEC_3D, n_cases=3, seed=2, layout="nnunet")


@pytest.fixture
def folder_2d(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "folder2d", SPEC_2D, n_cases=4, seed=3, layout="folder")
