"""Commands that deliver a trained model: `medseg export` (a bundle), `medseg serve` (HTTP) and `medseg gui`
(the desktop application). Registered by app.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medseg import MedsegError

__all__ = ["export", "gui", "serve"]


def export(
    run: Annotated[
        Path, typer.Argument(help="What `medseg predict` accepts: a run, a cross-validation or a find-best folder.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle file to write (MODEL.medseg).")],
    format: Annotated[str, typer.Option("--format", help="onnx (the torch-free runtime) or torchscript.")] = "onnx",
    int8: Annotated[
        bool, typer.Option("--int8", help="INT8 static quantisation (onnx), calibrated on training cases.")
    ] = False,
    calibration_cases: Annotated[int, typer.Option(min=1, help="Training cases for --int8 calibration.")] = 8,
    precision: Annotated[
        str, typer.Option(help="float32, int8 or fp16 (fp16: CUDA/TensorRT providers only).")
    ] = "float32",
    parity_cases: Annotated[int, typer.Option(min=1, help="Held-out cases the parity check runs on.")] = 2,
    tta: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--tta/--no-tta", help="Mirroring test-time augmentation in the bundle (default: as planned)."),
    ] = None,
) -> None:
    """Write a run as one bundle file: networks, preprocessing, window, TTA, post-processing, model card and
    checksums; written only if it agrees with the eager model (parity)."""
    from medseg.apps.cli.bundles import export_command

    export_command(run, out, format, "int8" if int8 else precision, calibration_cases, parity_cases, tta)


def serve(
    models: Annotated[list[Path], typer.Argument(help="Bundles to serve (MODEL.medseg); each is named by its file.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    api_keys: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--api-keys", help="File of API keys, one a line (also: MEDSEG_API_KEYS, comma-separated)."),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without API keys (local use only; refused otherwise).")
    ] = False,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest upload accepted (413 beyond).")] = 512.0,
    max_queue: Annotated[int, typer.Option(min=0, help="Requests that may wait for a worker (429 beyond).")] = 4,
    workers: Annotated[int, typer.Option(min=1, help="Predictions running at once.")] = 1,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="Seconds a request may take (504 beyond).")] = 600.0,
    temp_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Folder for each request's temporary files (default: the system's); emptied after use."),
    ] = None,
    examples: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Folder of example scans the browser viewer offers to pick (its files, by name)."),
    ] = None,
) -> None:
    """Serve bundles over HTTP (FastAPI): POST a scan, get its mask; the browser viewer at /, API docs at /docs
    (docs/serve.md)."""
    from medseg.apps.cli.bundles import serve_command

    limits = {"max_upload_mb": max_upload_mb, "max_queue": max_queue, "workers": workers, "timeout_s": timeout_s}
    serve_command(models, host, port, api_keys, no_auth, temp_dir=temp_dir, examples=examples, **limits)


def gui(
    path: Annotated[
        Optional[Path],  # noqa: UP045 (typer needs Optional)
        typer.Argument(help="A scan to open (file or DICOM series folder)."),
    ] = None,
    model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Run folder to segment with (a run, a cross-validation or a find-best folder)."),
    ] = None,
) -> None:
    """Open the desktop application: look at a scan, segment it, correct the mask and save it."""
    try:
        from medseg.apps.gui.app import run
    except ModuleNotFoundError as exc:
        raise MedsegError(
            f"the desktop application needs PySide6 and scikit-image ({exc}): install with pip install 'medseg[gui]'"
        ) from exc
    except ImportError as exc:  # installed, but a system library Qt loads is missing
        raise MedsegError(
            f"PySide6 cannot load ({exc}): install Qt's system libraries, e.g. apt-get install libegl1 libgl1 "
            "libxkbcommon0 libfontconfig1 libdbus-1-3"
        ) from exc
    raise typer.Exit(run(path, model))
