"""DICOM series: sorted by position, checked for gaps and mixed series, written with geometry and tags."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from medseg.errors import DataError
from medseg.io.images import Geometry, read_image, read_info, read_label, write_image

ROW, COL = np.array([math.cos(0.4), math.sin(0.4), 0.0]), np.array([0.0, math.cos(0.3), math.sin(0.3)])
COL = COL - (COL @ ROW) * ROW
COL /= np.linalg.norm(COL)
NORMAL = np.cross(ROW, COL)
ORIGIN = np.array([-20.0, 15.0, 7.5])
STEP, PIXEL = 3.0, (0.6, 0.9)  # slice step; (row spacing = y, column spacing = x) in mm


def _slices(n: int = 5) -> np.ndarray:
    return (np.arange(n * 4 * 6).reshape(n, 4, 6) * 7 % 1000).astype(np.int16)


def _write_series(folder: Path, pixels: np.ndarray, positions: list[int], **tags: str) -> str:
    """Write slices ``pixels[i]`` at ``ORIGIN + positions[i] * STEP * NORMAL``, file names in scrambled order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = tags.pop("series_uid", generate_uid())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")
    names = np.random.default_rng(len(positions)).permutation(len(positions))
    for plane, k, name in zip(pixels, positions, names, strict=True):
        image = sitk.GetImageFromArray(plane)
        image.SetSpacing((PIXEL[1], PIXEL[0]))
        values = {
            "0020|000e": series_uid,
            "0020|000d": tags.get("study_uid", "1.2.826.0.1.3680043.8.498.1"),
            "0008|0060": tags.get("modality", "MR"),
            "0010|0020": tags.get("patient_id", "P0001"),
            "0008|103e": tags.get("description", "T1 axial"),
            "0020|0032": "\\".join(f"{v:.10g}" for v in ORIGIN + NORMAL * STEP * k),
            "0020|0037": "\\".join(f"{v:.10g}" for v in (*ROW, *COL)),
            "0008|0018": generate_uid(),
        }
        for key, value in values.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IM{series_uid[-4:]}{name:04d}"))  # DICOM files without a suffix
        writer.Execute(image)
    return series_uid


def test_series_is_read_sorted_with_its_geometry(tmp_path: Path) -> None:
    pixels = _slices()
    _write_series(tmp_path / "ct", pixels, [0, 1, 2, 3, 4])
    image, geometry = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(image, pixels[None])
    np.testing.assert_allclose(geometry.spacing, (STEP, *PIXEL), rtol=1e-6)
    np.testing.assert_allclose(geometry.origin, ORIGIN, atol=1e-6)
    np.testing.assert_allclose(np.reshape(geometry.direction, (3, 3)), np.column_stack([ROW, COL, NORMAL]), atol=1e-6)
    info = read_info(tmp_path / "ct")
    assert (info.shape, info.channels, info.dtype) == ((5, 4, 6), 1, "int16")
    assert info.geometry.matches(geometry, atol=1e-6)


def test_series_written_in_reverse_position_order_is_sorted(tmp_path: Path) -> None:
    pixels = _slices()
    _write_series(tmp_path / "ct", pixels, [4, 3, 2, 1, 0])
    image, geometry = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(image[0], pixels[::-1])
    np.testing.assert_allclose(geometry.origin, ORIGIN, atol=1e-6)


def test_missing_slice_is_refused(tmp_path: Path) -> None:
    pixels = _slices()
    _write_series(tmp_path / "gap", np.delete(pixels, 2, axis=0), [0, 1, 3, 4])
    for reader in (read_image, read_info, read_label):
        with pytest.raises(DataError, match=r"inconsistent slice spacing.*missing") as caught:
            reader(tmp_path / "gap")
        assert "gap" in str(caught.value)


def test_slices_at_one_position_are_refused(tmp_path: Path) -> None:
    _write_series(tmp_path / "echoes", _slices(4), [0, 1, 1, 2])
    with pytest.raises(DataError, match="share one position"):
        read_image(tmp_path / "echoes")


def test_folder_with_two_series_names_them(tmp_path: Path) -> None:
    first = _write_series(tmp_path / "mixed", _slices(3), [0, 1, 2], description="T1")
    second = _write_series(tmp_path / "mixed", _slices(3), [0, 1, 2], description="FLAIR")
    with pytest.raises(DataError, match="2 DICOM series") as caught:
        read_image(tmp_path / "mixed")
    message = str(caught.value)
    assert first in message and second in message and "FLAIR" in message and "own folder" in message


def test_single_dicom_file_asks_for_the_folder(tmp_path: Path) -> None:
    (tmp_path / "slice.dcm").write_bytes(b"x")
    with pytest.raises(DataError, match="folder"):
        read_image(tmp_path / "slice.dcm")


GEOMETRY = Geometry((2.5, 0.8, 0.7), (10.0, -5.0, 3.0), tuple(np.column_stack([ROW, COL, NORMAL]).ravel()))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "bool"])
def test_write_series_round_trip(tmp_path: Path, dtype: str) -> None:
    labels = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3).astype(dtype)
    path = write_image(tmp_path / "prediction", labels, GEOMETRY)
    image, geometry = read_image(path)
    np.testing.assert_array_equal(image[0], labels.astype(int))
    assert geometry.matches(GEOMETRY, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prediction"]


def test_write_series_copies_reference_tags_with_a_new_series(tmp_path: Path) -> None:
    reference_uid = _write_series(
        tmp_path / "source", _slices(), [0, 1, 2, 3, 4], patient_id="PAT-42", study_uid="1.2.3.4.5", modality="CT"
    )
    _, geometry = read_image(tmp_path / "source")
    mask = np.zeros((5, 4, 6), np.uint8)
    mask[2, 1:3, 2:4] = 1
    write_image(tmp_path / "mask", mask, geometry, reference=tmp_path / "source")
    written = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted((tmp_path / "mask").iterdir())]
    assert {d.PatientID for d in written} == {"PAT-42"}
    assert {d.StudyInstanceUID for d in written} == {"1.2.3.4.5"}
    assert {d.Modality for d in written} == {"CT"}
    assert len({d.SeriesInstanceUID for d in written}) == 1 and written[0].SeriesInstanceUID != reference_uid
    np.testing.assert_array_equal(read_label(tmp_path / "mask")[0], mask)


def test_write_series_needs_a_dicom_reference(tmp_path: Path) -> None:
    (tmp_path / "scan.nii.gz").write_bytes(b"x")
    with pytest.raises(DataError, match="not a DICOM folder"):
        write_image(tmp_path / "out", np.zeros((2, 3, 3), np.uint8), GEOMETRY, reference=tmp_path / "scan.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_left_handed_geometry_is_flipped_to_the_same_physical_image(tmp_path: Path) -> None:
    flipped = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 10.0), (1, 0, 0, 0, 1, 0, 0, 0, -1))
    volume = np.arange(3 * 2 * 2, dtype=np.int16).reshape(3, 2, 2)
    image, geometry = read_image(write_image(tmp_path / "out", volume, flipped))
    np.testing.assert_array_equal(image[0], volume[::-1])
    np.testing.assert_allclose(geometry.origin, (0.0, 0.0, 6.0))  # the last slice, z = 10 - 2 * 2
    np.testing.assert_allclose(geometry.direction, np.eye(3).ravel(), atol=1e-9)


def test_write_series_replaces_its_own_output_but_not_other_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "out", np.zeros((4, 5, 6), np.uint8), GEOMETRY)
    write_image(tmp_path / "out", np.ones((2, 5, 6), np.uint8), GEOMETRY)
    image, _ = read_image(tmp_path / "out")
    assert image.shape == (1, 2, 5, 6) and image.min() == 1
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.docx").write_text("precious")
    with pytest.raises(DataError, match=r"other things than \.dcm"):
        write_image(tmp_path / "notes", np.zeros((4, 5, 6), np.uint8), GEOMETRY)
    assert (tmp_path / "notes" / "thesis.docx").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "out"]


@pytest.mark.parametrize(
    ("array", "problem"),
    [(np.full((2, 3, 3), 0.5, np.float32), "fractional"), (np.zeros((2, 2, 3, 3), np.uint8), "single-channel")],
)
def test_write_series_refuses_what_dicom_cannot_hold(tmp_path: Path, array: np.ndarray, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        write_image(tmp_path / "out", array, GEOMETRY)
    assert list(tmp_path.iterdir()) == []
