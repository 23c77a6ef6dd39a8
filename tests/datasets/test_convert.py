from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.apps.cli.app import app
from medseg.datasets.convert import ConvertOptions, block_downsample, convert_dataset
from medseg.datasets.dataset import load_dataset
from medseg.errors import DataError
from medseg.io.images import Geometry, read_channels, read_label, write_image


def _folder_dataset(root: Path, image_size: int = 32, mask_size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for name in ("p1", "p2", "p3"):
        image = rng.integers(0, 200, size=(image_size, image_size), dtype=np.uint8)
        write_image(root / "images" / f"{name}.png", image, Geometry.identity(2))
        mask = np.zeros((mask_size, mask_size), np.uint8)
        mask[4:12, 4:12] = 255
        mask[20:24, 20:24] = 128
        write_image(root / "masks" / f"{name}.png", mask, Geometry.identity(2))
    return root


def test_folder_to_nnunet_remaps_values(tmp_path: Path) -> None:
    source = _folder_dataset(tmp_path / "src")
    out = convert_dataset(load_dataset(source), tmp_path / "out", ConvertOptions())
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "label_128": 1, "label_255": 2}
    assert meta["channel_names"] == {"0": "image"} and meta["file_ending"] == ".nii.gz"
    converted = load_dataset(out)
    assert converted.layout == "nnunet" and len(converted.cases) == 3
    label, _ = read_label(out / "labelsTr" / "p1.nii.gz")
    assert set(np.unique(label)) == {0, 1, 2}
    image, _ = read_channels([out / "imagesTr" / "p1_0000.nii.gz"])
    original, _ = read_channels([source / "images" / "p1.png"])
    np.testing.assert_array_equal(image, original)


def test_resize_images_to_masks(tmp_path: Path) -> None:
    source = _folder_dataset(tmp_path / "src", image_size=64, mask_size=32)
    with pytest.raises(DataError, match="use --resize-images-to-masks"):
        convert_dataset(load_dataset(source), tmp_path / "refused", ConvertOptions())
    assert not (tmp_path / "refused").exists()  # nothing half-written
    out = convert_dataset(load_dataset(source), tmp_path / "out", ConvertOptions(resize_images_to_masks=True))
    image, geometry = read_channels([out / "imagesTr" / "p2_0000.nii.gz"])
    assert image.shape == (1, 32, 32) and geometry.spacing == (2.0, 2.0)
    assert geometry.origin == pytest.approx((0.5, 0.5))


def test_block_downsample_is_block_mean() -> None:
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    out, geometry = block_downsample(image, Geometry.identity(2), (2, 2), Path("x.png"))
    assert geometry.spacing == (2.0, 2.0)
    np.testing.assert_allclose(out[0], [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(DataError, match="not an integer multiple"):
        block_downsample(image, Geometry.identity(2), (3, 3), Path("x.png"))


def test_convert_refuses_problematic_source(tmp_path: Path) -> None:
    source = _folder_dataset(tmp_path / "src")
    (source / "masks" / "p3.png").unlink()
    with pytest.raises(DataError, match="run `medseg check` first"):
        convert_dataset(load_dataset(source), tmp_path / "out", ConvertOptions())


def test_cli_convert_multilabel_folder(tmp_path: Path) -> None:
    from medseg.synthetic import write_dataset
    from tests.conftest import SPEC_2D

    source = write_dataset(tmp_path / "ml", SPEC_2D, n_cases=2, seed=0, layout="folder", overlapping=True)
    result = CliRunner().invoke(app, ["convert", str(source), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    converted = load_dataset(tmp_path / "out")
    assert converted.labels.overlapping and converted.layout == "nnunet"
    assert (tmp_path / "out" / "labelsTr" / "heart" / "case_000.nii.gz").exists()


def test_dicom_series_folders_convert(tmp_path: Path) -> None:
    root = tmp_path / "dcm"
    geometry = Geometry((2.0, 0.7, 0.7), (10.0, -20.0, 5.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    volume = np.random.default_rng(0).integers(-1000, 1000, size=(5, 16, 16)).astype(np.int16)
    write_image(root / "images" / "patient1", volume, geometry)
    label = np.zeros((5, 16, 16), np.uint8)
    label[1:4, 4:10, 4:10] = 1
    write_image(root / "masks" / "patient1.nii.gz", label, geometry)
    ds = load_dataset(root)
    assert ds.cases[0].case_id == "patient1"
    out = convert_dataset(ds, tmp_path / "out", ConvertOptions())
    image, g = read_channels([out / "imagesTr" / "patient1_0000.nii.gz"])
    np.testing.assert_array_equal(image[0], volume)
    assert g.matches(geometry)


def _jpeg_mask_dataset(root: Path) -> Path:
    """Binary 0/255 masks saved as JPEG: compression leaves stray values around both levels."""
    rng = np.random.default_rng(1)
    for name in ("j1", "j2", "j3"):
        image = rng.integers(0, 200, size=(48, 48), dtype=np.uint8)
        write_image(root / "images" / f"{name}.png", image, Geometry.identity(2))
        mask = np.zeros((48, 48), np.uint8)
        mask[10:30, 12:35] = 255
        write_image(root / "masks" / f"{name}.jpg", mask, Geometry.identity(2))
    return root


def test_mask_threshold_binarises_lossy_masks(tmp_path: Path) -> None:
    source = _jpeg_mask_dataset(tmp_path / "src")
    assert len(load_dataset(source).labels.values) > 4  # JPEG artefacts: many values
    out = convert_dataset(load_dataset(source), tmp_path / "out", ConvertOptions(mask_threshold=128))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "foreground": 1}
    label, _ = read_label(out / "labelsTr" / "j1.nii.gz")
    expected = np.zeros((48, 48), np.uint8)
    expected[10:30, 12:35] = 1
    assert np.array_equal(label, expected)


def test_cli_convert_mask_threshold(tmp_path: Path) -> None:
    source = _jpeg_mask_dataset(tmp_path / "src")
    result = CliRunner().invoke(app, ["convert", str(source), str(tmp_path / "out"), "--mask-threshold", "128"])
    assert result.exit_code == 0, result.output
    label, _ = read_label(tmp_path / "out" / "labelsTr" / "j2.nii.gz")
    assert set(np.unique(label)) == {0, 1}
