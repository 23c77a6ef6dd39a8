"""Intensity normalisations a user can ask for by name (``--normalization``), with CT window presets.

``auto`` (the default) is medseg's rule (``ct`` for a channel named CT, ``zscore`` otherwise; ImageNet's
statistics for a pretrained encoder). The others apply to every channel:

* ``zscore``: per-case mean and standard deviation;
* ``ct``: clip to the dataset's foreground 0.5/99.5 percentiles, z-score with its foreground mean/std;
* ``rescale``: the case's own 0.5/99.5 percentiles mapped to [0, 1] (clipped);
* ``histogram-match``: each case's histogram mapped onto a standard one learnt from the training cases
  (Nyúl's landmarks: 1st, 10th ... 90th, 99th percentiles; for MRI of varying scanners);
* ``window:NAME`` or ``window:LEVEL,WIDTH``: a CT window in Hounsfield units, ``[level - width/2,
  level + width/2]`` mapped to [0, 1] (clipped). Presets (:data:`HU_WINDOWS`, the usual radiology values):
  lung (-600, 1500), soft-tissue / mediastinum (40, 400), bone (400, 1800), brain (40, 80), liver (60, 160).

Example:
    >>> parse_normalization("window:lung")
    ('window', -1350.0, 150.0)
    >>> parse_normalization("window:50,350")
    ('window', -125.0, 225.0)
"""

from __future__ import annotations

from medseg.errors import ConfigError

__all__ = ["HU_WINDOWS", "NORMALIZATIONS", "parse_normalization"]

# name -> (level, width) in Hounsfield units
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft-tissue": (40.0, 400.0),
    "mediastinum": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}
NORMALIZATIONS = ("auto", "zscore", "ct", "rescale", "histogram-match", "window:NAME", "window:LEVEL,WIDTH")


def parse_normalization(text: str) -> tuple[str, float, float]:
    """``(scheme, low, high)`` of a ``--normalization`` value (``low``/``high`` only for windows, else 0);
    anything else is a :class:`ConfigError` listing what is accepted."""
    name = text.strip().lower()
    if name in ("auto", "zscore", "ct", "rescale"):
        return name, 0.0, 0.0
    if name in ("histogram-match", "histogram"):
        return "histogram", 0.0, 0.0
    if name.startswith("window:"):
        spec = name[len("window:") :]
        if spec in HU_WINDOWS:
            level, width = HU_WINDOWS[spec]
        else:
            try:
                level, width = (float(v) for v in spec.split(","))
            except ValueError:
                raise ConfigError(
                    f"--normalization {text!r}: give a window preset ({', '.join(HU_WINDOWS)}) or LEVEL,WIDTH "
                    "in Hounsfield units, e.g. window:40,400"
                ) from None
            if width <= 0:
                raise ConfigError(f"--normalization {text!r}: the window width must be positive")
        return "window", level - width / 2, level + width / 2
    raise ConfigError(f"--normalization {text!r} is not one of {', '.join(NORMALIZATIONS)}")
