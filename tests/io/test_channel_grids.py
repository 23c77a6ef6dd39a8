"""Channel files of a case on different grids: refused with a message naming --resample-channels, or (with it)
resampled onto the first channel's grid in physical space; through check, planning, preprocessing and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.apps.cli.app import main
from medseg.datasets.check import check_dataset
from medseg.datasets.dataset import load_dataset
from medseg.errors import DataError
from medseg.io.images import Geometry, read_channels, read_image, write_image
from medseg.planning.fingerprint import fingerprint
from medseg.synthetic import SyntheticSpec, write_dataset

FIRST = Geometry((1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))  # 2D: spacing (row, col); origin (x, y)
SHAPE = (12, 16)


def plane(shape: tuple[int, ...], geometry: Geometry) -> np.ndarray:
    """``3 x - 2 y + 5`` at every voxel centre of the grid (linear interpolation reproduces it exactly)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    direction = np.reshape(geometry.direction, (2, 2))
    index = np.stack([cols * geometry.spacing[1], rows * geometry.spacing[0]])  # ITK (x, y) order
    x, y = (direction @ index.reshape(2, -1)).reshape(2, *shape) + np.reshape(geometry.origin, (2, 1, 1))
    return (3 * x - 2 * y + 5).astype(np.float32)


# a coarser grid (2 mm) covering more than the first channel; and the first grid with flipped axes
COARSE = Geometry((2.0, 2.0), (-3.0, -3.0), (1.0, 0.0, 0.0, 1.0))
FLIPPED = Geometry((1.0, 1.0), (15.0, 11.0), (-1.0, 0.0, 0.0, -1.0))
GRIDS = {"spacing and shape": ((10, 12), COARSE), "orientation": (SHAPE, FLIPPED)}


def write_case(folder: Path, shape: tuple[int, ...], geometry: Geometry) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    first = write_image(folder / "case_0000.nii.gz", plane(SHAPE, FIRST), FIRST)
    return [first, write_image(folder / "case_0001.nii.gz", plane(shape, geometry), geometry)]


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_a_channel_on_another_grid_is_refused_naming_the_flag(grid: str, tmp_path: Path) -> None:
    paths = write_case(tmp_path, *GRIDS[grid])
    with pytest.raises(DataError, match="--resample-channels resamples it onto that grid") as caught:
        read_channels(paths)
    assert caught.value.path == paths[1] and "case_0000.nii.gz" in caught.value.problem
    if grid == "orientation":
        assert "direction (-1, 0, 0, -1)" in caught.value.problem


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_with_the_flag_each_channel_is_resampled_onto_the_first_in_physical_space(grid: str, tmp_path: Path) -> None:
    paths = write_case(tmp_path, *GRIDS[grid])
    image, geometry = read_channels(paths, resample=True)
    assert image.shape == (2, *SHAPE) and image.dtype == np.float32 and geometry.matches(FIRST)
    np.testing.assert_array_equal(image[0], read_image(paths[0])[0][0])
    np.testing.assert_allclose(image[1], plane(SHAPE, FIRST), atol=1e-3)  # same physical values, first grid


def test_resampling_fills_points_outside_a_channel_with_its_minimum(tmp_path: Path) -> None:
    small = Geometry((1.0, 1.0), (4.0, 0.0), (1.0, 0.0, 0.0, 1.0))  # covers columns 4.. of the first grid
    image, _ = read_channels(write_case(tmp_path, (12, 4), small), resample=True)
    second = plane((12, 4), small)
    np.testing.assert_allclose(image[1][:, 4:8], second, atol=1e-3)
    assert np.all(image[1][:, :3] == second.min()) and np.all(image[1][:, 9:] == second.min())


def test_channels_on_one_grid_are_read_unchanged_with_the_flag(tmp_path: Path) -> None:
    paths = write_case(tmp_path, SHAPE, FIRST)
    plain, resampled = read_channels(paths), read_channels(paths, resample=True)
    np.testing.assert_array_equal(plain[0], resampled[0])
    assert plain[0].dtype == resampled[0].dtype


def test_channels_of_different_dimensionality_are_refused_even_with_the_flag(tmp_path: Path) -> None:
    first = write_image(tmp_path / "case_0000.nii.gz", plane(SHAPE, FIRST), FIRST)
    volume = write_image(tmp_path / "case_0001.nii.gz", np.zeros((3, *SHAPE), np.float32), Geometry.identity(3))
    with pytest.raises(DataError, match=r"is 3D, case_0000\.nii\.gz is 2D"):
        read_channels([first, volume], resample=True)


@pytest.fixture
def misaligned(tmp_path: Path) -> Path:
    """A 2-channel nnU-Net dataset whose case_001 has its second channel at half the resolution."""
    root = write_dataset(
        tmp_path / "data", SyntheticSpec(ndim=2, shape=(64, 64)), n_cases=3, seed=0, layout="nnunet", n_channels=2
    )
    path = root / "imagesTr" / "case_001_0001.nii.gz"
    channel, geometry = read_image(path)
    coarse = Geometry(tuple(2 * s for s in geometry.spacing), geometry.origin, geometry.direction)
    write_image(path, channel[0, ::2, ::2], coarse)
    return root


def test_check_and_fingerprint_refuse_or_accept_by_the_flag(misaligned: Path) -> None:
    dataset = load_dataset(misaligned)
    problems = check_dataset(dataset).problems
    assert len(problems) == 1 and problems[0].path.name == "case_001_0001.nii.gz"
    assert "--resample-channels" in problems[0].message
    assert check_dataset(dataset, resample_channels=True).ok
    fp = fingerprint(dataset, resample_channels=True)
    assert fp.shapes == ((64, 64),) * 3 and fp.channel_names == ("CT", "MR1")
    with pytest.raises(DataError, match="--resample-channels"):
        fingerprint(dataset)


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_plan_records_the_flag_and_preprocessing_resamples(
    misaligned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import medseg

    assert _medseg(["check", str(misaligned), "--summary"], monkeypatch) == 1
    assert _medseg(["check", str(misaligned), "--summary", "--resample-channels"], monkeypatch) == 0
    refused, run = tmp_path / "refused", tmp_path / "run"
    capsys.readouterr()
    assert (
        _medseg(["plan", str(misaligned), "--out", str(refused), "--device", "cpu", "--folds", "3"], monkeypatch) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "case_001_0001.nii.gz" in err and "--resample-channels" in err
    assert "\n" not in err and not refused.exists()
    argv = ["plan", str(misaligned), "--out", str(run), "--device", "cpu", "--folds", "3", "--resample-channels"]
    assert _medseg(argv, monkeypatch) == 0
    plans = medseg.load_plans(run / "plans.json")
    assert plans.data.resample_channels and plans.data.channel_names == ("CT", "MR1")
    cases = medseg.preprocess(run)
    assert {c.image.shape[0] for c in cases.values()} == {2}
