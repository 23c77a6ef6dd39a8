"""A combined loss: the sum of named loss terms, weight 1 each (``--loss dice+focal``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["LossSum"]


class LossSum(nn.Module):
    """``Σ_term term(logits, target, **its extras)``: each term receives only the extra targets it requires.

    ``terms`` maps a term's name to its module, ``requires`` a term's name to the extra targets it takes
    (e.g. ``{"boundary": ("distance_map",)}``; missing names take none). :meth:`set_progress` reaches every
    term that has a schedule (the boundary loss's ramp).

    Example:
        >>> from medseg.losses.dice import DiceLoss
        >>> from medseg.losses.focal import FocalLoss
        >>> loss = LossSum({"dice": DiceLoss(overlapping=True), "focal": FocalLoss(overlapping=True)})
        >>> loss(torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4)).shape
        torch.Size([])
    """

    def __init__(self, terms: Mapping[str, nn.Module], requires: Mapping[str, tuple[str, ...]] | None = None) -> None:
        super().__init__()
        if not terms:
            raise ValueError("LossSum needs at least one term")
        self.terms = nn.ModuleDict(dict(terms))
        self.requires = {name: tuple((requires or {}).get(name, ())) for name in terms}

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1], passed on to each term that has a schedule."""
        for term in self.terms.values():
            set_progress = getattr(term, "set_progress", None)
            if set_progress is not None:
                set_progress(progress)

    def forward(self, logits: Tensor, target: Tensor, **extras: Tensor) -> Tensor:
        missing = sorted({e for needs in self.requires.values() for e in needs} - set(extras))
        if missing:
            raise ValueError(f"loss terms need the extra targets {missing}; the batch carries {sorted(extras)}")
        values = [
            term(logits, target, **{e: extras[e] for e in self.requires[name]}) for name, term in self.terms.items()
        ]
        return torch.stack(values).sum()
