"""Tversky loss (Salehi et al. 2017) and focal Tversky loss (Abraham & Khan 2019), for either labelling.

``TI_c`` is the soft Tversky index of class/structure ``c``
(:func:`~medseg.losses.functional.soft_tversky_per_class`: ``alpha`` weights false positives, ``beta`` false
negatives, as MONAI's ``TverskyLoss``). The loss is::

    mean_c (1 - TI_c)^(1 / gamma)

``gamma = 1`` is the Tversky loss (``tversky``: ``alpha = 0.3``, ``beta = 0.7``, Salehi et al.'s choice that
favours recall); ``gamma = 4/3`` the focal Tversky loss (``focal-tversky``, Abraham & Khan's best value, the
paper's exponent ``1/gamma``): with ``1/gamma < 1`` a class's gradient grows, not shrinks, as its index nears 1.
(Abraham & Khan put their ``alpha`` on the false negatives; here the roles follow Salehi and MONAI: ``alpha`` =
false positives, ``beta`` = false negatives, same defaults in effect.) ``1 - TI_c`` is clamped from below at 1e-7
before the power, so a perfect class has a finite (zero) gradient when ``1/gamma < 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError
from medseg.losses.functional import check_weights, probabilities, scored_channels, soft_tversky_per_class

__all__ = ["TverskyLoss"]


class TverskyLoss(nn.Module):
    """(Focal) Tversky loss, softmax (exclusive classes) or sigmoid (overlapping structures); a scalar.

    ``forward(logits, target)``: logits ``(B, C, *spatial)``; target ``(B, 1, *spatial)`` / ``(B, *spatial)``
    class indices (exclusive) or ``(B, C, *spatial)`` binary masks (overlapping). ``include_background=False``
    leaves channel 0 out for exclusive classes; ``batch_dice`` sums over the batch before the index.

    Example:
        >>> loss = TverskyLoss(overlapping=False, gamma=4 / 3)  # focal Tversky
        >>> loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        overlapping: bool,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 1.0,
        include_background: bool = False,
        batch_dice: bool = False,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        check_weights(alpha=alpha, beta=beta, smooth=smooth)
        if not gamma > 0:
            raise ConfigError(f"focal Tversky gamma={gamma} is not positive (use gamma >= 1, e.g. 4/3)")
        self.overlapping = overlapping
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.include_background = include_background
        self.batch_dice = batch_dice
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs, masks = probabilities(logits.float(), target, overlapping=self.overlapping)
            probs, masks = scored_channels(
                probs, masks, overlapping=self.overlapping, include_background=self.include_background, loss="Tversky"
            )
            index = soft_tversky_per_class(
                probs, masks, alpha=self.alpha, beta=self.beta, batch_dice=self.batch_dice, smooth=self.smooth
            )
            loss = 1.0 - index
            if self.gamma != 1.0:
                loss = loss.clamp_min(1e-7) ** (1.0 / self.gamma)
            return loss.mean()
