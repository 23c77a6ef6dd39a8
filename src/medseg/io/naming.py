"""How image files are named: the format suffix, and nnU-Net's per-channel suffix ``CASE_0000``.

One case of a multi-channel nnU-Net dataset is one file per channel, ``CASE_0000.nii.gz``,
``CASE_0001.nii.gz``, ...; its label (and medseg's prediction) is ``CASE.nii.gz``. This module is the one
place that rule is written; the dataset reader, the layout writer, the prediction file names and the
grouping of scans given to ``medseg predict`` all use it.

Example:
    >>> case_stem(Path("imagesTr/liver_007_0001.nii.gz"))
    'liver_007_0001'
    >>> split_channel_suffix("liver_007_0001")
    ('liver_007', 1)
    >>> channel_file_name("liver_007", 1, ".nii.gz")
    'liver_007_0001.nii.gz'
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.fileutil import compound_suffix

__all__ = ["SUPPORTED_SUFFIXES", "case_stem", "channel_file_name", "split_channel_suffix"]

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    *(".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"),
    *(".png", ".bmp", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".npy"),
)

_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<index>[0-9]{4})$")


def case_stem(path: Path) -> str:
    """File name without its format suffix ('a/case_01.nii.gz' -> 'case_01'); a folder's name."""
    path = Path(path)
    suffix = compound_suffix(path)
    if suffix in SUPPORTED_SUFFIXES and not path.is_dir():
        return path.name[: len(path.name) - len(suffix)]
    return path.name


def split_channel_suffix(stem: str) -> tuple[str, int | None]:
    """``'CASE_0001'`` -> ``('CASE', 1)``; a stem without the four-digit channel suffix -> ``(stem, None)``.

    >>> split_channel_suffix("case_12")
    ('case_12', None)
    """
    match = _CHANNEL_SUFFIX.match(stem)
    if match is None:
        return stem, None
    return match["case"], int(match["index"])


def channel_file_name(case: str, index: int, ending: str) -> str:
    """File name of channel ``index`` of ``case``: ``('CASE', 0, '.nii.gz')`` -> ``'CASE_0000.nii.gz'``."""
    if not 0 <= index <= 9999:
        raise ValueError(f"channel index {index} does not fit the four-digit suffix _XXXX")
    return f"{case}_{index:04d}{ending}"
