"""Where a scan meets a run: the one check (dimensionality, channels, NaN/Inf), finding scans, grouping channels."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medseg.config.plans import DataConfig
from medseg.datasets.dataset import load_dataset
from medseg.errors import DataError
from medseg.inference.inputs import find_scans, group_channels
from medseg.io.images import Geometry
from medseg.planning.fingerprint import fingerprint
from medseg.planning.plans import Budget, make_plans
from medseg.preprocessing.checks import check_scan


@pytest.fixture
def data_3d(msd_3d: Path) -> DataConfig:
    """The data configuration of a 1-channel 3D run."""
    return make_plans(fingerprint(load_dataset(msd_3d)), Budget()).data


def _scan(channels: int, *spatial: int) -> tuple[np.ndarray, Geometry]:
    return np.zeros((channels, *spatial), np.float32), Geometry.identity(len(spatial))


def test_a_matching_scan_passes(data_3d: DataConfig) -> None:
    check_scan(*_scan(1, 4, 8, 8), data_3d, [Path("scan.nii.gz")])
    check_scan(*_scan(1, 4, 8, 8), data_3d)  # an array without a file


def test_a_2d_image_for_a_3d_run_is_refused(data_3d: DataConfig) -> None:
    with pytest.raises(DataError) as info:
        check_scan(*_scan(1, 64, 64), data_3d, [Path("scans/xray.png")])
    assert str(info.value) == (
        "scans/xray.png: is a 2D image (64×64), the run was trained on 3D volumes "
        "(pass a 3D volume like those the run was trained on)"
    )


def test_a_3d_volume_for_a_2d_run_is_refused(data_3d: DataConfig) -> None:
    data_2d = replace(data_3d, ndim=2)
    with pytest.raises(DataError) as info:
        check_scan(*_scan(1, 8, 48, 48), data_2d, [Path("ct.nii.gz")])
    assert str(info.value) == (
        "ct.nii.gz: is a 3D volume (8×48×48), the run was trained on 2D images "
        "(pass a 2D image like those the run was trained on)"
    )


def test_dimensionality_is_checked_before_channels(data_3d: DataConfig) -> None:
    """An RGB PNG for a 1-channel 3D run: the 2D-ness is the real problem, not the 3 colours."""
    with pytest.raises(DataError, match="is a 2D image"):
        check_scan(*_scan(3, 64, 64), data_3d, [Path("photo.png")])


@pytest.mark.parametrize("channels", [2, 3])
def test_a_wrong_channel_count_is_refused(data_3d: DataConfig, channels: int) -> None:
    with pytest.raises(DataError) as info:
        check_scan(*_scan(channels, 4, 8, 8), data_3d, [Path("scan.nii.gz")])
    assert str(info.value) == (
        f"scan.nii.gz: has {channels} channel(s), the model expects 1 "
        "(pass a scan with the channels the run was trained on)"
    )


def test_an_array_without_a_file_is_named_input(data_3d: DataConfig) -> None:
    with pytest.raises(DataError, match=r"^<input>: has 2 channel"):
        check_scan(*_scan(2, 4, 8, 8), data_3d)


def test_nan_voxels_name_the_channel_file(data_3d: DataConfig) -> None:
    data_2ch = replace(data_3d, channel_names=("T1", "T2"))
    image, geometry = _scan(2, 4, 8, 8)
    image[1, 0, 0, 0] = np.nan
    image[1, 1, 0, 0] = np.inf
    files = [Path("case_0000.nii.gz"), Path("case_0001.nii.gz")]
    with pytest.raises(DataError) as info:
        check_scan(image, geometry, data_2ch, files)
    assert str(info.value) == "case_0001.nii.gz: 2 NaN/Inf voxels (replace them with the background value first)"
    check_scan(np.zeros(image.shape, np.int16), geometry, data_2ch, files)  # integers have no NaN


# ------------------------------------------------------------------------------------------ finding scans


def test_find_scans_in_a_folder(tmp_path: Path) -> None:
    for name in ("b.nii.gz", "a.png", ".hidden.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "ct").mkdir()  # a DICOM series folder
    (tmp_path / "loop.nrrd").symlink_to("loop.nrrd")  # kept: reading it names the problem
    assert [p.name for p in find_scans(tmp_path)] == ["a.png", "b.nii.gz", "ct", "loop.nrrd"]


def test_a_file_or_a_dicom_folder_is_one_scan(tmp_path: Path) -> None:
    (tmp_path / "scan.nii.gz").write_bytes(b"x")
    assert find_scans(tmp_path / "scan.nii.gz") == [tmp_path / "scan.nii.gz"]
    series = tmp_path / "series"
    series.mkdir()
    for i in range(3):
        (series / f"{i:04d}.dcm").write_bytes(b"x")
    assert find_scans(series) == [series]


def test_find_scans_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="input not found"):
        find_scans(tmp_path / "absent")
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(DataError, match="is a symbolic link loop"):
        find_scans(tmp_path / "loop")
    hidden_only = tmp_path / "scans"
    hidden_only.mkdir()
    (hidden_only / ".case.nii.gz").write_bytes(b"x")
    with pytest.raises(DataError, match="no scans with a supported suffix"):
        find_scans(hidden_only)


def test_group_channels() -> None:
    files = [Path(n) for n in ("b_0001.nii.gz", "a_0000.nii.gz", "b_0000.nii.gz", "a_0001.nii.gz", "c.nii.gz")]
    assert group_channels(files, 2) == [
        ("a", (Path("a_0000.nii.gz"), Path("a_0001.nii.gz"))),
        ("b", (Path("b_0000.nii.gz"), Path("b_0001.nii.gz"))),
        ("c", (Path("c.nii.gz"),)),  # a multi-channel file is a case of its own
    ]
    assert group_channels(files[:2], 1) == [("b_0001", (files[0],)), ("a_0000", (files[1],))]
