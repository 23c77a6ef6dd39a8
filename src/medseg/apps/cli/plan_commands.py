"""`medseg plan` and `medseg preprocess`: the steps before training, one at a time. Registered by app.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg.apps.cli.options import (
    BatchDiceOption,
    BudgetPlanOption,
    ClassWeightsOption,
    ConfigurationOption,
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

__all__ = ["plan", "preprocess"]


def plan(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (any layout `medseg check` reads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create.")],
    fold: FoldOption = "0",
    folds: FoldsOption = "5",
    seed: Annotated[int, typer.Option(help="Seed of weights, split and data sampling.")] = 0,
    device: Annotated[str, typer.Option(help="Plan for this device: auto, cpu or cuda.")] = "auto",
    epochs: Annotated[int, typer.Option(min=0, help="Epochs (0: the device's default).")] = 0,
    time_budget: TimeBudgetOption = "",
    budget_plan: BudgetPlanOption = True,
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
) -> None:
    """Check, fingerprint and plan a dataset: writes RUN/plans.json (edit it, then `medseg train`); with
    --folds all also RUN/splits.json (edit it too)."""
    from rich.console import Console

    import medseg
    from medseg.apps.cli.views import TrainingView

    k, n_folds, all_folds = parse_folds(fold, folds)
    options = medseg.TrainOptions(
        fold=k,
        folds=n_folds,
        all_folds=all_folds,
        seed=seed,
        device=device,
        epochs=epochs,
        time_budget_s=parse_duration(time_budget),
        budget_plan=budget_plan,
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
        normalization=normalization,
        configuration=configuration,
        unlabeled=unlabeled,
    )
    planner = medseg.plan_crossval if all_folds else medseg.plan
    with TrainingView() as view:
        plans = planner(dataset, out, options, medseg.Callbacks(on_step=view.step))
    t = plans.train
    console = Console()
    if plans.budget is not None:
        from medseg.apps.cli.views import budget_table

        console.print(budget_table(plans.budget))
    console.print(
        f"plans: {medseg.RunDir(out).plans_path}\n  target spacing {plans.data.target_spacing}, "
        f"patch {plans.patch_size}, batch {t.batch_size}, model {plans.model.name}, loss {t.loss}, "
        f"{t.optimizer} lr {t.learning_rate}"
    )


def preprocess(
    run: Annotated[Path, typer.Argument(help="Run folder written by `medseg plan`.")],
) -> None:
    """Crop, resample and normalise every case of a planned run into RUN/preprocessed (the cache training uses)."""
    from rich.console import Console

    import medseg
    from medseg.apps.cli.views import TrainingView

    with TrainingView() as view:
        cases = medseg.preprocess(run, medseg.Callbacks(on_step=view.step))
    Console().print(f"{len(cases)} cases preprocessed into {medseg.RunDir(run).preprocessed}")
