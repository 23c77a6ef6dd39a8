"""The loss terms' parameters as data for ``plans.json`` (:class:`LossParams`, ``train.loss_params``).

Which terms the loss has is ``train.loss`` (names of :data:`medseg.losses.registry.LOSSES` joined by ``+``);
this records the numbers each term uses, so a run can be repeated from its plans alone. Edit them in the
``plans.json`` that ``medseg plan`` writes, then ``medseg train`` that folder; ``--class-weights`` sets the
cross-entropy weights from the command line.

Example:
    >>> LossParams(class_weights=(0.5, 1.0, 2.0)).focal_gamma
    2.0
    >>> LossParams(focal_alpha=1.5)
    Traceback (most recent call last):
    ...
    medseg.errors.ConfigError: loss_params.focal_alpha = 1.5 must be in [0, 1] (the foreground weight)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medseg.errors import ConfigError

__all__ = ["LossParams"]


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ConfigError(f"loss_params.{name} = {value!r} must be a positive number")


def _unit(name: str, value: float, meaning: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
        raise ConfigError(f"loss_params.{name} = {value!r} must be in [0, 1] ({meaning})")


@dataclass(frozen=True)
class LossParams:
    """Parameters of the loss terms; the defaults are the literature's (sources in ``docs/losses.md``).

    ``class_weights``: weights of the cross-entropy terms (``ce``: one per class, background first; ``bce``:
    one per structure); empty = unweighted. ``focal_gamma`` / ``focal_alpha``: focal loss focusing exponent and
    foreground weight (Lin et al.: 2, and 0.75 as MONAI's default for segmentation). ``tversky_alpha`` /
    ``tversky_beta``: Tversky weights of false positives / false negatives (Salehi et al.: 0.3 / 0.7).
    ``focal_tversky_gamma``: focal Tversky's ``gamma`` in ``(1 - TI)^(1/gamma)`` (Abraham & Khan: 4/3).
    ``hausdorff_alpha``: exponent of the distance in the HD-DT loss (Karimi & Salcudean: 2).
    ``boundary_ramp``: ramp the boundary term's weight 0.01 -> 1 over training (Kervadec et al.); false =
    weight 1 from the start.
    """

    class_weights: tuple[float, ...] = ()
    focal_gamma: float = 2.0
    focal_alpha: float = 0.75
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    focal_tversky_gamma: float = 4 / 3
    hausdorff_alpha: float = 2.0
    boundary_ramp: bool = True

    def __post_init__(self) -> None:
        weights = tuple(self.class_weights)
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ConfigError(f"loss_params.class_weights[{i}] = {w!r} must be a number >= 0")
        if weights and not any(w > 0 for w in weights):
            raise ConfigError("loss_params.class_weights are all 0; give at least one positive weight")
        object.__setattr__(self, "class_weights", tuple(float(w) for w in weights))
        if not (isinstance(self.focal_gamma, (int, float)) and self.focal_gamma >= 0):
            raise ConfigError(f"loss_params.focal_gamma = {self.focal_gamma!r} must be >= 0 (0 = cross-entropy)")
        _unit("focal_alpha", self.focal_alpha, "the foreground weight")
        _unit("tversky_alpha", self.tversky_alpha, "the weight of false positives")
        _unit("tversky_beta", self.tversky_beta, "the weight of false negatives")
        _positive("focal_tversky_gamma", self.focal_tversky_gamma)
        _positive("hausdorff_alpha", self.hausdorff_alpha)
        if not isinstance(self.boundary_ramp, bool):
            raise ConfigError(f"loss_params.boundary_ramp = {self.boundary_ramp!r} must be true or false")

    def check_classes(self, n_outputs: int) -> None:
        """Refuse class weights whose count differs from the network's output channels."""
        if self.class_weights and len(self.class_weights) != n_outputs:
            raise ConfigError(
                f"{len(self.class_weights)} class weights for {n_outputs} output channels; give one weight per "
                "class (background first) or per structure"
            )
