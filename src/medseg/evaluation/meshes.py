"""Surfaces of segmented structures (marching cubes) and their export as binary STL and OBJ, for planning or
3D printing.

Surfaces come from scikit-image's ``measure.marching_cubes`` (the optional ``gui`` extra: ``pip install
'medseg[gui]'``) on each structure's mask, padded by one background voxel so that every surface is closed.
Vertices are in mm in the image's array frame, written as ``(x, y, z)`` = array axes ``(2, 1, 0)`` times the
spacing (origin and direction are not applied: the mesh is for looking at and printing, not registration).
STL and OBJ are written here with numpy (no mesh library): STL as the binary format (80-byte header, uint32
triangle count, 50 bytes per triangle), one file per structure since STL has no object names; OBJ as text, one
``o NAME`` object per structure in one file, 1-based vertex indices.

Example:
    >>> mask = np.zeros((6, 6, 6), np.uint8); mask[1:5, 1:5, 1:5] = 1
    >>> surfaces = structure_surfaces(mask, (1.0, 1.0, 1.0), {0: "background", 1: "cube"})
    >>> write_stl(Path("cube.stl"), surfaces[0])    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.fileutil import atomic_path

__all__ = ["STL_TRIANGLE", "Surface", "structure_surfaces", "write_obj", "write_stl"]

# one binary STL record: normal, three vertices, attribute byte count (little-endian)
STL_TRIANGLE = np.dtype([("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


@dataclass(frozen=True)
class Surface:
    """A triangle mesh of one structure: ``vertices`` (V, 3) float32 in mm ``(x, y, z)``, ``faces`` (F, 3)
    int64 indices into them."""

    index: int
    name: str
    vertices: np.ndarray
    faces: np.ndarray

    @property
    def normals(self) -> np.ndarray:
        """(F, 3) unit normals of the faces (right-hand rule on the vertex order; 0 for degenerate faces)."""
        tri = self.vertices[self.faces]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(cross, axis=1, keepdims=True)
        return np.divide(cross, norm, out=np.zeros_like(cross), where=norm > 0).astype(np.float32)


def structure_surfaces(
    labels: np.ndarray,
    spacing: Sequence[float],
    names: Mapping[int, str],
    *,
    overlapping: bool = False,
    step: int = 1,
) -> list[Surface]:
    """A closed :class:`Surface` per non-empty foreground structure of a 3D label map ``(z, y, x)`` (or
    ``(K, z, y, x)`` masks when ``overlapping``); ``step`` > 1 gives coarser, faster meshes."""
    from skimage import measure

    if len(spacing) != 3 or labels.ndim != 3 + int(overlapping):
        raise ValueError(f"surfaces need a 3D label map and 3 spacings, got {labels.shape} and {spacing}")
    surfaces = []
    for k, name in sorted(names.items()):
        if not overlapping and k == 0:
            continue
        mask = labels[k] > 0 if overlapping else labels == k
        if not mask.any():
            continue
        padded = np.pad(mask, 1).astype(np.float32)
        verts, faces, _, _ = measure.marching_cubes(padded, 0.5, spacing=tuple(spacing), step_size=step)
        verts = (verts - np.asarray(spacing))[:, ::-1]  # undo the padding; (z, y, x) -> (x, y, z)
        # marching_cubes winds faces for a descending gradient; with the axes reversed (a mirror) the normals
        # of these faces point out of the structure (checked in tests/evaluation/test_meshes.py)
        surfaces.append(Surface(k, name, np.ascontiguousarray(verts, np.float32), faces.astype(np.int64)))
    return surfaces


def write_stl(path: Path, surface: Surface) -> Path:
    """Write ``surface`` as a binary STL file (atomically); returns ``path``."""
    records = np.zeros(len(surface.faces), STL_TRIANGLE)
    records["normal"] = surface.normals
    records["vertices"] = surface.vertices[surface.faces]
    header = f"medseg surface: {surface.name}".encode("ascii", "replace")[:80].ljust(80, b" ")
    with _writing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(header)
        handle.write(np.uint32(len(records)).astype("<u4").tobytes())
        handle.write(records.tobytes())
    return path


def write_obj(path: Path, surfaces: Sequence[Surface]) -> Path:
    """Write ``surfaces`` as one Wavefront OBJ file, an ``o NAME`` object each (atomically); returns ``path``."""
    lines = ["# medseg structure surfaces, vertices in mm (x, y, z)"]
    offset = 1
    for surface in surfaces:
        lines.append(f"o {_obj_name(surface.name)}")
        lines += [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in surface.vertices]
        lines += [f"f {a} {b} {c}" for a, b, c in surface.faces + offset]
        offset += len(surface.vertices)
    with _writing(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _obj_name(name: str) -> str:
    return re.sub(r"\s+", "_", name.strip()) or "structure"


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """``atomic_path`` with an OS error turned into a one-line :class:`DataError` naming the file."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except OSError as exc:
        raise DataError(path, f"cannot write ({exc.strerror or exc})", "choose a writable folder") from exc
