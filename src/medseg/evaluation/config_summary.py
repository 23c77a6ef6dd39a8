"""The run configuration as a short table a person reads in ten seconds: what was trained, on what, how
long. The full ``plans.json`` stays one click away in the report (a collapsed block), so nothing is hidden.

Works on the plans as a dict (``medseg.serial.to_dict``), so a report can be written for plans of any
model; a key the plans lack is left out rather than guessed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["config_rows"]


def config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(what, value), ...]`` of the plans' main choices, in reading order."""
    data, model, train, infer = (_section(config, key) for key in ("data", "model", "train", "infer"))
    rows: list[tuple[str, str]] = []

    def add(what: str, value: Any) -> None:
        if value not in (None, "", [], ()):
            rows.append((what, str(value)))

    add("dataset", config.get("dataset_name"))
    labels = _section(_section(data, "labels"), "names")
    add("classes", ", ".join(str(v) for k, v in sorted(labels.items(), key=lambda kv: int(kv[0])) if str(k) != "0"))
    add("input channels", ", ".join(data.get("channel_names") or ()))
    if data.get("ndim"):
        add("images", f"{data['ndim']}D, resampled to spacing {_join(data.get('target_spacing'), '.3g')}")
    norms = sorted({str(n.get("scheme", "")) for n in data.get("normalization") or () if isinstance(n, dict)})
    add("intensity normalisation", ", ".join(norms))
    add("patch (voxels)", _join(config.get("patch_size")))
    add("network", _network(model))
    budget = train.get("time_budget_s") or 0
    per_epoch = f"{train.get('iterations_per_epoch')} iterations per epoch"
    if budget:
        add("training", f"until the time budget of {budget / 60:g} min is spent ({per_epoch})")
    else:
        add("training", f"{train.get('epochs')} epochs, {per_epoch}")
    add("batch size", train.get("batch_size"))
    optimiser = train.get("optimizer")
    if optimiser:
        schedule = train.get("schedule", "")
        add("optimiser", f"{optimiser}, learning rate {train.get('learning_rate')} ({schedule} schedule)")
    add("mixed precision", {"off": "off (float32)"}.get(str(train.get("amp")), train.get("amp")))
    add("loss", train.get("loss"))
    overlap = infer.get("overlap")
    if overlap is not None:
        mirrored = "with mirroring" if infer.get("mirror_axes") else "no test-time mirroring"
        add("prediction", f"sliding window, overlap {overlap}, {mirrored}")
    chosen = _section(config, "budget")
    if chosen.get("configurations"):
        picked = chosen["configurations"][chosen.get("chosen", 0)]
        add("time-budget plan", f"{picked.get('name')} (of {len(chosen['configurations'])} candidates timed)")
    return rows


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _network(model: dict[str, Any]) -> str:
    name = str(model.get("name", "")) if model else ""
    features = model.get("features")
    if isinstance(features, (list, tuple)) and features:
        return f"{name}, {len(features)} levels, {features[0]} → {features[-1]} features"
    return name


def _join(values: Any, spec: str = "") -> str:
    if not isinstance(values, (list, tuple)) or not values:
        return ""
    return " × ".join(format(v, spec) for v in values)
