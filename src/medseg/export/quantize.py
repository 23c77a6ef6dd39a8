"""INT8: onnxruntime's static quantisation (QDQ format), calibrated on patches of the run's training cases.

Activations are calibrated (MinMax) on ``patches_per_case`` patches of each of ``cases`` training cases, read
from the run's preprocessed folder (or preprocessed again when it was deleted); weights are per channel,
signed 8 bit, activations unsigned 8 bit (onnxruntime's U8S8 default). Normalisation layers stay in float.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medseg.config.plans import Plans
from medseg.datasets.dataset import load_dataset
from medseg.errors import DataError
from medseg.export.runtime import require
from medseg.preprocessing.cache import load_preprocessed
from medseg.preprocessing.forward import preprocess_case
from medseg.run import RunDir

__all__ = ["calibration_patches", "quantize_int8"]

logger = logging.getLogger(__name__)


def _training_images(run: RunDir, plans: Plans, cases: int) -> Iterator[np.ndarray]:
    """Preprocessed images (C, *spatial) of the first ``cases`` training cases of ``run``."""
    record = run.load_record()
    ids = list(record.train)[:cases]
    missing = [i for i in ids if not (run.preprocessed / f"{i}.npz").is_file()]
    dataset = load_dataset(record.root, scan_labels=False) if missing else None
    by_id = {c.case_id: c for c in dataset.cases} if dataset else {}
    for case_id in ids:
        npz = run.preprocessed / f"{case_id}.npz"
        if npz.is_file():
            yield load_preprocessed(npz).image
        elif case_id in by_id:
            yield preprocess_case(by_id[case_id], plans.data).image
        else:
            raise DataError(record.root, f"training case {case_id} is gone", "calibrate on a run whose data is present")


def _patch(image: np.ndarray, patch: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random ``(C, *patch)`` crop of ``image``, zero-padded where the image is smaller."""
    pad = [(0, 0), *((0, max(p - n, 0)) for n, p in zip(image.shape[1:], patch, strict=True))]
    image = np.pad(image, pad)
    start = [int(rng.integers(0, n - p + 1)) for n, p in zip(image.shape[1:], patch, strict=True)]
    return image[(slice(None), *(slice(s, s + p) for s, p in zip(start, patch, strict=True)))]


def calibration_patches(
    run: RunDir, plans: Plans, cases: int, patches_per_case: int = 4, seed: int = 0
) -> list[np.ndarray]:
    """``(1, C, *patch)`` float32 calibration inputs from ``cases`` training cases of ``run``."""
    rng = np.random.default_rng(seed)
    out = []
    for image in _training_images(run, plans, cases):
        out += [_patch(image, plans.patch_size, rng)[None].astype(np.float32) for _ in range(patches_per_case)]
    if not out:
        raise DataError(run.path, "has no training cases to calibrate INT8 on", "export without --int8")
    return out


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantiser logs advice ("consider pre-processing") on the root logger: errors only meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(data: bytes, patches: list[np.ndarray]) -> bytes:
    """``data`` (a float32 ONNX model) statically quantised to INT8 (QDQ), calibrated on ``patches``."""
    quantization = require("onnxruntime.quantization")

    class Reader(quantization.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.items = iter(patches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {"image": batch}

    with tempfile.TemporaryDirectory(prefix="medseg-int8-") as folder, _quiet_root_logger():
        source, target = Path(folder) / "float32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(data)
        quantization.quantize_static(
            str(source),
            str(target),
            Reader(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            op_types_to_quantize=["Conv", "ConvTranspose"],  # normalisation and activations stay float
        )
        logger.info("INT8 calibrated on %d patches", len(patches))
        return target.read_bytes()
