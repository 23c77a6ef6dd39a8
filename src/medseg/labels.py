"""The classes of a dataset, in one record used from reading to evaluation: :class:`LabelSpec`.

Two kinds of labelling exist:

* exclusive classes (one class per voxel): ``names`` maps class index -> name with 0 the background, and
  ``values[i]`` is the voxel value of class ``i`` in the label files (identical to ``i`` for MSD and nnU-Net
  data; any integers for plain folders, e.g. 0 and 255 for PNG masks);
* overlapping structures (``overlapping=True``, e.g. BraTS regions, JSRT's heart/lungs/clavicles): one
  binary mask file per structure, no background class; ``names`` maps 1..K to structure names in the
  order of the mask files and of the network's sigmoid channels.

Example:
    >>> spec = LabelSpec({0: "background", 1: "lesion"}, (0, 255))
    >>> spec.to_indices(np.array([0, 255, 255], dtype=np.uint8), Path("mask.png")).tolist()
    [0, 1, 1]
    >>> spec.to_values(np.array([1, 0])).tolist()
    [255, 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DataError

__all__ = ["LabelSpec"]


@dataclass(frozen=True)
class LabelSpec:
    """Class names by index, the voxel value of each class in the files, and whether they overlap."""

    names: dict[int, str]
    values: tuple[int, ...] = ()
    overlapping: bool = False

    @property
    def n_outputs(self) -> int:
        """Network output channels: one per class (softmax), or one per structure (sigmoid)."""
        return len(self.names)

    @property
    def foreground(self) -> list[int]:
        """Indices that are scored: every structure, or every class but the background (index 0)."""
        return list(self.names) if self.overlapping else [k for k in self.names if k != 0]

    def to_indices(self, label: np.ndarray, path: Path) -> np.ndarray:
        """Map the voxel values of a label map to class indices (``values[i]`` -> ``i``), as uint8.

        A value not in ``values`` is an error naming ``path``.
        """
        present = np.unique(label)
        lookup = {v: i for i, v in enumerate(self.values)}
        unknown = [int(v) for v in present if int(v) not in lookup]
        if unknown:
            raise DataError(path, f"label values {unknown} are not declared (declared: {list(self.values)})")
        table = np.zeros(int(present.max()) + 1 if present.size else 1, dtype=np.uint8)
        for value, index in lookup.items():
            if 0 <= value < table.size:
                table[value] = index
        return table[label]

    def to_values(self, indices: np.ndarray) -> np.ndarray:
        """Class indices -> the voxel values of the label files (uint8, or uint16 when a value exceeds 255)."""
        values = np.asarray(self.values, dtype=np.int64)
        return values[indices].astype(np.uint8 if values.max() < 256 else np.uint16)
