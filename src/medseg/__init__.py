"""medseg: semantic segmentation of medical images with the U-Net family.

This is the public API: what the command line, a server, a GUI or a notebook import. Importing ``medseg``
has no side effects and loads no heavy library; each name is imported from its module on first use.

Example (the README's, run by ``tests/test_api.py``)::

    import medseg

    report = medseg.check_dataset(medseg.load_dataset(dataset))     # every problem, per file
    options = medseg.TrainOptions(epochs=2, iterations_per_epoch=5, device="cpu")
    medseg.train(dataset, run, options)                             # plan, preprocess, train, evaluate
    predictor = medseg.Predictor.from_run(run)
    labels, geometry = predictor.predict([scan])                    # a file (or a DICOM folder)
    labels = predictor.predict_array(image, geometry)               # an array with its geometry
    metrics = medseg.evaluate(predictions, references)              # Dice, HD95, NSD, ... per case
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_API: dict[str, str] = {
    # errors: MedsegError and its subclasses are the user's mistakes (one line, exit 2 in the CLI)
    "MedsegError": "medseg.errors",
    "DataError": "medseg.errors",
    "ConfigError": "medseg.errors",
    # images and datasets
    "Geometry": "medseg.io.geometry",
    "read_image": "medseg.io.images",
    "read_channels": "medseg.io.images",
    "read_label": "medseg.io.images",
    "write_image": "medseg.io.images",
    "has_physical_spacing": "medseg.io.images",
    "SUPPORTED_SUFFIXES": "medseg.io.images",
    "HU_WINDOWS": "medseg.config.windows",
    "LabelSpec": "medseg.labels",
    "Dataset": "medseg.datasets.records",
    "Case": "medseg.datasets.records",
    "load_dataset": "medseg.datasets.dataset",
    "CheckReport": "medseg.datasets.check",
    "check_dataset": "medseg.datasets.check",
    "ConvertOptions": "medseg.datasets.convert",
    "convert_dataset": "medseg.datasets.convert",
    # plans and run folders
    "Plans": "medseg.config.plans",
    "load_plans": "medseg.config.plans",
    "save_plans": "medseg.config.plans",
    "SemiSupervisedConfig": "medseg.config.semi_supervised",
    "RunDir": "medseg.run",
    "MODELS": "medseg.models.registry",
    "LOSSES": "medseg.losses.registry",
    "resolve_device": "medseg.device",
    "Dist": "medseg.distributed",
    "init_distributed": "medseg.distributed",
    # the method, step by step (progress and cancellation through Callbacks)
    "TrainOptions": "medseg.workflow",
    "Callbacks": "medseg.workflow",
    "EpochResult": "medseg.training.loop",
    "plan": "medseg.workflow",
    "preprocess": "medseg.workflow",
    "train": "medseg.workflow",
    # cross-validation, ensembles, post-processing chosen on out-of-fold predictions
    "plan_crossval": "medseg.crossval",
    "train_crossval": "medseg.crossval",
    "summarise_crossval": "medseg.crossval",
    "CrossValDir": "medseg.run",
    "EnsembleRecord": "medseg.run",
    "Fold": "medseg.splits",
    "load_splits": "medseg.splits",
    "save_splits": "medseg.splits",
    "find_best": "medseg.model_selection",
    "choose_postprocessing": "medseg.inference.choose_postprocessing",
    # prediction
    "Predictor": "medseg.inference.predictor",
    "PredictOptions": "medseg.inference.predictor",
    "EnsemblePredictor": "medseg.inference.ensemble",
    # trust in each prediction: uncertainty, the failure flag, calibration, explanations
    "UncertaintyOptions": "medseg.inference.uncertainty",
    "UncertaintyEstimator": "medseg.inference.uncertainty",
    "TrustOptions": "medseg.trust",
    "assess_trust": "medseg.trust",
    "load_trust": "medseg.trust",
    "predict_with_uncertainty": "medseg.trust",
    "explain": "medseg.trust",
    "EXPLAIN_METHODS": "medseg.inference.explain",
    "load_predictor": "medseg.inference.ensemble",
    "PostProcessing": "medseg.config.postprocessing",
    "find_scans": "medseg.inference.inputs",
    "group_channels": "medseg.inference.inputs",
    # deployment: a run as one bundle file (MODEL.medseg) and prediction with it (docs/export.md)
    "ExportOptions": "medseg.export.bundle",
    "ExportReport": "medseg.export.bundle",
    "export_bundle": "medseg.export.bundle",
    "is_bundle": "medseg.export.runtime",
    "load_bundle_predictor": "medseg.export.runtime",
    "predict_bundle": "medseg.export.runtime",
    # evaluation and reports
    "evaluate": "medseg.evaluation.evaluate",
    "EvalPair": "medseg.evaluation.evaluate",
    "evaluate_pairs": "medseg.evaluation.evaluate",
    "discover_pairs": "medseg.evaluation.evaluate",
    "labels_from_references": "medseg.evaluation.evaluate",
    "write_metrics": "medseg.evaluation.evaluate",
    "write_run_report": "medseg.evaluation.run_report",
    # structure sizes, surfaces and their export (the desktop application's table and 3D view)
    "StructureSize": "medseg.evaluation.structures",
    "structure_sizes": "medseg.evaluation.structures",
    "Surface": "medseg.evaluation.meshes",
    "structure_surfaces": "medseg.evaluation.meshes",
    "write_stl": "medseg.evaluation.meshes",
    "write_obj": "medseg.evaluation.meshes",
    # self-supervised pre-training of an encoder on unlabelled scans (docs/pretraining.md)
    "PretrainOptions": "medseg.pretraining.loop",
    "PretrainCallbacks": "medseg.pretraining.loop",
    "PretrainEpoch": "medseg.pretraining.loop",
    "PretrainDir": "medseg.pretraining.folder",
    "pretrain": "medseg.pretraining.loop",
    "run_demo": "medseg.demo",
    "DemoResult": "medseg.demo",
    # federated training on Flower: sites train locally and send only weights (docs/federated.md)
    "FederatedOptions": "medseg.federated.options",
    "SiteConfig": "medseg.federated.options",
    "TlsFiles": "medseg.federated.options",
    "FederationResult": "medseg.federated.federation",
    "simulate_federation": "medseg.federated.federation",
    "run_federation_server": "medseg.federated.federation",
    "run_federation_site": "medseg.federated.federation",
    # synthetic data (tests, the demo, trying medseg without data)
    "SyntheticSpec": "medseg.synthetic",
    "make_cases": "medseg.synthetic",
    "write_dataset": "medseg.synthetic",
}

# names whose definition in their module differs from the public one
_ALIASES: dict[str, str] = {
    "plan": "plan_run",
    "preprocess": "preprocess_run",
    "train": "train_run",
    "evaluate": "evaluate_folders",
    "EXPLAIN_METHODS": "METHODS",
    "simulate_federation": "simulate",
    "run_federation_server": "run_server",
    "run_federation_site": "run_site",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), _ALIASES.get(name, name))
        globals()[name] = value  # cache: later look-ups do not come here
        return value
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
