"""`medseg trust` and `medseg explain`: trust in each prediction (docs/trust.md). Registered by app.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["explain", "trust"]


def trust(
    run: Annotated[Path, typer.Argument(help="A run folder or a cross-validation folder (its out-of-fold cases).")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="Every mirroring of the input is a sample.")] = True,
    mc_dropout: Annotated[int, typer.Option(min=0, help="Monte-Carlo dropout passes (networks with dropout).")] = 0,
    temperature: Annotated[
        bool, typer.Option("--temperature/--no-temperature", help="Fit temperature scaling (labels do not change).")
    ] = True,
    flag_below: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            min=0.0,
            max=1.0,
            help="Flag cases predicted below this Dice (default: the lowest 10 % of the held-out predictions).",
        ),
    ] = None,
) -> None:
    """Fit a per-case failure flag and temperature scaling on the held-out cases; measure how well they work
    (trust.json, the report's trust sections); `medseg predict --uncertainty` then flags new cases."""
    import medseg
    from medseg.apps.cli.trust_views import trust_command

    samples = medseg.UncertaintyOptions(tta=tta, dropout_samples=mc_dropout)
    target = str(medseg.resolve_device(device))
    options = medseg.TrustOptions(samples, temperature=temperature, threshold=flag_below, device=target)
    trust_command(run, options)


def explain(
    run: Annotated[Path, typer.Argument(help="A run folder (one network).")],
    scan: Annotated[Path, typer.Argument(help="A scan: a file or a DICOM series folder.")],
    class_name: Annotated[str, typer.Option("--class", help="The class (structure) to explain, by name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the map and the overlay PNG.")] = Path("."),
    method: Annotated[
        str, typer.Option(help="hirescam (default), gradcam, or occlusion (gradient-free).")
    ] = "hirescam",
    layer: Annotated[
        str, typer.Option(help="Module name of the layer for (Hi)Res/Grad-CAM (default: 1/4 resolution).")
    ] = "",
) -> None:
    """Where the network looked to predict a class: a map in the scan's geometry and an overlay image."""
    from medseg.apps.cli.trust_views import explain_command

    explain_command(run, scan, class_name, out, method, layer)
