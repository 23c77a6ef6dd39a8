"""Atomic file output: write under a temporary name in the same folder, then rename.

A reader (a clinician's viewer, a resumed run) therefore sees either the old complete file or the new
complete file, never a half-written one, even if the process is killed mid-write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medseg.errors import DataError

__all__ = ["atomic_path", "atomic_write_json", "atomic_write_text", "compound_suffix", "make_dirs", "path_problem"]

# Suffixes that span two dots; the writer libraries pick the format from the full suffix.
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")


def compound_suffix(path: Path) -> str:
    """Return the file's format suffix, lower-cased, keeping ``.nii.gz`` whole.

    >>> compound_suffix(Path("a/case_001.nii.gz"))
    '.nii.gz'
    """
    name = path.name.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def path_problem(path: str | Path) -> tuple[str, str] | None:
    """Why ``path`` cannot be looked at, as ``(problem, fix)`` for a :class:`DataError`; None if it can.

    Distinguishes a missing file from a broken symbolic link, a symbolic link loop and any other error the
    operating system reports (permission denied, an I/O error), so that none of them becomes a traceback.

    Example:
        >>> path_problem(Path("loop.nii.gz"))   # doctest: +SKIP   (made by ``ln -s loop.nii.gz loop.nii.gz``)
        ('is a symbolic link loop (it points back to itself)', 'point the link at the real file or remove it')
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            target = os.readlink(path)
            return f"is a broken symbolic link (to {target})", "point the link at an existing file or remove it"
        return "no such file or folder", "check the path and its spelling"
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            return "is a symbolic link loop (it points back to itself)", "point the link at the real file or remove it"
        return f"cannot be opened ({exc.strerror or type(exc).__name__})", "check the file and its permissions"
    return None


def make_dirs(path: str | Path) -> Path:
    """Create the folder ``path`` and its parents (``mkdir -p``) for output; return ``path``.

    A path that cannot become a folder is the user's to fix, so it is a one-line :class:`DataError` naming
    the offending path: a file where a folder is needed (``path`` itself or one of its parents), a folder
    without write permission, a read-only disk.

    Example:
        >>> make_dirs(Path("notes.txt") / "out")   # doctest: +SKIP
        DataError: notes.txt: is a file, not a folder (an output folder is needed there; choose another path)
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = _not_a_folder(path) or path
        kind = "a broken symbolic link" if blocker.is_symlink() and not blocker.exists() else "a file"
        fix = "an output folder is needed there; choose another path"
        raise DataError(blocker, f"is {kind}, not a folder", fix) from exc
    except OSError as exc:  # PermissionError, a read-only file system, a name too long, a symlink loop, ...
        reason = exc.strerror or type(exc).__name__
        raise DataError(path, f"cannot create folder ({reason})", "choose a folder you can write to") from exc
    return path


def _not_a_folder(path: Path) -> Path | None:
    """The first of ``path``'s parents (or ``path``) that exists but is not a folder, if any."""
    for candidate in reversed((path, *path.parents)):
        if os.path.lexists(candidate) and not candidate.is_dir():
            return candidate
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` with the same suffix; rename it to ``path`` on success.

    On any exception the temporary file (or folder) is removed and ``path`` is left untouched. The yielded
    path may also be used as a folder (a DICOM series, a whole converted dataset); an existing folder at
    ``path`` is then replaced only if it is empty.

    Example:
        >>> with atomic_path(out / "mask.nii.gz") as tmp:   # doctest: +SKIP
        ...     sitk.WriteImage(img, str(tmp))
    """
    path = Path(path)
    make_dirs(path.parent)
    suffix = compound_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.tmp-{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8), flushing to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
