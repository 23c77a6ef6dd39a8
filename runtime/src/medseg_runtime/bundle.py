"""A model bundle (``MODEL.medseg``): one zip file holding the networks, the manifest and their checksums.

Layout::

    manifest.json              the pipeline (preprocessing, window, TTA, labels, post-processing), model card, parity
    networks/c0_f0.onnx ...    one network per configuration and fold (.onnx, or .pt for TorchScript)
    networks/c0_importance.npy the sliding window's Gaussian weights of configuration 0
    checksums.sha256           ``sha256sum`` lines for every other member; verified before anything is used

Example:
    >>> bundle = read_bundle(Path("hippocampus.medseg"))       # doctest: +SKIP
    >>> bundle.manifest.labels.names
    {0: 'background', 1: 'anterior', 2: 'posterior'}
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg_runtime.errors import BundleError
from medseg_runtime.manifest import Manifest, dumps

__all__ = ["CHECKSUMS", "MANIFEST", "SUFFIX", "Bundle", "read_bundle", "write_bundle"]

MANIFEST, CHECKSUMS, SUFFIX = "manifest.json", "checksums.sha256", ".medseg"
_FIX = "the bundle is damaged or was altered; export it again"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest and the bytes of every member."""

    path: Path
    manifest: Manifest
    members: dict[str, bytes]

    def member(self, name: str) -> bytes:
        if name not in self.members:
            raise BundleError(f"{self.path}: member {name} is missing ({_FIX})")
        return self.members[name]

    def array(self, name: str) -> np.ndarray:
        return np.load(io.BytesIO(self.member(name)), allow_pickle=False)


def write_bundle(path: Path, manifest: Manifest, members: dict[str, bytes]) -> None:
    """Write ``manifest`` and ``members`` (name -> bytes) as a bundle zip at ``path`` with their checksums."""
    everything = {MANIFEST: dumps(manifest), **members}
    lines = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(everything.items()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in everything.items():
            archive.writestr(name, data)
        archive.writestr(CHECKSUMS, lines)


def read_bundle(path: Path) -> Bundle:
    """Read and verify a bundle: every member listed in ``checksums.sha256`` with a matching SHA-256, and
    nothing else; any problem is a one-line :class:`BundleError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle file (check the path; bundles are written by `medseg export`)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(
            f"{path}: not a medseg bundle ({type(exc).__name__}: {exc}; export one with `medseg export`)"
        ) from exc
    _verify(path, members)
    try:
        manifest = Manifest.from_dict(json.loads(members[MANIFEST]))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: {MANIFEST} is not valid JSON ({exc}; {_FIX})") from exc
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    del members[CHECKSUMS]
    return Bundle(path, manifest, members)


def _verify(path: Path, members: dict[str, bytes]) -> None:
    if CHECKSUMS not in members or MANIFEST not in members:
        raise BundleError(
            f"{path}: not a medseg bundle (no {MANIFEST} or {CHECKSUMS}; export one with `medseg export`)"
        )
    listed: dict[str, str] = {}
    for line in members[CHECKSUMS].decode("utf-8", errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name in sorted(set(members) - {CHECKSUMS}):
        if name not in listed:
            raise BundleError(f"{path}: member {name} is not in {CHECKSUMS} ({_FIX})")
        if hashlib.sha256(members[name]).hexdigest() != listed[name]:
            raise BundleError(f"{path}: member {name} fails its SHA-256 check ({_FIX})")
    missing = sorted(set(listed) - set(members))
    if missing:
        raise BundleError(f"{path}: members {missing} are missing ({_FIX})")
