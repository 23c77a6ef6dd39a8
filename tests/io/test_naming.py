"""The nnU-Net channel-suffix rule, written once and used by the reader, the writer and prediction."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medseg.io import images
from medseg.io.naming import SUPPORTED_SUFFIXES, case_stem, channel_file_name, split_channel_suffix


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("case_0000", ("case", 0)),
        ("liver_007_0003", ("liver_007", 3)),
        ("case_12", ("case_12", None)),  # three digits or fewer are part of the case id
        ("case_00001", ("case_00001", None)),  # five digits are not a channel suffix
        ("case_7_0001", ("case_7", 1)),
        ("_0000", ("_0000", None)),  # no case id before the suffix
        ("case0000", ("case0000", None)),
        ("case_000a", ("case_000a", None)),
        ("case_٠١٢٣", ("case_٠١٢٣", None)),  # only ASCII digits
    ],
)
def test_split_channel_suffix(stem: str, expected: tuple[str, int | None]) -> None:
    assert split_channel_suffix(stem) == expected


@given(
    case=st.text(st.characters(codec="ascii", categories=("L", "N", "Pc", "Pd")), min_size=1, max_size=20),
    index=st.integers(0, 9999),
    ending=st.sampled_from(SUPPORTED_SUFFIXES),
)
def test_channel_file_names_read_back(case: str, index: int, ending: str) -> None:
    name = channel_file_name(case, index, ending)
    assert split_channel_suffix(case_stem(Path(name))) == (case, index)


def test_channel_index_must_fit_four_digits() -> None:
    with pytest.raises(ValueError, match="four-digit"):
        channel_file_name("case", 10_000, ".nii.gz")


def test_case_stem_keeps_working_from_io_images() -> None:
    assert images.case_stem is case_stem and images.SUPPORTED_SUFFIXES is SUPPORTED_SUFFIXES
    assert case_stem(Path("a/case_01.nii.gz")) == "case_01"
    assert case_stem(Path("a/series_folder")) == "series_folder"
    assert case_stem(Path("a/notes.txt")) == "notes.txt"
