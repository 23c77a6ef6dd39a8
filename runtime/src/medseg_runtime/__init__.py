"""medseg-runtime: predict with a medseg model bundle (``MODEL.medseg``) using onnxruntime, numpy, scipy and
SimpleITK only; nothing here imports torch or medseg.

Example::

    from medseg_runtime import BundlePredictor

    predictor = BundlePredictor.load(Path("hippocampus.medseg"))   # verifies every member's SHA-256
    predictor.predict_files(Path("scans/"), Path("masks/"))          # masks in each input's format and geometry
"""

from __future__ import annotations

from medseg_runtime.bundle import SUFFIX, Bundle, read_bundle, write_bundle
from medseg_runtime.errors import BundleError
from medseg_runtime.manifest import FORMAT_VERSION, Configuration, Labels, Manifest, Normalization, PostStep
from medseg_runtime.predictor import BundlePredictor, CaseResult

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "SUFFIX",
    "Bundle",
    "BundleError",
    "BundlePredictor",
    "CaseResult",
    "Configuration",
    "Labels",
    "Manifest",
    "Normalization",
    "PostStep",
    "__version__",
    "read_bundle",
    "write_bundle",
]
