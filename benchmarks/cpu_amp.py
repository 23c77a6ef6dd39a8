"""Is bf16 autocast faster than float32 for U-Net training steps on this CPU? (decides amp='auto' on CPU)

    python benchmarks/cpu_amp.py

Times forward + backward + optimiser step of the planned demo network (2D, 128², batch 8) and of the
hippocampus-sized 3D network (patch 40×56×40, batch 2), float32 against bf16 autocast, in one process; then
the wall-clock cost of the decision itself (``medseg.training.amp.measure_cpu_amp``) on each and on a
32×96×96 patch.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceCELoss
from medseg.models.registry import build_model
from medseg.models.unet_config import nnunet_config
from medseg.training.amp import cpu_bf16, measure_cpu_amp

CASES = ((2, (128, 128), 8), (3, (40, 56, 40), 2))  # demo plan, hippocampus plan: ndim, patch, batch
DECISION_CASES = (*CASES, (3, (32, 96, 96), 2))  # and a large 3D patch, for the decision's cost


def network(
    ndim: int, patch: tuple[int, ...], batch: int
) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The planned U-Net, its deep-supervision loss and a random batch."""
    config = nnunet_config(ndim, 1, 3, patch, (1.0,) * ndim, base_features=16, max_features=256)
    model = build_model(config, generator=torch.Generator().manual_seed(0)).train()
    loss_fn = DeepSupervisionLoss(DiceCELoss(), max(1, len(config.features) - 2))
    x = torch.randn(batch, 1, *patch, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (batch, 1, *patch), generator=torch.Generator().manual_seed(2))
    return model, loss_fn, x, y


def step_time(ndim: int, patch: tuple[int, ...], batch: int, bf16: bool, repeats: int = 6) -> float:
    model, loss_fn, x, y = network(ndim, patch, batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def decision_time(ndim: int, patch: tuple[int, ...], batch: int) -> tuple[float, torch.dtype | None]:
    """Seconds ``measure_cpu_amp`` takes to decide (as ``fit`` calls it), and what it chose."""
    model, loss_fn, x, y = network(ndim, patch, batch)
    started = time.perf_counter()
    dtype = measure_cpu_amp(model, loss_fn, x, y)
    return time.perf_counter() - started, dtype


def main() -> None:
    cpu = cpu_bf16()
    flags = "unreadable" if cpu.flags is None else " ".join(sorted(cpu.flags)) or "none"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu.model}, bf16 flags: {flags}")
    for ndim, patch, batch in CASES:
        fp32 = step_time(ndim, patch, batch, bf16=False)
        bf16 = step_time(ndim, patch, batch, bf16=True)
        print(
            f"{ndim}D patch {patch} batch {batch}: float32 {fp32:.3f} s/step, bf16 {bf16:.3f} s/step, "
            f"bf16/float32 = {bf16 / fp32:.2f}"
        )
    for ndim, patch, batch in DECISION_CASES:
        seconds, dtype = decision_time(ndim, patch, batch)
        print(f"{ndim}D patch {patch} batch {batch}: amp 'auto' decided {dtype or 'float32'} in {seconds:.2f} s")


if __name__ == "__main__":
    main()
