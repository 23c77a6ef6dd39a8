"""Dataset layouts, detected automatically, read into one internal representation and written back.

Three layouts are recognised (``detect_layout``), each read and written by its own module:

==========  ==============================================================================================
``msd``     Medical Segmentation Decathlon (:mod:`medseg.datasets.msd`): ``dataset.json`` with ``modality``,
            ``labels``, ``training``; ``imagesTr/`` + ``labelsTr/`` (+ ``imagesTs/``).
``nnunet``  nnU-Net v2 raw (:mod:`medseg.datasets.nnunet`): ``dataset.json`` with ``channel_names``,
            ``labels``, ``file_ending``; one file per channel ``CASE_0000<ending>``.
``folder``  ``images/`` + ``masks/`` (or ``labels/``) matched by file stem (:mod:`medseg.datasets.folders`).
==========  ==============================================================================================

Whatever the layout, reading gives a :class:`~medseg.datasets.records.Dataset`. Writing (``medseg convert``
and the synthetic-data generator) puts the whole dataset into a temporary folder beside the target and
renames it at the end, so an interrupted run leaves nothing half-written under the target name. A new layout
is one module with ``read`` and ``write``, one entry in :data:`LAYOUTS` and its rule in ``detect_layout``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medseg.datasets import folders, msd, nnunet
from medseg.datasets.records import CaseArrays, Dataset, DatasetMeta, read_json
from medseg.errors import DataError
from medseg.fileutil import atomic_path, make_dirs

__all__ = ["LAYOUTS", "Layout", "detect_layout", "load_dataset", "write_layout"]

logger = logging.getLogger(__name__)


class Reader(Protocol):
    """A layout's ``read``: every reader takes ``scan_labels``, used where the labels are not declared."""

    def __call__(self, root: Path, *, scan_labels: bool = True) -> Dataset: ...


@dataclass(frozen=True)
class Layout:
    """How one layout is read and written.

    ``read(root, scan_labels=...)`` gives the :class:`~medseg.datasets.records.Dataset` in ``root``;
    ``write(root, cases, meta)`` writes into the empty folder ``root`` and returns the number of training and
    test cases written.
    """

    read: Reader
    write: Callable[[Path, Iterable[CaseArrays], DatasetMeta], tuple[int, int]]


# layout name (Dataset.layout, `medseg convert --layout`) -> its reader and writer
LAYOUTS: dict[str, Layout] = {
    "msd": Layout(msd.read, msd.write),
    "nnunet": Layout(nnunet.read, nnunet.write),
    "folder": Layout(folders.read, folders.write),
}


def detect_layout(root: Path) -> str:
    """Return ``'msd'``, ``'nnunet'`` or ``'folder'`` for the dataset folder ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found", "pass the folder that holds the images")
    meta = root / "dataset.json"
    if meta.is_file():
        data = read_json(meta)
        if "channel_names" in data or "file_ending" in data:
            return "nnunet"
        if "training" in data or "modality" in data:
            return "msd"
        raise DataError(
            meta,
            "dataset.json has neither nnU-Net keys (channel_names, labels, file_ending) nor MSD keys "
            "(modality, labels, training)",
            "fix the file or remove it to use the images/ + masks/ layout",
        )
    if (root / "images").is_dir() and any((root / m).is_dir() for m in folders.MASK_FOLDERS):
        return "folder"
    if (root / "imagesTr").is_dir():
        raise DataError(root, "imagesTr/ found but no dataset.json", "add dataset.json (MSD or nnU-Net v2)")
    raise DataError(
        root,
        "no known dataset layout (dataset.json + imagesTr/labelsTr, or images/ + masks/)",
        "see `medseg convert --help`",
    )


def load_dataset(root: Path, *, scan_labels: bool = True) -> Dataset:
    """Read the dataset in ``root`` in whichever layout it is.

    ``scan_labels`` reads every mask of a ``folder`` dataset to discover its label values (the other
    layouts declare them in dataset.json).
    """
    root = Path(root)
    try:
        return LAYOUTS[detect_layout(root)].read(root, scan_labels=scan_labels)
    except OSError as exc:  # a folder that cannot be listed, a file that cannot be looked at
        where = Path(exc.filename) if exc.filename else root
        raise DataError(where, f"cannot be read ({exc.strerror or exc})", "check the file and its permissions") from exc


def write_layout(out: Path, layout: str, cases: Iterable[CaseArrays], meta: DatasetMeta) -> Path:
    """Write ``cases`` under ``out`` in ``layout`` ('msd', 'nnunet' or 'folder'); return ``out``.

    ``out`` must not exist yet (or be an empty folder).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "output folder exists and is not empty", "choose a new folder or remove it")
    entry = LAYOUTS.get(layout)
    if entry is None:
        raise DataError(out, f"unknown layout '{layout}'", f"use one of {', '.join(LAYOUTS)}")
    if out.is_dir():
        out.rmdir()
    with atomic_path(out) as tmp:
        make_dirs(tmp)
        n_train, n_test = entry.write(tmp, cases, meta)
    logger.info("wrote %d training and %d test cases to %s (%s layout)", n_train, n_test, out, layout)
    return out
