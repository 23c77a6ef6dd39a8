"""The preprocessing cache of a run folder: one ``.npz`` (arrays) and one ``.json`` (properties) per case.

A case is recomputed only when the data configuration it was made with changed (its hash is stored);
every file is written atomically, so an interrupted run leaves whole files only. Safe to delete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.config.plans import DataConfig
from medseg.datasets.records import Case
from medseg.fileutil import atomic_path, atomic_write_json, make_dirs
from medseg.preprocessing.forward import CaseProperties, PreprocessedCase, preprocess_case
from medseg.serial import from_dict, to_dict

__all__ = ["load_preprocessed", "preprocess_dataset"]


def _data_hash(data: DataConfig) -> str:
    return hashlib.sha256(json.dumps(to_dict(data), sort_keys=True).encode()).hexdigest()[:16]


def preprocess_dataset(
    cases: list[Case], data: DataConfig, folder: Path, progress: Callable[[], None] | None = None
) -> list[Path]:
    """Preprocess ``cases`` into ``folder`` (one ``.npz`` + ``.json`` each); cases already done with the same
    data configuration are kept. Each file is written atomically."""
    make_dirs(folder)
    stamp = _data_hash(data)
    paths = []
    for case in cases:
        npz = folder / f"{case.case_id}.npz"
        meta = folder / f"{case.case_id}.json"
        if not (
            meta.exists() and npz.exists() and json.loads(meta.read_text(encoding="utf-8")).get("data_hash") == stamp
        ):
            pre = preprocess_case(case, data)
            with atomic_path(npz) as tmp, open(tmp, "wb") as handle:
                if pre.label is None:
                    np.savez(handle, image=pre.image)
                else:
                    np.savez(handle, image=pre.image, label=pre.label)
            atomic_write_json(meta, {"data_hash": stamp, "properties": to_dict(pre.properties)})
        paths.append(npz)
        if progress is not None:
            progress()
    return paths


def load_preprocessed(npz: Path) -> PreprocessedCase:
    """Load a case written by :func:`preprocess_dataset`."""
    meta = json.loads(npz.with_suffix(".json").read_text(encoding="utf-8"))
    with np.load(npz) as arrays:
        image = arrays["image"]
        label = arrays["label"] if "label" in arrays.files else None
    return PreprocessedCase(image, label, from_dict(CaseProperties, meta["properties"]))
