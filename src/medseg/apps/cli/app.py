"""The ``medseg`` command line: one typer app; each command imports what it needs when it runs, so that
``medseg --help`` answers at once.

Errors caused by input (:class:`~medseg.errors.MedsegError`) are printed as one line on stderr with exit
code 2; ``medseg check`` exits 1 when it found problems.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from medseg import MedsegError
from medseg.apps.cli import deploy_commands, federated_commands, plan_commands, pretrain_commands, trust_commands
from medseg.apps.cli.flags import FlagCommand, FlagGroup
from medseg.apps.cli.options import (
    BatchDiceOption,
    BudgetPlanOption,
    ClassWeightsOption,
    ConfigurationOption,
    DistributedOption,
    DropoutOption,
    EncoderWeightsOption,
    FoldOption,
    FoldsOption,
    FrozenStagesOption,
    FusionOption,
    LossOption,
    ModelOption,
    NormalizationOption,
    ResampleChannelsOption,
    TimeBudgetOption,
    UnlabeledOption,
    WeightDecayOption,
    parse_duration,
    parse_folds,
    parse_numbers,
)

app = typer.Typer(
    cls=FlagGroup,
    name="medseg",
    help="Semantic segmentation of medical images with the U-Net family.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

logger = logging.getLogger("medseg")


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug messages.")] = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, show_time=False, markup=False)],
    )
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command(cls=FlagCommand)
def check(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (MSD, nnU-Net v2, or images/ + masks/).")],
    per_case: Annotated[
        Optional[bool],  # noqa: UP045  (typer needs Optional here)
        typer.Option(
            "--per-case/--summary",
            help="One table row per case, or the summary only (default: rows up to 50 cases, then the summary).",
        ),
    ] = None,
    resample_channels: ResampleChannelsOption = False,
) -> None:
    """Validate every case; print a table and every problem. Exit 0 if clean, 1 if problems were found."""
    from medseg.apps.cli.views import check_command

    raise typer.Exit(check_command(dataset, per_case=per_case, resample_channels=resample_channels))


@app.command(cls=FlagCommand)
def convert(
    source: Annotated[Path, typer.Argument(help="Dataset folder in any layout medseg reads.")],
    out: Annotated[Path, typer.Argument(help="New folder for the converted dataset (must not exist).")],
    layout: Annotated[str, typer.Option(help="Target layout: nnunet or msd.")] = "nnunet",
    file_ending: Annotated[str, typer.Option(help="File format of the output files.")] = ".nii.gz",
    resize_images_to_masks: Annotated[
        bool, typer.Option(help="Block-average images that are an exact integer multiple of their masks' size.")
    ] = False,
    name: Annotated[str, typer.Option(help="Dataset name in dataset.json (default: the source folder name).")] = "",
    mask_threshold: Annotated[
        float | None,
        typer.Option(
            help="Binarise every mask: value >= T becomes 1, else 0 (for lossy JPEG masks; `medseg check` suggests T)."
        ),
    ] = None,
) -> None:
    """Convert a dataset (images/ + masks/, DICOM series folders, MSD) into the nnU-Net v2 (or MSD) layout."""
    from medseg import ConvertOptions
    from medseg.apps.cli.views import convert_command

    options = ConvertOptions(
        layout=layout,
        file_ending=file_ending,
        resize_images_to_masks=resize_images_to_masks,
        name=name,
        mask_threshold=mask_threshold,
    )
    convert_command(source, out, options)


@app.command(cls=FlagCommand)
def generate(
    out: Annotated[Path, typer.Argument(help="New folder for the synthetic dataset (must not exist).")],
    cases: Annotated[int, typer.Option(min=1, help="Number of labelled cases.")] = 20,
    ndim: Annotated[int, typer.Option(min=2, max=3, help="2 for slices, 3 for volumes.")] = 3,
    layout: Annotated[str, typer.Option(help="msd, nnunet or folder.")] = "msd",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same dataset.")] = 0,
    overlapping: Annotated[bool, typer.Option(help="Overlapping binary structures instead of a label map.")] = False,
) -> None:
    """Write a synthetic CT-like dataset (lungs, heart, aorta) in any supported layout."""
    from medseg import SyntheticSpec, write_dataset

    spec = SyntheticSpec(ndim=ndim) if ndim == 3 else SyntheticSpec(ndim=2, shape=(128, 128))
    write_dataset(out, spec, n_cases=cases, seed=seed, layout=layout, overlapping=overlapping)
    typer.echo(f"wrote {cases} synthetic {ndim}D cases to {out} ({layout} layout)")


@app.command(cls=FlagCommand)
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (any layout `medseg check` reads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (or to continue with --resume).")],
    epochs: Annotated[int, typer.Option(min=0, help="Epochs (0: the plan's default).")] = 0,
    time_budget: TimeBudgetOption = "",
    budget_plan: BudgetPlanOption = True,
    iterations: Annotated[int, typer.Option(min=0, help="Iterations per epoch (0: as planned).")] = 0,
    fold: FoldOption = "0",
    folds: FoldsOption = "5",
    seed: Annotated[int, typer.Option(help="Seed of weights, split and data sampling.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    deterministic: Annotated[bool, typer.Option(help="Bit-identical results for the same seed (CPU).")] = False,
    optimizer: Annotated[
        str, typer.Option(help="sgd (Nesterov) or adamw (default: as planned: sgd on CUDA, adamw on CPU).")
    ] = "",
    schedule: Annotated[str, typer.Option(help="poly or cosine (default: as planned, poly).")] = "",
    amp: Annotated[
        str,
        typer.Option(help="auto, off, bf16 or fp16 (auto: bf16/fp16 on CUDA; on CPU bf16 if measured faster)."),
    ] = "",
    val_every: Annotated[int, typer.Option(min=0, help="Validate every N epochs (0: as planned).")] = 0,
    weight_decay: WeightDecayOption = None,
    dropout: DropoutOption = None,
    class_weights: ClassWeightsOption = "",
    batch_dice: BatchDiceOption = None,
    model: ModelOption = "unet",
    encoder_weights: EncoderWeightsOption = "",
    frozen_stages: FrozenStagesOption = 0,
    loss: LossOption = "",
    fusion: FusionOption = "early",
    resample_channels: ResampleChannelsOption = False,
    normalization: NormalizationOption = "auto",
    configuration: ConfigurationOption = "native",
    unlabeled: UnlabeledOption = "",
    tensorboard: Annotated[
        bool,
        typer.Option(
            help="Also write training curves to RUN/tensorboard (`tensorboard --logdir RUN`; needs "
            "pip install 'medseg[tensorboard]')."
        ),
    ] = False,
    distributed: DistributedOption = False,
) -> None:
    """Plan, preprocess and train a U-Net; then predict, evaluate and report the held-out fold (or every fold)."""
    from medseg import TrainOptions
    from medseg.apps.cli.views import train_command

    k, n_folds, all_folds = parse_folds(fold, folds)
    options = TrainOptions(
        epochs=epochs,
        time_budget_s=parse_duration(time_budget),
        budget_plan=budget_plan,
        iterations_per_epoch=iterations,
        fold=k,
        folds=n_folds,
        all_folds=all_folds,
        seed=seed,
        device=device,
        resume=resume,
        tensorboard=tensorboard,
        distributed=distributed,
        normalization=normalization,
        configuration=configuration,
        unlabeled=unlabeled,
        deterministic=deterministic,
        optimizer=optimizer,
        schedule=schedule,
        amp=amp,
        val_every=val_every,
        weight_decay=weight_decay,
        dropout=dropout,
        class_weights=parse_numbers("--class-weights", class_weights),
        batch_dice=batch_dice,
        model=model,
        encoder_weights=encoder_weights,
        frozen_stages=frozen_stages,
        loss=loss,
        fusion=fusion,
        resample_channels=resample_channels,
    )
    train_command(dataset, out, options)


@app.command(cls=FlagCommand)
def models() -> None:
    """List the networks `--model` accepts: name, the data it supports, what it is."""
    from rich.console import Console
    from rich.table import Table

    import medseg

    table = Table("model", "data", "what it is")
    for name in sorted(medseg.MODELS):
        entry = medseg.MODELS[name]
        table.add_row(name, " ".join(f"{n}D" for n in entry.ndims), entry.description)
    Console().print(table)


app.command(name="plan", cls=FlagCommand)(plan_commands.plan)
app.command(name="preprocess", cls=FlagCommand)(plan_commands.preprocess)
app.command(name="pretrain", cls=FlagCommand)(pretrain_commands.pretrain)


@app.command(cls=FlagCommand)
def predict(
    run: Annotated[
        Path,
        typer.Argument(
            help="Run folder written by `medseg train`: one run, a cross-validation (--folds all: its folds are "
            "ensembled) or a `medseg find-best` output (its winning ensemble)."
        ),
    ],
    inputs: Annotated[Path, typer.Argument(help="A scan (file or DICOM folder) or a folder of scans.")],
    output: Annotated[Path, typer.Argument(help="Folder for the predictions (named like the inputs).")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    overlap: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(min=0.0, max=0.95, help="Sliding-window overlap (default: as planned)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=0, help="Windows per forward pass (0: as planned).")] = 0,
    tta: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--tta/--no-tta", help="Mirroring test-time augmentation (default: as planned)."),
    ] = None,
    save_probabilities: Annotated[bool, typer.Option(help="Also write per-class probabilities (.npz).")] = False,
    largest_component: Annotated[
        bool,
        typer.Option(
            help="Keep the largest connected component per class (any of these three flags replaces the "
            "post-processing the run planned or chose on cross-validation)."
        ),
    ] = False,
    min_voxels: Annotated[int, typer.Option(min=0, help="Remove components smaller than this.")] = 0,
    fill_holes: Annotated[bool, typer.Option(help="Fill enclosed holes in each class.")] = False,
    continue_: Annotated[bool, typer.Option("--continue", help="Skip inputs whose prediction already exists.")] = False,
    resample_channels: Annotated[
        bool,
        typer.Option(
            "--resample-channels",
            help="Resample channel files on different grids onto the first channel's (always on when the run "
            "was planned with --resample-channels).",
        ),
    ] = False,
    distributed: DistributedOption = False,
    uncertainty: Annotated[
        bool,
        typer.Option(
            "--uncertainty",
            help="Also write each case's uncertainty map (CASE_uncertainty.*) and uncertainty.json/.csv: scores "
            "from every TTA flip, fold and dropout pass, predicted Dice and a failure flag once `medseg trust` ran.",
        ),
    ] = False,
    mc_dropout: Annotated[
        int, typer.Option(min=0, help="With --uncertainty: Monte-Carlo dropout passes (networks with dropout).")
    ] = 0,
    dicom_seg: Annotated[
        bool,
        typer.Option(
            "--dicom-seg",
            help="With a bundle: a DICOM series input gives a DICOM-SEG referencing it (needs highdicom) instead "
            "of a NIfTI mask.",
        ),
    ] = False,
) -> None:
    """Segment scans with a trained run or a bundle (MODEL.medseg from `medseg export`); outputs keep each
    input's format, geometry and file name."""
    import medseg

    if medseg.is_bundle(run):  # the bundle's own pipeline; the options above are a run folder's
        from medseg.apps.cli.bundles import predict_bundle_command

        predict_bundle_command(run, inputs, output, dicom_seg)
        return
    if dicom_seg:
        raise MedsegError("--dicom-seg needs a bundle (medseg export RUN --out MODEL.medseg); runs write DICOM series")
    from medseg import PostProcessing, PredictOptions
    from medseg.apps.cli.views import predict_command

    post = PostProcessing(largest_component=largest_component, min_voxels=min_voxels, fill_holes=fill_holes)
    post_or_none = post if post.active else None  # none asked: as planned / as chosen on cross-validation
    options = PredictOptions(
        checkpoint=checkpoint,
        overlap=overlap,
        batch_size=batch_size or None,
        tta=tta,
        save_probabilities=save_probabilities,
        postprocessing=post_or_none,
        skip_existing=continue_,
        resample_channels=resample_channels,
    )
    if mc_dropout and not uncertainty:
        raise MedsegError("--mc-dropout samples uncertainty; add --uncertainty")
    if uncertainty:
        if distributed:
            raise MedsegError("--uncertainty runs in one process; leave out --distributed")
        from medseg.apps.cli.trust_views import predict_uncertainty_command

        samples = medseg.UncertaintyOptions(tta=tta is not False, dropout_samples=mc_dropout)
        predict_uncertainty_command(run, inputs, output, device, options, samples)
        return
    predict_command(run, inputs, output, device, options, distributed=distributed)


# commands defined beside this module (plan_commands, trust_commands, deploy_commands), registered here in the
# order `medseg --help` lists them
app.command(name="trust", cls=FlagCommand)(trust_commands.trust)
app.command(name="explain", cls=FlagCommand)(trust_commands.explain)
app.add_typer(federated_commands.app, name="federated")
app.command(name="export", cls=FlagCommand)(deploy_commands.export)
app.command(name="serve", cls=FlagCommand)(deploy_commands.serve)


@app.command(name="find-best", cls=FlagCommand)
def find_best(
    runs: Annotated[list[Path], typer.Argument(help="Cross-validation folders (`medseg train --folds all`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write ensemble.json into (new).")],
) -> None:
    """Compare configurations and their ensembles on out-of-fold Dice; keep the best with post-processing
    chosen on the same predictions; `medseg predict OUT ...` uses it."""
    from medseg.apps.cli.views import find_best_command

    find_best_command(runs, out)


@app.command(cls=FlagCommand)
def evaluate(
    predictions: Annotated[Path, typer.Argument(help="Folder of predicted label files.")],
    references: Annotated[Path, typer.Argument(help="Folder of reference label files (same file names).")],
    out: Annotated[
        Optional[Path],  # noqa: UP045 (typer needs Optional)
        typer.Option("--out", "-o", help="Where metrics.json/.csv go (default: PREDICTIONS)."),
    ] = None,
    run: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Run folder whose plans name the classes (default: discovered from the references)."),
    ] = None,
    nsd_tolerance: Annotated[float, typer.Option(min=0.0, help="Normalised surface Dice tolerance in mm.")] = 1.0,
) -> None:
    """Dice, IoU, HD95, HD, ASSD, NSD, sensitivity, specificity and precision per case and class."""
    from medseg.apps.cli.views import evaluate_command

    evaluate_command(predictions, references, out or predictions, run, nsd_tolerance)


@app.command(cls=FlagCommand)
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = Path(
        "medseg-demo"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (25 iterations each).")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Generate synthetic chest CT slices, train, predict held-out scans, evaluate and write the report."""
    from medseg.apps.cli.views import demo_command

    demo_command(out, epochs, device)


app.command(name="gui", cls=FlagCommand)(deploy_commands.gui)


def main() -> None:
    """Console entry point: run the app and turn input errors into one line and exit code 2."""
    try:
        app()
    except MedsegError as exc:
        if not getattr(exc, "reported_by_rank_zero", False):  # torchrun's other processes: said once, by rank 0
            typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
