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
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem, channel_file_name, split_channel_suffix

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


def group_channels(
    files: Sequence[Path], n_channels: int, channel_names: Sequence[str] = ()
) -> list[tuple[str, tuple[Path, ...]]]:
    """(case id, channel files) per case: nnU-Net per-channel files ``CASE_0000``, ``CASE_0001``, ... form one
    case when the run has several channels; otherwise every file (or DICOM folder) is a case of its own.

    With several channels a case given as channel files must have exactly ``CASE_0000`` .. ``CASE_{n-1}``:
    a missing, repeated or extra channel is a :class:`DataError` naming the case and the channel by its name
    in ``channel_names`` (dataset.json's), raised before any case is predicted. A file without the channel
    suffix is a case of its own (a multi-channel file; reading it checks its channel count).
    """
    if n_channels == 1:
        return [(case_stem(f), (Path(f),)) for f in files]
    groups: dict[str, list[tuple[int | None, Path]]] = {}
    for f in files:
        case, index = split_channel_suffix(case_stem(f))
        groups.setdefault(case, []).append((index, Path(f)))
    cases: list[tuple[str, tuple[Path, ...]]] = []
    problems: list[DataError] = []
    for case, members in sorted(groups.items()):
        problem = _channel_problem(case, members, n_channels, channel_names)
        if problem is not None:
            problems.append(problem)
        elif members[0][0] is None:
            cases.append((case, (members[0][1],)))
        else:
            cases.append((case, tuple(path for _, path in sorted(members, key=lambda m: m[0] or 0))))
    if problems:
        first = problems[0]
        more = f"; {len(problems) - 1} more case(s) too" if len(problems) > 1 else ""
        raise DataError(first.path, first.problem + more, first.fix)
    return cases


def _channel_problem(
    case: str, members: list[tuple[int | None, Path]], n_channels: int, names: Sequence[str]
) -> DataError | None:
    """What is wrong with the files ``members`` ((channel index or None, path)) of ``case``, or None."""
    plain = [path for index, path in members if index is None]
    indexed = sorted((index, path) for index, path in members if index is not None)
    if plain and (indexed or len(plain) > 1):
        return DataError(plain[0], f"case {case!r} is given both as this file and as other files of the same name")
    if plain:
        return None
    indices = [index for index, _ in indexed]
    path = indexed[0][1]
    suffix = path.name[len(case_stem(path)) :]
    run = f"the run's channels are {', '.join(_channel_name(i, names) for i in range(n_channels))}"
    for i in range(n_channels):
        if i not in indices:
            missing = path.parent / channel_file_name(case, i, suffix)
            return DataError(
                missing, f"not found: case {case!r} lacks its {_channel_name(i, names)} channel ({run})", "add the file"
            )
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    extra = sorted({i for i in indices if i >= n_channels})
    if repeated or extra:
        what = f"channel {repeated[0]:04d} twice" if repeated else f"an extra channel _{extra[0]:04d}"
        return DataError(path, f"case {case!r} has {what} ({run})", "pass one file per channel")
    return None


def _channel_name(index: int, names: Sequence[str]) -> str:
    """``'FLAIR' (_0001)``: the channel's name in dataset.json and its file suffix."""
    name = names[index] if index < len(names) else f"channel {index}"
    return f"{name!r} (_{index:04d})"


def _holds_scans(folder: Path) -> bool:
    """Whether ``folder`` is a folder of scans (image files or sub-folders), not one DICOM series."""
    return any(compound_suffix(p) in SUPPORTED_SUFFIXES or p.is_dir() for p in folder.iterdir())


def _is_image_name(path: Path) -> bool:
    return compound_suffix(path) in SUPPORTED_SUFFIXES and not path.is_dir()
