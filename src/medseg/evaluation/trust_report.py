"""The trust sections of the report (``medseg trust``): failure flag, calibration, uncertainty overlays.

Each function returns ``(heading, html)`` for :func:`~medseg.evaluation.report.write_report`'s ``sections``.
The drawing helpers are the report's own (same stage), so the figures look like the rest of the report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation.html_page import DPI as _DPI
from medseg.evaluation.html_page import img as _img
from medseg.evaluation.html_page import new_figure as _new_figure
from medseg.evaluation.report import _blend, _foreground_slice, _normalise
from medseg.fileutil import atomic_path

__all__ = [
    "TrustOverlay",
    "calibration_section",
    "failure_section",
    "uncertainty_section",
    "write_explanation_png",
]


@dataclass(frozen=True)
class TrustOverlay:
    """One case to show: image ``(*spatial)`` (first channel), entropy map ``(*spatial)`` and the predicted
    ``masks`` ``(K, *spatial)``, one per foreground class in label order (coloured as in the report)."""

    case_id: str
    role: str
    image: np.ndarray
    entropy: np.ndarray
    masks: np.ndarray
    dice: float
    predicted_dice: float
    window: tuple[float, float] | None = None


def _fmt(value: Any, digits: int = 3) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{number:.{digits}f}" if math.isfinite(number) else "–"


def failure_section(record: dict[str, Any]) -> tuple[str, str]:
    """How well the predicted Dice ranks the held-out cases, and the table of cases, lowest predicted first."""
    quality, model = record.get("quality") or {}, record["failure_model"]
    how = (
        "leave-one-out predictions shown: each case is scored by a model fitted on the others"
        if quality.get("predicted_by") == "leave-one-out"
        else "in-sample predictions shown: too few cases for leave-one-out, so they are optimistic"
    )
    summary = (
        f'<p class="note">Each case\'s Dice is predicted from its uncertainty scores by a small monotone model '
        f"fitted on these held-out cases ({how}). "
        f"Spearman correlation with the true Dice {_fmt(quality.get('spearman'))}, Pearson "
        f"{_fmt(quality.get('pearson'))}; of the {_fmt(quality.get('n_worst'), 0)} worst cases (10 %), "
        f"{_fmt(100 * float(quality.get('catch_rate', math.nan)), 0)} % are among as many cases predicted lowest. "
        f"Cases predicted below {_fmt(model['threshold'])} are flagged.</p>"
    )
    rows = sorted(record["cases"], key=lambda r: r["predicted_dice"])
    body = "".join(
        f"<tr><td>{html.escape(str(r['case']))}</td><td>{_fmt(r['dice'])}</td><td>{_fmt(r['predicted_dice'])}</td>"
        f"<td>{'flagged' if r['flagged'] else ''}</td><td>{_fmt(r['scores']['entropy'])}</td>"
        f"<td>{_fmt(r['scores']['disagreement_ratio'])}</td></tr>"
        for r in rows
    )
    table = (
        "<table><tr><th>case</th><th>Dice</th><th>predicted Dice</th><th>flag</th><th>mean entropy</th>"
        f"<th>disagreement / volume</th></tr>{body}</table>"
    )
    return "Failure flag", summary + table


def calibration_section(record: dict[str, Any]) -> tuple[str, str]:
    """Reliability diagram of the voxel probabilities before and after temperature scaling."""
    calibration = record["calibration"]
    figure = _new_figure(6.0, 4.5)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="#999", linestyle="--", label="perfect")
    text = []
    for key, colour in (("before", "tab:red"), ("after", "tab:blue")):
        diagram = calibration.get(key)
        if not diagram:
            continue
        conf = np.array([np.nan if v is None else v for v in diagram["confidence"]], dtype=float)
        acc = np.array([np.nan if v is None else v for v in diagram["accuracy"]], dtype=float)
        label = "uncalibrated" if key == "before" else f"temperature {record['temperature']:.2f}"
        axes.plot(conf, acc, marker="o", color=colour, label=f"{label} (ECE {diagram['ece']:.4f})")
        text.append(f"{label}: ECE {diagram['ece']:.4f}")
    axes.set_xlabel("confidence of the predicted label")
    axes.set_ylabel("fraction correct")
    axes.legend(loc="upper left")
    note = (
        '<p class="note">Voxels sampled around the structures (the bounding box of reference and prediction, '
        f"widened by a quarter), not the whole scan. {html.escape('; '.join(text))}.</p>"
    )
    return "Calibration", note + _img(figure)


def uncertainty_section(overlays: Sequence[TrustOverlay]) -> tuple[str, str]:
    """Image, predicted outline and the entropy map of the best, median and worst cases."""
    parts = ['<p class="note">Normalised predictive entropy (0 certain, 1 uniform) over the image.</p>']
    for case in overlays:
        image, entropy, masks = case.image, case.entropy, case.masks
        if image.ndim == 3:
            index = _foreground_slice(np.asarray(masks.any(axis=0)))
            image, entropy, masks = image[index], entropy[index], masks[:, index]
        gray = _normalise(image, case.window)
        figure = _new_figure(9.0, 4.4)
        left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
        left.imshow(_blend(gray, masks), interpolation="nearest")
        left.set_title("prediction")
        right.imshow(gray, cmap="gray", interpolation="nearest")
        shown = right.imshow(np.ma.masked_less(entropy, 0.02), cmap="magma", vmin=0, vmax=1, alpha=0.8)
        right.set_title("uncertainty (entropy)")
        figure.colorbar(shown, ax=right, fraction=0.046)
        for axes in (left, right):
            axes.set_axis_off()
        caption = f"{case.role}: {case.case_id} — Dice {_fmt(case.dice)}, predicted {_fmt(case.predicted_dice)}"
        parts += [f"<h3>{html.escape(caption)}</h3>", _img(figure)]
    return "Uncertainty", "".join(parts)


def write_explanation_png(path: Path, image: np.ndarray, heat: np.ndarray, title: str) -> Path:
    """The image and the explanation map over it, side by side, through the slice where the map peaks (3D)."""
    if image.ndim == 3:
        index = int(np.unravel_index(int(np.argmax(heat)), heat.shape)[0])
        image, heat = image[index], heat[index]
    gray = _normalise(image)
    figure = _new_figure(9.0, 4.4)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    left.imshow(gray, cmap="gray", interpolation="nearest")
    left.set_title("image")
    right.imshow(gray, cmap="gray", interpolation="nearest")
    shown = right.imshow(np.ma.masked_less(heat, 0.05), cmap="jet", vmin=0, vmax=1, alpha=0.5)
    right.set_title(title)
    figure.colorbar(shown, ax=right, fraction=0.046)
    for axes in (left, right):
        axes.set_axis_off()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return path
