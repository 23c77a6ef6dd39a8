"""`medseg pretrain`: self-supervised pre-training of a planned network's encoder. Registered by app.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg.apps.cli.options import parse_duration

__all__ = ["pretrain"]


def pretrain(
    scans: Annotated[
        list[Path],
        typer.Argument(
            help="Folder(s) of unlabelled scans (or single scans), e.g. DATASET/imagesTr DATASET/imagesTs; "
            "nnU-Net channel files CASE_0000, CASE_0001 are grouped per case."
        ),
    ],
    plans: Annotated[
        Path,
        typer.Option(
            "--plans",
            help="plans.json, or a run folder holding one, from `medseg plan` on the labelled dataset: the "
            "network, patch, spacing and normalisation to pre-train for (the weights fit that network).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Pre-training folder: checkpoint, log and OUT/encoder.pth (+ encoder.json), the weights for "
            "`medseg train --encoder-weights`.",
        ),
    ],
    time_budget: Annotated[
        str, typer.Option(help="Stop after the epoch that spends this time, e.g. 10m, 1h30m, 90s (default: none).")
    ] = "",
    epochs: Annotated[int, typer.Option(min=1, help="Epochs at most.")] = 100,
    iterations: Annotated[int, typer.Option(min=1, help="Steps (iterations) per epoch.")] = 50,
    batch_size: Annotated[int, typer.Option(min=0, help="Patches per step (0: the plans' batch size).")] = 0,
    mask_ratio: Annotated[
        float, typer.Option(min=0.01, max=0.99, help="Fraction of each patch's blocks hidden (0.6: 60%).")
    ] = 0.6,
    block_size: Annotated[
        int,
        typer.Option(min=0, help="Masked block, voxels per pooled axis (0: the network's total stride, at most 16)."),
    ] = 0,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="AdamW's learning rate (cosine decay).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of the weights, patches and masks.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint_last.pt.")] = False,
) -> None:
    """Pre-train the encoder of a planned network on unlabelled scans (masked-volume reconstruction); then
    `medseg train DATASET --out RUN --encoder-weights OUT/encoder.pth` (docs/pretraining.md)."""
    from rich.console import Console

    import medseg
    from medseg.apps.cli.views import TrainingView

    options = medseg.PretrainOptions(
        epochs=epochs,
        iterations_per_epoch=iterations,
        batch_size=batch_size,
        time_budget_s=parse_duration(time_budget),
        mask_ratio=mask_ratio,
        block_size=block_size,
        learning_rate=learning_rate,
        seed=seed,
        device=device,
        resume=resume,
    )
    with TrainingView() as view:

        def epoch_done(result: medseg.PretrainEpoch) -> None:
            view.epoch = result.epoch
            view.console.print(
                f"epoch {result.epoch}: masked L2 {result.train_loss:.4f}  lr {result.lr:.2e}  {result.seconds:.1f} s"
            )

        hooks = medseg.PretrainCallbacks(on_step=view.step, on_iteration=view.iteration, on_epoch=epoch_done)
        weights = medseg.pretrain(scans, plans, out, options, hooks)
    Console().print(
        f"encoder weights: {weights}\n  train with: medseg train DATASET --out RUN --encoder-weights {weights}"
    )
