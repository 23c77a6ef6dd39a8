"""Which post-processing steps prediction runs (:class:`PostProcessing`), as data for ``plans.json``.

The steps themselves are the pure functions of :mod:`medseg.inference.postprocessing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from medseg.errors import ConfigError

__all__ = ["PostProcessing"]


@dataclass(frozen=True)
class PostProcessing:
    """Which post-processing steps to run, in the order foreground component → remove-small → largest
    component → fill holes.

    ``classes`` limits the per-class steps to these labels (``None``: every foreground label present; for
    overlapping structures positions in the stack of masks, from 0). ``foreground_component`` keeps the
    largest connected component of all foreground classes taken together (each voxel keeps its class;
    voxels outside become background), nnU-Net's "all foreground as one" step. A sequence of these, each
    with its own ``classes``, is what :func:`medseg.inference.choose_postprocessing.choose_postprocessing`
    picks on out-of-fold predictions.

    Example:
        >>> config = PostProcessing(largest_component=True, min_voxels=10)
        >>> config.fill_holes
        False
    """

    largest_component: bool = False
    min_voxels: int = 0
    fill_holes: bool = False
    classes: tuple[int, ...] | None = None
    foreground_component: bool = False

    @property
    def active(self) -> bool:
        """Whether this changes anything at all."""
        return self.largest_component or self.min_voxels > 0 or self.fill_holes or self.foreground_component

    def __post_init__(self) -> None:
        if self.min_voxels < 0:
            raise ConfigError(f"min_voxels={self.min_voxels} is negative (use 0 to keep every component)")
