"""Option types that several ``medseg`` commands share, and the parsers of option values (durations, fold
choices, number lists); every parse error is a typer usage error (exit 2) naming the flag."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

__all__ = ["parse_duration", "parse_folds", "parse_numbers"]

# options that `train`, `plan` and `predict` share
ModelOption = Annotated[
    str,
    typer.Option(
        help="Network, e.g. unet (nnU-Net-style, planned), classic-unet, residual-unet, attention-unet, unet++, "
        "resnet34-unet, mobilenet-unet, segresnet, unetr, swin-unetr, vnet; `medseg models` lists them all "
        "(docs/models.md)."
    ),
]
EncoderWeightsOption = Annotated[
    str,
    typer.Option(
        help="Pretrained encoder weights (.pth, .pt or .safetensors): OUT/encoder.pth of `medseg pretrain` (the "
        "U-Net family, resnet18/34/50-unet; normalisation kept as planned) or torchvision's / timm's ImageNet "
        "ResNet for resnet18/34/50-unet (inputs then normalised as ImageNet's); checked and recorded (path, "
        "SHA-256) in plans.json, loaded at the start of training.",
    ),
]
FrozenStagesOption = Annotated[
    int,
    typer.Option(
        min=0,
        max=5,
        help="Encoder stages to freeze in training, with --encoder-weights: 0 none, 1 the stem, 2 stem and "
        "layer1, ... 5 all (no gradient, batch norms in eval mode).",
    ),
]
LossOption = Annotated[
    str,
    typer.Option(
        help="Loss terms joined by '+': dice, ce, bce, focal, tversky, focal-tversky, boundary, hausdorff "
        "(default: dice+ce; dice+bce for overlapping structures; see docs/losses.md)."
    ),
]
FusionOption = Annotated[
    str,
    typer.Option(
        help="How several channels (modalities) meet: early (stacked into one network), intermediate (one "
        "encoder per modality, fused at every level; U-Net family) or late (one network per modality, logits "
        "averaged); see docs/models.md."
    ),
]
TimeBudgetOption = Annotated[
    str,
    typer.Option(
        help="Training time, e.g. 10m, 1h30m, 90s: patch, batch and spacing are chosen for it by timing "
        "candidates on this device (docs/planning.md), and training stops cleanly when it is spent."
    ),
]
BudgetPlanOption = Annotated[
    bool,
    typer.Option(
        "--budget-plan/--no-budget-plan",
        help="With --time-budget: choose the configuration by timing candidates (default), or keep the "
        "device's default plan and only stop on time.",
    ),
]
NormalizationOption = Annotated[
    str,
    typer.Option(
        help="Intensity normalisation of every channel: auto (CT: dataset clip + z-score, else per-case "
        "z-score), zscore, ct, rescale ([0, 1] from the case's percentiles), histogram-match (each case's "
        "histogram onto the training set's, Nyúl), window:lung|soft-tissue|bone|brain|liver or "
        "window:LEVEL,WIDTH (a CT window in HU mapped to [0, 1])."
    ),
]
ConfigurationOption = Annotated[
    str,
    typer.Option(
        help="native (the network has the data's dimensionality), or for 3D data 3d (the same) or 2d (a 2D "
        "network on the axial slices, nnU-Net's 2d configuration; compare both with --folds all and `medseg "
        "find-best`, which also tries their ensemble)."
    ),
]
FoldOption = Annotated[
    str, typer.Option(help="Cross-validation fold held out for validation, or all (train every fold).")
]
FoldsOption = Annotated[
    str,
    typer.Option(
        help="Number of cross-validation folds, or all: train every fold of a 5-fold split (RUN/splits.json, "
        "out-of-fold metrics, post-processing chosen on them; `medseg predict RUN` ensembles the folds)."
    ),
]
DistributedOption = Annotated[
    bool,
    typer.Option(
        help="This is one of the processes `torchrun --nproc-per-node N -m medseg ...` started (DDP; gloo on "
        "CPU, nccl on CUDA); see docs/distributed.md."
    ),
]
ResampleChannelsOption = Annotated[
    bool,
    typer.Option(
        "--resample-channels",
        help="Resample channel files on different grids (shape, spacing, orientation) onto the first "
        "channel's grid instead of refusing them; recorded in plans.json.",
    ),
]
UnlabeledOption = Annotated[
    str,
    typer.Option(
        help="Folder of unlabelled scans (same channels and dimensionality as the dataset's): semi-supervised "
        "training with a Mean Teacher, whose EMA weights are validated and saved; recorded in plans.json "
        "(train.semi_supervised: EMA decay 0.99, consistency weight 0.1 ramped up over the first quarter of "
        "training; docs/semi_supervised.md).",
    ),
]
WeightDecayOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(min=0.0, help="Optimiser weight decay (default: as planned, 3e-5)."),
]
DropoutOption = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(min=0.0, max=0.95, help="Dropout probability in the network, e.g. 0.3-0.5 (default: 0, none)."),
]
ClassWeightsOption = Annotated[
    str,
    typer.Option(
        help="Cross-entropy class weights, comma-separated, one per class (background first) or per structure, "
        "e.g. 0.5,1,2 (default: unweighted)."
    ),
]
BatchDiceOption = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option("--batch-dice/--sample-dice", help="Dice over the whole batch or per sample (default: per sample)."),
]


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h30m', '2h' or plain seconds -> seconds (0 for empty)."""
    text = text.strip().lower()
    if not text:
        return 0.0
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not parts or not any(parts.groups()):
        raise typer.BadParameter(f"cannot read duration '{text}' (examples: 90s, 10m, 1h30m)")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s


def parse_folds(fold: str, folds: str) -> tuple[int, int, bool]:
    """``--fold`` / ``--folds`` -> (fold, number of folds, every fold?); ``all`` in either trains every fold
    (``--folds all``: of 5)."""
    every = "all" in (fold.strip().lower(), folds.strip().lower())
    n = 5 if folds.strip().lower() == "all" else _count("--folds", folds, 2)
    k = 0 if fold.strip().lower() == "all" else _count("--fold", fold, 0)
    if not every and k >= n:
        raise typer.BadParameter(f"--fold {k} must be below --folds {n}")
    return k, n, every


def _count(flag: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise typer.BadParameter(f"cannot read {flag} {text!r}: give a whole number or all") from None
    if value < minimum:
        raise typer.BadParameter(f"{flag} {value} is below {minimum}")
    return value


def parse_numbers(flag: str, text: str) -> tuple[float, ...]:
    """'0.5,1,2' -> (0.5, 1.0, 2.0) (empty for empty)."""
    try:
        return tuple(float(part) for part in text.split(",")) if text.strip() else ()
    except ValueError:
        raise typer.BadParameter(
            f"cannot read {flag} {text!r}: give numbers separated by commas, e.g. 0.5,1,2"
        ) from None
