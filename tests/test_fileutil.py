"""Output folders and the look at an input file: every way they can fail is a DataError naming the path."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from medseg.errors import DataError
from medseg.fileutil import atomic_write_text, make_dirs, path_problem


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("target", ["notes.txt", "notes.txt/out", "notes.txt/a/b/c"])
def test_a_file_in_the_way_of_a_folder_is_named(tmp_path: Path, target: str) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    with pytest.raises(DataError) as info:
        make_dirs(tmp_path / target)
    assert info.value.path == blocker
    assert (
        str(info.value) == f"{blocker}: is a file, not a folder (an output folder is needed there; choose another path)"
    )
    assert blocker.read_text() == "keep me" and _files(tmp_path) == ["notes.txt"]


def test_a_broken_link_in_the_way_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(DataError, match="is a broken symbolic link, not a folder") as info:
        make_dirs(tmp_path / "out" / "run")
    assert info.value.path == tmp_path / "out"


def test_a_folder_that_cannot_be_created_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # as root a chmod'ed folder would not refuse
    with pytest.raises(DataError) as info:
        make_dirs(tmp_path / "run")
    assert (
        str(info.value)
        == f"{tmp_path / 'run'}: cannot create folder (Permission denied) (choose a folder you can write to)"
    )


def test_existing_and_new_folders_are_fine(tmp_path: Path) -> None:
    assert make_dirs(tmp_path) == tmp_path
    assert make_dirs(tmp_path / "a" / "b").is_dir()


def test_every_atomic_write_goes_through_make_dirs(tmp_path: Path) -> None:
    (tmp_path / "metrics").write_text("")
    with pytest.raises(DataError, match="is a file, not a folder"):
        atomic_write_text(tmp_path / "metrics" / "metrics.json", "{}")
    assert _files(tmp_path) == ["metrics"]


def test_path_problem_tells_missing_broken_loop_and_fine_apart(tmp_path: Path) -> None:
    (tmp_path / "scan.nii.gz").write_bytes(b"x")
    (tmp_path / "loop.nii.gz").symlink_to("loop.nii.gz")
    (tmp_path / "dangling.nii.gz").symlink_to("nowhere.nii.gz")
    assert path_problem(tmp_path / "scan.nii.gz") is None
    assert path_problem(tmp_path) is None
    assert path_problem(tmp_path / "absent.nii.gz") == ("no such file or folder", "check the path and its spelling")
    assert path_problem(tmp_path / "loop.nii.gz") == (
        "is a symbolic link loop (it points back to itself)",
        "point the link at the real file or remove it",
    )
    assert path_problem(tmp_path / "dangling.nii.gz") == (
        "is a broken symbolic link (to nowhere.nii.gz)",
        "point the link at an existing file or remove it",
    )
