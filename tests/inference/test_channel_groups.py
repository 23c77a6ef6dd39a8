"""Grouping the channel files a user passes to prediction: a case lacking a modality, or with one too many or
twice, is one line naming the case and the channel by its dataset.json name, before any case is predicted."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import DataError
from medseg.inference.inputs import group_channels

NAMES = ("T1", "FLAIR", "T1c")


def paths(*names: str) -> list[Path]:
    return [Path("scans") / n for n in names]


def test_complete_cases_group_in_channel_order() -> None:
    files = paths("b_0002.nii.gz", "b_0000.nii.gz", "a_0001.nii.gz", "b_0001.nii.gz", "a_0000.nii.gz", "a_0002.nii.gz")
    files += paths("c.nii.gz")  # one multi-channel file: a case of its own
    assert group_channels(files, 3, NAMES) == [
        ("a", tuple(paths("a_0000.nii.gz", "a_0001.nii.gz", "a_0002.nii.gz"))),
        ("b", tuple(paths("b_0000.nii.gz", "b_0001.nii.gz", "b_0002.nii.gz"))),
        ("c", tuple(paths("c.nii.gz"))),
    ]


def test_a_missing_modality_names_the_case_and_the_channel() -> None:
    files = paths("a_0000.nii.gz", "a_0001.nii.gz", "a_0002.nii.gz", "b_0000.nii.gz", "b_0002.nii.gz")
    with pytest.raises(DataError) as caught:
        group_channels(files, 3, NAMES)
    assert str(caught.value) == (
        "scans/b_0001.nii.gz: not found: case 'b' lacks its 'FLAIR' (_0001) channel (the run's channels are "
        "'T1' (_0000), 'FLAIR' (_0001), 'T1c' (_0002)) (add the file)"
    )
    assert caught.value.path == Path("scans/b_0001.nii.gz") and "\n" not in str(caught.value)


def test_every_case_is_checked_and_the_count_of_the_others_is_given() -> None:
    files = paths("a_0000.nii.gz", "b_0001.nii.gz", "c_0000.nii.gz", "c_0001.nii.gz", "d_0000.nrrd")
    with pytest.raises(DataError, match=r"^scans/a_0001\.nii\.gz: not found: case 'a' lacks its 'FLAIR' .*; 2 more"):
        group_channels(files, 2, NAMES[:2])


def test_without_names_a_channel_is_named_by_its_index() -> None:
    with pytest.raises(DataError, match=r"lacks its 'channel 1' \(_0001\) channel"):
        group_channels(paths("a_0000.nii.gz"), 2)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("a_0000.nii.gz", "a_0001.nii.gz", "a_0002.nii.gz"), r"case 'a' has an extra channel _0002"),
        (("a_0000.nii.gz", "a_0001.nii.gz", "a_0001.nrrd"), r"case 'a' has channel 0001 twice"),
        (("a.nii.gz", "a_0000.nii.gz", "a_0001.nii.gz"), r"case 'a' is given both as this file and as other files"),
    ],
)
def test_extra_repeated_or_mixed_channel_files_are_refused(names: tuple[str, ...], message: str) -> None:
    with pytest.raises(DataError, match=message):
        group_channels(paths(*names), 2, NAMES[:2])


def test_a_single_channel_run_takes_every_file_as_a_case() -> None:
    files = paths("a_0000.nii.gz", "a_0001.nii.gz")
    assert group_channels(files, 1, ("CT",)) == [("a_0000", (files[0],)), ("a_0001", (files[1],))]
