"""``medseg export`` and ``medseg predict MODEL.medseg``: thin shells over the public API."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

import medseg

__all__ = ["export_command", "predict_bundle_command", "serve_command"]


def export_command(
    run: Path, out: Path, fmt: str, precision: str, calibration_cases: int, parity_cases: int, tta: bool | None
) -> None:
    # ExportOptions checks format and precision (one line naming the valid choices)
    options = medseg.ExportOptions(
        format=fmt,  # type: ignore[arg-type]
        precision=precision,  # type: ignore[arg-type]
        calibration_cases=calibration_cases,
        parity_cases=parity_cases,
        tta=tta,
    )
    report = medseg.export_bundle(run, out, options)
    parity = report.parity
    Console().print(
        f"{report.path} ({report.size_bytes / 1e6:.1f} MB, {report.networks} network(s), {fmt} {precision}); "
        f"parity: max logit difference {parity.max_logit_diff:.3g}, label agreement {parity.label_agreement:.5f}"
    )


def predict_bundle_command(bundle: Path, inputs: Path, output: Path, dicom_seg: bool = False) -> None:
    written = medseg.predict_bundle(bundle, inputs, output, dicom_seg=dicom_seg)
    Console().print(f"{len(written)} mask(s) written to {output}")


def serve_command(
    models: list[Path], host: str, port: int, api_keys: Path | None, no_auth: bool, **settings: Any
) -> None:
    """Serve ``models``; ``settings`` are :class:`~medseg.apps.server.ServerConfig` fields (a ``None``
    ``temp_dir``: the system's temporary folder)."""
    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise medseg.MedsegError(f"medseg serve needs {', '.join(missing)}: pip install 'medseg[serve]'")
    from medseg.apps.server import ServerConfig, load_api_keys
    from medseg.apps.server.app import serve

    settings["temp_dir"] = settings.get("temp_dir") or Path(tempfile.gettempdir())
    config = ServerConfig(models=tuple(models), api_keys=load_api_keys(api_keys), auth=not no_auth, **settings)
    serve(config, host=host, port=port)
