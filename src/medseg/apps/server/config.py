"""What a server is started with (:class:`ServerConfig`) and where its API keys come from.

Keys are read from a file (one key per line; blank lines and ``#`` comments ignored) or from the environment
variable ``MEDSEG_API_KEYS`` (comma-separated); none are in code. A server with no key refuses to start
unless ``auth=False`` (``--no-auth``) is asked for explicitly, for local use.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import medseg

__all__ = ["ENV_KEYS", "ServerConfig", "load_api_keys"]

ENV_KEYS = "MEDSEG_API_KEYS"
_MIN_KEY = 16  # characters: a short key is guessable


@dataclass(frozen=True)
class ServerConfig:
    """The server's models, keys and limits.

    ``workers`` predict at once; ``max_queue`` more requests may wait (uploading or queued), the next gets 429;
    ``timeout_s`` bounds a request from admission to answer (504); ``temp_dir`` holds each request's private
    temporary folder (the system's by default), removed when its job ends; ``examples`` is a folder of scans
    the browser viewer offers to pick.
    """

    models: tuple[Path, ...]
    api_keys: frozenset[str] = frozenset()
    auth: bool = True
    max_upload_mb: float = 512.0
    max_queue: int = 4
    workers: int = 1
    timeout_s: float = 600.0
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    examples: Path | None = None  # a folder of example scans the browser viewer offers (GET /v1/examples)

    def __post_init__(self) -> None:
        if not self.models:
            raise medseg.ConfigError("give at least one bundle (MODEL.medseg) to serve")
        if self.auth and not self.api_keys:
            raise medseg.ConfigError(
                f"no API keys: pass --api-keys FILE or set {ENV_KEYS}, or --no-auth for local use only"
            )
        if self.workers < 1 or self.max_queue < 0 or self.max_upload_mb <= 0 or self.timeout_s <= 0:
            raise medseg.ConfigError(
                f"workers {self.workers} (≥ 1), max queue {self.max_queue} (≥ 0), max upload "
                f"{self.max_upload_mb} MB (> 0) and timeout {self.timeout_s} s (> 0) must be in range"
            )
        if self.examples is not None and not Path(self.examples).is_dir():
            raise medseg.ConfigError(f"{self.examples}: examples folder does not exist (give a folder of scans)")
        if not Path(self.temp_dir).is_dir():
            raise medseg.ConfigError(f"{self.temp_dir}: temporary folder does not exist (create it or pick another)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def load_api_keys(path: Path | None, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The keys of ``path`` (one a line) and of ``MEDSEG_API_KEYS`` (comma-separated) together."""
    environ = os.environ if environ is None else environ
    keys = [k.strip() for k in environ.get(ENV_KEYS, "").split(",") if k.strip()]
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise medseg.ConfigError(f"{path}: cannot read the API key file ({exc})") from exc
        keys += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    short = [k for k in keys if len(k) < _MIN_KEY]
    if short:
        raise medseg.ConfigError(
            f"{len(short)} API key(s) shorter than {_MIN_KEY} characters; use e.g. `openssl rand -hex 32`"
        )
    return frozenset(keys)
