"""The one exception of the runtime: a bundle or an input the user must fix (one line, exit 2 in the CLI)."""

from __future__ import annotations

__all__ = ["BundleError"]


class BundleError(Exception):
    """A bundle or a scan cannot be used; the message names the file, the problem and the fix."""
