"""Every training loss medseg can build, by name: one literal dict of loss terms, ``{term: LossTerm}``.

A loss name is one or more terms joined by ``+``, summed with weight 1 each: ``dice+ce``, ``dice+focal``,
``dice+boundary``, ``tversky+ce``, ``dice+ce+boundary``, or one term alone (``focal``). ``plans.json`` records
the name in ``train.loss``; ``medseg train --loss NAME`` picks it. Each term fits exclusive classes (softmax
over ``C`` channels, class-index target), overlapping structures (a sigmoid channel per binary mask) or both.

=================  ===========  ============  =========================================================
term               exclusive    overlapping   what it is (defaults; set in ``train.loss_params``, LossParams)
=================  ===========  ============  =========================================================
``dice``           yes          yes           soft Dice ``1 - mean_c dice_c`` (smooth 1e-5)
``ce``             yes          —             cross-entropy (class ``weight``: none)
``bce``            —            yes           binary cross-entropy per channel (channel ``weight``: none)
``focal``          yes          yes           focal loss (``gamma`` 2, ``alpha`` 0.75 = foreground weight)
``tversky``        yes          yes           Tversky ``1 - TI`` (``alpha`` 0.3 on FP, ``beta`` 0.7 on FN)
``focal-tversky``  yes          yes           ``(1 - TI)^(1/gamma)`` (``gamma`` 4/3, alpha 0.3, beta 0.7)
``boundary``       yes          yes           Kervadec's ``mean(p·phi)``, weight ramped 0.01 -> 1 over
                                              training; needs ``distance_map``
``hausdorff``      yes          yes           one-sided HD-DT ``mean((p-g)^2 · d_g^2)`` (``alpha`` 2);
                                              needs ``distance_map``
=================  ===========  ============  =========================================================

Every exclusive-class term but ``ce`` and ``focal`` follows ``TrainConfig.include_background`` (channel 0 is
left out by default), and the region terms (``dice``, ``tversky``, ``focal-tversky``) follow ``batch_dice``.
``dice+ce`` and ``dice+bce`` without class weights build the fused :class:`~medseg.losses.dice.DiceCELoss` /
:class:`~medseg.losses.dice.DiceBCELoss` (one softmax for both terms; the losses of medseg 0.1); any other
combination is a :class:`~medseg.losses.combination.LossSum`. Formulas and sources: ``docs/losses.md``.

A term names the extra targets it needs beside the label (``requires``: names in
:data:`medseg.training.targets.EXTRA_TARGETS`, e.g. a distance map); a combination requires the union of its
terms'. The training loader puts them in each :class:`~medseg.training.batches.Batch` and the loss receives
them as keyword arguments: ``loss(outputs, target, **extras)``.

Example:
    >>> loss = build_loss("dice+ce", LossSettings(), overlapping=False, n_outputs=1)
    >>> type(loss.loss).__name__
    'DiceCELoss'
    >>> loss_entry("dice+boundary", overlapping=True).requires
    ('distance_map',)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from torch import nn

from medseg.config.loss import LossParams
from medseg.errors import ConfigError
from medseg.losses.boundary import BoundaryLoss
from medseg.losses.combination import LossSum
from medseg.losses.cross_entropy import BCELoss, CELoss
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.losses.dice import DiceBCELoss, DiceCELoss, DiceLoss
from medseg.losses.focal import FocalLoss
from medseg.losses.hausdorff import HausdorffDTLoss
from medseg.losses.tversky import TverskyLoss

__all__ = ["LOSSES", "LossEntry", "LossSettings", "LossTerm", "build_loss", "default_loss", "loss_entry"]


@dataclass(frozen=True)
class LossSettings:
    """The loss options of the training config: ``TrainConfig.include_background``, ``batch_dice`` and the
    terms' parameters ``loss_params`` (:class:`~medseg.config.loss.LossParams`)."""

    include_background: bool = False
    batch_dice: bool = False
    params: LossParams = field(default_factory=LossParams)

    @property
    def weights(self) -> tuple[float, ...] | None:
        """The cross-entropy class weights, or None (unweighted)."""
        return self.params.class_weights or None


@dataclass(frozen=True)
class LossTerm:
    """One registered term: its factory ``build(settings, overlapping)``, the labellings it fits, extras."""

    build: Callable[[LossSettings, bool], nn.Module]
    description: str
    exclusive: bool = True  # fits exclusive classes (softmax)
    overlapping: bool = True  # fits overlapping structures (sigmoid)
    requires: tuple[str, ...] = ()  # extra targets the batch must carry

    def fits(self, overlapping: bool) -> bool:
        return self.overlapping if overlapping else self.exclusive


@dataclass(frozen=True)
class LossEntry:
    """A loss name resolved for one labelling: its factory, its terms and the extra targets they need."""

    build: Callable[[LossSettings], nn.Module]
    overlapping: bool  # True: for overlapping structures (sigmoid channels); False: exclusive classes
    description: str
    requires: tuple[str, ...] = ()  # extra targets the batch must carry
    terms: tuple[str, ...] = ()


def _dice(s: LossSettings, overlapping: bool) -> nn.Module:
    return DiceLoss(overlapping=overlapping, include_background=s.include_background, batch_dice=s.batch_dice)


def _tversky(s: LossSettings, overlapping: bool, focal: bool = False) -> nn.Module:
    return TverskyLoss(
        overlapping=overlapping,
        alpha=s.params.tversky_alpha,
        beta=s.params.tversky_beta,
        gamma=s.params.focal_tversky_gamma if focal else 1.0,
        include_background=s.include_background,
        batch_dice=s.batch_dice,
    )


def _focal(s: LossSettings, overlapping: bool) -> nn.Module:
    return FocalLoss(overlapping=overlapping, gamma=s.params.focal_gamma, alpha=s.params.focal_alpha)


LOSSES: dict[str, LossTerm] = {
    "dice": LossTerm(_dice, "soft Dice"),
    "ce": LossTerm(lambda s, o: CELoss(weight=s.weights), "cross-entropy (softmax)", overlapping=False),
    "bce": LossTerm(lambda s, o: BCELoss(weight=s.weights), "binary cross-entropy (sigmoid)", exclusive=False),
    "focal": LossTerm(_focal, "focal loss (gamma 2, alpha 0.75)"),
    "tversky": LossTerm(_tversky, "Tversky (alpha 0.3 FP, beta 0.7 FN)"),
    "focal-tversky": LossTerm(partial(_tversky, focal=True), "focal Tversky (gamma 4/3)"),
    "boundary": LossTerm(
        lambda s, o: BoundaryLoss(
            overlapping=o, include_background=s.include_background, schedule=s.params.boundary_ramp
        ),
        "boundary loss (weight ramped over training)",
        requires=("distance_map",),
    ),
    "hausdorff": LossTerm(
        lambda s, o: HausdorffDTLoss(
            overlapping=o, include_background=s.include_background, alpha=s.params.hausdorff_alpha
        ),
        "one-sided distance-transform Hausdorff loss",
        requires=("distance_map",),
    ),
}

# combinations that have one fused module (a shared softmax; bit-identical to medseg 0.1's losses)
_FUSED: dict[frozenset[str], Callable[[LossSettings], nn.Module]] = {
    frozenset({"dice", "ce"}): lambda s: DiceCELoss(include_background=s.include_background, batch_dice=s.batch_dice),
    frozenset({"dice", "bce"}): lambda s: DiceBCELoss(batch_dice=s.batch_dice),
}


def default_loss(overlapping: bool) -> str:
    """The planned loss: Dice + CE for exclusive classes, Dice + BCE for overlapping structures (nnU-Net)."""
    return "dice+bce" if overlapping else "dice+ce"


def _kind(overlapping: bool) -> str:
    return "overlapping structures" if overlapping else "exclusive classes"


def loss_entry(name: str, *, overlapping: bool) -> LossEntry:
    """The entry of loss ``name`` (terms joined by ``+``), each term checked against the dataset's labelling."""
    terms = tuple(name.split("+"))
    fits = ", ".join(t for t in sorted(LOSSES) if LOSSES[t].fits(overlapping))
    hint = f"join with '+' any of {fits} (the terms for {_kind(overlapping)}; e.g. {default_loss(overlapping)})"
    for term in terms:
        if term not in LOSSES:
            raise ConfigError(f"unknown loss term {term!r} in loss {name!r}; {hint}")
        if terms.count(term) > 1:
            raise ConfigError(f"loss {name!r} names {term!r} twice; name each term once (weight 1 each)")
        if not LOSSES[term].fits(overlapping):
            raise ConfigError(
                f"loss {name!r} does not fit a dataset of {_kind(overlapping)} "
                f"({term!r} is for {_kind(not overlapping)}); {hint}"
            )
    requires = tuple(dict.fromkeys(r for t in terms for r in LOSSES[t].requires))
    build = partial(_build_terms, terms, overlapping)
    description = " + ".join(LOSSES[t].description for t in terms)
    return LossEntry(build, overlapping, description, requires, terms)


def _build_terms(terms: tuple[str, ...], overlapping: bool, settings: LossSettings) -> nn.Module:
    """The fused module of ``dice+ce`` / ``dice+bce`` (unweighted cross-entropy only), one term's module, or
    the :class:`LossSum` of several."""
    fused = _FUSED.get(frozenset(terms))
    if fused is not None and settings.weights is None:
        return fused(settings)
    if len(terms) == 1:
        return LOSSES[terms[0]].build(settings, overlapping)
    modules = {t: LOSSES[t].build(settings, overlapping) for t in terms}
    return LossSum(modules, {t: LOSSES[t].requires for t in terms})


def build_loss(name: str, settings: LossSettings, *, overlapping: bool, n_outputs: int) -> nn.Module:
    """Build loss ``name`` wrapped for a network with ``n_outputs`` outputs (deep supervision; a single
    tensor output goes straight to the loss)."""
    return DeepSupervisionLoss(loss_entry(name, overlapping=overlapping).build(settings), n_outputs)
