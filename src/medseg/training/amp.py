"""Mixed precision: which autocast dtype training uses.

On CUDA, ``auto`` is bf16 where the GPU supports it, else fp16 (with a gradient scaler). On the CPU, bf16
pays only on CPUs with native bf16 arithmetic; elsewhere it is many times slower than float32, so ``auto``
measures both before training starts.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import nullcontext

import torch

__all__ = ["amp_dtype", "measure_cpu_amp"]

logger = logging.getLogger(__name__)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an explicit ``setting`` ('off', 'bf16', 'fp16'), or for 'auto' on CUDA
    (bf16 where supported, else fp16). 'auto' on CPU is decided by :func:`measure_cpu_amp`."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def measure_cpu_amp(
    model: torch.nn.Module, loss_fn: torch.nn.Module, image: torch.Tensor, target: torch.Tensor
) -> torch.dtype | None:
    """'auto' AMP on CPU: time forward + backward of a copy of ``model`` on the example batch
    (``image`` (B, C, *patch), ``target`` as the loss takes it), float32 against bf16 autocast, and use bf16
    only if it is at least 10 % faster. (On the 2-core benchmark machine bf16 took 0.46-0.57x the float32
    time at equal Dice; CPUs without native bf16 are much slower with it.)"""
    probe = copy.deepcopy(model).train()

    def seconds(dtype: torch.dtype | None) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext():
                loss = loss_fn(probe(image), target)
            loss.backward()
            probe.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - started)
        return min(times[1:])

    fp32, bf16 = seconds(None), seconds(torch.bfloat16)
    choice = torch.bfloat16 if bf16 < 0.9 * fp32 else None
    logger.info("CPU step %.2f s float32, %.2f s bf16: training in %s", fp32, bf16, "bf16" if choice else "float32")
    return choice
