"""DICOM-SEG output (``medseg_runtime.dicom_seg``): read back with highdicom, the segments rebuild the mask
frame by frame through each frame's reference to its source image, and name the bundle's classes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from medseg_runtime import BundleError, Labels
from medseg_runtime.dicom_seg import series_files, write_dicom_seg

from medseg.datasets.dataset import load_dataset
from medseg.errors import MedsegError
from medseg.io.images import read_channels
from tests.export.ct_series import write_ct_series

hd = pytest.importorskip("highdicom", reason="DICOM-SEG needs highdicom: pip install './runtime[dicom]'")

NAMES = {0: "background", 1: "liver", 2: "spleen", 3: "absent"}


def _volume(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(5, 20, 24)) * 100).astype(np.int16)


def _read_back(path: Path, uids: list[str], segments: int) -> tuple[object, np.ndarray]:
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=list(range(1, segments + 1)))
    return seg, pixels  # (z, y, x, segments)


def test_labels_come_back_frame_by_frame_from_their_source_images(tmp_path: Path) -> None:
    uids = write_ct_series(tmp_path / "ct", _volume(0), (2.5, 0.8, 0.7))
    mask = np.zeros((5, 20, 24), np.uint8)
    mask[1:4, 5:10, 5:12], mask[2:5, 12:18, 3:9] = 1, 2  # class 3 is empty
    out = write_dicom_seg(tmp_path / "out" / "ct.dcm", mask, series_files(tmp_path / "ct"), Labels(NAMES, (0, 1, 2, 3)))
    seg, pixels = _read_back(out, uids, 3)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "spleen", "absent"]
    assert [s.SegmentNumber for s in seg.SegmentSequence] == [1, 2, 3]
    for k in (1, 2, 3):
        np.testing.assert_array_equal(pixels[..., k - 1], mask == k)
    assert {uid for *_, uid in seg.get_source_image_uids()} == set(uids)
    source = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "ct"))
    import pydicom

    first = pydicom.dcmread(source[0], stop_before_pixels=True)
    assert (seg.PatientID, seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (
        first.PatientID,
        first.StudyInstanceUID,
        first.FrameOfReferenceUID,
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ct.dcm"]  # no temporary file left


def test_overlapping_structures_are_one_segment_each(tmp_path: Path) -> None:
    uids = write_ct_series(tmp_path / "ct", _volume(1), (2.0, 1.0, 1.0))
    masks = np.zeros((2, 5, 20, 24), np.uint8)
    masks[0, :3, 2:12, 2:12], masks[1, 1:5, 8:16, 8:20] = 1, 1  # they overlap
    labels = Labels({1: "lung", 2: "lesion"}, (1, 1), overlapping=True)
    out = write_dicom_seg(tmp_path / "ct.dcm", masks, series_files(tmp_path / "ct"), labels)
    seg, pixels = _read_back(out, uids, 2)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lung", "lesion"]
    np.testing.assert_array_equal(np.moveaxis(pixels, -1, 0), masks)


def test_a_folder_without_exactly_one_series_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"empty: holds no DICOM series; pass a folder with exactly one series"):
        series_files(tmp_path / "empty")


def test_medseg_predict_dicom_seg_matches_the_nifti_mask(
    tiny_runs: dict[str, Path], bundles: dict[str, Path], tmp_path: Path
) -> None:
    """`medseg predict MODEL.medseg DICOM OUT --dicom-seg` segments as the NIfTI output does, per source slice."""
    from typer.testing import CliRunner

    from medseg.apps.cli.app import app
    from medseg.io.images import read_label

    case = load_dataset(tiny_runs["data3"]).cases[0]
    image, geometry = read_channels(list(case.channels))
    uids = write_ct_series(tmp_path / "ct", image[0], geometry.spacing)
    runner = CliRunner()
    for out, extra in (("seg", ["--dicom-seg"]), ("nifti", [])):
        result = runner.invoke(
            app, ["predict", str(bundles["onnx3"]), str(tmp_path / "ct"), str(tmp_path / out), *extra]
        )
        assert result.exit_code == 0, result.output
    want, _ = read_label(tmp_path / "nifti" / "ct.nii.gz")
    assert want.max() > 0  # the tiny model finds something, so the comparison means something
    names = load_dataset(tiny_runs["data3"]).labels.names
    classes = [k for k in sorted(names) if k]
    seg, pixels = _read_back(tmp_path / "seg" / "ct.dcm", uids, len(classes))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [names[k] for k in classes]
    for k in classes:
        np.testing.assert_array_equal(pixels[..., k - 1], want == k)


def test_dicom_seg_of_a_run_folder_is_refused_in_one_line(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medseg.apps.cli.app import app

    result = CliRunner().invoke(
        app, ["predict", str(tiny_runs["run3"]), str(tmp_path), str(tmp_path / "o"), "--dicom-seg"]
    )
    assert isinstance(result.exception, MedsegError)  # main() prints it as one line, exit 2
    assert str(result.exception).startswith("--dicom-seg needs a bundle (medseg export RUN --out MODEL.medseg)")


def test_without_highdicom_dicom_seg_is_one_line_with_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_ct_series(tmp_path / "ct", _volume(2), (1.0, 1.0, 1.0))
    monkeypatch.setitem(sys.modules, "highdicom", None)  # `import highdicom` raises ImportError
    mask = np.zeros((5, 20, 24), np.uint8)
    with pytest.raises(BundleError, match=r"^DICOM-SEG output needs highdicom: pip install './runtime\[dicom\]'"):
        write_dicom_seg(tmp_path / "ct.dcm", mask, series_files(tmp_path / "ct"), Labels(NAMES, (0, 1, 2, 3)))
    assert not (tmp_path / "ct.dcm").exists()
