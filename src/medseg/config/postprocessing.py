"""Which post-processing steps prediction runs (:class:`PostProcessing`), as data for ``plans.json``.

The steps themselves are the pure functions of :mod:`medseg.inference.postprocessing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from medseg.errors import ConfigError

__all__ = ["PostProcessing"]


@dataclass(frozen=True)
class PostProcessing:
    """Which post-processing steps to run, in the order remove-small → largest component → fill holes.

    ``classes`` limits the steps to these labels (``None``: every foreground label present).

    Example:
        >>> config = PostProcessing(largest_component=True, min_voxels=10)
        >>> config.fill_holes
        False
    """

    largest_component: bool = False
    min_voxels: int = 0
    fill_holes: bool = False
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.min_voxels < 0:
            raise ConfigError(f"min_voxels={self.min_voxels} is negative (use 0 to keep every component)")
