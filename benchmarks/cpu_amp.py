"""Is bf16 autocast faster than float32 for U-Net training steps on this CPU? (decides amp='auto' on CPU)

    python benchmarks/cpu_amp.py

Times forward + backward + optimiser step of the planned demo network (2D, 128², batch 8) and of the
hippocampus-sized 3D network (patch 40×56×40, batch 2), float32 against bf16 autocast, in one process.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceCELoss
from medseg.models.registry import build_model
from medseg.models.unet_config import nnunet_config


def step_time(ndim: int, patch: tuple[int, ...], batch: int, bf16: bool, repeats: int = 6) -> float:
    config = nnunet_config(ndim, 1, 3, patch, (1.0,) * ndim, base_features=16, max_features=256)
    model = build_model(config, generator=torch.Generator().manual_seed(0)).train()
    loss_fn = DeepSupervisionLoss(DiceCELoss(), max(1, len(config.features) - 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, *patch, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (batch, 1, *patch), generator=torch.Generator().manual_seed(2))
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


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for ndim, patch, batch in ((2, (128, 128), 8), (3, (40, 56, 40), 2)):
        fp32 = step_time(ndim, patch, batch, bf16=False)
        bf16 = step_time(ndim, patch, batch, bf16=True)
        print(
            f"{ndim}D patch {patch} batch {batch}: float32 {fp32:.3f} s/step, bf16 {bf16:.3f} s/step, "
            f"bf16/float32 = {bf16 / fp32:.2f}"
        )


if __name__ == "__main__":
    main()
