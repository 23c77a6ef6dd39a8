"""The federated maths, as pure functions: FedAvg's weighted average and FedProx's proximal term.

FedAvg (McMahan et al., 2017): the new global weights are the average of the sites' weights, each site
weighted by its number of training examples, ``w = sum_k n_k w_k / sum_k n_k``. FedProx (Li et al., 2020)
aggregates the same way; what differs is each site's local objective, ``L_k(w) + mu/2 ||w - w_global||^2``,
whose gradient adds ``mu (w - w_global)`` to the loss's (applied by :mod:`medseg.federated.proximal`).

Example:
    >>> import numpy as np
    >>> weighted_average([([np.array([0.0])], 1), ([np.array([3.0])], 2)])[0]
    array([2.])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["proximal_gradient", "proximal_penalty", "weighted_average", "weighted_mean"]


def weighted_average(updates: Sequence[tuple[Sequence[np.ndarray], int]]) -> list[np.ndarray]:
    """FedAvg: the example-weighted mean of each weight array over the sites' ``(arrays, examples)``.

    Every site must send arrays of the same shapes (the one planned network); integer arrays (a
    normalisation layer's step counter) are averaged in float64 and rounded back to their dtype."""
    if not updates:
        raise ValueError("no site updates to average")
    total = sum(n for _, n in updates)
    if total <= 0 or any(n < 0 for _, n in updates):
        raise ValueError(f"example counts must be non-negative with a positive sum, got {[n for _, n in updates]}")
    first = updates[0][0]
    for arrays, _ in updates:
        if [a.shape for a in arrays] != [a.shape for a in first]:
            raise ValueError("sites sent weights of different shapes: they did not train the same network")
    averaged = []
    for i, reference in enumerate(first):
        mean = sum(np.asarray(arrays[i], dtype=np.float64) * (n / total) for arrays, n in updates)
        mean = np.asarray(mean)
        averaged.append(
            np.rint(mean).astype(reference.dtype) if reference.dtype.kind in "iub" else mean.astype(reference.dtype)
        )
    return averaged


def weighted_mean(values: Sequence[tuple[float, int]]) -> float:
    """The example-weighted mean of scalar metrics ``(value, examples)``; NaN values and zero weights are
    left out; NaN when nothing is left."""
    kept = [(v, n) for v, n in values if n > 0 and np.isfinite(v)]
    total = sum(n for _, n in kept)
    return float(sum(v * n for v, n in kept) / total) if total else float("nan")


def proximal_penalty(weights: Sequence[np.ndarray], global_weights: Sequence[np.ndarray], mu: float) -> float:
    """FedProx's term ``mu/2 * sum_i ||w_i - g_i||^2`` over the weight arrays."""
    return (
        0.5
        * mu
        * float(sum(np.sum((np.asarray(w, np.float64) - g) ** 2) for w, g in zip(weights, global_weights, strict=True)))
    )


def proximal_gradient(weights: np.ndarray, global_weights: np.ndarray, mu: float) -> np.ndarray:
    """The gradient of :func:`proximal_penalty` with respect to one array: ``mu * (w - g)``."""
    return mu * (np.asarray(weights) - np.asarray(global_weights))
