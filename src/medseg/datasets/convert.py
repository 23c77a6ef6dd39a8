"""``medseg convert``: any readable dataset (images/ + masks/ folders, DICOM series folders, MSD) into the
nnU-Net v2 raw layout (or, with ``layout="msd"``, the MSD layout), so that every dataset becomes a standard
one in one command.

Label values are remapped to consecutive indices (nnU-Net requires 0..K-1: a 0/255 PNG mask becomes 0/1);
multi-channel images (RGB, 4D NIfTI) become one file per channel; geometry is kept. With
``resize_images_to_masks`` an image whose size is an exact integer multiple of its mask's (JSRT: 2048² images
with 1024² masks) is reduced by block averaging to the mask's grid and its spacing scaled accordingly.

With ``mask_threshold`` T, every mask is binarised (value >= T -> 1, else 0) before anything else: the fix for
masks stored in a lossy format (JPEG leaves values 1-8 and 246-255 around a 0/255 mask, which would otherwise
read as a 19-class dataset; ``medseg check`` recognises them and suggests T). Overlapping structure masks are
binarised the same way, one structure at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.datasets.dataset import write_layout
from medseg.datasets.records import Case, CaseArrays, Dataset, DatasetMeta
from medseg.errors import DataError
from medseg.io.images import Geometry, read_channels, read_label
from medseg.labels import LabelSpec

__all__ = ["ConvertOptions", "block_downsample", "convert_dataset"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    layout: str = "nnunet"
    file_ending: str = ".nii.gz"
    resize_images_to_masks: bool = False
    name: str = ""
    mask_threshold: float | None = None  # binarise masks: value >= T -> 1 (lossy JPEG masks)


def convert_dataset(
    source: Dataset, out: Path, options: ConvertOptions, progress: Callable[[], None] | None = None
) -> Path:
    """Convert ``source`` into ``out`` (which must not exist); returns ``out``.

    Refuses a source with problems (missing masks, duplicates): run ``medseg check`` first.
    """
    if source.problems:
        first = source.problems[0]
        raise DataError(first.path, f"{first.message} ({len(source.problems)} problem(s))", "run `medseg check` first")
    if not source.labels.values and not source.labels.overlapping:
        raise DataError(source.root, "no label values known", "the masks could not be read")
    channel_names = _channel_names(source)
    names = source.labels.names
    if options.mask_threshold is not None and not source.labels.overlapping:
        names = {0: "background", 1: "foreground"}
    meta = DatasetMeta(
        name=options.name or source.root.name,
        labels=LabelSpec(names, tuple(names), source.labels.overlapping),
        channel_names=channel_names,
        file_ending=options.file_ending,
        description=f"converted by medseg from {source.layout} layout at {source.root}",
    )
    cases = _iter_cases(source, options, progress)
    return write_layout(out, options.layout, cases, meta)


def _channel_names(source: Dataset) -> tuple[str, ...]:
    first = source.cases[0] if source.cases else None
    if first is None:
        raise DataError(source.root, "dataset has no cases")
    image, _ = read_channels(list(first.channels))
    if image.shape[0] == len(source.channel_names):
        return source.channel_names
    if image.shape[0] == 3:
        return ("R", "G", "B")
    return tuple(f"channel_{c}" for c in range(image.shape[0]))


def _iter_cases(source: Dataset, options: ConvertOptions, progress: Callable[[], None] | None) -> Iterator[CaseArrays]:
    for case in list(source.cases) + list(source.test_cases):
        yield _convert_case(case, source, options)
        if progress is not None:
            progress()


def _convert_case(case: Case, source: Dataset, options: ConvertOptions) -> CaseArrays:
    image, geometry = read_channels(list(case.channels))
    if not case.label:
        return CaseArrays(case.case_id, image, geometry)
    labels = [read_label(p) for p in case.label]
    label_shape = labels[0][0].shape
    if image.shape[1:] != label_shape and options.resize_images_to_masks:
        image, geometry = block_downsample(image, geometry, label_shape, case.channels[0])
    if image.shape[1:] != label_shape:
        raise DataError(
            case.label[0],
            f"label shape {label_shape} differs from image shape {image.shape[1:]}",
            "use --resize-images-to-masks if the image is an exact multiple of the mask",
        )
    if options.mask_threshold is not None:
        binary = [(arr >= options.mask_threshold).astype(np.uint8) for arr, _ in labels]
        label = np.stack(binary) if source.labels.overlapping else binary[0]
    elif source.labels.overlapping:
        label = np.stack([(arr > 0).astype(np.uint8) for arr, _ in labels])
    else:
        label = source.labels.to_indices(labels[0][0], case.label[0])
    return CaseArrays(case.case_id, image, geometry, label)


def block_downsample(
    image: np.ndarray, geometry: Geometry, target: tuple[int, ...], path: Path
) -> tuple[np.ndarray, Geometry]:
    """Reduce ``image`` (C, *spatial) to ``target`` spatial shape by averaging integer-sized blocks.

    Block averaging is the exact area interpolation for integer factors (no aliasing, no shift of the
    pixel grid other than the half-pixel change of the first pixel centre, which moves the origin).
    """
    spatial = image.shape[1:]
    if len(spatial) != len(target) or any(s % t for s, t in zip(spatial, target, strict=True)):
        raise DataError(path, f"image shape {spatial} is not an integer multiple of the mask shape {target}")
    factors = [s // t for s, t in zip(spatial, target, strict=True)]
    shape = [image.shape[0]]
    for t, f in zip(target, factors, strict=True):
        shape += [t, f]
    blocks = image.astype(np.float32).reshape(shape)
    reduced = blocks.mean(axis=tuple(range(2, 2 * len(target) + 1, 2)))
    if np.issubdtype(image.dtype, np.integer):
        reduced = np.rint(reduced).astype(image.dtype)
    spacing = tuple(s * f for s, f in zip(geometry.spacing, factors, strict=True))
    # the first output pixel centre lies (f - 1) / 2 input pixels further along each axis
    shift_array = [(f - 1) / 2 * s for f, s in zip(factors, geometry.spacing, strict=True)]
    direction = np.asarray(geometry.direction, dtype=float).reshape(len(target), len(target))
    shift_itk = direction @ np.asarray(shift_array[::-1])
    origin = tuple(float(o + d) for o, d in zip(geometry.origin, shift_itk, strict=True))
    return reduced, Geometry(spacing=spacing, origin=origin, direction=geometry.direction)
