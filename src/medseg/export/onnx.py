"""ONNX networks: exported for a fixed patch with a dynamic batch (what the sliding window feeds), and the
fp16 conversion for GPU execution providers."""

from __future__ import annotations

import io
import warnings

import torch

from medseg.errors import ConfigError
from medseg.export.runtime import require

__all__ = ["GPU_PROVIDERS", "export_onnx", "to_fp16"]

OPSET = 17
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def export_onnx(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """``model`` (eval mode) as ONNX bytes: input ``image`` (B, C, *patch), output ``logits`` (B, K, *patch)."""
    require("onnx")
    buffer = io.BytesIO()
    axes = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript-based exporter warns about tracing torch's own shape checks, instance norm's training
        # flag and its own deprecation: none is about this model, and parity is checked afterwards
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        torch.onnx.export(
            model.eval(),
            (example,),
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
    return buffer.getvalue()


def to_fp16(data: bytes) -> bytes:
    """An ONNX model with float16 weights and arithmetic, float32 inputs and outputs (CUDA / TensorRT only)."""
    ort = require("onnxruntime")
    present = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
    if not present:
        raise ConfigError(
            "--precision fp16 needs onnxruntime's CUDA or TensorRT execution provider (pip install onnxruntime-gpu "
            f"on a GPU machine); this one has {', '.join(ort.get_available_providers())}: use float32 or --int8"
        )
    onnx = require("onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(data), keep_io_types=True)
    return bytes(model.SerializeToString())
