from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config.plans import ChannelNorm, DataConfig, InferConfig, Plans, TrainConfig
from medseg.errors import DataError
from medseg.evaluation.report import (
    CLASS_COLOURS,
    OverlayCase,
    _blend,
    _foreground_slice,
    _normalise,
    pick_overlay_cases,
    write_report,
)
from medseg.evaluation.run_report import display_window
from medseg.labels import LabelSpec
from medseg.models.configs import ModelInputs
from medseg.models.unet_config import plan_unet

EVIL_ID = "<script>alert(1)</script>"
IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
DICE = {
    "case_000": (0.93, 0.81),
    "case_001": (0.90, None),
    "case_002": (0.85, 0.70),
    EVIL_ID: (0.5, float("nan")),
}


def _case_metrics(lung: float | None, heart: float | None) -> dict:
    def one(dice: float | None) -> dict:
        values = dict.fromkeys(("iou", "hd95", "hd", "assd", "nsd", "sensitivity", "specificity", "precision"), 0.5)
        return {"dice": dice, **values}

    return {"1": one(lung), "2": one(heart)}


def _stat(mean: float | None, median: float | None = 0.5, std: float | None = 0.1) -> dict:
    return {"mean": mean, "median": median, "std": std, "n": 4}


def _metrics() -> dict:
    metric_names = ("dice", "iou", "hd95", "assd", "nsd", "sensitivity", "specificity", "precision")
    summary = {key: {name: _stat(0.5) for name in metric_names} for key in ("1", "2")}
    summary["1"]["dice"] = _stat(0.93, median=0.94, std=0.02)
    summary["2"]["hd95"] = _stat(float("nan"))
    summary["2"]["assd"] = _stat(None)
    return {
        "classes": {"1": "lung", "2": "heart & <co>"},
        "cases": [{"case": case, "metrics": _case_metrics(*dice)} for case, dice in DICE.items()],
        "summary": summary,
        "spacing_unit": "mm",
        "empty_policy": "text",
    }


LOG = [
    {"epoch": 0, "train_loss": 0.9, "lr": 0.01, "seconds": 1.0},
    {"epoch": 1, "train_loss": 0.6, "val_loss": 0.65, "val_dice": 0.5, "lr": 0.009, "seconds": 1.0},
    {"epoch": 2, "train_loss": 0.5, "val_loss": None, "val_dice": float("nan"), "lr": 0.008, "seconds": 1.0},
]


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.int64)
    labels[..., 2:8, 2:8] = 1
    labels[..., 9:14, 9:14] = 2
    return labels


def _overlay(case_id: str, spatial: tuple[int, ...], *, channel: bool, overlapping: bool) -> OverlayCase:
    rng = np.random.default_rng(0)
    image = rng.normal(size=((2, *spatial) if channel else spatial))
    reference = _labels(spatial)
    prediction = np.roll(reference, 1, axis=-1)
    if overlapping:  # overlapping structures: class 1 is the union of both regions
        reference = np.stack([reference > 0, reference == 2])
        prediction = np.stack([prediction > 0, prediction == 2])
    return OverlayCase(case_id, image, reference, prediction, score=0.8)


def _html(tmp_path: Path, **kwargs) -> str:
    out = write_report(tmp_path / "run" / "report.html", title="Run <1>", metrics=_metrics(), **kwargs)
    assert out == tmp_path / "run" / "report.html"
    return out.read_text(encoding="utf-8")


def test_report_is_written_with_names_and_escaped_strings(tmp_path: Path) -> None:
    text = _html(tmp_path, config={"model": "unet", "note": "<b>&"})
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["report.html"]  # no temporary file left
    assert "lung" in text and "heart &amp; &lt;co&gt;" in text and "heart & <co>" not in text
    for case in ("case_000", "case_001", "case_002"):
        assert f"<td>{case}</td>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text and "<link" not in text and "http" not in text  # self-contained
    assert "<title>Run &lt;1&gt;</title>" in text
    assert "&quot;note&quot;: &quot;&lt;b&gt;&amp;&quot;" in text and "<pre>" in text


def test_summary_cells_format_mean_std_median_and_units(tmp_path: Path) -> None:
    text = _html(tmp_path)
    assert "<th>HD95 (mm)</th>" in text and "<th>ASSD (mm)</th>" in text and "<th>Dice</th>" in text
    assert "<td>0.930 ± 0.020 (0.940)</td>" in text
    assert "<td>lung (n=4)</td>" in text


def test_nan_and_null_metrics_render_as_dash(tmp_path: Path) -> None:
    text = _html(tmp_path)
    heart_row = re.search(r"<tr><td>heart[^<]*</td>(.*?)</tr>", text).group(1)
    cells = re.findall(r"<td>(.*?)</td>", heart_row)
    assert cells[2] == "–" and cells[3] == "–"  # hd95 mean NaN, assd mean null
    # mean Dice over finite classes only: case_001 = 0.90 (heart null), EVIL_ID = 0.5 (heart NaN)
    assert "<tr><td>case_001</td><td>0.900</td><td>0.900</td><td>–</td></tr>" in text
    assert "<td>0.500</td><td>0.500</td><td>–</td></tr>" in text
    assert "<tr><td>case_000</td><td>0.870</td><td>0.930</td><td>0.810</td></tr>" in text
    assert "nan" not in IMG_RE.sub("", text).lower()


@pytest.mark.parametrize(
    ("log_records", "n_overlays", "expected"),
    [((), 0, 1), (LOG, 0, 2), ((), 3, 4), (LOG, 3, 5)],
)
def test_one_png_per_plot(tmp_path: Path, log_records, n_overlays: int, expected: int) -> None:
    overlays = [_overlay(f"c{i}", (16, 16), channel=False, overlapping=False) for i in range(n_overlays)]
    text = _html(tmp_path, log_records=log_records, overlays=overlays)
    images = IMG_RE.findall(text)
    assert len(images) == text.count("<img") == expected
    assert all(base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") for data in images)
    assert ("<h2>Training curves</h2>" in text) == bool(log_records)
    assert ("<h2>Examples</h2>" in text) == bool(n_overlays)


def test_all_nan_class_still_plots(tmp_path: Path) -> None:
    metrics = _metrics()
    for case in metrics["cases"]:
        case["metrics"]["2"]["dice"] = None
    text = write_report(tmp_path / "r.html", title="t", metrics=metrics, log_records=LOG[:1]).read_text(
        encoding="utf-8"
    )
    assert len(IMG_RE.findall(text)) == 2


def _panel_has_colour(png: bytes, colour: tuple[float, float, float], panel: int) -> bool:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    width = pixels.shape[1] // 3
    region = pixels[:, panel * width : (panel + 1) * width]
    target = np.round(np.asarray(colour) * 255).astype(int)
    return bool((np.abs(region - target).max(axis=-1) <= 3).any())


@pytest.mark.parametrize(
    ("spatial", "channel", "overlapping"),
    [
        ((16, 16), False, False),
        ((16, 16), True, False),
        ((5, 16, 16), False, False),
        ((5, 16, 16), True, False),
        ((16, 16), False, True),
        ((16, 16), True, True),
        ((5, 16, 16), True, True),
    ],
)
def test_overlays_2d_3d_and_multilabel(tmp_path: Path, spatial, channel: bool, overlapping: bool) -> None:
    case = _overlay(EVIL_ID, spatial, channel=channel, overlapping=overlapping)
    text = _html(tmp_path, overlays=[case])
    assert "<h3>&lt;script&gt;alert(1)&lt;/script&gt; — mean Dice 0.800</h3>" in text
    png = base64.b64decode(IMG_RE.findall(text)[1])
    for panel in (1, 2):  # reference and prediction panels show both class colours
        assert _panel_has_colour(png, CLASS_COLOURS[0], panel)
        assert _panel_has_colour(png, CLASS_COLOURS[1], panel)
    assert not _panel_has_colour(png, CLASS_COLOURS[0], 0)  # the image panel is plain gray


def test_ambiguous_3d_bool_reference_is_read_as_masks(tmp_path: Path) -> None:
    masks = np.stack([_labels((16, 16)) > 0, _labels((16, 16)) == 2])  # (K=2, H, W) bool, image (C=2, H, W)
    case = OverlayCase("c", np.zeros((2, 16, 16)), masks, masks, score=1.0)
    assert IMG_RE.findall(_html(tmp_path, overlays=[case]))


def test_three_overlays_stay_under_one_megabyte(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    overlays = [
        OverlayCase(f"c{i}", rng.normal(size=(1, 12, 256, 256)), _labels((12, 256, 256)), _labels((12, 256, 256)), 0.5)
        for i in range(3)
    ]
    out = write_report(tmp_path / "r.html", title="t", metrics=_metrics(), log_records=LOG, overlays=overlays)
    assert out.stat().st_size < 1_000_000


@pytest.mark.parametrize(
    ("reference", "prediction"),
    [
        (np.zeros((16, 16), dtype=int), np.zeros((16, 15), dtype=int)),  # prediction shape differs
        (np.zeros((3, 16, 16), dtype=bool), np.zeros((3, 16, 16), dtype=bool)),  # 3 masks, 2 classes
        (np.zeros((1, 2, 16, 16, 2), dtype=int), np.zeros((1, 2, 16, 16, 2), dtype=int)),  # 4D spatial
    ],
)
def test_bad_overlay_shapes_raise_data_error(tmp_path: Path, reference, prediction) -> None:
    case = OverlayCase("bad_case", np.zeros((16, 16)), reference, prediction, score=0.1)
    with pytest.raises(DataError, match="bad_case"):
        write_report(tmp_path / "r.html", title="t", metrics=_metrics(), overlays=[case])
    assert not (tmp_path / "r.html").exists()


def test_metrics_without_classes_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="classes"):
        write_report(tmp_path / "r.html", title="t", metrics={"cases": []})


def test_foreground_slice_picks_most_foreground_or_middle() -> None:
    foreground = np.zeros((5, 4, 4), dtype=bool)
    foreground[1, :2, :2] = True  # 4 voxels
    foreground[3, :3, :3] = True  # 9 voxels
    assert _foreground_slice(foreground) == 3
    assert _foreground_slice(np.zeros((5, 4, 4), dtype=bool)) == 2


def test_blend_fills_interior_and_colours_boundary() -> None:
    gray = np.full((5, 5), 0.5)
    mask = np.zeros((1, 5, 5), dtype=bool)
    mask[0, 1:4, 1:4] = True
    rgb = _blend(gray, mask)
    colour = np.asarray(CLASS_COLOURS[0])
    np.testing.assert_allclose(rgb[2, 2], 0.6 * 0.5 + 0.4 * colour)  # interior: 40 % colour
    np.testing.assert_allclose(rgb[1, 1], colour)  # boundary: pure colour
    np.testing.assert_allclose(rgb[0, 0], [0.5, 0.5, 0.5])  # outside untouched


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({}, []),
        ({"a": 0.4}, [("best", "a")]),
        ({"a": 0.2, "b": 0.8}, [("best", "b"), ("worst", "a")]),
        (
            {"a": 0.5, "b": 0.9, "c": 0.1, "d": 0.7, "e": 0.3},
            [("best", "b"), ("median", "a"), ("worst", "c")],
        ),
        ({"a": 0.5, "b": math.nan, "c": 0.1, "d": 0.7}, [("best", "d"), ("median", "a"), ("worst", "c")]),
        ({"b": 0.5, "a": 0.5, "c": 0.5}, [("best", "a"), ("median", "b"), ("worst", "c")]),  # ties by id
    ],
)
def test_pick_overlay_cases(scores: dict[str, float], expected: list[tuple[str, str]]) -> None:
    assert pick_overlay_cases(scores) == expected


def test_a_display_window_clips_the_image_and_is_captioned(tmp_path: Path) -> None:
    hu = np.array([[-1000.0, -600.0], [40.0, 3000.0]])
    np.testing.assert_allclose(_normalise(hu, (-1350.0, 150.0)), [[350 / 1500, 750 / 1500], [1390 / 1500, 1.0]])
    assert _normalise(hu)[1, 1] == 1.0 and _normalise(hu)[0, 0] == 0.0  # no window: own percentiles
    case = replace(_overlay("ct_case", (16, 16), channel=False, overlapping=False), window=(-160.0, 240.0))
    assert "display window -160 … 240" in _html(tmp_path, overlays=[case])


def test_the_run_report_shows_ct_through_its_window() -> None:
    def plans(norm: ChannelNorm) -> Plans:
        data = DataConfig(
            ndim=2,
            channel_names=("CT",),
            labels=LabelSpec({0: "bg", 1: "a"}, (0, 1)),
            target_spacing=(1.0, 1.0),
            normalization=(norm,),
        )
        return Plans(
            "t", data, (64, 64), plan_unet(ModelInputs(2, 1, 2, (64, 64), (1.0, 1.0))), TrainConfig(), InferConfig()
        )

    assert display_window(plans(ChannelNorm("window", -1350.0, 150.0))) == (-1350.0, 150.0)
    assert display_window(plans(ChannelNorm("ct", -1000.0, 1500.0, 40.0, 300.0))) == (-1000.0, 1500.0)
    assert display_window(plans(ChannelNorm("zscore"))) is None


def test_dice_axis_follows_the_data() -> None:
    from medseg.evaluation.report import dice_axis_range

    low, high = dice_axis_range(np.array([0.95, 0.97, 0.99]))
    assert 0.89 <= low <= 0.93 and 1.0 < high < 1.01  # a box of 0.95-0.99 fills the plot
    assert dice_axis_range(np.array([0.1, 0.9]))[0] < 0.1
    assert dice_axis_range(np.array([]))[0] < 0


def test_configuration_is_a_short_table_with_the_plans_one_click_away(tmp_path: Path) -> None:
    from medseg.evaluation.config_summary import config_rows
    from medseg.serial import to_dict

    data = DataConfig(
        ndim=3,
        channel_names=("MRI",),
        labels=LabelSpec({0: "bg", 1: "hippocampus"}, (0, 1)),
        target_spacing=(1.0, 1.0, 1.0),
        normalization=(ChannelNorm("zscore"),),
    )
    model = plan_unet(ModelInputs(3, 1, 2, (40, 56, 40), (1.0, 1.0, 1.0)))
    plans = Plans("hippo", data, (40, 56, 40), model, TrainConfig(time_budget_s=1200), InferConfig())
    rows = dict(config_rows(to_dict(plans)))
    assert rows["dataset"] == "hippo" and rows["classes"] == "hippocampus" and rows["patch (voxels)"] == "40 × 56 × 40"
    assert rows["training"].startswith("until the time budget of 20 min") and "levels" in rows["network"]
    text = _html(tmp_path, config=to_dict(plans))
    assert '<table class="config">' in text and "<details><summary>the full plans.json</summary><pre>" in text
    assert "How empty masks are scored" in text
