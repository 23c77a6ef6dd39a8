"""Reading ``plans.json`` files of earlier versions: each step turns version N into N + 1, in memory.

Version 1 (medseg 0.1.0) differs from version 2 in four places: the model's name stood beside the model
(``model_name``) instead of in it (``model.name``); the patch size was written twice (``train.patch_size``
and ``infer.patch_size``); the label fields stood loose in ``data`` (``label_names``, ``label_values``,
``multilabel``) instead of in ``data.labels``; and the loss was implied by ``multilabel``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from medseg.errors import ConfigError

__all__ = ["upgrade"]

logger = logging.getLogger(__name__)


def _v1_to_v2(plans: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(plans)
    try:
        train, infer, data, model = out["train"], out["infer"], out["data"], out["model"]
        patch, infer_patch = train.pop("patch_size"), infer.pop("patch_size")
        overlapping = bool(data.pop("multilabel"))
        labels = {"names": data.pop("label_names"), "values": data.pop("label_values"), "overlapping": overlapping}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"plans version 1 lacks {exc} (plan the run again with `medseg plan`)") from exc
    if list(patch) != list(infer_patch):
        raise ConfigError(
            f"plans version 1 has train.patch_size {patch} and infer.patch_size {infer_patch}; version 2 has one "
            "patch size: make them equal in the file (the network was trained on train.patch_size), then load again"
        )
    data["labels"] = labels
    model["name"] = out.pop("model_name", "unet")
    train.setdefault("loss", "dice+bce" if overlapping else "dice+ce")
    out["patch_size"] = patch
    out["version"] = 2
    return out


_STEPS = {1: _v1_to_v2}


def upgrade(plans: dict[str, Any], current: int) -> dict[str, Any]:
    """Bring a parsed plans file from its ``version`` up to ``current``; unknown versions are an error."""
    version = plans.get("version")
    if version == current:
        return plans
    if version not in _STEPS:
        raise ConfigError(
            f"plans version {version!r} is unknown; this medseg reads versions {sorted(_STEPS)} and {current} "
            "(a newer medseg wrote it: upgrade medseg, or plan the run again)"
        )
    while plans.get("version") != current:
        plans = _STEPS[plans["version"]](plans)
    logger.info("read plans version %s and converted it to version %s in memory", version, current)
    return plans
