"""The one place the GUI turns a model the user chose into something that segments.

Today a model is a folder ``medseg.load_predictor`` reads: a run, a cross-validation (its folds ensembled) or
a ``medseg find-best`` output. An exported ``.medseg`` bundle (the deployment issue) plugs in here, in
:func:`load_model`, and nowhere else: the window and the worker only use what it returns
(``labels_and_probabilities``, ``plans.data.labels``) and :func:`networks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import medseg

__all__ = ["BUNDLE_SUFFIX", "load_model", "model_summary", "networks"]

BUNDLE_SUFFIX = ".medseg"


def load_model(path: Path) -> Any:
    """A predictor for ``path`` (on the CPU); what cannot be used raises ``medseg.MedsegError``."""
    path = Path(path)
    if path.suffix == BUNDLE_SUFFIX:
        # the deployment issue's exported bundle plugs in here (e.g. medseg.load_bundle_predictor, once it
        # offers labels_and_probabilities; an ONNX bundle has no torch modules, so networks() needs its own
        # progress/cancel hook then)
        raise medseg.DataError(path, "medseg bundles are not supported by this version yet", "open a run folder")
    if not path.is_dir():
        raise medseg.DataError(path, "not a run folder", "choose the folder `medseg train --out` wrote")
    return medseg.load_predictor(path, device="cpu")


def networks(predictor: Any) -> list[Any]:
    """The torch modules a predictor runs (one, or one per ensemble member): the worker's progress and Cancel
    watch their forward passes."""
    if isinstance(predictor, medseg.EnsemblePredictor):
        return [member.model for group in predictor.configurations for member in group]
    return [predictor.model]


def model_summary(predictor: Any, path: Path) -> str:
    """One line: the folder, the network and the classes it segments."""
    plans = predictor.plans
    names = ", ".join(n for k, n in plans.data.labels.names.items() if plans.data.labels.overlapping or k != 0)
    members = len(networks(predictor))
    kind = f"ensemble of {members}" if members > 1 else plans.model.name
    return f"{Path(path).name}: {kind}, {plans.data.ndim}D, classes {names}"
