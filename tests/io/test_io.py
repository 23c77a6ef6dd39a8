"""Image I/O keeps arrays and geometry through write -> read, and turns every bad input into DataError."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from PIL import Image

from medseg.errors import ConfigError, DataError
from medseg.io import images as io
from medseg.io import itk
from medseg.io.images import (
    MAX_VOXELS,
    SUPPORTED_SUFFIXES,
    Geometry,
    case_stem,
    image_format,
    output_path_like,
    read_channels,
    read_image,
    read_info,
    read_label,
    write_image,
)

SITK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
HIPPOCAMPUS = Path("/work/shared/data/msd-hippocampus")
SHARED = Path("/work/shared/data")


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


# anisotropic spacing (z, y, x), non-zero origin, oblique direction
GEOMETRY = Geometry((2.5, 0.8, 0.7), (10.0, -5.0, 3.0), tuple(_rotation(0.3, 0.2, 0.5).ravel()))


def _volume(dtype: str = "float32", shape: tuple[int, ...] = (4, 5, 6)) -> np.ndarray:
    values = np.random.default_rng(0).normal(size=shape) * 50
    return values.astype(dtype)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- Geometry and names ----------------------------------------------------------------------------


def test_geometry_identity_matches_and_json_round_trip() -> None:
    g = Geometry.identity(3, spacing=(3, 0.5, 0.5))
    assert g.ndim == 3 and g.origin == (0.0, 0.0, 0.0) and g.direction == tuple(np.eye(3).ravel())
    assert Geometry.from_dict(json.loads(json.dumps(GEOMETRY.to_dict()))) == GEOMETRY
    nudged = Geometry(tuple(s * 1.0001 for s in GEOMETRY.spacing), GEOMETRY.origin, GEOMETRY.direction)
    moved = Geometry(GEOMETRY.spacing, (10.0, -5.0, 4.0), GEOMETRY.direction)
    assert GEOMETRY.matches(nudged) and not GEOMETRY.matches(moved)
    assert not GEOMETRY.matches(Geometry.identity(2))


@pytest.mark.parametrize(
    ("spacing", "origin", "direction"),
    [((1.0, 1.0), (0.0,), (1, 0, 0, 1)), ((1.0, 0.0), (0.0, 0.0), (1, 0, 0, 1)), ((1.0,), (0.0,), (1, 0))],
)
def test_geometry_refuses_inconsistent_values(spacing: tuple, origin: tuple, direction: tuple) -> None:
    with pytest.raises(ValueError):
        Geometry(spacing, origin, direction)


def test_geometry_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="colour"):
        Geometry.from_dict({**GEOMETRY.to_dict(), "colour": 1})


@pytest.mark.parametrize(
    ("name", "fmt", "stem"),
    [
        ("a/case_01.nii.gz", "nifti", "case_01"),
        ("a/CASE_0000.NII.GZ", "nifti", "CASE_0000"),
        ("b.nii", "nifti", "b"),
        ("b.v2.nrrd", "nrrd", "b.v2"),
        ("c.mhd", "mha", "c"),
        ("c.mha", "mha", "c"),
        ("d.png", "png", "d"),
        ("d.JPG", "jpeg", "d"),
        ("d.jpeg", "jpeg", "d"),
        ("e.gif", "gif", "e"),
        ("e.bmp", "bmp", "e"),
        ("f.tiff", "tiff", "f"),
        ("g.npy", "npy", "g"),
        ("series_folder", "dicom", "series_folder"),
    ],
)
def test_image_format_and_case_stem(name: str, fmt: str, stem: str) -> None:
    assert image_format(Path(name)) == fmt
    assert case_stem(Path(name)) == stem
    assert output_path_like(Path(name), Path("out")) == Path("out") / Path(name).name


def test_supported_suffixes_all_have_a_format() -> None:
    assert {image_format(Path("x" + s)) for s in SUPPORTED_SUFFIXES} == {
        "nifti", "nrrd", "mha", "png", "bmp", "jpeg", "gif", "tiff", "npy",
    }  # fmt: skip


@pytest.mark.parametrize("name", ["scan.xyz", "slice.dcm", "archive.tar.gz", "README"])
def test_image_format_refuses_unknown_suffix(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("x")
    with pytest.raises(DataError, match=name):
        image_format(tmp_path / name)


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "int16", "uint8"])
@pytest.mark.parametrize("suffix", SITK_SUFFIXES)
def test_3d_round_trip_keeps_array_and_geometry(tmp_path: Path, suffix: str, dtype: str) -> None:
    array = _volume(dtype)
    path = write_image(tmp_path / f"case{suffix}", array, GEOMETRY)
    image, geometry = read_image(path)
    info = read_info(path)
    assert image.shape == (1, 4, 5, 6) and image.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(image[0], array)
    np.testing.assert_allclose(geometry.spacing, GEOMETRY.spacing, rtol=1e-6)  # NIfTI stores float32
    np.testing.assert_allclose(geometry.origin, GEOMETRY.origin, atol=1e-5)
    np.testing.assert_allclose(geometry.direction, GEOMETRY.direction, atol=1e-6)
    assert (info.shape, info.channels, info.dtype) == ((4, 5, 6), 1, dtype)
    assert info.geometry == geometry
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [*SITK_SUFFIXES, ".npy", ".tif"])
def test_multichannel_round_trip(tmp_path: Path, suffix: str) -> None:
    probabilities = np.random.default_rng(1).random((3, 4, 5, 6)).astype(np.float32)
    path = write_image(tmp_path / f"prob{suffix}", probabilities, GEOMETRY)
    image, geometry = read_image(path)
    np.testing.assert_array_equal(image, probabilities)
    assert read_info(path).channels == 3
    if suffix in SITK_SUFFIXES:
        assert geometry.matches(GEOMETRY, atol=1e-5)


def test_multichannel_nifti_is_4d_for_other_tools(tmp_path: Path) -> None:
    data = _volume(shape=(2, 4, 5, 6))
    path = write_image(tmp_path / "prob.nii.gz", data, GEOMETRY)
    stored = np.asanyarray(nib.load(path).dataobj)
    assert stored.shape == (6, 5, 4, 2)  # (x, y, z, c) as MSD and nnU-Net expect
    np.testing.assert_array_equal(stored, data.transpose(3, 2, 1, 0))


def test_msd_4d_nifti_reads_channel_first(tmp_path: Path) -> None:
    data = np.random.default_rng(2).random((6, 5, 4, 2)).astype(np.float32)  # (x, y, z, c)
    affine = np.diag([0.9, 1.1, 3.0, 1.0])
    affine[:3, 3] = (-20.0, 7.0, 1.5)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "BRATS_001.nii.gz")
    image, geometry = read_image(tmp_path / "BRATS_001.nii.gz")
    assert image.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(image, data.transpose(3, 2, 1, 0))
    np.testing.assert_allclose(geometry.spacing, (3.0, 1.1, 0.9), rtol=1e-6)
    np.testing.assert_allclose(geometry.origin, (20.0, -7.0, 1.5))  # RAS -> ITK's LPS
    assert read_info(tmp_path / "BRATS_001.nii.gz").channels == 2


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".gif", ".tif", ".tiff", ".npy", ".nii.gz", ".mha"])
def test_2d_grey_round_trip(tmp_path: Path, suffix: str) -> None:
    array = np.random.default_rng(3).integers(0, 256, (17, 23)).astype(np.uint8)
    path = write_image(tmp_path / f"slice{suffix}", array, Geometry.identity(2))
    image, geometry = read_image(path)
    assert image.shape == (1, 17, 23) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0], array)
    assert geometry == Geometry.identity(2)
    assert read_info(path).shape == (17, 23)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_2d_rgb_round_trip(tmp_path: Path, suffix: str) -> None:
    rgb = np.random.default_rng(4).integers(0, 256, (3, 9, 11)).astype(np.uint8)
    path = write_image(tmp_path / f"photo{suffix}", rgb, Geometry.identity(2))
    image, _ = read_image(path)
    np.testing.assert_array_equal(image, rgb)
    assert read_info(path).channels == 3


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    smooth = np.add.outer(np.arange(32), np.arange(32)).astype(np.uint8) * 3
    image, _ = read_image(write_image(tmp_path / "smooth.jpg", smooth, Geometry.identity(2)))
    assert image.shape == (1, 32, 32)
    assert np.abs(image[0].astype(int) - smooth).max() <= 4


def test_2d_spacing_is_dropped_with_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8), Geometry.identity(2, spacing=(0.5, 0.5)))
    assert "geometry dropped" in caplog.text


@pytest.mark.parametrize("shape", [(4, 5, 6), (2, 4, 5, 6)])
def test_3d_tiff_round_trip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = _volume("uint16", shape)
    image, geometry = read_image(write_image(tmp_path / "stack.tif", array, Geometry.identity(3)))
    np.testing.assert_array_equal(image, array if len(shape) == 4 else array[None])
    assert geometry.ndim == 3


def test_tiff_written_by_another_tool_with_samples_axis(tmp_path: Path) -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (9, 11, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    image, _ = read_image(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(image, rgb.transpose(2, 0, 1))


def test_lzw_tiff_is_read_without_imagecodecs(tmp_path: Path) -> None:
    rgb = np.random.default_rng(6).integers(0, 256, (9, 11, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")  # like the DRIVE images
    image, _ = read_image(tmp_path / "lzw.tif")
    np.testing.assert_array_equal(image, rgb.transpose(2, 0, 1))
    assert read_info(tmp_path / "lzw.tif").channels == 3


@pytest.mark.parametrize("shape", [(7, 8), (3, 7, 8)])
def test_npy_is_single_channel_spatial(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.arange(math.prod(shape), dtype=np.int32).reshape(shape)
    np.save(tmp_path / "a.npy", array)
    image, geometry = read_image(tmp_path / "a.npy")
    np.testing.assert_array_equal(image, array[None])
    assert geometry == Geometry.identity(len(shape))


def test_sixteen_bit_png_and_grey_palette_png(tmp_path: Path) -> None:
    deep = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png")[0][0], deep)
    # JSRT style: palette mode whose palette is grey but inverted (index 0 -> 255)
    indices = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    palette = Image.fromarray(indices, mode="L").convert("P")
    palette.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    palette.save(tmp_path / "inverted.png")
    image, _ = read_image(tmp_path / "inverted.png")
    np.testing.assert_array_equal(image, (255 - indices)[None])
    assert read_info(tmp_path / "inverted.png").channels == 1


def test_colour_palette_gives_rgb_image_and_index_label(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    voc = Image.fromarray(indices, mode="L").convert("P")
    voc.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    voc.save(tmp_path / "voc.png")
    image, _ = read_image(tmp_path / "voc.png")
    assert image.shape == (3, 2, 2) and image[0, 0, 1] == 128 and image[1, 1, 0] == 128
    label, _ = read_label(tmp_path / "voc.png")
    np.testing.assert_array_equal(label, indices)


# --- nnU-Net channel files -------------------------------------------------------------------------


def test_read_channels_stacks_nnunet_files(tmp_path: Path) -> None:
    t1, t2 = _volume("float32"), _volume("float32") + 7
    paths = [write_image(tmp_path / f"CASE_{c:04d}.nii.gz", a, GEOMETRY) for c, a in enumerate((t1, t2))]
    image, geometry = read_channels(paths)
    assert image.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(image, np.stack([t1, t2]))
    assert geometry.matches(GEOMETRY)
    np.testing.assert_array_equal(read_channels(paths[:1])[0], t1[None])


@pytest.mark.parametrize(
    ("array", "geometry", "problem"),
    [
        (np.zeros((4, 5, 7), np.float32), GEOMETRY, "shape"),
        (np.zeros((4, 5, 6), np.float32), Geometry(GEOMETRY.spacing, (0.0, 0.0, 0.0), GEOMETRY.direction), "origin"),
        (np.zeros((2, 4, 5, 6), np.float32), GEOMETRY, "channels"),
    ],
)
def test_read_channels_names_the_mismatching_file(
    tmp_path: Path, array: np.ndarray, geometry: Geometry, problem: str
) -> None:
    first = write_image(tmp_path / "CASE_0000.nii.gz", _volume(), GEOMETRY)
    second = write_image(tmp_path / "CASE_0001.nii.gz", array, geometry)
    with pytest.raises(DataError, match=problem) as caught:
        read_channels([first, second])
    assert caught.value.path == second


# --- labels ----------------------------------------------------------------------------------------


def test_float_label_with_whole_numbers_is_cast(tmp_path: Path) -> None:
    labels = np.random.default_rng(6).integers(0, 3, (4, 5, 6))
    path = write_image(tmp_path / "hippo.nii.gz", labels.astype(np.float32), GEOMETRY)
    label, geometry = read_label(path)
    assert label.dtype == np.uint8 and label.shape == (4, 5, 6)
    np.testing.assert_array_equal(label, labels)
    assert geometry.matches(GEOMETRY)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([0, 1, 255], np.uint8), ([0, 256], np.int16), ([-1, 0, 2], np.int16), ([0, 70000], np.int32)],
)
def test_label_dtype_is_the_smallest_that_fits(tmp_path: Path, values: list[int], dtype: type) -> None:
    array = np.array(values, dtype=np.int64).reshape(1, 1, -1)
    label, _ = read_label(write_image(tmp_path / "l.nii.gz", array, Geometry.identity(3)))
    assert label.dtype == dtype
    np.testing.assert_array_equal(label, array)


def test_non_integral_label_is_refused(tmp_path: Path) -> None:
    path = write_image(tmp_path / "soft.nii.gz", np.full((2, 2, 2), 0.5, np.float32), Geometry.identity(3))
    with pytest.raises(DataError, match="non-integer values") as caught:
        read_label(path)
    assert "soft.nii.gz" in str(caught.value)


def test_rgb_mask_with_equal_channels_is_accepted(tmp_path: Path) -> None:
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(np.stack([mask] * 3, axis=-1)).save(tmp_path / "mask.jpg", quality=95)
    label, geometry = read_label(tmp_path / "mask.jpg")
    assert label.shape == (16, 16) and label.dtype == np.uint8 and geometry.ndim == 2
    assert label[8, 8] > 128 and label[0, 0] < 128


def test_rgb_mask_with_different_channels_is_refused(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="mask has 3 different colour channels; save it as a single-channel"):
        read_label(tmp_path / "colour.png")


# --- failures become DataError naming the file -----------------------------------------------------


def _missing(folder: Path) -> Path:
    return folder / "absent.nii.gz"


def _empty(folder: Path) -> Path:
    (folder / "empty.nii.gz").touch()
    return folder / "empty.nii.gz"


def _text_as_nifti(folder: Path) -> Path:
    (folder / "notes.nii.gz").write_text("this is not an image\n")
    return folder / "notes.nii.gz"


def _truncated(name: str) -> object:
    def build(folder: Path) -> Path:
        full = write_image(folder / f"full_{name}", _volume(shape=(8, 20, 20)), GEOMETRY)
        data = full.read_bytes()
        (folder / name).write_bytes(data[: len(data) * 2 // 3])
        return folder / name

    return build


def _absurd_nrrd(folder: Path) -> Path:
    header = "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\n\n"
    (folder / "huge.nrrd").write_bytes(header.encode() + bytes(16))
    return folder / "huge.nrrd"


def _absurd_gz_nifti(folder: Path) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    with gzip.open(folder / "huge.nii.gz", "wb") as handle:
        handle.write(header.binaryblock + bytes(4 + 64))
    return folder / "huge.nii.gz"


def _text_as_png(folder: Path) -> Path:
    (folder / "fake.png").write_text("not a png")
    return folder / "fake.png"


def _truncated_png(folder: Path) -> Path:
    Image.fromarray(_volume("uint8", (64, 64))).save(folder / "whole.png")
    (folder / "cut.png").write_bytes((folder / "whole.png").read_bytes()[:200])
    return folder / "cut.png"


def _pickled_npy(folder: Path) -> Path:
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return folder / "objects.npy"


def _empty_folder(folder: Path) -> Path:
    (folder / "no_series").mkdir()
    (folder / "no_series" / "readme.txt").write_text("nothing here")
    return folder / "no_series"


def _unsupported(folder: Path) -> Path:
    (folder / "scan.xyz").write_text("x")
    return folder / "scan.xyz"


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (_missing, "no such file"),
        (_empty, "empty"),
        (_text_as_nifti, "NIfTI"),
        (_truncated("cut.nii.gz"), "truncated"),
        (_truncated("cut.nii"), "truncated"),
        (_truncated("cut.nrrd"), "NRRD"),
        (_truncated("cut.mha"), "MetaImage"),
        (_absurd_nrrd, "over the limit"),
        (_absurd_gz_nifti, "over the limit"),
        (_text_as_png, "cannot be read"),
        (_truncated_png, "cannot be decoded"),
        (_pickled_npy, "pickled"),
        (_empty_folder, "no DICOM series"),
        (_unsupported, "unsupported file type"),
    ],
)
def test_bad_input_raises_data_error_with_file_name(tmp_path: Path, build: object, problem: str) -> None:
    path = build(tmp_path)  # type: ignore[operator]
    for reader in (read_image, read_label):
        with pytest.raises(DataError, match=problem) as caught:
            reader(path)
        assert path.name in str(caught.value)


@pytest.mark.parametrize("build", [_absurd_nrrd, _absurd_gz_nifti])
def test_read_info_refuses_absurd_header_before_reading_data(tmp_path: Path, build: object) -> None:
    path = build(tmp_path)  # type: ignore[operator]
    with pytest.raises(DataError, match=f"limit of {MAX_VOXELS:,}"):
        read_info(path)


def test_read_info_reads_only_the_header(tmp_path: Path) -> None:
    # a MetaImage header whose data file does not exist: the header alone is enough for read_info
    (tmp_path / "header.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\nElementSpacing = 0.5 0.6 2\n"
        "ElementType = MET_SHORT\nElementDataFile = missing.raw\n"
    )
    info = read_info(tmp_path / "header.mhd")
    assert (info.shape, info.channels, info.dtype) == ((4, 5, 6), 1, "int16")
    np.testing.assert_allclose(info.geometry.spacing, (2.0, 0.6, 0.5))
    with pytest.raises(DataError, match=r"header\.mhd"):
        read_image(tmp_path / "header.mhd")


# --- atomic writes ---------------------------------------------------------------------------------


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.nii.gz").write_bytes(b"old content")

    def broken_writer(image: sitk.Image, name: str, *args: object) -> None:
        Path(name).write_bytes(b"half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(itk.sitk, "WriteImage", broken_writer)
    for name in ("new.nii.gz", "keep.nii.gz", "detached.mhd"):
        with pytest.raises(DataError, match=name):
            write_image(tmp_path / name, _volume(), GEOMETRY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]
    assert (tmp_path / "keep.nii.gz").read_bytes() == b"old content"


@pytest.mark.parametrize(
    ("name", "array", "problem"),
    [
        ("big.png", np.full((4, 4), 300, np.int32), "do not fit"),
        ("neg.bmp", np.full((4, 4), -1, np.int16), "do not fit"),
        ("soft.png", np.full((4, 4), 0.5, np.float32), "float"),
        ("four.png", np.zeros((4, 4, 4), np.uint8), "2D"),
    ],
)
def test_2d_writer_refuses_what_it_cannot_store(tmp_path: Path, name: str, array: np.ndarray, problem: str) -> None:
    geometry = Geometry.identity(array.ndim if name != "four.png" else 2)
    with pytest.raises(DataError, match=problem):
        write_image(tmp_path / name, array, geometry)
    assert list(tmp_path.iterdir()) == []


def test_labels_are_written_as_uint8_in_png(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [2, 200]], dtype=np.int64)
    path = write_image(tmp_path / "mask.png", labels, Geometry.identity(2))
    with Image.open(path) as png:
        assert png.mode == "L"
    np.testing.assert_array_equal(read_label(path)[0], labels)


def test_array_not_fitting_geometry_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        write_image(tmp_path / "a.nii.gz", np.zeros((2, 2)), GEOMETRY)


# --- real data -------------------------------------------------------------------------------------


def test_msd_hippocampus_spacing_matches_nibabel() -> None:
    if not HIPPOCAMPUS.exists():
        pytest.skip("shared MSD hippocampus data not present")
    image_path = sorted((HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))[0]
    label_path = HIPPOCAMPUS / "labelsTr" / image_path.name
    image, geometry = read_image(image_path)
    label, label_geometry = read_label(label_path)
    reference = nib.load(image_path)
    zooms = reference.header.get_zooms()[:3]
    np.testing.assert_allclose(geometry.spacing, zooms[::-1])
    np.testing.assert_array_equal(image[0], np.asanyarray(reference.dataobj).transpose(2, 1, 0))
    assert label.shape == image.shape[1:] and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1, 2}
    assert label_geometry.matches(geometry)


def test_shared_2d_datasets_read() -> None:
    """JSRT palette PNG (grey palette), Kvasir JPEG mask (3 equal channels), DRIVE LZW TIFF."""
    files = {
        "jsrt": sorted((SHARED / "jsrt-scr-cxr" / "images").glob("*.png"))[:1],
        "kvasir": sorted((SHARED / "kvasir-seg" / "masks").glob("*.jpg"))[:1],
        "drive": sorted((SHARED / "drive-retina" / "training" / "images").glob("*.tif"))[:1],
    }
    if not all(files.values()):
        pytest.skip("shared 2D data not present")
    cxr, _ = read_image(files["jsrt"][0])
    with Image.open(files["jsrt"][0]) as png:
        assert png.mode == "P"
        np.testing.assert_array_equal(cxr[0], np.asarray(png.convert("L")))
    mask, geometry = read_label(files["kvasir"][0])
    assert mask.ndim == 2 and geometry == Geometry.identity(2)
    fundus, _ = read_image(files["drive"][0])
    assert fundus.shape[0] == 3 and fundus.shape[1:] == read_info(files["drive"][0]).shape


def test_an_os_error_while_reading_is_a_data_error_naming_the_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Permission denied, an I/O error: whatever the operating system reports is one line naming the file."""
    path = io.write_image(tmp_path / "scan.nii.gz", np.ones((2, 3, 4), np.float32), Geometry.identity(3))

    def fail(p: Path) -> None:
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(itk, "_check_nifti_complete", fail)
    with pytest.raises(DataError) as info:
        io.read_image(path)
    assert str(info.value) == f"{path}: cannot be read (Permission denied) (check the file and its permissions)"


@pytest.mark.parametrize("make", ["loop", "dangling"])
def test_a_symlink_that_cannot_be_followed_is_named(tmp_path: Path, make: str) -> None:
    path = tmp_path / "scan.nii.gz"
    path.symlink_to("scan.nii.gz" if make == "loop" else "gone.nii.gz")
    shows = "is a symbolic link loop" if make == "loop" else "is a broken symbolic link (to gone.nii.gz)"
    for read in (io.read_image, io.read_info, io.read_label):
        with pytest.raises(DataError, match=shows.replace("(", r"\(").replace(")", r"\)")) as info:
            read(path)
        assert info.value.path == path
