"""Where a scan meets a run: the one check that a scan is something the run's network can segment.

:func:`check_scan` runs once per case, after reading and before preprocessing, on every path a scan takes
into a network: training's preprocessing (:func:`~medseg.preprocessing.forward.preprocess_case`) and every
way of predicting (:class:`~medseg.inference.predictor.Predictor`, for files and for arrays). It refuses,
naming the file: a 2D image given to a run of 3D volumes or the reverse, a channel count other than the
run's, and NaN/Inf voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.config.plans import DataConfig
from medseg.errors import DataError
from medseg.io.images import Geometry

__all__ = ["check_scan"]


_UNNAMED = Path("<input>")  # the name of an array given without a file


def check_scan(image: np.ndarray, geometry: Geometry, data: DataConfig, paths: Sequence[Path] = ()) -> None:
    """Refuse a scan the run's network cannot segment meaningfully, naming its file.

    ``image`` is (C, *spatial) with ``geometry`` its spatial frame; ``data`` the run's data configuration;
    ``paths`` the files it was read from (one per channel, or one multi-channel file; empty for an array).
    """
    first = Path(paths[0]) if paths else _UNNAMED
    spatial = image.ndim - 1
    if spatial != data.ndim or geometry.ndim != data.ndim:
        kind = {2: "2D image", 3: "3D volume"}
        shown = "×".join(str(n) for n in image.shape[1:])
        raise DataError(
            first,
            f"is a {kind.get(spatial, f'{spatial}D image')} ({shown}), the run was trained on "
            f"{kind.get(data.ndim, f'{data.ndim}D image')}s",
            f"pass {'a 2D image' if data.ndim == 2 else 'a 3D volume'} like those the run was trained on",
        )
    expected = len(data.channel_names)
    if image.shape[0] != expected:
        raise DataError(
            first,
            f"has {image.shape[0]} channel(s), the model expects {expected}",
            "pass a scan with the channels the run was trained on",
        )
    if image.dtype.kind != "f":
        return
    per_channel = [Path(p) for p in paths] if len(paths) == image.shape[0] else [first] * image.shape[0]
    for channel, path in zip(image, per_channel, strict=True):
        finite = np.isfinite(channel)
        if not finite.all():
            n_bad = int(channel.size - np.count_nonzero(finite))
            raise DataError(path, f"{n_bad} NaN/Inf voxels", "replace them with the background value first")
