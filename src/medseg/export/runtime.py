"""The bridge to the torch-free runtime (``medseg_runtime``, installed from ``runtime/`` of this repository).

``medseg_runtime`` holds the bundle format (manifest schema, checksums) and the numpy prediction pipeline;
this module imports it with a one-line error naming the pip command when it is missing, turns its errors
into :class:`~medseg.errors.MedsegError`, and lets ``medseg predict MODEL.medseg`` run TorchScript bundles
too (through torch, which medseg has).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from medseg.errors import MedsegError

__all__ = ["BundleUnusable", "is_bundle", "load_bundle_predictor", "predict_bundle", "require"]

_INSTALL = {
    "medseg_runtime": "pip install -e runtime/  (the medseg-runtime package of this repository)",
    "onnx": "pip install 'medseg[export]'",
    "onnxruntime": "pip install 'medseg[export]'",
}


class BundleUnusable(MedsegError):
    """A bundle or a scan the runtime refused (one line: the file, the problem, the fix)."""


def require(name: str) -> ModuleType:
    """Import ``name`` (medseg_runtime, onnx, onnxruntime) or raise a one-line error with the pip command."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        raise MedsegError(
            f"export and bundles need the package {top!r}: {_INSTALL.get(top, 'pip install ' + top)}"
        ) from exc


def is_bundle(path: Path) -> bool:
    """Whether ``medseg predict`` should treat ``path`` as a bundle (a ``.medseg`` file name, or any file)."""
    return Path(path).suffix == ".medseg" or Path(path).is_file()


def load_bundle_predictor(path: Path, providers: list[str] | None = None) -> Any:
    """A verified bundle, ready to predict (``medseg_runtime.BundlePredictor``); TorchScript networks run on torch."""
    runtime = require("medseg_runtime")
    try:
        manifest = runtime.read_bundle(Path(path)).manifest
        loader = None
        if manifest.format == "torchscript":
            from medseg.export.torchscript import torchscript_network

            loader = torchscript_network
        else:
            require("onnxruntime")
        return runtime.BundlePredictor.load(Path(path), providers=providers, loader=loader)
    except runtime.BundleError as exc:
        raise BundleUnusable(str(exc)) from exc


def predict_bundle(path: Path, inputs: Path, output: Path, *, dicom_seg: bool = False) -> list[Path]:
    """``medseg predict MODEL.medseg INPUT OUTPUT``: every scan under ``inputs`` into ``output``
    (``dicom_seg``: a DICOM series gives a DICOM-SEG referencing it instead of a NIfTI mask)."""
    runtime = require("medseg_runtime")
    predictor = load_bundle_predictor(path)
    try:
        return list(predictor.predict_files(Path(inputs), Path(output), dicom_seg=dicom_seg))
    except runtime.BundleError as exc:
        raise BundleUnusable(str(exc)) from exc
