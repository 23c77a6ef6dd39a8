"""Project exceptions: every error a user can cause says which file, what is wrong and what to do.

The CLI turns a :class:`MedsegError` into one line on stderr and exit code 2; anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "DataError", "MedsegError"]


class MedsegError(Exception):
    """Base class of errors caused by user input (files, options), not by bugs."""


class DataError(MedsegError):
    """A file or dataset cannot be used.

    Example:
        >>> str(DataError("case.nii.gz", "file is truncated", "re-export it"))
        'case.nii.gz: file is truncated (re-export it)'
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        message = f"{path}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class ConfigError(MedsegError):
    """A configuration (plans.json, CLI option) is invalid."""
