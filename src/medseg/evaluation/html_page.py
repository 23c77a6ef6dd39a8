"""The parts every medseg HTML report shares: a self-contained page (inline style sheet, written atomically),
figures as inline base64 PNG drawn on a private Agg canvas (no pyplot, no global backend), HTML escaping and
the number formatting that shows NaN as "–". Used by :mod:`~medseg.evaluation.report` (runs and evaluations)
and :mod:`~medseg.evaluation.federated_report` (federations).

Example:
    >>> fmt(0.91234, 3), fmt(None, 3), esc("<b>")
    ('0.912', '–', '&lt;b&gt;')
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medseg.evaluation.config_summary import config_rows
from medseg.fileutil import atomic_write_text

__all__ = [
    "DASH",
    "DPI",
    "config_parts",
    "esc",
    "finite",
    "fmt",
    "img",
    "mpl_text",
    "nanmean",
    "new_figure",
    "num",
    "write_document",
]

logger = logging.getLogger(__name__)

DPI = 80
DASH = "–"
_PNG_PREFIX = "data:image/png;base64,"
_CSS = """body{font-family:sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}table.config td{text-align:left}summary{cursor:pointer}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:1em;overflow:auto}
.note{color:#666}img{width:100%;max-width:1200px}"""


def config_parts(config: dict) -> list[str]:
    """The "Run configuration" section: a summary table and the full plans.json folded away."""
    rows = "".join(f"<tr><td>{esc(what)}</td><td>{esc(value)}</td></tr>" for what, value in config_rows(config))
    pretty = json.dumps(config, indent=2, default=str)
    return [
        "<h2>Run configuration</h2>",
        f'<table class="config">{rows}</table>',
        f"<details><summary>the full plans.json</summary><pre>{esc(pretty)}</pre></details>",
    ]


def write_document(path: Path, title: str, parts: Sequence[str]) -> Path:
    """``parts`` as one self-contained HTML page, written atomically to ``path``."""
    body = "\n".join(parts)
    document = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    atomic_write_text(path, document)
    logger.info("wrote report %s (%d bytes)", path, len(document))
    return path


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def img(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="{_PNG_PREFIX}{encoded}" alt="plot">'


def num(value: Any) -> float:
    """``value`` as float; NaN for ``None`` or anything not numeric."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def finite(value: Any) -> bool:
    return math.isfinite(num(value))


def nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def fmt(value: Any, digits: int) -> str:
    number = num(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else DASH


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def mpl_text(text: str) -> str:
    """Escape ``$`` so matplotlib does not read a class name as mathtext."""
    return text.replace("$", r"\$")
