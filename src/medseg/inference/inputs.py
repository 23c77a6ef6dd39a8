"""The scans a user passes to prediction: finding them (a file, a DICOM series folder, or a folder of
scans) and grouping nnU-Net per-channel files ``CASE_0000``, ``CASE_0001`` into cases. Whether a scan fits
the run is :func:`medseg.preprocessing.checks.check_scan`.

Example:
    >>> files = find_scans(Path("scans"))                               # doctest: +SKIP
    >>> cases = group_channels(files, n_channels=2)                    # doctest: +SKIP
    >>> cases[0]                                                        # doctest: +SKIP
    ('case_001', (PosixPath('scans/case_001_0000.nii.gz'), PosixPath('scans/case_001_0001.nii.gz')))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medseg.errors import DataError
from medseg.fileutil import compound_suffix, path_problem
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem, split_channel_suffix

__all__ = ["find_scans", "group_channels"]


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
