"""The unlabelled scans of pre-training: found, preprocessed exactly as training data, and cut into patches.

Scans are found as prediction finds them (:func:`medseg.inference.inputs.find_scans`: a file, a DICOM
series folder or a folder of scans; nnU-Net channel files ``CASE_0000``, ``CASE_0001`` grouped per case),
checked against the plans (:func:`medseg.preprocessing.checks.check_scan`: dimensionality, channels,
NaN/Inf) and preprocessed by the run's own cache (:mod:`medseg.preprocessing.cache`: crop, resample to the
planned spacing, the planned normalisation), so the encoder sees what training will feed it.

Patches are drawn uniformly: a random case, a random position; a case smaller than the patch is placed at
a random offset in a zero patch. Every draw comes from a passed :class:`numpy.random.Generator`.

Example:
    >>> cases = find_unlabelled([Path("imagesTr")], plans.data)          # doctest: +SKIP
    >>> batch = sample_patches(images, (64, 64, 64), 2, np.random.default_rng(0))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.config.plans import DataConfig
from medseg.datasets.records import Case
from medseg.errors import DataError
from medseg.inference.inputs import find_scans, group_channels

__all__ = ["DATASET_FILE", "crop_or_pad", "find_unlabelled", "sample_patches"]

DATASET_FILE = "dataset.json"  # marks a dataset's root (MSD, nnU-Net): its scans are in sub-folders


def find_unlabelled(folders: Sequence[Path], data: DataConfig) -> list[Case]:
    """The cases (no labels) in ``folders``, channels grouped for ``data``'s channel count; case ids get
    the folder's index as prefix when there are several folders (``0_case``, ``1_case``), so that equal
    names in e.g. imagesTr and imagesTs stay apart."""
    if not folders:
        raise DataError(Path("."), "no folder of scans given", "pass e.g. DATASET/imagesTr")
    cases: list[Case] = []
    for k, folder in enumerate(folders):
        folder = Path(folder)
        if (folder / DATASET_FILE).is_file():
            raise DataError(
                folder,
                "is a dataset's root, not a folder of scans",
                f"pass its image folder(s), e.g. {folder}/imagesTr",
            )
        grouped = group_channels(find_scans(folder), len(data.channel_names), data.channel_names)
        prefix = f"{k}_" if len(folders) > 1 else ""
        cases += [Case(f"{prefix}{case_id}", tuple(channels)) for case_id, channels in grouped]
    return cases


def crop_or_pad(image: np.ndarray, start: Sequence[int], patch: Sequence[int]) -> np.ndarray:
    """The window ``image[:, start : start + patch]`` (``image`` is ``(C, *spatial)``), zero where the window
    reaches outside the image (a negative ``start`` places a small image inside the window)."""
    out = np.zeros((image.shape[0], *patch), dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for s, p, n in zip(start, patch, image.shape[1:], strict=True):
        lo, hi = max(s, 0), min(s + p, n)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - s, lo - s + max(hi - lo, 0)))
    out[tuple(dst)] = image[tuple(src)]
    return out


def sample_patches(
    images: Sequence[np.ndarray], patch: Sequence[int], batch: int, rng: np.random.Generator
) -> np.ndarray:
    """``batch`` patches ``(batch, C, *patch)`` float32: each from a case chosen uniformly, at a uniform
    position (an axis shorter than the patch: the case at a uniform offset inside it)."""
    out = []
    for _ in range(batch):
        image = images[int(rng.integers(len(images)))]
        start = []
        for n, p in zip(image.shape[1:], patch, strict=True):
            start.append(int(rng.integers(0, n - p + 1)) if n >= p else -int(rng.integers(0, p - n + 1)))
        out.append(crop_or_pad(image, start, patch))
    return np.stack(out)
