"""Where a scan meets a run: finding the scans a user passed, grouping per-channel files into cases, and the
one check that a scan is something the run's network can segment.

:func:`check_scan` is called once per case, after reading and before preprocessing, by every way of
predicting (:class:`~medseg.inference.predictor.Predictor` for files and for arrays). It refuses, naming the
file: a 2D image given to a run trained on 3D volumes or the reverse, a channel count other than the run's,
and NaN/Inf voxels.

Example:
    >>> files = find_scans(Path("scans"))                               # doctest: +SKIP
    >>> cases = group_channels(files, n_channels=2)                    # doctest: +SKIP
    >>> cases[0]                                                        # doctest: +SKIP
    ('case_001', (PosixPath('scans/case_001_0000.nii.gz'), PosixPath('scans/case_001_0001.nii.gz')))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.config.plans import DataConfig
from medseg.errors import DataError
from medseg.fileutil import compound_suffix, path_problem
from medseg.io.images import Geometry
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem, split_channel_suffix

__all__ = ["check_scan", "find_scans", "group_channels"]

_UNNAMED = Path("<input>")  # the name of an array given without a file


def check_scan(image: np.ndarray, geometry: Geometry, data: DataConfig, paths: Sequence[Path] = ()) -> None:
    """Refuse a scan the run's network cannot segment meaningfully, naming its file.

    ``image`` is (C, *spatial) with ``geometry`` its spatial frame; ``data`` the run's data configuration;
    ``paths`` the files it was read from (one per channel, or one multi-channel file; empty for an array).
    """
    first = Path(paths[0]) if paths else _UNNAMED
    spatial = image.ndim - 1
    if spatial != data.ndim or geometry.ndim != data.ndim:
        kind = {2: "2D image", 3: "3D volume"}
        shown = "×".join(str(n) for n in image.shape[1:])
        raise DataError(
            first,
            f"is a {kind.get(spatial, f'{spatial}D image')} ({shown}), the run was trained on "
            f"{kind.get(data.ndim, f'{data.ndim}D image')}s",
            f"pass {'a 2D image' if data.ndim == 2 else 'a 3D volume'} like those the run was trained on",
        )
    expected = len(data.channel_names)
    if image.shape[0] != expected:
        raise DataError(
            first,
            f"has {image.shape[0]} channel(s), the model expects {expected}",
            "pass a scan with the channels the run was trained on",
        )
    if image.dtype.kind != "f":
        return
    per_channel = [Path(p) for p in paths] if len(paths) == image.shape[0] else [first] * image.shape[0]
    for channel, path in zip(image, per_channel, strict=True):
        finite = np.isfinite(channel)
        if not finite.all():
            n_bad = int(channel.size - np.count_nonzero(finite))
            raise DataError(path, f"{n_bad} NaN/Inf voxels", "replace them with the background value first")


def find_scans(inputs: Path) -> list[Path]:
    """The scans in ``inputs``: the file or DICOM series folder itself, or every image file and sub-folder
    (DICOM series) of a folder of scans, sorted. Hidden files are ignored; a file with an image suffix that
    cannot be opened (a broken symbolic link, a link loop) is kept, so that reading it names the problem."""
    inputs = Path(inputs)
    problem = path_problem(inputs)
    if problem is not None:
        missing = problem[0] == "no such file or folder"
        raise DataError(inputs, "input not found" if missing else problem[0], "" if missing else problem[1])
    try:
        if not inputs.is_dir() or not _holds_scans(inputs):
            return [inputs]  # one scan: a file, or a DICOM series folder
        files = sorted(p for p in inputs.iterdir() if not p.name.startswith(".") and (p.is_dir() or _is_image_name(p)))
    except OSError as exc:
        raise DataError(
            inputs, f"cannot be read ({exc.strerror or exc})", "check the folder and its permissions"
        ) from exc
    if not files:
        raise DataError(inputs, "no scans with a supported suffix", f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    return files


def group_channels(files: Sequence[Path], n_channels: int) -> list[tuple[str, tuple[Path, ...]]]:
    """(case id, channel files) per case: nnU-Net per-channel files ``CASE_0000``, ``CASE_0001``, ... form one
    case when the run has several channels; otherwise every file (or DICOM folder) is a case of its own."""
    if n_channels == 1:
        return [(case_stem(f), (Path(f),)) for f in files]
    groups: dict[str, list[Path]] = {}
    for f in files:
        case, _ = split_channel_suffix(case_stem(f))
        groups.setdefault(case, []).append(Path(f))
    return [(case, tuple(sorted(paths))) for case, paths in sorted(groups.items())]


def _holds_scans(folder: Path) -> bool:
    """Whether ``folder`` is a folder of scans (image files or sub-folders), not one DICOM series."""
    return any(compound_suffix(p) in SUPPORTED_SUFFIXES or p.is_dir() for p in folder.iterdir())


def _is_image_name(path: Path) -> bool:
    return compound_suffix(path) in SUPPORTED_SUFFIXES and not path.is_dir()
