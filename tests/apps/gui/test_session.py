"""Opening a scan and saving a mask in its format and geometry (pure: no window)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.apps.gui.scan import load_scan
from medseg.apps.gui.session import DICOM_NOTE, Segmentation, default_mask_path, save_mask

SPEC = medseg.LabelSpec({0: "background", 1: "lung", 2: "heart"}, values=(0, 10, 20))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("case.nii.gz", "case_seg.nii.gz"), ("a.b.nrrd", "a.b_seg.nrrd"), ("x.jpg", "x_seg.png"), ("y.png", "y_seg.png")],
)
def test_default_mask_path_keeps_the_format(tmp_path: Path, name: str, expected: str) -> None:
    assert default_mask_path(tmp_path / name) == (tmp_path / expected, "")


def test_dicom_series_mask_goes_to_nifti_beside(tmp_path: Path) -> None:
    (tmp_path / "series").mkdir()
    assert default_mask_path(tmp_path / "series") == (tmp_path / "series_seg.nii.gz", DICOM_NOTE)


def test_mask_round_trip_in_the_scans_geometry(tmp_path: Path) -> None:
    geometry = medseg.Geometry((2.5, 0.7, 0.7), (10.0, -5.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    image = np.random.default_rng(0).normal(size=(1, 3, 8, 9)).astype(np.float32)
    source = medseg.write_image(tmp_path / "scan.nrrd", image, geometry)
    scan = load_scan(source)
    assert scan.physical and scan.modality == "unknown" and "9 × 8 × 3 voxels" in scan.describe()
    labels = np.zeros((3, 8, 9), np.uint8)
    labels[1, 2:5, 3:6] = 2
    labels[0, 0, 0] = 1
    (written,) = save_mask(tmp_path / "mask.nrrd", Segmentation(labels, SPEC), scan)
    back, back_geometry = medseg.read_label(written)
    assert back_geometry.matches(geometry)
    np.testing.assert_array_equal(back, SPEC.to_values(labels))  # indices -> the dataset's values 10, 20


def test_2d_png_without_spacing_reports_voxels(tmp_path: Path) -> None:
    source = medseg.write_image(tmp_path / "x.png", np.zeros((1, 6, 7), np.uint8), medseg.Geometry.identity(2))
    scan = load_scan(source)
    assert not scan.physical and "no physical spacing" in scan.describe() and scan.planes == ("axial",)
    labels = np.zeros((6, 7), np.uint8)
    labels[1:3, 1:3] = 1
    (row, _) = Segmentation(labels, SPEC).sizes(scan)
    assert (row.size, row.unit) == (4.0, "voxels")


def test_overlapping_structures_save_one_file_each(tmp_path: Path) -> None:
    source = medseg.write_image(tmp_path / "s.nii.gz", np.zeros((1, 2, 4, 4), np.float32), medseg.Geometry.identity(3))
    spec = medseg.LabelSpec({0: "tumour", 1: "oedema"}, values=(1, 1), overlapping=True)
    masks = np.zeros((2, 2, 4, 4), np.uint8)
    masks[1, 0, 0, 0] = 1
    paths = save_mask(tmp_path / "m.nii.gz", Segmentation(masks, spec), load_scan(source))
    assert [p.name for p in paths] == ["m_tumour.nii.gz", "m_oedema.nii.gz"]
    assert medseg.read_label(paths[1])[0].sum() == 1
