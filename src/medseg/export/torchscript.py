"""TorchScript networks: traced for a fixed patch (batch dynamic), and run from a bundle's bytes."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["export_torchscript", "torchscript_network"]


def export_torchscript(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """``model`` (eval mode) traced on ``example`` (1, C, *patch), saved as bytes."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), torch.jit.optimized_execution(False):
        # tracing warns about torch's own shape checks and about TorchScript being deprecated: not ours to fix
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def torchscript_network(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """A saved TorchScript network as ``(B, C, *patch) float32 -> (B, K, *patch) float32`` on the CPU."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        net = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()

    return run
