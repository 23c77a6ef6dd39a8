"""ONNX networks on onnxruntime, with the best execution provider present.

TensorRT and CUDA are preferred when ``onnxruntime.get_available_providers()`` lists them (onnxruntime-gpu);
otherwise the CPU provider runs. The GPU providers are untested here (the project's CI has no GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from medseg_runtime.window import Network

__all__ = ["PREFERRED", "onnx_network", "providers_here"]

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def providers_here() -> list[str]:
    """The preferred execution providers this onnxruntime has, best first."""
    available = set(ort.get_available_providers())
    return [p for p in PREFERRED if p in available]


def onnx_network(data: bytes, providers: Sequence[str] | None = None) -> Network:
    """An ONNX model (bytes) as a function ``(B, C, *patch) float32 -> (B, K, *patch) float32``."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the CPU provider's notes on unused initialisers are noise
    session = ort.InferenceSession(data, options, providers=list(providers or providers_here()))
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        (out,) = session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(out, dtype=np.float32)

    return run
