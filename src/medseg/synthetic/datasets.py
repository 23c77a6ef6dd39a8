"""Synthetic datasets on disk: phantom cases written in any layout medseg reads, and the overlapping
structures variant (lungs, heart, mediastinum as binary masks that overlap)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medseg.datasets.dataset import write_layout
from medseg.datasets.records import CaseArrays, DatasetMeta
from medseg.errors import ConfigError
from medseg.io.images import Geometry
from medseg.labels import LabelSpec
from medseg.synthetic.phantom import LABEL_NAMES, OVERLAP_NAMES, SyntheticCase, SyntheticSpec, make_cases

__all__ = ["overlapping_masks", "write_dataset"]


def overlapping_masks(case: SyntheticCase) -> np.ndarray:
    """``(K, *spatial)`` uint8 overlapping masks named by :data:`OVERLAP_NAMES`.

    ``mediastinum`` is heart ∪ aorta ∪ the non-lung voxels that lie between lung voxels along the same
    row (right-left line) and not behind the aorta's posterior edge in that slice; it contains the heart.
    """
    lungs, heart, aorta = case.label == 1, case.label == 2, case.label == 3
    seen_right = np.logical_or.accumulate(lungs, axis=-1)
    seen_left = np.flip(np.logical_or.accumulate(np.flip(lungs, axis=-1), axis=-1), axis=-1)
    aorta_rows = aorta.any(axis=-1)
    not_behind = np.flip(np.logical_or.accumulate(np.flip(aorta_rows, axis=-1), axis=-1), axis=-1)
    between = seen_right & seen_left & ~lungs & not_behind[..., None]
    return np.stack([lungs, heart, between | heart | aorta]).astype(np.uint8)


def write_dataset(
    out: Path,
    spec: SyntheticSpec,
    *,
    n_cases: int,
    seed: int,
    layout: str = "msd",
    overlapping: bool = False,
    n_test: int = 0,
    n_channels: int = 1,
) -> Path:
    """Write ``n_cases`` labelled (and ``n_test`` unlabelled) synthetic cases under ``out`` in ``layout``
    ('msd', 'nnunet' or 'folder'); one channel named CT, labels :data:`LABEL_NAMES` or, with
    ``overlapping``, the binary structures :data:`OVERLAP_NAMES` (nnU-Net or folder layout only).

    Volumes are written as NIfTI; the folder layout of 2D cases uses 16-bit PNG with HU + 1024 (as many
    tutorials store CT slices), so it exercises the PNG path.

    ``n_channels`` > 1 (nnU-Net or MSD layout) adds MR-like channels for multi-modal tests: channel ``c``
    is a smooth monotone remap of the CT image onto ``0 .. 1000 c`` (:func:`mr_like`), named ``MR<c>``.
    """
    if n_channels < 1 or (n_channels > 1 and layout == "folder"):
        raise ConfigError(f"n_channels = {n_channels}: give 1, or more with the nnunet or msd layout")
    png = layout == "folder" and spec.ndim == 2
    cases = make_cases(spec, n_cases + n_test, seed)

    def arrays() -> Iterator[CaseArrays]:
        for i, case in enumerate(cases):
            image = np.clip(case.image + 1024, 0, 65535).astype(np.uint16) if png else case.image
            label: np.ndarray | None = overlapping_masks(case) if overlapping else case.label
            geometry = Geometry.identity(spec.ndim, None if png else case.spacing)
            channels = np.stack([image, *(mr_like(case.image, c) for c in range(1, n_channels))])
            yield CaseArrays(f"case_{i:03d}", channels, geometry, label if i < n_cases else None)

    label_names = dict(enumerate(OVERLAP_NAMES, start=1)) if overlapping else dict(LABEL_NAMES)
    meta = DatasetMeta(
        name=f"synthetic_ct_{spec.ndim}d",
        labels=LabelSpec(label_names, tuple(label_names), overlapping),
        channel_names=("CT", *(f"MR{c}" for c in range(1, n_channels))),
        file_ending=".png" if png else ".nii.gz",
        description=f"medseg synthetic CT-like {spec.ndim}D cases, seed {seed}",
    )
    return write_layout(Path(out), layout, arrays(), meta)


def mr_like(hu: np.ndarray, c: int) -> np.ndarray:
    """An MR-like float32 channel of the same anatomy: ``500 c (1 + tanh((HU + 400) / (150 c)))``, a smooth
    monotone remap on a scale unlike CT's (0 .. 1000 c), with a contrast that differs per ``c``."""
    return (500.0 * c * (1.0 + np.tanh((hu + 400.0) / (150.0 * c)))).astype(np.float32)
