"""Property tests: write_image -> read_image / read_label gives back the array, its dtype and its geometry
(spacing, origin, direction) for random small shapes, dtypes, spacings, origins and rotations."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medseg.io.images import Geometry, read_image, read_label, write_image

SITK_SUFFIXES = [".nii.gz", ".nrrd", ".mha"]
DTYPES = ["uint8", "int16", "float32"]
PROPERTY = settings(max_examples=25, deadline=None)


def _rotation_3d(ax: float, ay: float, az: float, reflect: bool) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx @ np.diag([1.0, 1.0, -1.0 if reflect else 1.0])


def _rotation_2d(angle: float, reflect: bool) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]]) @ np.diag([1.0, -1.0 if reflect else 1.0])


_angles = st.floats(-math.pi, math.pi, allow_nan=False)


@st.composite
def geometries(draw: st.DrawFn, ndim: int) -> Geometry:
    """Anisotropic spacing, an origin anywhere in a scanner's range, a rotation (possibly with a reflection)."""
    spacing = draw(st.lists(st.floats(0.05, 20.0), min_size=ndim, max_size=ndim))
    origin = draw(st.lists(st.floats(-500.0, 500.0), min_size=ndim, max_size=ndim))
    reflect = draw(st.booleans())
    if ndim == 3:
        direction = _rotation_3d(draw(_angles), draw(_angles), draw(_angles), reflect)
    else:
        direction = _rotation_2d(draw(_angles), reflect)
    return Geometry(tuple(spacing), tuple(origin), tuple(direction.ravel()))


@st.composite
def images(draw: st.DrawFn, ndim: int, dtypes: list[str]) -> np.ndarray:
    """Small arrays (1..6 voxels per axis) of any value the dtype holds (finite for floats)."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    if dtype.kind == "f":
        elements = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    return draw(arrays(dtype, shape, elements=elements))


def _assert_geometry(read: Geometry, written: Geometry) -> None:
    """NIfTI stores spacing, origin and the rotation (as a quaternion) in float32: allow float32 rounding."""
    assert read.ndim == written.ndim
    np.testing.assert_allclose(read.spacing, written.spacing, rtol=1e-6)
    np.testing.assert_allclose(read.origin, written.origin, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(read.direction, written.direction, atol=1e-5)


def _round_trip(suffix: str, array: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, Geometry]:
    with tempfile.TemporaryDirectory() as folder:
        path = write_image(Path(folder) / f"case{suffix}", array, geometry)
        return read_image(path)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("suffix", SITK_SUFFIXES)
@PROPERTY
@given(data=st.data())
def test_image_round_trip_keeps_array_dtype_and_geometry(data: st.DataObject, suffix: str, ndim: int) -> None:
    array, geometry = data.draw(images(ndim, DTYPES)), data.draw(geometries(ndim))
    read, read_geometry = _round_trip(suffix, array, geometry)
    assert read.shape == (1, *array.shape) and read.dtype == array.dtype
    np.testing.assert_array_equal(read[0], array)
    _assert_geometry(read_geometry, geometry)


def _smallest_label_dtype(array: np.ndarray) -> np.dtype:
    """read_label's documented rule: uint8 when the values fit, else int16, else int32."""
    for dtype in ("uint8", "int16", "int32"):
        info = np.iinfo(dtype)
        if info.min <= array.min() and array.max() <= info.max:
            return np.dtype(dtype)
    raise AssertionError("unreachable for uint8 / int16 input")


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("suffix", SITK_SUFFIXES)
@PROPERTY
@given(data=st.data())
def test_label_round_trip_keeps_values_and_geometry(data: st.DataObject, suffix: str, ndim: int) -> None:
    array, geometry = data.draw(images(ndim, ["uint8", "int16"])), data.draw(geometries(ndim))
    with tempfile.TemporaryDirectory() as folder:
        path = write_image(Path(folder) / f"mask{suffix}", array, geometry)
        labels, read_geometry = read_label(path)
    assert labels.shape == array.shape and labels.dtype == _smallest_label_dtype(array)
    np.testing.assert_array_equal(labels, array)
    _assert_geometry(read_geometry, geometry)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".npy"])
@PROPERTY
@given(data=st.data())
def test_2d_formats_keep_array_with_identity_geometry(data: st.DataObject, suffix: str) -> None:
    """PNG stores uint8; TIFF and .npy store every dtype. None of them stores geometry: identity in, identity out."""
    array = data.draw(images(2, ["uint8"] if suffix == ".png" else DTYPES))
    read, geometry = _round_trip(suffix, array, Geometry.identity(2))
    assert read.shape == (1, *array.shape) and read.dtype == array.dtype
    np.testing.assert_array_equal(read[0], array)
    assert geometry == Geometry.identity(2)
    if array.dtype.kind in "iu":
        with tempfile.TemporaryDirectory() as folder:
            labels, _ = read_label(write_image(Path(folder) / f"mask{suffix}", array, Geometry.identity(2)))
        np.testing.assert_array_equal(labels, array)
        assert labels.dtype == _smallest_label_dtype(array)
