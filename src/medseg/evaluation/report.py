"""One self-contained ``report.html`` for a training run or an evaluation folder.

Every plot is an inline base64 PNG and the style sheet is inline, so the file can be mailed or archived
alone. Figures are drawn with :class:`matplotlib.figure.Figure` on a private Agg canvas: no pyplot and
no global backend switch. Every string that comes from data (case ids, class names, configuration) is
HTML-escaped.

Example:
    >>> picks = pick_overlay_cases({"a": 0.9, "b": 0.5, "c": 0.7})
    >>> picks
    [('best', 'a'), ('median', 'c'), ('worst', 'b')]
    >>> write_report(run / "report.html", title="Lung", metrics=metrics)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.colors import TABLEAU_COLORS, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from scipy import ndimage

from medseg.errors import DataError
from medseg.evaluation.html_page import DASH as _DASH
from medseg.evaluation.html_page import config_parts as _config_parts
from medseg.evaluation.html_page import esc as _esc
from medseg.evaluation.html_page import finite as _finite
from medseg.evaluation.html_page import fmt as _fmt
from medseg.evaluation.html_page import img as _img
from medseg.evaluation.html_page import mpl_text as _mpl_text
from medseg.evaluation.html_page import nanmean as _nanmean
from medseg.evaluation.html_page import new_figure as _new_figure
from medseg.evaluation.html_page import num as _num
from medseg.evaluation.html_page import write_document as _write_document

__all__ = ["CLASS_COLOURS", "OverlayCase", "dice_axis_range", "pick_overlay_cases", "training_curves", "write_report"]

logger = logging.getLogger(__name__)

# (key in the metrics JSON, column header, is a distance in spacing units)
_METRICS = (
    ("dice", "Dice", False),
    ("iou", "IoU", False),
    ("hd95", "HD95", True),
    ("assd", "ASSD", True),
    ("nsd", "NSD", False),
    ("sensitivity", "Sensitivity", False),
    ("specificity", "Specificity", False),
    ("precision", "Precision", False),
)
# Fixed class colours (matplotlib's tab10): the i-th class in label order always gets CLASS_COLOURS[i].
CLASS_COLOURS: tuple[tuple[float, float, float], ...] = tuple(to_rgb(c) for c in TABLEAU_COLORS.values())
_FILL_ALPHA = 0.4


@dataclass(frozen=True)
class OverlayCase:
    """One case to show as image | reference | prediction.

    ``image`` is ``(*spatial)`` or ``(C, *spatial)`` (channel 0 is shown); ``reference`` and
    ``prediction`` are ``(*spatial)`` integer label maps (label ``k`` is class key ``"k"``) or
    ``(K, *spatial)`` binary masks (channel ``i`` is the ``i``-th class in label order) for overlapping
    structures; ``spatial`` is 2D or 3D (3D shows the axis-0 slice with most reference foreground).
    ``overlapping=None`` infers the layout from the dimensions; a 3-dimensional ``reference`` beside a
    3-dimensional ``image`` is ambiguous and read as masks only when its dtype is ``bool``. ``window`` is the
    display range of the image (e.g. a CT window in HU, :data:`medseg.config.windows.HU_WINDOWS`); None
    stretches the image's own 1st-99th percentiles.

    Example:
        >>> OverlayCase("case_000", img, ref, pred, score=0.91)   # doctest: +SKIP
    """

    case_id: str
    image: np.ndarray
    reference: np.ndarray
    prediction: np.ndarray
    score: float
    overlapping: bool | None = None
    window: tuple[float, float] | None = None


def pick_overlay_cases(case_scores: dict[str, float]) -> list[tuple[str, str]]:
    """Return ``[("best", id), ("median", id), ("worst", id)]`` by score, without repeating a case.

    Cases with a non-finite score are ignored; ties are broken by case id. With an even number of
    cases the median is the better of the two middle cases.

    >>> pick_overlay_cases({"a": 0.2, "b": 0.8})
    [('best', 'b'), ('worst', 'a')]
    """
    ranked = sorted(
        ((case, float(score)) for case, score in case_scores.items() if _finite(score)),
        key=lambda item: (-item[1], item[0]),
    )
    if not ranked:
        return []
    picks = [("best", ranked[0][0]), ("median", ranked[(len(ranked) - 1) // 2][0]), ("worst", ranked[-1][0])]
    seen: set[str] = set()
    result = []
    for role, case in picks:
        if case not in seen:
            seen.add(case)
            result.append((role, case))
    return result


def write_report(
    path: Path,
    *,
    title: str,
    metrics: dict,
    log_records: Sequence[dict] = (),
    overlays: Sequence[OverlayCase] = (),
    config: dict | None = None,
    sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write the HTML report atomically to ``path`` and return ``path``.

    ``sections`` are extra ``(heading, html)`` parts (e.g. the trust sections), shown before the case table.

    ``metrics`` is the evaluation JSON (``classes``, ``cases``, ``summary``, ``spacing_unit``);
    NaN or null values show as "–" and are left out of plots. ``log_records`` are the training log
    lines (``epoch``, ``train_loss``, optional ``val_loss`` / ``val_dice`` / ``consistency_loss``); without them the
    training-curve section is omitted.
    """
    path = Path(path)
    classes = _classes(metrics)
    cases = metrics.get("cases") or []
    unit = str(metrics.get("spacing_unit", ""))
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="note">Generated {_esc(generated)}. Scores compare the predicted masks with the reference '
        f"masks of cases the network did not train on. Dice and IoU measure overlap (1 = identical); HD95 and "
        f"ASSD measure boundary distance in {_esc(_unit_words(unit))} (0 = identical).</p>",
        "<h2>Summary per class</h2>",
        _summary_table(classes, metrics.get("summary") or {}, unit),
        "<h2>Dice per case</h2>",
        _img(_dice_boxplot(classes, cases)),
    ]
    if log_records:
        parts += ["<h2>Training curves</h2>", _img(training_curves(log_records))]
    if overlays:
        parts.append("<h2>Examples</h2>")
        for case in overlays:
            caption = f"{case.case_id} — mean Dice {_fmt(case.score, 3)}"
            if case.window is not None:
                caption += f" (display window {case.window[0]:g} … {case.window[1]:g})"
            parts += [f"<h3>{_esc(caption)}</h3>", _img(_overlay_figure(case, classes))]
    for heading, fragment in sections:
        parts += [f"<h2>{_esc(heading)}</h2>", fragment]
    parts += ["<h2>Cases</h2>", _case_table(classes, cases)]
    parts.append(
        '<details><summary class="note">How empty masks are scored</summary>'
        f'<p class="note">{_esc(metrics.get("empty_policy", _DASH))}</p></details>'
    )
    if config is not None:
        parts += _config_parts(config)
    return _write_document(path, title, parts)


def _unit_words(unit: str) -> str:
    if unit in ("", "voxels"):
        return "voxels (the files carry no physical spacing)"
    return unit


# ----------------------------------------------------------------------------------------- tables
def _classes(metrics: dict) -> list[tuple[str, str]]:
    """``[(key, name), ...]`` sorted by integer label."""
    classes = metrics.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise DataError("metrics", "has no 'classes' mapping", "pass the evaluation JSON written by medseg evaluate")
    try:
        return sorted(((str(k), str(v)) for k, v in classes.items()), key=lambda kv: int(kv[0]))
    except ValueError as error:
        raise DataError("metrics", f"class keys must be integer labels: {error}", "use keys like '1'") from None


def _summary_table(classes: list[tuple[str, str]], summary: dict, unit: str) -> str:
    suffix = f" ({unit})" if unit else ""
    head = "".join(f"<th>{_esc(label + (suffix if dist else ''))}</th>" for _, label, dist in _METRICS)
    rows = []
    for key, name in classes:
        stats = summary.get(key) or {}
        n = (stats.get("dice") or {}).get("n")
        label = f"{name} (n={n})" if n is not None else name
        cells = "".join(
            f"<td>{_esc(_stat_cell(stats.get(metric) or {}, 2 if dist else 3))}</td>" for metric, _, dist in _METRICS
        )
        rows.append(f"<tr><td>{_esc(label)}</td>{cells}</tr>")
    note = '<p class="note">mean ± std (median)</p>'
    return f"{note}<table><tr><th>Class</th>{head}</tr>{''.join(rows)}</table>"


def _stat_cell(stat: dict, digits: int) -> str:
    mean, std, median = (_num(stat.get(k)) for k in ("mean", "std", "median"))
    if not math.isfinite(mean):
        return _DASH
    text = _fmt(mean, digits) + (f" ± {_fmt(std, digits)}" if math.isfinite(std) else "")
    return text + f" ({_fmt(median, digits)})"


def _case_table(classes: list[tuple[str, str]], cases: list[dict]) -> str:
    head = "".join(f"<th>{_esc(name)}</th>" for _, name in classes)
    rows = []
    for case in cases:
        dice = _case_dice(case, classes)
        cells = "".join(f"<td>{_fmt(value, 3)}</td>" for value in dice)
        mean = _fmt(_nanmean(dice), 3)
        rows.append(f"<tr><td>{_esc(case.get('case', ''))}</td><td>{mean}</td>{cells}</tr>")
    return f"<table><tr><th>Case</th><th>Mean Dice</th>{head}</tr>{''.join(rows)}</table>"


def _case_dice(case: dict, classes: list[tuple[str, str]]) -> list[float]:
    per_class = case.get("metrics") or {}
    return [_num((per_class.get(key) or {}).get("dice")) for key, _ in classes]


# ------------------------------------------------------------------------------------------ plots
def _dice_boxplot(classes: list[tuple[str, str]], cases: list[dict]) -> Figure:
    """Box plot of per-case Dice per class with deterministic jittered points (NaN left out)."""
    figure = _new_figure(max(8.0, 1.4 * len(classes) + 2.0), 4.0)
    axes = figure.add_subplot()
    columns = np.array([_case_dice(case, classes) for case in cases], dtype=float).reshape(-1, len(classes))
    finite = columns[np.isfinite(columns)]
    for index in range(len(classes)):
        values = columns[:, index][np.isfinite(columns[:, index])]
        if values.size == 0:
            continue
        colour = CLASS_COLOURS[index % len(CLASS_COLOURS)]
        axes.boxplot(values, positions=[index], widths=0.5, showfliers=False, manage_ticks=False)
        # Golden-ratio offsets spread the points reproducibly without a random generator.
        jitter = ((np.arange(values.size) * 0.6180339887) % 1.0 - 0.5) * 0.3
        axes.scatter(index + jitter, values, s=12, color=colour, alpha=0.8, zorder=3)
    axes.set_xticks(range(len(classes)), [_mpl_text(name) for _, name in classes])
    axes.set_xlim(-0.6, len(classes) - 0.4)
    axes.set_ylim(*dice_axis_range(finite))
    axes.set_ylabel("Dice")
    axes.grid(axis="y", alpha=0.3)
    return figure


def dice_axis_range(values: np.ndarray) -> tuple[float, float]:
    """The y range of a Dice plot: from a little below the lowest value (rounded down to 0.05) to just above
    1, so boxes of Dice 0.95-0.99 are boxes, not a line at the top of a 0-1 axis."""
    if values.size == 0:
        return -0.02, 1.02
    low = max(0.0, math.floor((float(values.min()) - 0.02) * 20) / 20)
    return low - 0.01, 1.005 + 0.01 * (1 - low)


def _series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and values of ``key`` where it is present and finite."""
    points = [
        (_num(record.get("epoch", index)), _num(record.get(key)))
        for index, record in enumerate(records)
        if _finite(record.get(key))
    ]
    array = np.array(points, dtype=float).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def training_curves(records: Sequence[dict]) -> Figure:
    """Loss (train, validation, consistency) and validation Dice over epochs of ``records`` (log.jsonl lines)."""
    figure = _new_figure(12.0, 4.0)
    loss_axes, dice_axes = figure.subplots(1, 2)
    for axes in (loss_axes, dice_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for key, label in (("train_loss", "train"), ("val_loss", "validation"), ("consistency_loss", "consistency")):
        epochs, values = _series(records, key)
        if values.size:
            loss_axes.plot(epochs, values, marker=".", label=label)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("loss")
    if loss_axes.lines:
        loss_axes.legend()
    epochs, values = _series(records, "val_dice")
    if values.size:
        dice_axes.plot(epochs, values, marker=".", color=CLASS_COLOURS[2])
    else:
        dice_axes.text(0.5, 0.5, "no validation Dice", ha="center", va="center", transform=dice_axes.transAxes)
    dice_axes.set_xlabel("epoch")
    dice_axes.set_ylabel("validation Dice (mean over classes)")
    return figure


def _overlay_figure(case: OverlayCase, classes: list[tuple[str, str]]) -> Figure:
    gray, reference, prediction = _display_planes(case, classes)
    figure = _new_figure(12.0, 4.4)
    panels = (("image", gray, None), ("reference", gray, reference), ("prediction", gray, prediction))
    for index, (label, plane, masks) in enumerate(panels):
        axes = figure.add_subplot(1, 3, index + 1)
        rgb = np.repeat(plane[..., None], 3, axis=-1) if masks is None else _blend(plane, masks)
        axes.imshow(rgb, interpolation="nearest")
        axes.set_title(label)
        axes.set_axis_off()
    handles = [
        Patch(color=CLASS_COLOURS[i % len(CLASS_COLOURS)], label=_mpl_text(name)) for i, (_, name) in enumerate(classes)
    ]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), frameon=False)
    return figure


def _blend(gray: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Colour ``(K, H, W)`` masks over a ``(H, W)`` gray image in [0, 1]; returns ``(H, W, 3)``.

    Inside a mask the colour is mixed in with weight 0.4; its boundary pixels take the pure colour.
    """
    rgb = np.repeat(gray[..., None].astype(float), 3, axis=-1)
    for index, mask in enumerate(masks.astype(bool)):
        colour = np.asarray(CLASS_COLOURS[index % len(CLASS_COLOURS)])
        rgb[mask] = (1.0 - _FILL_ALPHA) * rgb[mask] + _FILL_ALPHA * colour
        rgb[mask & ~ndimage.binary_erosion(mask, border_value=0)] = colour
    return rgb


def _display_planes(case: OverlayCase, classes: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gray ``(H, W)`` in [0, 1] and reference / prediction masks ``(K, H, W)`` of the shown plane."""
    overlapping = _is_multilabel(case)
    reference = np.asarray(case.reference)
    spatial = reference.shape[1:] if overlapping else reference.shape
    image = np.asarray(case.image, dtype=float)
    image = image[0] if image.ndim == len(spatial) + 1 else image
    prediction = np.asarray(case.prediction)
    channels_ok = not overlapping or reference.shape[0] == len(classes)
    if len(spatial) not in (2, 3) or image.shape != spatial or prediction.shape != reference.shape:
        channels_ok = False
    if not channels_ok:
        raise DataError(
            case.case_id,
            f"overlay shapes do not match: image {np.shape(case.image)}, reference {reference.shape}, "
            f"prediction {prediction.shape}, {len(classes)} classes",
            "pass a (*spatial) or (C, *spatial) image and equally shaped 2D/3D reference and prediction, "
            "label maps or one binary mask per class",
        )
    ref_masks, pred_masks = (_as_masks(a, overlapping, classes) for a in (reference, prediction))
    if len(spatial) == 3:
        index = _foreground_slice(np.asarray(ref_masks.any(axis=0)))
        image, ref_masks, pred_masks = image[index], ref_masks[:, index], pred_masks[:, index]
    return _normalise(image, case.window), ref_masks, pred_masks


def _is_multilabel(case: OverlayCase) -> bool:
    if case.overlapping is not None:
        return case.overlapping
    ref_ndim, image_ndim = np.ndim(case.reference), np.ndim(case.image)
    if ref_ndim != 3:
        return ref_ndim == 4
    if image_ndim != 3:  # (H, W) image -> (K, H, W) masks; (C, D, H, W) image -> (D, H, W) labels
        return image_ndim == 2
    return np.asarray(case.reference).dtype == bool


def _as_masks(array: np.ndarray, overlapping: bool, classes: list[tuple[str, str]]) -> np.ndarray:
    """``(K, *spatial)`` boolean masks, one per class in label order."""
    if overlapping:
        return array.astype(bool)
    return np.stack([array == int(key) for key, _ in classes])


def _foreground_slice(foreground: np.ndarray) -> int:
    """Axis-0 index of ``(D, H, W)`` foreground with most voxels; the middle slice when there is none."""
    counts = foreground.reshape(foreground.shape[0], -1).sum(axis=1)
    return int(np.argmax(counts)) if counts.max() > 0 else foreground.shape[0] // 2


def _normalise(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Clip to ``window`` (default: the 1st-99th percentile of finite values) and scale to [0, 1]."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros(image.shape)
    low, high = window if window is not None else np.percentile(finite, [1.0, 99.0])
    if high <= low:
        return np.zeros(image.shape)
    scaled = (np.where(np.isfinite(image), image, low) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0)
