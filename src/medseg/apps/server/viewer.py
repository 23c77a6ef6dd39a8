"""What the browser viewer needs: the scan and its labels as arrays, and the server's example scans.

The viewer (``static/``: one HTML page, its script and style, no build step) uploads a scan to
``POST /v1/models/{name}/predict?format=viewer`` and draws what :func:`view_payload` returns: the scan as
float32 ``(C, *spatial)`` and the labels as uint8 (class indices, or ``(K, *spatial)`` masks for overlapping
classes), both little-endian in base64, with the shape, the spacing and the label names; next to them the mask
file the predict endpoint sends (what the viewer's Download button saves). Scans larger than
:data:`VIEW_MAX_VOXELS` (voxels × channels) are refused before predicting: the viewer holds the scan in the
browser's memory, the predict endpoint streams (docs/serve.md).

Examples are the files of the folder given to ``medseg serve --examples DIR`` with a suffix the server accepts,
listed once at start-up and sent by name only; a name not in that list is 404, so no request reaches any other
file.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STATIC", "VIEW_MAX_VOXELS", "Examples", "view_payload"]

VIEW_MAX_VOXELS = 1 << 25  # 33.5 M values (voxels × channels): 128 MiB as float32, 171 MiB in base64
STATIC = Path(__file__).with_name("static")


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def view_payload(
    image: np.ndarray, labels: np.ndarray, spacing: tuple[float, ...], names: dict[int, str], overlapping: bool
) -> dict[str, Any]:
    """The scan ``(C, *spatial)`` and its predicted ``labels`` as the viewer draws them (module docstring)."""
    return {
        "shape": list(image.shape[1:]),
        "spacing": [float(s) for s in spacing],
        "channels": int(image.shape[0]),
        "image": _b64(image, "float32"),
        "labels": _b64(labels, "uint8"),
        "overlapping": overlapping,
        "classes": [{"index": int(i), "name": n} for i, n in sorted(names.items()) if i != 0 or overlapping],
    }


@dataclass(frozen=True)
class Examples:
    """The example scans a server offers: ``{file name: path}``, read once when the server starts."""

    files: dict[str, Path]

    @classmethod
    def scan(cls, folder: Path | None, suffixes: tuple[str, ...]) -> Examples:
        """The files of ``folder`` whose names end with one of ``suffixes`` (none without a folder)."""
        if folder is None:
            return cls({})
        files = {
            p.name: p
            for p in sorted(Path(folder).iterdir())
            if p.is_file() and not p.name.startswith(".") and any(p.name.lower().endswith(s) for s in suffixes)
        }
        return cls(files)
