"""Marching-cubes surfaces of structures and their STL / OBJ files: hand-checked shapes and round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage", reason="scikit-image (the 'gui' extra) is not installed")

from medseg.errors import DataError
from medseg.evaluation.meshes import STL_TRIANGLE, Surface, structure_surfaces, write_obj, write_stl

SPACING = (2.0, 1.0, 0.5)  # z, y, x


def _volume(surface: Surface) -> float:
    """Enclosed volume by the divergence theorem (positive when the normals point out)."""
    a, b, c = (surface.vertices[surface.faces[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def test_one_voxel_is_an_octahedron_in_mm() -> None:
    labels = np.zeros((3, 3, 3), np.uint8)
    labels[1, 1, 1] = 1
    (surface,) = structure_surfaces(labels, SPACING, {0: "background", 1: "dot"})
    # 6 vertices half a voxel from the centre (x, y, z) = (0.5, 1, 2) mm, 8 triangles
    assert surface.vertices.shape == (6, 3) and surface.faces.shape == (8, 3)
    centre = np.array([1 * 0.5, 1 * 1.0, 1 * 2.0])
    offsets = np.sort(np.abs(surface.vertices - centre).max(axis=1))
    assert offsets == pytest.approx([0.25, 0.25, 0.5, 0.5, 1.0, 1.0])
    # octahedron with half-diagonals 0.25, 0.5, 1 mm: (4/3) a b c
    assert _volume(surface) == pytest.approx(4 / 3 * 0.25 * 0.5 * 1.0)


def test_surfaces_are_closed_outward_and_skip_empty_classes() -> None:
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:6, 2:6, 2:6] = 2  # touches no border, class 1 is empty
    labels[0, 0, 0:3] = 3  # touches the border: the padding still closes it
    surfaces = structure_surfaces(labels, SPACING, {0: "bg", 1: "none", 2: "cube", 3: "bar"})
    assert [s.name for s in surfaces] == ["cube", "bar"]
    for surface in surfaces:
        edges = np.sort(surface.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        _, counts = np.unique(edges, axis=0, return_counts=True)
        assert (counts == 2).all(), surface.name  # every edge between exactly two triangles: closed
        assert _volume(surface) > 0  # normals point out
    cube_mm3 = 64 * 2.0 * 1.0 * 0.5
    assert 0.8 * cube_mm3 < _volume(surfaces[0]) < cube_mm3  # corners and edges cut at half a voxel


def test_stl_round_trip(tmp_path: Path) -> None:
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1:4, 2:5, 1:5] = 1
    (surface,) = structure_surfaces(labels, SPACING, {0: "bg", 1: "organ"})
    path = write_stl(tmp_path / "organ.stl", surface)
    data = path.read_bytes()
    n = len(surface.faces)
    assert len(data) == 84 + 50 * n
    assert data[:80].rstrip() == b"medseg surface: organ"
    assert int(np.frombuffer(data[80:84], "<u4")[0]) == n
    records = np.frombuffer(data[84:], STL_TRIANGLE)
    np.testing.assert_array_equal(records["vertices"], surface.vertices[surface.faces])
    np.testing.assert_allclose(np.linalg.norm(records["normal"], axis=1), 1.0, rtol=1e-5)


def test_obj_round_trip_with_two_objects(tmp_path: Path) -> None:
    labels = np.zeros((5, 5, 9), np.uint8)
    labels[2, 2, 2] = 1
    labels[2, 2, 6] = 2
    surfaces = structure_surfaces(labels, (1.0, 1.0, 1.0), {0: "bg", 1: "left part", 2: "right"})
    lines = write_obj(tmp_path / "both.obj", surfaces).read_text().splitlines()
    assert [line for line in lines if line.startswith("o ")] == ["o left_part", "o right"]
    vertices = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("v ")])
    faces = np.array([[int(v) for v in line.split()[1:]] for line in lines if line.startswith("f ")])
    assert vertices.shape == (12, 3) and faces.shape == (16, 3)  # two octahedra
    np.testing.assert_allclose(vertices[faces - 1], np.concatenate([s.vertices[s.faces] for s in surfaces]), atol=1e-4)


def test_unwritable_folder_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    (surface,) = structure_surfaces(np.pad(np.ones((1, 1, 1), np.uint8), 1), SPACING, {0: "bg", 1: "dot"})
    with pytest.raises(DataError, match="file"):
        write_stl(blocker / "dot.stl", surface)
